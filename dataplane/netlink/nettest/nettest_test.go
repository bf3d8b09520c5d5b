package nettest_test

import (
	"context"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/store"
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
	// Node 1 forgets node 0 (a peer gone from its view): node0 <-> node1
	// pods break (the answers have no way back), everything else still works.
	n1 := topo.Node(1)
	require.NoError(t, n1.Dataplane.RemovePeer("node0"))
	require.NoError(t, n1.Dataplane.Reconcile(context.Background()))
	broken := func(from, to *nettest.Pod) bool {
		pair := map[string]bool{from.Node.Name: true, to.Node.Name: true}
		return !(pair["node0"] && pair["node1"])
	}
	m := nettest.ExpectMatrix(t, topo.Pods(), 8080, broken)
	t.Log("\n" + m.String())
	a, b := topo.Node(0).Pods()[0], n1.Pods()[0]
	nettest.ExpectNoConnect(t, a, b, 8080)
	nettest.ExpectNoUDP(t, a, b, 5353)

	require.NoError(t, topo.Sync())
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

// Pod addresses come from IPAM: each in a block affine to its node, and a
// block claimed when the node's first one is full is routed at once.
func TestAddressesFromIPAM(t *testing.T) {
	ctx := context.Background()
	nettest.RequireRoot(t)
	mem, err := store.NewMemory()
	require.NoError(t, err)
	a, err := ipam.New(mem)
	require.NoError(t, err)
	_, err = a.CreatePool(ctx, ipam.IPPool{Name: "tiny", CIDR: netip.MustParsePrefix("10.250.0.0/24"), BlockSize: 30})
	require.NoError(t, err)
	topo := nettest.NewTopology(t, nettest.Nodes(2), nettest.WithIPAM(a), nettest.WithRouting(nettest.RoutingVXLAN))
	assert.Same(t, a, topo.IPAM())
	n0, n1 := topo.Node(0), topo.Node(1)
	// 4 addresses per block: the tunnel address and 3 pods fill node0's first.
	var pods []*nettest.Pod
	for range 5 {
		pods = append(pods, n0.AddPod(t))
	}
	far := n1.AddPod(t)
	for _, n := range topo.Nodes() {
		blocks, _, err := a.AffineBlocks(ctx, n.Name)
		require.NoError(t, err)
		assert.Equal(t, blocks, n.Blocks(), n.Name)
		for _, p := range n.Pods() {
			info, err := a.Lookup(ctx, p.IP)
			require.NoError(t, err)
			assert.Equal(t, n.Name, info.Affinity, "%s %s", p.Name, p.IP)
			assert.True(t, info.Allocated)
		}
	}
	require.Len(t, n0.Blocks(), 2, "node0 claimed a second block")
	last := pods[len(pods)-1]
	require.True(t, n0.Blocks()[1].Contains(last.IP) || n0.Blocks()[0].Contains(last.IP))
	nettest.ExpectConnect(t, far, last, 8080)
	nettest.ExpectConnect(t, last, far, 8080)
	require.NoError(t, nettest.Reach("udp", far, pods[0], 5353))

	// Removing a pod releases its address.
	n0.RemovePod(t, last)
	info, err := a.Lookup(ctx, last.IP)
	require.NoError(t, err)
	assert.False(t, info.Allocated)
}

// A listener answers UDP from the address it was asked on, also when the
// pod has several.
func TestUDPFromEachAddress(t *testing.T) {
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(2))
	r, err := topo.IPAM().Assign(ctx, ipam.AssignArgs{Handle: "two-addrs", Node: "node1", Num4: 2})
	require.NoError(t, err)
	multi := topo.Node(1).AddPod(t, nettest.PodAddrs(r.IPv4[0].Addr, r.IPv4[1].Addr))
	client := topo.Node(0).AddPod(t)
	multi.ListenUDP(t, 5353)
	for _, ip := range r.All() {
		reply, err := client.Probe("udp", netip.AddrPortFrom(ip.Addr, 5353), nettest.ConnectTimeout)
		require.NoError(t, err, "to %s", ip.Addr)
		assert.Equal(t, multi.Name, reply)
	}
	_, err = (&nettest.Pod{Name: "empty"}).Serve("tcp", 80)
	require.Error(t, err)
	_, err = multi.Serve("sctp", 80)
	require.Error(t, err)
}

// Closing a topology releases what it assigned in a shared IPAM.
func TestCloseReleasesAddresses(t *testing.T) {
	ctx := context.Background()
	nettest.RequireRoot(t)
	mem, err := store.NewMemory()
	require.NoError(t, err)
	a, err := ipam.New(mem)
	require.NoError(t, err)
	_, err = a.CreatePool(ctx, ipam.IPPool{Name: "p", CIDR: netip.MustParsePrefix(nettest.PoolCIDR), BlockSize: nettest.PoolBlockSize})
	require.NoError(t, err)
	topo, err := nettest.Build(nettest.Nodes(1), nettest.WithIPAM(a), nettest.WithRouting(nettest.RoutingVXLAN))
	require.NoError(t, err)
	p, err := topo.Node(0).NewPod()
	require.NoError(t, err)
	held := []netip.Addr{p.IP, topo.Node(0).TunnelAddr}
	require.NoError(t, topo.Close())
	for _, ip := range held {
		info, err := a.Lookup(ctx, ip)
		require.NoError(t, err)
		assert.False(t, info.Allocated, ip)
	}
}
