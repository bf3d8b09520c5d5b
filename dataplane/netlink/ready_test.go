package netlink_test

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// burnCPU starts n shell loops that spin until the test ends, so that the
// kernel's deferred work (the link watch that marks a new veth running)
// competes for the CPU as it does on a busy node.
func burnCPU(t *testing.T, n int) {
	t.Helper()
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, cmd.Start())
		pid := cmd.Process.Pid
		t.Cleanup(func() {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = cmd.Wait()
		})
	}
}

// TestKernelSetupReturnsReachable: a pod is reachable as soon as
// SetupWorkload returns. Until the kernel marks both veth ends running, it
// drops what goes through them (the proxy-ARP answer included), and the
// pod's first connection then waits a second for the ARP retry. Each new
// pod connects to a server on the same node straight after setup, while
// other processes keep the CPUs busy, with a 700 ms deadline: below the
// one-second retry, above what a starved test process needs to dial.
func TestKernelSetupReturnsReachable(t *testing.T) {
	n := 40
	if testing.Short() {
		n = 15
	}
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(1))
	node := topo.Node(0)
	server := node.AddPod(t, nettest.PodName("server"))
	server.ListenTCP(t, 8080)
	burnCPU(t, 4)

	block := node.Blocks()[0]
	addr := server.IP
	for i := range n {
		addr = addr.Next()
		require.True(t, block.Contains(addr))
		pod := nettest.NewNetns(t, "tby-rdy")
		spec := tnl.WorkloadSpec{ID: "ready." + strconv.Itoa(i), Netns: pod.Path, Addresses: []netip.Addr{addr}}
		_, err := node.Workloads.SetupWorkload(ctx, spec)
		require.NoError(t, err)
		client := &nettest.Pod{Name: fmt.Sprintf("client%d", i), NS: pod, IP: addr}
		start := time.Now()
		reply, err := client.Probe("tcp", server.Addr(8080), 700*time.Millisecond)
		require.NoError(t, err, "round %d: pod not reachable right after setup (%s)", i, time.Since(start))
		require.Equal(t, "server", reply)
		require.NoError(t, node.Workloads.TeardownWorkload(ctx, spec.ID))
	}
}
