package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/selector"
)

func loopNodes(n int, rr int) []Node {
	var nodes []Node
	for i := 1; i <= n; i++ {
		nd := Node{Name: fmt.Sprintf("node-%d", i), IPv4: loopNode(i), Labels: map[string]string{"rack": "a"}}
		if i == rr {
			nd.RouteReflectorClusterID = "10.0.0.1"
			nd.Labels["route-reflector"] = "true"
		}
		nodes = append(nodes, nd)
	}
	return nodes
}

func block(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 26)
}

// checkAllLearned waits until every speaker programs every other speaker's
// block via that speaker's address.
func checkAllLearned(t *testing.T, fps []*fakeProgrammer) {
	t.Helper()
	for i, fp := range fps {
		for j := range fps {
			if i == j {
				continue
			}
			want := []string{loopNode(j + 1).String()}
			require.Eventually(t, func() bool {
				return assert.ObjectsAreEqual(want, fp.nextHops(block(j+1)))
			}, 20*time.Second, 20*time.Millisecond, "node %d learns block of node %d: %v", i+1, j+1, fp.nextHops(block(j+1)))
		}
		assert.Nil(t, fp.nextHops(block(i+1)), "node %d never programs its own block", i+1)
	}
}

func TestThreeNodeFullMesh(t *testing.T) {
	port := freePort(t)
	topo := Topology{Nodes: loopNodes(3, 0)}
	var ss []*Speaker
	var fps []*fakeProgrammer
	for i := 1; i <= 3; i++ {
		s, fp := startSpeaker(t, i, port, nil)
		ss, fps = append(ss, s), append(fps, fp)
	}
	for i, s := range ss {
		require.NoError(t, s.SetTopology(context.Background(), topo))
		require.NoError(t, s.Advertise(context.Background(), Advertisement{Prefix: block(i + 1)}))
	}
	for _, s := range ss {
		waitEstablished(t, s, 2)
	}
	checkAllLearned(t, fps)
	ps, err := ss[0].Peers(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "mesh/node-2", ps[0].Name)
	assert.EqualValues(t, 1, ps[0].Sent, "its own block (not the End-of-RIB marker)")
	assert.EqualValues(t, 1, ps[0].Received)
	assert.False(t, ps[0].Passive, "the lower address connects")
	assert.Positive(t, ps[0].Uptime+1)
}

func TestRouteReflector(t *testing.T) {
	port := freePort(t)
	off := false
	rrSel := selector.MustParse("has(route-reflector)")
	all := selector.All()
	topo := Topology{Nodes: loopNodes(3, 1), BGPPeers: []BGPPeer{{Name: "to-rr", NodeSelector: &all, PeerSelector: &rrSel}}}
	var ss []*Speaker
	var fps []*fakeProgrammer
	for i := 1; i <= 3; i++ {
		s, fp := startSpeaker(t, i, port, func(c *Config) {
			c.NodeToNodeMeshEnabled = &off
			if i == 1 {
				c.RouteReflectorClusterID = "10.0.0.1"
			}
		})
		ss, fps = append(ss, s), append(fps, fp)
	}
	for i, s := range ss {
		require.NoError(t, s.SetTopology(context.Background(), topo))
		require.NoError(t, s.Advertise(context.Background(), Advertisement{Prefix: block(i + 1)}))
	}
	waitEstablished(t, ss[0], 2)
	waitEstablished(t, ss[1], 1)
	waitEstablished(t, ss[2], 1)
	checkAllLearned(t, fps)
	ps, err := ss[0].Peers(context.Background())
	require.NoError(t, err)
	for _, p := range ps {
		assert.True(t, p.RouteReflectorClient, p.Name)
	}
}

// TestKeepOriginalNextHop: C -> B -> A over eBGP; B passes C's prefix on
// to A with its own next hop, unless A's peer entry on B keeps the original.
func TestKeepOriginalNextHop(t *testing.T) {
	port := freePort(t)
	a, fa := startSpeaker(t, 1, port, func(c *Config) { c.ASNumber = 65001 })
	b, _ := startSpeaker(t, 2, port, func(c *Config) { c.ASNumber = 65002 })
	c, _ := startSpeaker(t, 3, port, func(c *Config) { c.ASNumber = 65003 })
	ctx := context.Background()
	toA := Peer{Name: "a", Address: loopNode(1), Port: port, ASNumber: 65001}
	toC := Peer{Name: "c", Address: loopNode(3), Port: port, ASNumber: 65003}
	require.NoError(t, a.SetPeers(ctx, []Peer{{Name: "b", Address: loopNode(2), Port: port, ASNumber: 65002, Passive: true}}))
	require.NoError(t, c.SetPeers(ctx, []Peer{{Name: "b", Address: loopNode(2), Port: port, ASNumber: 65002, Passive: true}}))
	require.NoError(t, b.SetPeers(ctx, []Peer{toA, toC}))
	require.NoError(t, c.Advertise(ctx, Advertisement{Prefix: block(3)}))
	require.Eventually(t, func() bool {
		return assert.ObjectsAreEqual([]string{loopNode(2).String()}, fa.nextHops(block(3)))
	}, 20*time.Second, 20*time.Millisecond, "next hop self by default: %v", fa.nextHops(block(3)))

	toA.KeepOriginalNextHop = true
	require.NoError(t, b.SetPeers(ctx, []Peer{toA, toC}))
	require.Eventually(t, func() bool {
		return assert.ObjectsAreEqual([]string{loopNode(3).String()}, fa.nextHops(block(3)))
	}, 20*time.Second, 20*time.Millisecond, "original next hop kept: %v", fa.nextHops(block(3)))
}

// TestIPv6MeshKernelRoutes: three IPv6-only speakers (v6 peering
// addresses, router IDs set by hand) form the node-to-node mesh; each
// programs the other nodes' IPv6 blocks as kernel routes, through a real
// RouteOwner, into its own node namespace, via the owner's v6 address.
func TestIPv6MeshKernelRoutes(t *testing.T) {
	requirePrivateNetns(t)
	ctx := context.Background()
	run := func(ns *nettest.Netns, args ...string) {
		t.Helper()
		if ns == nil {
			out, err := exec.Command("ip", args...).CombinedOutput()
			require.NoError(t, err, "ip %v: %s", args, out)
			return
		}
		out, err := ns.Run(ctx, "ip", args...)
		require.NoError(t, err, "ip %v: %s", args, out)
	}
	addr := func(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("fd00:125::%d", 10+i)) }
	block6 := func(i int) netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("fd00:244:%d::/122", i)) }
	// No dummy module on every kernel: veth pairs stand in for links.
	run(nil, "link", "add", "tbgpv6", "type", "veth", "peer", "name", "tbgpv6p")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "tbgpv6").Run() })
	run(nil, "link", "set", "tbgpv6p", "up")
	run(nil, "link", "set", "tbgpv6", "up")
	var nodes []Node
	for i := 1; i <= 3; i++ {
		run(nil, "addr", "add", addr(i).String()+"/64", "dev", "tbgpv6", "nodad")
		nodes = append(nodes, Node{Name: fmt.Sprintf("node-%d", i), IPv6: addr(i)})
	}
	port := freePort(t)
	var nss []*nettest.Netns
	var ss []*Speaker
	for i := 1; i <= 3; i++ {
		// The node's namespace, where its learned routes go: the peers'
		// addresses are on-link there, as on a real node's fabric link.
		ns := nettest.NewNetns(t, "tbgp-v6n")
		run(ns, "link", "add", "fabric", "type", "veth", "peer", "name", "fabricp")
		run(ns, "link", "set", "fabricp", "up")
		run(ns, "addr", "add", addr(i).String()+"/64", "dev", "fabric", "nodad")
		run(ns, "link", "set", "fabric", "up")
		owner, err := netlink.NewRouteOwner(ns.Handle())
		require.NoError(t, err)
		s, err := New(Config{NodeName: nodes[i-1].Name, NodeIPv6: addr(i), RouterID: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}),
			ListenAddresses: []netip.Addr{addr(i)}, ListenPort: port, StartupSyncTimeout: 2 * time.Second},
			WithLogger(testLogger(t)), WithRouteProgrammer(owner, "", func(ctx context.Context) error {
				_, err := owner.Reconcile(ctx)
				return err
			}))
		require.NoError(t, err)
		require.NoError(t, s.Start(ctx))
		t.Cleanup(s.Stop)
		nss, ss = append(nss, ns), append(ss, s)
	}
	for i, s := range ss {
		require.NoError(t, s.SetTopology(ctx, Topology{Nodes: nodes}))
		require.NoError(t, s.Advertise(ctx, Advertisement{Prefix: block6(i + 1)}))
	}
	for _, s := range ss {
		waitEstablished(t, s, 2)
	}
	for i, ns := range nss {
		for j := range nss {
			out := func() string {
				o, _ := ns.Run(ctx, "ip", "-6", "route", "show", block6(j+1).String())
				return strings.TrimSpace(o)
			}
			if i == j {
				assert.Empty(t, out(), "node %d never programs its own block", i+1)
				continue
			}
			require.Eventually(t, func() bool { return strings.Contains(out(), "via "+addr(j+1).String()) },
				20*time.Second, 50*time.Millisecond, "node %d: route to node %d's block: %q", i+1, j+1, out())
		}
	}
	ps, err := ss[0].Peers(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 2)
	assert.Equal(t, addr(2), ps[0].Address)

	// Withdraw: the route goes from the other nodes' kernels.
	require.NoError(t, ss[2].Withdraw(ctx, block6(3)))
	require.Eventually(t, func() bool {
		o, _ := nss[0].Run(ctx, "ip", "-6", "route", "show", block6(3).String())
		return strings.TrimSpace(o) == ""
	}, 20*time.Second, 50*time.Millisecond)
}

// TestMeshPassword: two speakers with nodeMeshPassword establish. The
// upper node's session is passive, so it needs a listener that takes TCP
// MD5: this module's go.mod turns Go's Multipath TCP listeners off
// (godebug multipathtcp=0); without that the kernel refuses the key on the
// listening socket and the session never comes up (doc.go).
func TestMeshPassword(t *testing.T) {
	require.False(t, listenersAreMPTCP(), "go.mod's godebug multipathtcp=0 applies to this test binary")
	port := freePort(t)
	topo := Topology{Nodes: loopNodes(2, 0)}
	var ss []*Speaker
	for i := 1; i <= 2; i++ {
		s, _ := startSpeaker(t, i, port, func(c *Config) { c.NodeMeshPassword = "s3cret" })
		ss = append(ss, s)
	}
	for _, s := range ss {
		require.NoError(t, s.SetTopology(context.Background(), topo))
	}
	for _, s := range ss {
		waitEstablished(t, s, 1)
	}
}
