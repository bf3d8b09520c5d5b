package natoutgoing_test

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/natoutgoing"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/store"
)

// seenFrom starts a TCP server on port in ns (all addresses, both
// families) that answers each connection with the peer address it saw,
// and stops it in t.Cleanup.
func seenFrom(t *testing.T, ns *nettest.Netns, port int) {
	t.Helper()
	var ln net.Listener
	require.NoError(t, ns.Do(func() error {
		var err error
		ln, err = net.ListenTCP("tcp", &net.TCPAddr{Port: port})
		return err
	}))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peer := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			_, _ = c.Write([]byte(peer.String()))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
}

// seen connects from pod to dst and returns the source address dst saw.
func seen(t *testing.T, from *nettest.Pod, dst netip.AddrPort) string {
	t.Helper()
	reply, err := from.Probe("tcp", dst, nettest.ConnectTimeout)
	require.NoError(t, err)
	a, err := netip.ParseAddr(reply)
	require.NoError(t, err, "reply %q", reply)
	return a.String()
}

// TestOutgoingNATKernel builds, by nettest: a dual-stack node namespace
// with pod "nat" from natOutgoing pools and pod "plain" from pools without
// it, and a "public" namespace (a nettest client on the fabric, outside
// every pool) that routes the pools back to the node. It then checks the
// source address each side sees, per family, before and after flipping the
// pools' natOutgoing.
func TestOutgoingNATKernel(t *testing.T) {
	nettest.RequireRoot(t)
	ctx := context.Background()
	mem, err := store.NewMemory()
	require.NoError(t, err)
	a, err := ipam.New(mem)
	require.NoError(t, err)
	pools := map[string]ipam.IPPool{
		"nat4":   {Name: "nat4", CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true},
		"plain4": {Name: "plain4", CIDR: netip.MustParsePrefix("10.245.0.0/16")},
		"nat6":   {Name: "nat6", CIDR: netip.MustParsePrefix("fd00:244::/108"), NATOutgoing: true},
		"plain6": {Name: "plain6", CIDR: netip.MustParsePrefix("fd00:245::/108")},
	}
	for _, p := range pools {
		_, err := a.CreatePool(ctx, p)
		require.NoError(t, err)
	}
	listPools := func() []ipam.IPPool {
		ps, err := a.Pools(ctx)
		require.NoError(t, err)
		return ps
	}

	topo := nettest.NewTopology(t, nettest.Nodes(1), nettest.IPv6(), nettest.WithIPAM(a))
	node := topo.Node(0)
	addPod := func(name, pool4, pool6 string) *nettest.Pod {
		r, err := a.Assign(ctx, ipam.AssignArgs{Handle: "k8s-pod-network." + name, Node: node.Name, Num4: 1, Num6: 1,
			IPv4Pools: []string{pool4}, IPv6Pools: []string{pool6}})
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = a.ReleaseByHandle(ctx, "k8s-pod-network."+name) })
		var addrs []netip.Addr
		for _, ip := range r.All() {
			addrs = append(addrs, ip.Addr)
		}
		return node.AddPod(t, nettest.PodName(name), nettest.PodAddrs(addrs...))
	}
	natPod := addPod("nat", "nat4", "nat6")
	plainPod := addPod("plain", "plain4", "plain6")
	public := topo.AddClient(t)
	for _, p := range pools {
		gw := node.IP
		if p.CIDR.Addr().Is6() {
			gw = node.IP6
		}
		require.NoError(t, public.NS.Handle().RouteReplace(&nl.Route{
			Dst: &net.IPNet{IP: p.CIDR.Addr().AsSlice(), Mask: net.CIDRMask(p.CIDR.Bits(), p.CIDR.Addr().BitLen())},
			Gw:  gw.AsSlice(),
		}), "public: route %s back via the node", p.CIDR)
	}
	const port = 8181
	seenFrom(t, public.NS, port)
	seenFrom(t, natPod.NS, port)
	seenFrom(t, plainPod.NS, port)

	h, err := nl.NewHandleAt(netns.NsHandle(node.NS.NS().Fd()), unix.NETLINK_NETFILTER)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	sets := ipsets.New(h)
	appliers := map[iptables.Family]*natoutgoing.Applier{}
	for _, fam := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		ipt, err := iptables.New(iptables.Config{Family: fam}, iptables.WithNetns(node.NS.Name))
		require.NoError(t, err)
		appliers[fam], err = natoutgoing.New(natoutgoing.Config{Family: fam}, ipt, sets)
		require.NoError(t, err)
	}
	apply := func() {
		t.Helper()
		for _, fam := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
			require.NoError(t, appliers[fam].Apply(ctx, listPools()), "apply %s", fam)
		}
	}
	apply()
	checkFakeMatchesKernel(t, node.NS, listPools())

	type family struct {
		name                     string
		node, public, nat, plain netip.Addr
	}
	fams := []family{
		{"IPv4", node.IP, public.IP, natPod.IP, plainPod.IP},
		{"IPv6", node.IP6, public.IP6, natPod.IP6, plainPod.IP6},
	}
	expect := func(step string, natSeenAs, plainSeenAs func(f family) netip.Addr) {
		t.Helper()
		for _, f := range fams {
			require.Equal(t, natSeenAs(f).String(), seen(t, natPod, netip.AddrPortFrom(f.public, port)), "%s %s: nat pod -> public", step, f.name)
			require.Equal(t, plainSeenAs(f).String(), seen(t, plainPod, netip.AddrPortFrom(f.public, port)), "%s %s: plain pod -> public", step, f.name)
			require.Equal(t, f.nat.String(), seen(t, natPod, netip.AddrPortFrom(f.plain, port)), "%s %s: pod to pod is never NATed", step, f.name)
			require.Equal(t, f.plain.String(), seen(t, plainPod, netip.AddrPortFrom(f.nat, port)), "%s %s: pod to pod is never NATed", step, f.name)
		}
	}
	nodeAddr := func(f family) netip.Addr { return f.node }
	natAddr := func(f family) netip.Addr { return f.nat }
	plainAddr := func(f family) netip.Addr { return f.plain }
	expect("natOutgoing on nat pools", nodeAddr, plainAddr)

	flip := func(names ...string) {
		t.Helper()
		for _, n := range names {
			p, err := a.Pool(ctx, n)
			require.NoError(t, err)
			p.NATOutgoing = !p.NATOutgoing
			_, err = a.UpdatePool(ctx, p)
			require.NoError(t, err)
		}
		apply()
	}
	flip("nat4", "nat6", "plain4", "plain6")
	expect("natOutgoing flipped to the plain pools", natAddr, nodeAddr)
	flip("plain4", "plain6")
	expect("no natOutgoing pool", natAddr, plainAddr)

	// A disabled pool still counts as inside: disable the nat pools and turn
	// NAT on again for them; pod-to-pod stays un-NATed, egress is NATed.
	for _, n := range []string{"nat4", "nat6"} {
		p, err := a.Pool(ctx, n)
		require.NoError(t, err)
		p.Disabled, p.NATOutgoing = true, true
		_, err = a.UpdatePool(ctx, p)
		require.NoError(t, err)
	}
	apply()
	expect("nat pools disabled, natOutgoing on", nodeAddr, plainAddr)

	for _, fam := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		require.NoError(t, appliers[fam].Delete(ctx))
	}
	out, err := node.NS.Run(ctx, "iptables-save", "-t", "nat")
	require.NoError(t, err)
	require.NotContains(t, out, "tabby-nat-outgoing", "Delete leaves no rule")
	expect("deleted", natAddr, plainAddr)
}

// checkFakeMatchesKernel applies the same pools to the fakes and compares
// the owned nat lines with the kernel's iptables-save (both families).
func checkFakeMatchesKernel(t *testing.T, ns *nettest.Netns, pools []ipam.IPPool) {
	t.Helper()
	f := newFakes()
	for _, fam := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		require.NoError(t, f.applier(t, natoutgoing.Config{Family: fam}).Apply(context.Background(), pools))
	}
	fakeDump := f.ipt.Dump()
	for _, bin := range []string{"iptables-save", "ip6tables-save"} {
		out, err := ns.Run(context.Background(), bin, "-t", "nat")
		require.NoError(t, err, out)
		want := ownedLines(sectionOf(fakeDump, strings.TrimSuffix(bin, "-save")))
		require.NotEmpty(t, want)
		require.Equal(t, want, ownedLines(out), bin)
	}
}

// sectionOf returns the part of a Fake dump headed "# <prefix>-nft" or "-legacy".
func sectionOf(dump, prefix string) string {
	for _, sec := range strings.Split(dump, "# ")[1:] {
		if strings.HasPrefix(sec, prefix+"-") {
			return sec
		}
	}
	return ""
}

func ownedLines(save string) []string {
	var out []string
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, "-A ") && strings.Contains(l, "tabby-nat-outgoing") {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}
