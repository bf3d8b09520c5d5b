package nettest_test

import (
	"context"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

func TestTwoNodesDirect(t *testing.T) {
	topo := nettest.NewTopology(t, nettest.Nodes(2))
	a := topo.Node(0).AddPod(t)
	b := topo.Node(1).AddPod(t)
	c := topo.Node(1).AddPod(t)
	nettest.ExpectConnect(t, a, b, 8080)
	nettest.ExpectConnect(t, b, a, 8080)
	nettest.ExpectConnect(t, b, c, 8080) // same node
	nettest.ExpectUDP(t, a, c, 5353)
	t.Log("\n" + topo.String())
}

func TestNetnsCommand(t *testing.T) {
	n := nettest.NewNetns(t, "tby-cmd")
	out, err := n.Run(context.Background(), "ip", "-o", "link", "show")
	require.NoError(t, err)
	assert.Contains(t, out, "lo:")
	assert.NotContains(t, out, "eth0")
	require.NoError(t, n.Sysctl("net.ipv4.ip_forward", "1"))
	out, err = n.Run(context.Background(), "cat", "/proc/sys/net/ipv4/ip_forward")
	require.NoError(t, err)
	assert.Equal(t, "1", strings.TrimSpace(out))
}

func TestMatrixWithBrokenRoute(t *testing.T) {
	topo := nettest.NewTopology(t, nettest.Nodes(3))
	for _, n := range topo.Nodes() {
		n.AddPod(t)
	}
	// Node 1 forgets its route to node 0's block: node0 <-> node1 pods break
	// (the answers have no way back), everything else still works.
	n1 := topo.Node(1)
	var keep []tnl.Route
	for _, r := range topo.DirectRoutes(n1) {
		if r.Dst != topo.Node(0).Block {
			keep = append(keep, r)
		}
	}
	require.NoError(t, n1.Routes.Set("nettest", keep))
	_, err := n1.Routes.Reconcile(context.Background())
	require.NoError(t, err)
	broken := func(from, to *nettest.Pod) bool {
		pair := map[string]bool{from.Node.Name: true, to.Node.Name: true}
		return !(pair["node0"] && pair["node1"])
	}
	m := nettest.ExpectMatrix(t, topo.Pods(), 8080, broken)
	t.Log("\n" + m.String())
	a, b := topo.Node(0).Pods()[0], n1.Pods()[0]
	nettest.ExpectNoConnect(t, a, b, 8080)
	nettest.ExpectNoUDP(t, a, b, 5353)

	require.NoError(t, topo.RouteDirect())
	nettest.ExpectConnect(t, a, b, 8080)
}

func TestStartAndRemovePod(t *testing.T) {
	var pid int
	t.Run("run", func(t *testing.T) {
		topo := nettest.NewTopology(t, nettest.Nodes(1))
		p := topo.Node(0).AddPod(t, nettest.PodName("web"))
		q := topo.Node(0).AddPod(t)
		assert.Equal(t, "web", p.Name)
		cmd := p.NS.Start(t, "sleep", "60")
		pid = cmd.Process.Pid
		out, err := p.Command(context.Background(), "ip", "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
		require.NoError(t, err)
		assert.Contains(t, string(out), p.IP.String()+"/32")
		l := q.ListenTCP(t, 9000)
		nettest.ExpectConnect(t, p, q, 9000)
		assert.Equal(t, 1, l.Accepted())

		topo.Node(0).RemovePod(t, q)
		assert.Len(t, topo.Node(0).Pods(), 1)
		nettest.ExpectNoConnect(t, p, q, 9000)
	})
	require.NotZero(t, pid)
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "process stopped at cleanup")
}

func TestClientAndBuild(t *testing.T) {
	nettest.RequireRoot(t)
	topo, err := nettest.Build(nettest.Nodes(2), nettest.IPv6())
	require.NoError(t, err)
	defer func() { require.NoError(t, topo.Close()) }()
	c := topo.AddClient(t)
	assert.Nil(t, c.Node)
	p := topo.Node(1).AddPod(t)
	// The client reaches a node address (like a NodePort) ...
	topo.Node(1).Host().ListenTCP(t, 30080)
	assert.Equal(t, "node1", nettest.ExpectConnectAddr(t, c, netip.AddrPortFrom(topo.Node(1).IP, 30080)))
	// ... but not pod addresses: the fabric does not route pod blocks.
	p.ListenTCP(t, 8080)
	nettest.ExpectNoConnectAddr(t, c, p.Addr(8080))
	// Nor do the client's answers find their way back to a pod (no NAT
	// outgoing here, and the fabric knows no pod routes).
	c.ListenTCP(t, 9090)
	nettest.ExpectNoConnectAddr(t, p, c.Addr(9090))
	assert.Contains(t, topo.String(), "node1")
}
