package natoutgoing_test

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/natoutgoing"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/ipam"
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

// natPort is the port of the servers that report the peer address.
const natPort = 8181

// natWorld is one nettest node whose pods take addresses from an ipam, and
// a "public" client namespace on the fabric, outside every pool, that
// answers on natPort with the address it saw.
type natWorld struct {
	t      *testing.T
	ipam   *ipam.IPAM
	node   *nettest.Node
	public *nettest.Pod
	sets   *ipsets.IPSets
}

func newNATWorld(t *testing.T, a *ipam.IPAM, ipv6 bool) *natWorld {
	opts := []nettest.Option{nettest.Nodes(1), nettest.WithIPAM(a)}
	if ipv6 {
		opts = append(opts, nettest.IPv6())
	}
	topo := nettest.NewTopology(t, opts...)
	w := &natWorld{t: t, ipam: a, node: topo.Node(0), public: topo.AddClient(t)}
	seenFrom(t, w.public.NS, natPort)
	h, err := nl.NewHandleAt(netns.NsHandle(w.node.NS.NS().Fd()), unix.NETLINK_NETFILTER)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	w.sets = ipsets.New(h)
	return w
}

// addPod adds a pod on the node with one address from pool4 (and one from
// pool6 when not empty), released in t.Cleanup.
func (w *natWorld) addPod(name, pool4, pool6 string) *nettest.Pod {
	t, ctx := w.t, context.Background()
	t.Helper()
	args := ipam.AssignArgs{Handle: "k8s-pod-network." + name, Node: w.node.Name, Num4: 1, IPv4Pools: []string{pool4}}
	if pool6 != "" {
		args.Num6, args.IPv6Pools = 1, []string{pool6}
	}
	r, err := w.ipam.Assign(ctx, args)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = w.ipam.ReleaseByHandle(ctx, "k8s-pod-network."+name) })
	var addrs []netip.Addr
	for _, ip := range r.All() {
		addrs = append(addrs, ip.Addr)
	}
	return w.node.AddPod(t, nettest.PodName(name), nettest.PodAddrs(addrs...))
}

// routeBack routes cidr from the public namespace to the node.
func (w *natWorld) routeBack(cidr netip.Prefix) {
	w.t.Helper()
	gw := w.node.IP
	if cidr.Addr().Is6() {
		gw = w.node.IP6
	}
	require.NoError(w.t, w.public.NS.Handle().RouteReplace(&nl.Route{
		Dst: &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), cidr.Addr().BitLen())},
		Gw:  gw.AsSlice(),
	}), "public: route %s back via the node", cidr)
}

// applier returns an Applier of fam programming the node.
func (w *natWorld) applier(fam iptables.Family) *natoutgoing.Applier {
	w.t.Helper()
	ipt, err := iptables.New(iptables.Config{Family: fam}, iptables.WithNetns(w.node.NS.Name))
	require.NoError(w.t, err)
	a, err := natoutgoing.New(natoutgoing.Config{Family: fam}, ipt, w.sets)
	require.NoError(w.t, err)
	return a
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
	pools := map[string]ipam.IPPool{
		"nat4":   {Name: "nat4", CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true},
		"plain4": {Name: "plain4", CIDR: netip.MustParsePrefix("10.245.0.0/16")},
		"nat6":   {Name: "nat6", CIDR: netip.MustParsePrefix("fd00:244::/108"), NATOutgoing: true},
		"plain6": {Name: "plain6", CIDR: netip.MustParsePrefix("fd00:245::/108")},
	}
	a := newIPAM(t, slices.Collect(maps.Values(pools))...)
	listPools := func() []ipam.IPPool {
		ps, err := a.Pools(ctx)
		require.NoError(t, err)
		return ps
	}

	w := newNATWorld(t, a, true)
	node, public := w.node, w.public
	natPod := w.addPod("nat", "nat4", "nat6")
	plainPod := w.addPod("plain", "plain4", "plain6")
	for _, p := range pools {
		w.routeBack(p.CIDR)
	}
	const port = natPort
	seenFrom(t, natPod.NS, port)
	seenFrom(t, plainPod.NS, port)

	appliers := map[iptables.Family]*natoutgoing.Applier{}
	for _, fam := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		appliers[fam] = w.applier(fam)
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

// TestRunFollowsPoolsKernel: one Applier.Run follows the ipam's pools on a
// real node while pods talk to the public namespace: natOutgoing flipped
// off stops the masquerade of a pod's traffic, flipped on brings it back,
// and a NAT pool created later is honoured for a pod added from it; no
// Applier or Run is restarted.
func TestRunFollowsPoolsKernel(t *testing.T) {
	nettest.RequireRoot(t)
	ctx := context.Background()
	a := newIPAM(t, ipam.IPPool{Name: "nat4", CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true})
	w := newNATWorld(t, a, false)
	w.routeBack(netip.MustParsePrefix("10.244.0.0/16"))
	w.routeBack(netip.MustParsePrefix("10.246.0.0/16"))
	pod := w.addPod("pod", "nat4", "")
	public := netip.AddrPortFrom(w.public.IP, natPort)

	runFollowing(t, w.applier(iptables.IPv4), a)
	seenAs := func(what string, p *nettest.Pod, want netip.Addr) {
		t.Helper()
		var last string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			reply, err := p.Probe("tcp", public, nettest.ConnectTimeout)
			if last = reply; err != nil {
				last = err.Error()
			}
			if last == want.String() {
				return
			}
		}
		t.Fatalf("%s: public saw %q, want %s", what, last, want)
	}
	seenAs("natOutgoing pool", pod, w.node.IP)

	setNAT := func(name string, on bool) {
		t.Helper()
		p, err := a.Pool(ctx, name)
		require.NoError(t, err)
		p.NATOutgoing = on
		_, err = a.UpdatePool(ctx, p)
		require.NoError(t, err)
	}
	setNAT("nat4", false)
	seenAs("natOutgoing flipped off", pod, pod.IP)
	setNAT("nat4", true)
	seenAs("natOutgoing flipped on again", pod, w.node.IP)

	_, err := a.CreatePool(ctx, ipam.IPPool{Name: "new4", CIDR: netip.MustParsePrefix("10.246.0.0/16"), NATOutgoing: true})
	require.NoError(t, err)
	late := w.addPod("late", "new4", "")
	seenAs("pod of a NAT pool created while running", late, w.node.IP)
	setNAT("new4", false)
	seenAs("new pool's natOutgoing flipped off", late, late.IP)
	seenAs("the first pool is untouched", pod, w.node.IP)
}
