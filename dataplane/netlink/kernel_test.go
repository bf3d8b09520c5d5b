package netlink_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func TestKernelPodToPod(t *testing.T) {
	tests := []struct {
		name  string
		nodes int
		opts  []nettest.Option
	}{
		{"2 nodes direct", 2, nil},
		{"3 nodes direct", 3, nil},
		{"2 nodes vxlan", 2, []nettest.Option{nettest.WithRouting(nettest.RoutingVXLAN)}},
		{"3 nodes vxlan", 3, []nettest.Option{nettest.WithRouting(nettest.RoutingVXLAN), nettest.PodMTU(1450)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // topologies are independent: this also checks nettest is safe for it
			topo := nettest.NewTopology(t, append(tt.opts, nettest.Nodes(tt.nodes))...)
			for _, n := range topo.Nodes() {
				n.AddPod(t)
			}
			topo.Node(0).AddPod(t) // a second pod on node 0: same-node traffic too
			nettest.ExpectMatrix(t, topo.Pods(), 8080, nettest.AllowAll)
			nettest.ExpectUDP(t, topo.Node(0).Pods()[0], topo.Node(tt.nodes - 1).Pods()[0], 5353)
		})
	}
}

func TestKernelIPv6PodToPod(t *testing.T) {
	topo := nettest.NewTopology(t, nettest.Nodes(2), nettest.IPv6())
	a, b := topo.Node(0).AddPod(t), topo.Node(1).AddPod(t)
	c := topo.Node(0).AddPod(t)
	require.True(t, a.IP6.IsValid())
	nettest.ExpectConnect6(t, a, b, 8080)
	nettest.ExpectConnect6(t, b, a, 8080)
	nettest.ExpectConnect6(t, c, a, 8080)
	nettest.ExpectConnect(t, a, b, 8080) // dual stack: v4 too

	// An IPv6-only pod, with an address IPAM did not hand out from node1's block.
	var block6 netip.Prefix
	for _, b := range topo.Node(1).Blocks() {
		if b.Addr().Is6() {
			block6 = b
		}
	}
	require.True(t, block6.IsValid())
	a16 := block6.Addr().As16()
	a16[15] |= 0x30
	v6only := topo.Node(1).AddPod(t, nettest.PodAddrs(netip.AddrFrom16(a16)))
	assert.False(t, v6only.IP.IsValid())
	nettest.ExpectConnect6(t, a, v6only, 8080)
	nettest.ExpectConnect6(t, v6only, c, 8080)
}

func TestKernelVXLANReconcile(t *testing.T) {
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(3), nettest.WithRouting(nettest.RoutingVXLAN))
	a, b := topo.Node(0).AddPod(t), topo.Node(1).AddPod(t)
	nettest.ExpectConnect(t, a, b, 8080)

	n0 := topo.Node(0)
	h := n0.NS.Handle()
	vx, err := h.LinkByName(tnl.DefaultVXLANName)
	require.NoError(t, err)
	v := vx.(*nl.Vxlan)
	assert.Equal(t, tnl.DefaultVNI, v.VxlanId)
	assert.Equal(t, tnl.DefaultVXLANPort, v.Port)
	assert.Equal(t, 1500-tnl.VXLANOverhead, v.MTU)
	assert.Equal(t, tnl.VTEPMAC(n0.TunnelAddr).String(), v.HardwareAddr.String())

	neighs, err := h.NeighList(vx.Attrs().Index, unix.AF_INET)
	require.NoError(t, err)
	assert.Len(t, neighs, 2)
	fdb, err := h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	require.NoError(t, err)
	assert.Len(t, fdb, 2)

	// Delete a neighbour, an FDB entry and a route by hand: Reconcile restores them.
	peer := topo.Node(1)
	require.NoError(t, h.NeighDel(&nl.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_INET, IP: peer.TunnelAddr.AsSlice()}))
	require.NoError(t, h.NeighDel(&nl.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF,
		HardwareAddr: tnl.VTEPMAC(peer.TunnelAddr), IP: peer.IP.AsSlice()}))
	_, err = n0.NS.Run(ctx, "ip", "route", "del", peer.Blocks()[0].String())
	require.NoError(t, err)
	nettest.ExpectNoConnect(t, a, b, 8080)
	require.NoError(t, n0.VXLAN.Reconcile(ctx))
	nettest.ExpectConnect(t, a, b, 8080)
	plan, err := n0.Routes.Plan(ctx)
	require.NoError(t, err)
	assert.True(t, plan.Empty(), plan.String())

	// A node leaves: its neighbour, FDB entry and route go.
	require.NoError(t, n0.VXLAN.RemovePeer(peer.Name))
	require.NoError(t, n0.VXLAN.Reconcile(ctx))
	neighs, err = h.NeighList(vx.Attrs().Index, unix.AF_INET)
	require.NoError(t, err)
	assert.Len(t, neighs, 1)
	out, err := n0.NS.Run(ctx, "ip", "route", "show", "proto", "116")
	require.NoError(t, err)
	assert.NotContains(t, out, peer.Blocks()[0].String())
	assert.Contains(t, out, topo.Node(2).Blocks()[0].String()+" via "+topo.Node(2).TunnelAddr.String()+" dev vxlan.tabby onlink")

	// Delete removes the device and its routes.
	require.NoError(t, n0.VXLAN.Delete(ctx))
	_, err = n0.Routes.Reconcile(ctx)
	require.NoError(t, err)
	_, err = h.LinkByName(tnl.DefaultVXLANName)
	require.Error(t, err)
}

func TestKernelECMP(t *testing.T) {
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(3), nettest.IPv6())
	n0 := topo.Node(0)
	r := tnl.Route{Dst: pfx("10.50.0.0/24"), NextHops: []tnl.NextHop{{Gateway: topo.Node(1).IP}, {Gateway: topo.Node(2).IP}}}
	r6 := tnl.Route{Dst: pfx("fd00:50::/64"), NextHops: []tnl.NextHop{{Gateway: topo.Node(1).IP6}, {Gateway: topo.Node(2).IP6, Weight: 2}}}
	require.NoError(t, n0.Routes.Set("bgp", []tnl.Route{r, r6}))
	res, err := n0.Routes.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Added)

	for _, dst := range []string{"10.50.0.0/24", "fd00:50::/64"} {
		kr, err := n0.NS.Handle().RouteListFiltered(nl.FAMILY_ALL, &nl.Route{Protocol: tnl.ProtocolRoutes, Table: unix.RT_TABLE_UNSPEC}, nl.RT_FILTER_PROTOCOL|nl.RT_FILTER_TABLE)
		require.NoError(t, err)
		var found []nl.Route
		for _, k := range kr {
			if k.Dst.String() == dst {
				found = append(found, k)
			}
		}
		require.Len(t, found, 1, "one multipath route for %s", dst)
		assert.Len(t, found[0].MultiPath, 2)
	}
	out, err := n0.NS.Run(ctx, "ip", "route", "show", "10.50.0.0/24")
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(out, "nexthop via"), out)

	// Re-reconciling does not flap the multipath routes; changing a next hop replaces in place.
	res, err = n0.Routes.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, tnl.ReconcileResult{}, res)
	r.NextHops = r.NextHops[:1]
	require.NoError(t, n0.Routes.Upsert("bgp", r))
	res, err = n0.Routes.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, tnl.ReconcileResult{Replaced: 1}, res)
}

func TestKernelRouteOwnership(t *testing.T) {
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(2))
	n0 := topo.Node(0)
	block := pfx("10.33.0.0/26") // no pod yet: the node has no block of its own
	run := func(args ...string) string {
		t.Helper()
		out, err := n0.NS.Run(ctx, "ip", args...)
		require.NoError(t, err)
		return out
	}
	// Foreign routes: one beside ours, one holding a key we want.
	run("route", "add", "192.168.7.0/24", "via", "10.99.0.1", "proto", "static")
	run("route", "add", "blackhole", "10.77.0.0/16", "proto", "bird")
	// A stale route of ours from a previous run (crash): deleted.
	run("route", "add", "10.88.0.0/16", "via", "10.99.0.1", "proto", "116")

	require.NoError(t, n0.Routes.Set("test", []tnl.Route{
		{Dst: block, Type: tnl.RouteBlackhole},
		{Dst: pfx("10.77.0.0/16"), Type: tnl.RouteBlackhole},
		{Dst: pfx("10.66.0.0/16"), NextHops: []tnl.NextHop{{Gateway: addr("172.31.0.1")}}},
		{Dst: pfx("10.55.0.0/16"), NextHops: []tnl.NextHop{{Gateway: addr("172.31.0.1"), Dev: "eth0", OnLink: true}}},
		{Dst: pfx("10.44.0.0/16"), Table: 100, NextHops: []tnl.NextHop{{Gateway: topo.Node(1).IP}}},
	}))
	res, err := n0.Routes.Reconcile(ctx)
	assert.ErrorIs(t, err, tnl.ErrForeignRoute)
	assert.ErrorIs(t, err, tnl.ErrNextHopUnreachable)
	assert.Equal(t, 3, res.Added)
	assert.Equal(t, 1, res.Deleted, "stale owned route")

	assert.Contains(t, run("route", "show", "192.168.7.0/24"), "proto static")
	assert.Contains(t, run("route", "show", "10.77.0.0/16"), "proto bird")
	assert.Empty(t, run("route", "show", "10.88.0.0/16"))
	assert.Contains(t, run("route", "show", "table", "100"), "10.44.0.0/16 via 10.99.0.12")

	// Delete one by hand: restored, and nothing else rewritten.
	run("route", "del", block.String())
	require.NoError(t, n0.Routes.Set("test", []tnl.Route{
		{Dst: block, Type: tnl.RouteBlackhole},
		{Dst: pfx("10.55.0.0/16"), NextHops: []tnl.NextHop{{Gateway: addr("172.31.0.1"), Dev: "eth0", OnLink: true}}},
		{Dst: pfx("10.44.0.0/16"), Table: 100, NextHops: []tnl.NextHop{{Gateway: topo.Node(1).IP}}},
	}))
	res, err = n0.Routes.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, tnl.ReconcileResult{Added: 1}, res)
	assert.Contains(t, run("route", "show", block.String()), "blackhole")

	// A second owner instance (a restarted agent) with the same desired
	// state converges without writing anything.
	o2, err := tnl.NewRouteOwner(n0.NS.Handle()) // the plain *netlink.Handle: no batching
	require.NoError(t, err)
	require.NoError(t, o2.Set("test", n0.Routes.Desired()))
	res, err = o2.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, tnl.ReconcileResult{}, res)
}

// dualStackNode is a one-node dual-stack topology and an empty pod
// namespace named after prefix.
func dualStackNode(t *testing.T, prefix string) (*nettest.Node, tnl.WorkloadManager, *nettest.Netns) {
	t.Helper()
	node := nettest.NewTopology(t, nettest.Nodes(1), nettest.IPv6()).Node(0)
	return node, node.Workloads, nettest.NewNetns(t, prefix)
}

func TestKernelWorkloadLifecycle(t *testing.T) {
	ctx := context.Background()
	node, w, podNS := dualStackNode(t, "tby-wl")
	spec := tnl.WorkloadSpec{ID: "k8s-pod-network.abc123", Netns: podNS.Path, MTU: 1400,
		Addresses: []netip.Addr{addr("10.244.1.10"), addr("fd00:244:0:1::10")}}

	res, err := w.SetupWorkload(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, tnl.HostIfaceName(tnl.DefaultHostPrefix, spec.ID), res.Host.Name)
	assert.LessOrEqual(t, len(res.Host.Name), 15)
	assert.Equal(t, "ee:ee:ee:ee:ee:ee", res.Host.MAC.String())
	assert.Equal(t, "eth0", res.Container.Name)
	assert.Equal(t, podNS.Path, res.Container.Sandbox)
	assert.Len(t, res.Container.MAC, 6)
	require.Len(t, res.IPs, 2)
	assert.Equal(t, pfx("10.244.1.10/32"), res.IPs[0].Address)
	assert.Equal(t, tnl.PodGatewayV4(), res.IPs[0].Gateway)
	assert.Equal(t, tnl.PodGatewayV6(), res.IPs[1].Gateway)
	assert.Len(t, res.Routes, 2)

	for key, want := range map[string]string{
		"ipv4/conf/" + res.Host.Name + "/proxy_arp":      "1",
		"ipv4/conf/" + res.Host.Name + "/forwarding":     "1",
		"ipv4/conf/" + res.Host.Name + "/route_localnet": "1",
		"ipv4/conf/" + res.Host.Name + "/rp_filter":      "0",
		"ipv4/neigh/" + res.Host.Name + "/proxy_delay":   "0",
		"ipv6/conf/" + res.Host.Name + "/accept_dad":     "0",
	} {
		out, err := node.NS.Run(ctx, "cat", "/proc/sys/net/"+key)
		require.NoError(t, err)
		assert.Equal(t, want, strings.TrimSpace(out), key)
	}

	// CHECK passes, and setup again changes nothing.
	_, err = w.CheckWorkload(ctx, spec)
	require.NoError(t, err)
	res2, err := w.SetupWorkload(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, res.Host.Index, res2.Host.Index)
	assert.Equal(t, res.Container.MAC.String(), res2.Container.MAC.String())
	ids, err := w.ListWorkloads(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{spec.ID}, ids)

	// Pod-to-host-veth traffic works through the /32 and proxy ARP: a pod on the same node.
	other := node.AddPod(t)
	_, err = podNS.Run(ctx, "ip", "route", "get", other.IP.String())
	require.NoError(t, err)

	// Break it: CHECK reports it; SETUP repairs it.
	_, err = podNS.Run(ctx, "ip", "addr", "del", "10.244.1.10/32", "dev", "eth0")
	require.NoError(t, err)
	_, err = w.CheckWorkload(ctx, spec)
	require.ErrorIs(t, err, tnl.ErrMismatch)
	_, err = w.SetupWorkload(ctx, spec)
	require.NoError(t, err)
	_, err = w.CheckWorkload(ctx, spec)
	require.NoError(t, err)

	// Teardown removes both ends and the host routes; twice is fine.
	require.NoError(t, w.TeardownWorkload(ctx, spec.ID))
	require.NoError(t, w.TeardownWorkload(ctx, spec.ID))
	_, err = node.NS.Handle().LinkByName(res.Host.Name)
	require.Error(t, err)
	out, err := node.NS.Run(ctx, "ip", "route", "show", "proto", "117")
	require.NoError(t, err)
	assert.NotContains(t, out, "10.244.1.10")
	out, err = podNS.Run(ctx, "ip", "-o", "link", "show")
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(out, "\n"), "only lo left: %s", out)
	_, err = w.CheckWorkload(ctx, spec)
	require.ErrorIs(t, err, tnl.ErrLinkNotFound)
}

func TestKernelBadInput(t *testing.T) {
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(1))
	node := topo.Node(0)
	w := node.Workloads
	podNS := nettest.NewNetns(t, "tby-bad")
	linksBefore, err := node.NS.Handle().LinkList()
	require.NoError(t, err)

	tests := []struct {
		name string
		spec tnl.WorkloadSpec
		want error
	}{
		{"long ifname", tnl.WorkloadSpec{ID: "a", Netns: podNS.Path, IfName: "eth0123456789abc"}, tnl.ErrInvalidName},
		{"no id", tnl.WorkloadSpec{Netns: podNS.Path}, tnl.ErrInvalidSpec},
		{"bad address", tnl.WorkloadSpec{ID: "a", Netns: podNS.Path, Addresses: []netip.Addr{addr("224.0.0.1")}}, tnl.ErrInvalidSpec},
		{"vanished netns", tnl.WorkloadSpec{ID: "a", Netns: "/var/run/netns/tby-does-not-exist"}, tnl.ErrNetnsNotFound},
		{"not a netns", tnl.WorkloadSpec{ID: "a", Netns: "/proc/self/status"}, tnl.ErrInvalidSpec},
		{"pod already has the name", tnl.WorkloadSpec{ID: "a", Netns: podNS.Path, IfName: "lo"}, tnl.ErrNameCollision},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := w.SetupWorkload(ctx, tt.spec)
			require.ErrorIs(t, err, tt.want)
			links, err := node.NS.Handle().LinkList()
			require.NoError(t, err)
			assert.Len(t, links, len(linksBefore), "nothing half-created")
		})
	}

	// A failure after the veth exists (the pod refuses IPv6 addresses) rolls it back.
	v6off := nettest.NewNetns(t, "tby-nov6")
	require.NoError(t, v6off.Sysctl("net/ipv6/conf/default/disable_ipv6", "1"))
	spec := tnl.WorkloadSpec{ID: "rollback", Netns: v6off.Path, Addresses: []netip.Addr{addr("10.244.1.20"), addr("fd00:244:0:1::20")}}
	_, err = w.SetupWorkload(ctx, spec)
	require.Error(t, err)
	t.Log(err)
	_, err = node.NS.Handle().LinkByName(w.HostIfaceName("rollback"))
	require.Error(t, err, "veth rolled back")
	out, err := v6off.Run(ctx, "ip", "-o", "link", "show")
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(out, "\n"), "only lo in the pod: %s", out)
	out, err = node.NS.Run(ctx, "ip", "route", "show", "proto", "117")
	require.NoError(t, err)
	assert.Empty(t, out)

	// A host link with the derived name that tabby did not make is not touched.
	foreign := tnl.HostIfaceName(tnl.DefaultHostPrefix, "foreign")
	_, err = node.NS.Run(ctx, "ip", "link", "add", foreign, "type", "veth", "peer", "name", "x0")
	require.NoError(t, err)
	_, err = w.SetupWorkload(ctx, tnl.WorkloadSpec{ID: "foreign", Netns: podNS.Path})
	require.ErrorIs(t, err, tnl.ErrNameCollision)
	require.ErrorIs(t, w.TeardownWorkload(ctx, "foreign"), tnl.ErrNameCollision)
	_, err = node.NS.Handle().LinkByName(foreign)
	require.NoError(t, err)
	// Nor one that looks like a pair an interrupted setup left (a veth
	// with HostMAC and no alias) but whose peer is in the host namespace:
	// TeardownWorkload, which has no pod netns, deletes only a pair whose
	// peer is in another namespace.
	foreign2 := tnl.HostIfaceName(tnl.DefaultHostPrefix, "foreign2")
	_, err = node.NS.Run(ctx, "ip", "link", "add", foreign2, "address", tnl.HostMAC().String(), "type", "veth", "peer", "name", "x2")
	require.NoError(t, err)
	require.ErrorIs(t, w.TeardownWorkload(ctx, "foreign2"), tnl.ErrNameCollision)
	require.ErrorIs(t, w.DetachWorkload(ctx, "foreign2", podNS.Path), tnl.ErrNameCollision)
	_, err = node.NS.Handle().LinkByName(foreign2)
	require.NoError(t, err)
	// Nor a veth with its peer in another namespace but not HostMAC.
	foreign3 := tnl.HostIfaceName(tnl.DefaultHostPrefix, "foreign3")
	_, err = node.NS.Run(ctx, "ip", "link", "add", foreign3, "type", "veth", "peer", "name", "x3", "netns", podNS.Name)
	require.NoError(t, err)
	require.ErrorIs(t, w.TeardownWorkload(ctx, "foreign3"), tnl.ErrNameCollision)
	_, err = node.NS.Handle().LinkByName(foreign3)
	require.NoError(t, err)

	// Routes: invalid prefix refused up front; gateway outside any network refused by the kernel.
	require.ErrorIs(t, node.Routes.Set("x", []tnl.Route{{Dst: pfx("10.1.2.3/8"), Type: tnl.RouteBlackhole}}), tnl.ErrInvalidPrefix)
	require.NoError(t, node.Routes.Set("x", []tnl.Route{{Dst: pfx("10.1.0.0/16"), NextHops: []tnl.NextHop{{Gateway: addr("192.0.2.1")}}}}))
	_, err = node.Routes.Reconcile(ctx)
	require.ErrorIs(t, err, tnl.ErrNextHopUnreachable)

	// VXLAN with a missing parent.
	v, err := tnl.NewVXLAN(node.NS.Handle(), node.Routes, tnl.VXLANConfig{Parent: "nosuch", LocalIP: node.IP, TunnelAddr: addr("10.33.0.0")})
	require.NoError(t, err)
	require.ErrorIs(t, v.Reconcile(ctx), tnl.ErrLinkNotFound)
	_, err = tnl.NewVXLAN(node.NS.Handle(), node.Routes, tnl.VXLANConfig{Parent: "eth0", LocalIP: addr("fd00::1"), TunnelAddr: addr("10.33.0.0")})
	require.ErrorIs(t, err, tnl.ErrInvalidSpec)
}

func TestKernelIPIPNotSupported(t *testing.T) {
	n := nettest.NewNetns(t, "tby-ipip")
	err := tnl.EnsureIPIP(n.Handle(), tnl.IPIPConfig{TunnelAddr: addr("10.244.1.0")})
	if err == nil {
		t.Skip("this kernel has ipip; the not-supported path cannot be exercised")
	}
	require.ErrorIs(t, err, tnl.ErrNotSupported)
}

func TestKernelTopologyCleanup(t *testing.T) {
	var id string
	t.Run("build", func(t *testing.T) {
		topo := nettest.NewTopology(t, nettest.Nodes(2), nettest.WithRouting(nettest.RoutingVXLAN))
		topo.Node(0).AddPod(t)
		topo.Node(1).AddPod(t)
		id = topo.ID
	})
	if id == "" {
		t.Skip("topology not built")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	require.NoError(t, err)
	assert.NotContains(t, string(out), id)
}

// A CNI plugin runs in the host namespace and opens Workloads on "".
func TestKernelWorkloadsInCurrentNetns(t *testing.T) {
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(1))
	pod := nettest.NewNetns(t, "tby-cni")
	spec := tnl.WorkloadSpec{ID: "cni.1", Netns: pod.Path, Addresses: []netip.Addr{addr("10.244.1.30")}}
	err := topo.Node(0).NS.Do(func() error {
		w, err := tnl.NewWorkloads("")
		if err != nil {
			return err
		}
		defer w.Close()
		if _, err := w.SetupWorkload(ctx, spec); err != nil {
			return err
		}
		if _, err := w.CheckWorkload(ctx, spec); err != nil {
			return err
		}
		return nil
	})
	require.NoError(t, err)
	// The interface landed in the node, not in the test's namespace.
	_, err = topo.Node(0).Workloads.CheckWorkload(ctx, spec)
	require.NoError(t, err)
	p2 := topo.Node(0).AddPod(t)
	nettest.ExpectConnect(t, &nettest.Pod{Name: "cni", NS: pod, IP: spec.Addresses[0]}, p2, 8080)
	require.NoError(t, topo.Node(0).Workloads.TeardownWorkload(ctx, spec.ID))
}

// TestKernelVXLANBulk sends 4 MiB between pods on two nodes over VXLAN with
// the pod MTU 50 bytes below the underlay (nettest/README.md: bulk traffic stalls
// when the pod MTU is left at 1500).
func TestKernelVXLANBulk(t *testing.T) {
	topo := nettest.NewTopology(t, nettest.Nodes(2), nettest.WithRouting(nettest.RoutingVXLAN), nettest.PodMTU(1500-tnl.VXLANOverhead))
	a, b := topo.Node(0).AddPod(t), topo.Node(1).AddPod(t)
	var ln net.Listener
	require.NoError(t, b.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":9100")
		return err
	}))
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.Dial(ctx, "tcp", b.Addr(9100))
	require.NoError(t, err)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	const size = 4 << 20
	n, err := io.Copy(c, io.LimitReader(zeroReader{}, size))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	assert.Equal(t, int64(size), n)
	assert.Equal(t, int64(size), <-got)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestKernelWorkloadSetupFunc: the pair is made while the addresses are
// chosen; the result is SetupWorkload's, and the IPv6 pod end (made before
// the addresses were known) has no tentative link-local address.
func TestKernelWorkloadSetupFunc(t *testing.T) {
	ctx := context.Background()
	node, w, podNS := dualStackNode(t, "tby-wlf")
	spec := tnl.WorkloadSpec{ID: "k8s-pod-network.func1", Netns: podNS.Path, MTU: 1400}
	want := []netip.Addr{addr("10.244.1.20"), addr("fd00:244:0:1::20")}

	var during []string
	res, err := w.SetupWorkloadFunc(ctx, spec, func(ctx context.Context) ([]netip.Addr, error) {
		require.Eventually(t, func() bool {
			during, _ = w.ListWorkloads(ctx)
			return len(during) == 1
		}, 5*time.Second, time.Millisecond)
		return want, nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{spec.ID}, during, "the pair exists while the addresses are chosen")
	assert.Equal(t, tnl.HostIfaceName(tnl.DefaultHostPrefix, spec.ID), res.Host.Name)
	require.Len(t, res.IPs, 2)
	assert.Equal(t, pfx("fd00:244:0:1::20/128"), res.IPs[1].Address)
	spec.Addresses = want
	_, err = w.CheckWorkload(ctx, spec)
	require.NoError(t, err)

	out, err := podNS.Run(ctx, "cat", "/proc/sys/net/ipv6/conf/eth0/accept_dad", "/proc/sys/net/ipv6/conf/default/accept_dad")
	require.NoError(t, err)
	assert.Equal(t, []string{"0", "1"}, strings.Fields(out), "DAD off on eth0 only")
	out, err = podNS.Run(ctx, "ip", "-6", "addr", "show", "dev", "eth0")
	require.NoError(t, err)
	assert.Contains(t, out, "fe80::")
	assert.NotContains(t, out, "tentative")
	other := node.AddPod(t)
	_, err = podNS.Run(ctx, "ip", "route", "get", other.IP.String())
	require.NoError(t, err)

	// Retried with the same addresses: the same interface, nothing rebuilt.
	spec.Addresses = nil
	res2, err := w.SetupWorkloadFunc(ctx, spec, func(context.Context) ([]netip.Addr, error) { return want, nil })
	require.NoError(t, err)
	assert.Equal(t, res.Host.Index, res2.Host.Index)
	assert.Equal(t, res.Container.Index, res2.Container.Index)

	// A failed assignment for a new workload leaves nothing.
	failed := tnl.WorkloadSpec{ID: "k8s-pod-network.func2", Netns: nettest.NewNetns(t, "tby-wlf").Path}
	_, err = w.SetupWorkloadFunc(ctx, failed, func(context.Context) ([]netip.Addr, error) { return nil, context.DeadlineExceeded })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	ids, err := w.ListWorkloads(ctx)
	require.NoError(t, err)
	assert.Contains(t, ids, spec.ID)
	assert.NotContains(t, ids, failed.ID)
	_, err = node.NS.Handle().LinkByName(tnl.HostIfaceName(tnl.DefaultHostPrefix, failed.ID))
	assert.Error(t, err)
}

// TestKernelDetachWorkload: a detached workload is off the network at
// once (no host route, no pod address, both ends down), its names are free
// for a new setup in the same pod namespace, and the kernel removes the
// pair with that namespace.
func TestKernelDetachWorkload(t *testing.T) {
	ctx := context.Background()
	node, w, podNS := dualStackNode(t, "tby-wld")
	spec := tnl.WorkloadSpec{ID: "k8s-pod-network.det1", Netns: podNS.Path,
		Addresses: []netip.Addr{addr("10.244.1.30"), addr("fd00:244:0:1::30")}}
	res, err := w.SetupWorkload(ctx, spec)
	require.NoError(t, err)
	other := node.AddPod(t)
	ping := func() error {
		_, err := podNS.Run(ctx, "ping", "-c1", "-W1", other.IP.String())
		return err
	}
	require.NoError(t, ping())

	require.NoError(t, w.DetachWorkload(ctx, spec.ID, podNS.Path))
	name := tnl.DetachedIfaceName(spec.ID)
	assert.Len(t, name, 15)
	assert.Equal(t, res.Host.Name[len(tnl.DefaultHostPrefix):len(tnl.DefaultHostPrefix)+11], name[len("tbd-"):], "the same digits as the host name")
	host, err := node.NS.Handle().LinkByIndex(res.Host.Index)
	require.NoError(t, err)
	assert.Equal(t, name, host.Attrs().Name)
	assert.Equal(t, "tabby-detached:"+spec.ID, host.Attrs().Alias)
	assert.Zero(t, host.Attrs().Flags&net.FlagUp)
	pod, err := podNS.Handle().LinkByIndex(res.Container.Index)
	require.NoError(t, err)
	assert.Equal(t, name, pod.Attrs().Name)
	assert.Zero(t, pod.Attrs().Flags&net.FlagUp)
	addrs, err := podNS.Handle().AddrList(pod, nl.FAMILY_ALL)
	require.NoError(t, err)
	assert.Empty(t, addrs, "the pod end keeps no address")
	for _, a := range spec.Addresses {
		out, err := node.NS.Run(ctx, "ip", "route", "show", "match", a.String())
		require.NoError(t, err)
		assert.NotContains(t, out, a.String(), "no host route to the pod")
	}
	require.Error(t, ping())
	ids, err := w.ListWorkloads(ctx)
	require.NoError(t, err)
	assert.NotContains(t, ids, spec.ID)
	_, err = w.CheckWorkload(ctx, spec)
	require.ErrorIs(t, err, tnl.ErrLinkNotFound)
	require.NoError(t, w.DetachWorkload(ctx, spec.ID, podNS.Path), "idempotent")

	// A new ADD into the same namespace (the runtime re-attaching the
	// sandbox) gets eth0 and the host name back, and works.
	res2, err := w.SetupWorkload(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, res.Host.Name, res2.Host.Name)
	assert.Equal(t, "eth0", res2.Container.Name)
	require.NoError(t, ping())
	require.NoError(t, w.TeardownWorkload(ctx, spec.ID))

	// The kernel removes the detached pair with the pod namespace.
	require.NoError(t, podNS.Delete())
	require.Eventually(t, func() bool {
		_, err := node.NS.Handle().LinkByName(name)
		return err != nil
	}, 10*time.Second, 10*time.Millisecond, "the detached host end goes with the pod namespace")

	// RemoveDetached deletes what a kept namespace would keep.
	kept := nettest.NewNetns(t, "tby-wld")
	spec.Netns = kept.Path
	_, err = w.SetupWorkload(ctx, spec)
	require.NoError(t, err)
	require.NoError(t, w.DetachWorkload(ctx, spec.ID, kept.Path))
	_, err = node.NS.Handle().LinkByName(name)
	require.NoError(t, err)
	require.NoError(t, w.RemoveDetached(ctx, func(id string) bool { return id == "k8s-pod-network.other" }))
	_, err = node.NS.Handle().LinkByName(name)
	require.NoError(t, err, "another workload's match leaves it")
	require.NoError(t, w.RemoveDetached(ctx, nil))
	_, err = node.NS.Handle().LinkByName(name)
	require.Error(t, err)
	links, err := kept.Handle().LinkList()
	require.NoError(t, err)
	require.Len(t, links, 1, "only lo is left in the kept namespace")
}
