package node_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/node"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func strs[T interface{ String() string }](xs []T) []string {
	out := []string{}
	for _, x := range xs {
		out = append(out, x.String())
	}
	return out
}

func TestRender(t *testing.T) {
	underlay := pfx("10.99.0.0/24")
	near := node.Peer{Name: "near", IP: addr("10.99.0.12"), IP6: addr("fd00:99::12"), TunnelAddr: addr("10.244.2.0"),
		Blocks: []netip.Prefix{pfx("10.244.2.64/26"), pfx("10.244.2.0/26"), pfx("fd00:244::40/122")}}
	far := node.Peer{Name: "far", IP: addr("10.98.0.13"), TunnelAddr: addr("10.244.3.0"), Blocks: []netip.Prefix{pfx("10.244.3.0/26")}}
	tests := []struct {
		name      string
		encap     tnl.EncapMode
		blocks    []netip.Prefix
		peers     []node.Peer
		blackhole []string
		direct    []string
		vxlan     []string // peer name: blocks
		err       error
	}{
		{name: "nothing", encap: tnl.EncapNever},
		{
			name: "never: all direct, sorted", encap: tnl.EncapNever,
			blocks: []netip.Prefix{pfx("fd00:244::/122"), pfx("10.244.1.0/26")}, peers: []node.Peer{near},
			blackhole: []string{"blackhole 10.244.1.0/26", "blackhole fd00:244::/122"},
			direct:    []string{"10.244.2.0/26 via 10.99.0.12", "10.244.2.64/26 via 10.99.0.12", "fd00:244::40/122 via fd00:99::12"},
		},
		{
			name: "always: IPv4 over VXLAN, IPv6 direct", encap: tnl.EncapAlways, peers: []node.Peer{near, far},
			direct: []string{"fd00:244::40/122 via fd00:99::12"},
			vxlan:  []string{"far: [10.244.3.0/26]", "near: [10.244.2.0/26 10.244.2.64/26]"},
		},
		{
			name: "cross subnet: only the far peer over VXLAN", encap: tnl.EncapCrossSubnet, peers: []node.Peer{far, near},
			direct: []string{"10.244.2.0/26 via 10.99.0.12", "10.244.2.64/26 via 10.99.0.12", "fd00:244::40/122 via fd00:99::12"},
			vxlan:  []string{"far: [10.244.3.0/26]"},
		},
		{name: "unmasked block", blocks: []netip.Prefix{pfx("10.244.1.1/26")}, err: tnl.ErrInvalidPrefix},
		{name: "duplicate block", blocks: []netip.Prefix{pfx("10.244.1.0/26"), pfx("10.244.1.0/26")}, err: tnl.ErrInvalidPrefix},
		{name: "invalid block", blocks: []netip.Prefix{{}}, err: tnl.ErrInvalidPrefix},
		{name: "default route as a block", blocks: []netip.Prefix{pfx("0.0.0.0/0")}, err: tnl.ErrInvalidPrefix},
		{name: "default route as a peer's block", peers: []node.Peer{{Name: "x", IP: addr("10.99.0.12"), Blocks: []netip.Prefix{pfx("0.0.0.0/0")}}}, err: tnl.ErrInvalidPrefix},
		{name: "a block of two peers", peers: []node.Peer{
			{Name: "x", IP: addr("10.99.0.12"), Blocks: []netip.Prefix{pfx("10.1.0.0/26")}},
			{Name: "y", IP: addr("10.99.0.13"), Blocks: []netip.Prefix{pfx("10.1.0.0/26")}}}, err: tnl.ErrInvalidPrefix},
		{name: "a local block a peer claims", blocks: []netip.Prefix{pfx("10.1.0.0/26")},
			peers: []node.Peer{{Name: "x", IP: addr("10.99.0.12"), Blocks: []netip.Prefix{pfx("10.1.0.0/26")}}}, err: tnl.ErrInvalidPrefix},
		{name: "peer without name", peers: []node.Peer{{IP: addr("10.99.0.12")}}, err: tnl.ErrInvalidSpec},
		{name: "duplicate peer", peers: []node.Peer{far, far}, err: tnl.ErrInvalidSpec},
		{name: "peer block unmasked", peers: []node.Peer{{Name: "x", IP: addr("10.99.0.12"), Blocks: []netip.Prefix{pfx("10.1.1.1/24")}}}, err: tnl.ErrInvalidPrefix},
		{name: "IPv6 block, no IPv6 address", peers: []node.Peer{{Name: "x", IP: addr("10.99.0.12"), Blocks: []netip.Prefix{pfx("fd00::/122")}}}, err: tnl.ErrInvalidSpec},
		{name: "IPv4 block, no IPv4 address", peers: []node.Peer{{Name: "x", IP6: addr("fd00::1"), Blocks: []netip.Prefix{pfx("10.1.0.0/26")}}}, err: tnl.ErrInvalidSpec},
		{name: "VXLAN without tunnel address", encap: tnl.EncapAlways, peers: []node.Peer{{Name: "x", IP: addr("10.99.0.12"), Blocks: []netip.Prefix{pfx("10.1.0.0/26")}}}, err: tnl.ErrInvalidSpec},
		{name: "peer without blocks needs nothing", encap: tnl.EncapAlways, peers: []node.Peer{{Name: "x"}}},
		{name: "two VXLAN peers, one tunnel address", encap: tnl.EncapAlways, peers: []node.Peer{far,
			{Name: "x", IP: addr("10.98.0.14"), TunnelAddr: far.TunnelAddr, Blocks: []netip.Prefix{pfx("10.244.4.0/26")}}}, err: tnl.ErrInvalidSpec},
		{name: "one tunnel address, not encapsulated: unused", encap: tnl.EncapNever, peers: []node.Peer{
			{Name: "x", IP: addr("10.99.0.12"), TunnelAddr: addr("10.244.9.0"), Blocks: []netip.Prefix{pfx("10.244.4.0/26")}},
			{Name: "y", IP: addr("10.99.0.13"), TunnelAddr: addr("10.244.9.0"), Blocks: []netip.Prefix{pfx("10.244.5.0/26")}}},
			direct: []string{"10.244.4.0/26 via 10.99.0.12", "10.244.5.0/26 via 10.99.0.13"}},
		{name: "peer address in its own block", peers: []node.Peer{{Name: "x", IP: addr("10.244.4.5"), Blocks: []netip.Prefix{pfx("10.244.4.0/26")}}}, err: tnl.ErrInvalidSpec},
		{name: "peer address in a local block", blocks: []netip.Prefix{pfx("10.244.1.0/26")},
			peers: []node.Peer{{Name: "x", IP: addr("10.244.1.7")}}, err: tnl.ErrInvalidSpec},
		{name: "peer IPv6 address in another peer's block", peers: []node.Peer{near, {Name: "x", IP6: addr("fd00:244::41")}}, err: tnl.ErrInvalidSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := node.Render(tt.encap, underlay, tt.blocks, tt.peers)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, append([]string{}, tt.blackhole...), strs(d.Blackholes))
			assert.Equal(t, append([]string{}, tt.direct...), strs(d.Direct))
			var vx []string
			for _, p := range d.VXLAN {
				vx = append(vx, p.Name+": "+"["+joinPrefixes(p.Blocks)+"]")
			}
			assert.Equal(t, tt.vxlan, vx)
		})
	}
}

func joinPrefixes(ps []netip.Prefix) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += " "
		}
		s += p.String()
	}
	return s
}

func TestConfigErrors(t *testing.T) {
	vx := tnl.VXLANConfig{Parent: "eth0", TunnelAddr: addr("10.244.1.0")}
	tests := []struct {
		name string
		cfg  node.Config
	}{
		{"no name", node.Config{}},
		{"bad encap", node.Config{Name: "n", Encap: "Sometimes"}},
		{"VXLAN without address", node.Config{Name: "n", Encap: tnl.EncapAlways, VXLAN: vx}},
		{"VXLAN without tunnel address", node.Config{Name: "n", Encap: tnl.EncapAlways, Address: pfx("10.99.0.11/24"), VXLAN: tnl.VXLANConfig{Parent: "eth0"}}},
		{"IPv6 Address", node.Config{Name: "n", Address: pfx("fd00::1/64")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := node.NewFake(tt.cfg)
			require.ErrorIs(t, err, tnl.ErrInvalidSpec)
		})
	}
	_, err := node.NewWith(node.Config{Name: "n"}, node.Parts{})
	require.ErrorIs(t, err, tnl.ErrInvalidSpec)
	routes, err := tnl.NewRouteOwner(tnl.NewFakeRouteHandle())
	require.NoError(t, err)
	fw, err := tnl.NewFakeWorkloads()
	require.NoError(t, err)
	_, err = node.NewWith(node.Config{Name: "n", Encap: tnl.EncapAlways, Address: pfx("10.99.0.11/24"), VXLAN: vx},
		node.Parts{Workloads: fw, Routes: routes})
	require.ErrorIs(t, err, tnl.ErrInvalidSpec, "VXLAN part missing")
}

func TestDataplaneOnFakes(t *testing.T) {
	ctx := context.Background()
	d, f, err := node.NewFake(node.Config{Name: "node0", Address: pfx("10.99.0.11/24"), Encap: tnl.EncapAlways,
		VXLAN: tnl.VXLANConfig{Parent: "eth0", TunnelAddr: addr("10.244.1.0")}})
	require.NoError(t, err)
	require.NoError(t, d.SetBlocks([]netip.Prefix{pfx("10.244.1.0/26")}))
	peer := node.Peer{Name: "node1", IP: addr("10.99.0.12"), TunnelAddr: addr("10.244.2.0"), Blocks: []netip.Prefix{pfx("10.244.2.0/26")}}
	require.NoError(t, d.SetPeers([]node.Peer{peer}))
	require.NoError(t, d.Reconcile(ctx))
	assert.Equal(t, []string{"blackhole 10.244.1.0/26", "10.244.2.0/26 via 10.244.2.0 dev vxlan.tabby onlink"}, strs(d.Routes().Desired()))
	assert.Len(t, f.VXLAN.Entries(), 2)
	adds, _, _ := f.Kernel.Counts()
	assert.Equal(t, 2, adds)

	// Bad updates change nothing.
	require.ErrorIs(t, d.SetBlocks([]netip.Prefix{pfx("10.244.1.1/26")}), tnl.ErrInvalidPrefix)
	require.ErrorIs(t, d.UpsertPeer(node.Peer{Name: "node2", IP: addr("10.99.0.13"), Blocks: []netip.Prefix{pfx("10.244.3.0/26")}}), tnl.ErrInvalidSpec)
	require.ErrorIs(t, d.UpsertPeer(node.Peer{Name: "node0"}), tnl.ErrInvalidSpec, "itself as a peer")
	require.ErrorIs(t, d.SetPeers([]node.Peer{peer, peer}), tnl.ErrInvalidSpec)
	assert.Equal(t, []netip.Prefix{pfx("10.244.1.0/26")}, d.Blocks())
	assert.Equal(t, []node.Peer{peer}, d.Peers())

	// A second block (the first filled up) and a second peer; then one leaves.
	require.NoError(t, d.SetBlocks([]netip.Prefix{pfx("10.244.1.0/26"), pfx("10.244.1.64/26")}))
	p2 := node.Peer{Name: "node2", IP: addr("10.99.0.13"), TunnelAddr: addr("10.244.3.0"), Blocks: []netip.Prefix{pfx("10.244.3.0/26")}}
	require.NoError(t, d.UpsertPeer(p2))
	require.NoError(t, d.RemovePeer("node1"))
	require.NoError(t, d.RemovePeer("nobody"))
	require.NoError(t, d.Reconcile(ctx))
	assert.Equal(t, []string{"blackhole 10.244.1.0/26", "blackhole 10.244.1.64/26", "10.244.3.0/26 via 10.244.3.0 dev vxlan.tabby onlink"},
		strs(d.Routes().Desired()))
	assert.Equal(t, []string{"fdb 66:cc:0a:f4:03:00 dst 10.99.0.13", "neigh 10.244.3.0 lladdr 66:cc:0a:f4:03:00"}, f.VXLAN.Entries())
	plan, err := d.Routes().Plan(ctx)
	require.NoError(t, err)
	assert.True(t, plan.Empty(), plan.String())

	me := d.AsPeer()
	assert.Equal(t, node.Peer{Name: "node0", IP: addr("10.99.0.11"), TunnelAddr: addr("10.244.1.0"),
		Blocks: []netip.Prefix{pfx("10.244.1.0/26"), pfx("10.244.1.64/26")}}, me)
	require.NoError(t, d.Close())
}

// Direct routes need the peer in a connected network, as in the kernel.
func TestDataplaneDirectUnreachable(t *testing.T) {
	ctx := context.Background()
	d, _, err := node.NewFake(node.Config{Name: "node0", Address: pfx("10.99.0.11/24")})
	require.NoError(t, err)
	assert.Nil(t, d.VXLAN())
	require.NoError(t, d.SetPeers([]node.Peer{{Name: "far", IP: addr("10.98.0.13"), Blocks: []netip.Prefix{pfx("10.244.3.0/26")}}}))
	require.ErrorIs(t, d.Reconcile(ctx), tnl.ErrNextHopUnreachable)
	require.NoError(t, d.SetPeers([]node.Peer{{Name: "near", IP: addr("10.99.0.12"), Blocks: []netip.Prefix{pfx("10.244.2.0/26")}}}))
	require.NoError(t, d.Reconcile(ctx))
	assert.Equal(t, []string{"10.244.2.0/26 via 10.99.0.12"}, strs(d.Routes().Desired()))
}

// The CNI lifecycle on the fake: ADD, CHECK, DEL twice, and the errors a
// CNI plugin must turn into CNI error codes.
func TestWorkloadsOnFakes(t *testing.T) {
	ctx := context.Background()
	d, f, err := node.NewFake(node.Config{Name: "node0"})
	require.NoError(t, err)
	w := d.Workloads()
	spec := tnl.WorkloadSpec{ID: "k8s-pod-network.c1", Netns: "/var/run/netns/c1", Addresses: []netip.Addr{addr("10.244.1.5")}}
	_, err = w.SetupWorkload(ctx, spec)
	require.ErrorIs(t, err, tnl.ErrNetnsNotFound)
	f.Workloads.AddNetns(spec.Netns)
	res, err := w.SetupWorkload(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, w.HostIfaceName(spec.ID), res.Host.Name)
	_, err = w.CheckWorkload(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, []string{"10.244.1.5/32 dev " + res.Host.Name}, f.Workloads.HostRoutes())
	ids, err := w.ListWorkloads(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{spec.ID}, ids)
	require.NoError(t, w.TeardownWorkload(ctx, spec.ID))
	require.NoError(t, w.TeardownWorkload(ctx, spec.ID))
	_, err = w.CheckWorkload(ctx, spec)
	require.ErrorIs(t, err, tnl.ErrLinkNotFound)
	assert.Empty(t, f.Workloads.HostRoutes())
	assert.Equal(t, []string{"lo"}, f.Workloads.PodLinks(spec.Netns))
}

// FuzzRender: any blocks and peers either render into routes that validate
// or are refused with a package error; never a panic.
func FuzzRender(f *testing.F) {
	f.Add([]byte{10, 244, 1, 0}, uint8(26), []byte{10, 99, 0, 12}, []byte{10, 244, 2, 0}, uint8(26), "node1", uint8(1))
	f.Add([]byte{0xfd, 0, 2, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, uint8(122), []byte{10, 98, 0, 1}, []byte{0xfd}, uint8(0), "", uint8(2))
	f.Fuzz(func(t *testing.T, block []byte, bits uint8, peerIP []byte, peerBlock []byte, peerBits uint8, name string, mode uint8) {
		toPrefix := func(b []byte, n uint8) netip.Prefix {
			a, _ := netip.AddrFromSlice(b)
			return netip.PrefixFrom(a, int(n))
		}
		ip, _ := netip.AddrFromSlice(peerIP)
		encap := []tnl.EncapMode{tnl.EncapNever, tnl.EncapAlways, tnl.EncapCrossSubnet}[int(mode)%3]
		peers := []node.Peer{{Name: name, IP: ip, IP6: ip, TunnelAddr: ip, Blocks: []netip.Prefix{toPrefix(peerBlock, peerBits)}}}
		d, err := node.Render(encap, netip.MustParsePrefix("10.99.0.0/24"), []netip.Prefix{toPrefix(block, bits)}, peers)
		if err != nil {
			if !errors.Is(err, tnl.ErrInvalidPrefix) && !errors.Is(err, tnl.ErrInvalidSpec) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		for _, r := range append(d.Blackholes, d.Direct...) {
			if err := r.Validate(); err != nil {
				t.Fatalf("rendered invalid route %s: %v", r, err)
			}
		}
		for _, p := range d.VXLAN {
			if !p.NodeIP.Is4() || !p.TunnelAddr.Is4() {
				t.Fatalf("VXLAN peer without IPv4 addresses: %+v", p)
			}
		}
	})
}

// TestNilOptions: a nil Option (an embedder's conditional option left
// unset) is ignored by New, NewWith and NewFake instead of panicking.
func TestNilOptions(t *testing.T) {
	cfg := node.Config{Name: "node0", Address: pfx("10.99.0.11/24"), Encap: tnl.EncapAlways,
		VXLAN: tnl.VXLANConfig{Parent: "eth0", TunnelAddr: addr("10.244.1.0")}}
	var nilOpt node.Option
	d, fakes, err := node.NewFake(cfg, nilOpt, node.WithLogger(nil))
	require.NoError(t, err)
	require.NoError(t, d.SetBlocks([]netip.Prefix{pfx("10.244.1.0/26")}))
	require.NoError(t, d.Reconcile(context.Background()))
	_, err = node.NewWith(cfg, node.Parts{Workloads: fakes.Workloads, Routes: d.Routes(), VXLAN: fakes.VXLAN}, nil)
	require.NoError(t, err)
}

// TestPeersClashingWithThisNode: a peer with this node's address or tunnel
// address, or blocks holding this node's address, are refused and change
// nothing.
func TestPeersClashingWithThisNode(t *testing.T) {
	cfg := node.Config{Name: "node0", Address: pfx("10.99.0.11/24"), Encap: tnl.EncapAlways,
		VXLAN: tnl.VXLANConfig{Parent: "eth0", TunnelAddr: addr("10.244.1.0")}}
	d, _, err := node.NewFake(cfg)
	require.NoError(t, err)
	ok := node.Peer{Name: "node1", IP: addr("10.99.0.12"), TunnelAddr: addr("10.244.2.0"), Blocks: []netip.Prefix{pfx("10.244.2.0/26")}}
	require.NoError(t, d.SetPeers([]node.Peer{ok}))
	sameIP, sameTunnel := ok, ok
	sameIP.IP = addr("10.99.0.11")
	sameTunnel.TunnelAddr = addr("10.244.1.0")
	require.ErrorIs(t, d.SetPeers([]node.Peer{sameIP}), tnl.ErrInvalidSpec)
	require.ErrorIs(t, d.UpsertPeer(sameTunnel), tnl.ErrInvalidSpec)
	require.ErrorIs(t, d.SetBlocks([]netip.Prefix{pfx("10.99.0.0/26")}), tnl.ErrInvalidSpec)
	assert.Equal(t, []node.Peer{ok}, d.Peers())
	assert.Empty(t, d.Blocks())
}

// TestConcurrentClose: Close may race with itself (two shutdown paths)
// under -race without a data race.
func TestConcurrentClose(t *testing.T) {
	d, _, err := node.NewFake(node.Config{Name: "node0"})
	require.NoError(t, err)
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- d.Close() }()
	}
	require.NoError(t, <-done)
	require.NoError(t, <-done)
}

// A block changing affinity: node1's block moves to this node (IPAM
// released it there, this node claimed it), then node1 leaves. The route
// via node1's tunnel becomes this node's blackhole; node1's VXLAN entries
// go with its last block. Claiming the block before node1 gives it up is
// refused and changes nothing.
func TestBlockAffinityMoves(t *testing.T) {
	ctx := context.Background()
	d, f, err := node.NewFake(node.Config{Name: "node0", Address: pfx("10.99.0.11/24"), Encap: tnl.EncapAlways,
		VXLAN: tnl.VXLANConfig{Parent: "eth0", TunnelAddr: addr("10.244.1.0")}})
	require.NoError(t, err)
	b0, b1 := pfx("10.244.1.0/26"), pfx("10.244.2.0/26")
	require.NoError(t, d.SetBlocks([]netip.Prefix{b0}))
	node1 := node.Peer{Name: "node1", IP: addr("10.99.0.12"), TunnelAddr: addr("10.244.2.0"), Blocks: []netip.Prefix{b1}}
	require.NoError(t, d.SetPeers([]node.Peer{node1}))
	require.NoError(t, d.Reconcile(ctx))

	require.ErrorIs(t, d.SetBlocks([]netip.Prefix{b0, b1}), tnl.ErrInvalidPrefix, "still node1's")
	assert.Equal(t, []netip.Prefix{b0}, d.Blocks())

	node1.Blocks = nil
	require.NoError(t, d.UpsertPeer(node1))
	require.NoError(t, d.SetBlocks([]netip.Prefix{b0, b1}))
	require.NoError(t, d.Reconcile(ctx))
	assert.Equal(t, []string{"blackhole 10.244.1.0/26", "blackhole 10.244.2.0/26"}, strs(d.Routes().Desired()))
	assert.Empty(t, f.VXLAN.Entries(), "node1 has no block left to reach over VXLAN")
	plan, err := d.Routes().Plan(ctx)
	require.NoError(t, err)
	assert.True(t, plan.Empty(), plan.String())

	require.NoError(t, d.RemovePeer("node1"))
	require.NoError(t, d.Reconcile(ctx))
	assert.Equal(t, []string{"blackhole 10.244.1.0/26", "blackhole 10.244.2.0/26"}, strs(d.Routes().Desired()))
}
