package iptables_test

import (
	"context"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	sipt "github.com/tabbynet/tabby/services/iptables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// setPrefix is the hairpin set's IPSets prefix in these tests.
const setPrefix = "TABBY-"

// newSetFake is newFake with WithHairpinSet over an ipsets.Fake.
func newSetFake(t testing.TB, opts ...sipt.Option) (*ipt.Fake, *ipsets.Fake, *services.Tracker, *sipt.Proxier) {
	t.Helper()
	sf := ipsets.NewFake()
	fake, tr, p := newFakeWith(t, append([]sipt.Option{sipt.WithHairpinSet(ipsets.New(sf, ipsets.WithPrefix(setPrefix)))}, opts...)...)
	return fake, sf, tr, p
}

func setTracer(fake *ipt.Fake, sets *ipsets.Fake) st.Tracer {
	return func(p services.TracePacket) ([]services.TraceOutcome, error) {
		return sipt.TraceWithSets(fake, sets, []netip.Addr{netip.MustParseAddr(st.NodeIP)}, p)
	}
}

func TestHairpinSetGolden(t *testing.T) {
	fake, sf, tr, p := newSetFake(t)
	st.Scenario(tr)
	require.NoError(t, p.Sync(context.Background()))
	assert.Equal(t, "TABBY-HAIRPIN", p.HairpinSet())
	golden(t, "scenario-hairpinset.golden", fake.Dump()+"\n# ipsets\n"+sf.Dump())
}

// TestHairpinSetTrace: the shared trace cases and TestHairpinLayout's
// hairpin cases through the set layout: an endpoint is masqueraded only
// when its connection lands on itself (the set decides in
// POSTROUTING), with affinity (per-endpoint rules kept) and without.
func TestHairpinSetTrace(t *testing.T) {
	fake, sf, tr, p := newSetFake(t)
	ctx := context.Background()
	st.Scenario(tr)
	require.NoError(t, p.Sync(ctx))
	trc := setTracer(fake, sf)
	st.RunTraceCases(t, st.TraceCases(true), trc)
	tr1 := func(src, dst string, port uint16) []string { return st.Trace(t, trc, src, dst, "tcp", port, false) }
	assert.Equal(t, []string{"DNAT 10.244.1.12:8080 masq"}, tr1("10.244.1.12", "10.96.0.70", 80), "affinity, from the endpoint")
	assert.Equal(t, []string{"DNAT 10.244.1.9:8080", "DNAT 10.244.2.9:8080 masq"}, tr1("10.244.2.9", "203.0.113.7", 80),
		"local policy from a pod endpoint goes cluster-wide")
	d := fake.Dump()
	assert.Contains(t, d, "--match-set TABBY-HAIRPIN dst,dst,src -j TABBY-MARK-MASQ")
	assert.Contains(t, sf.Dump(), "add TABBY-HAIRPIN 10.244.2.8,tcp:8080,10.244.2.8\n")

	// Three endpoints: each reachable, and each masqueraded only from itself.
	tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", st.WebPorts,
		st.Endpoint{IP: "10.244.2.8"}, st.Endpoint{IP: "10.244.2.9"}, st.Endpoint{IP: "10.244.2.10"}))
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, []string{"DNAT 10.244.2.10:8080", "DNAT 10.244.2.8:8080", "DNAT 10.244.2.9:8080 masq"}, tr1("10.244.2.9", "10.96.0.20", 80))

	// The same pod address with two ports: the SEP layout, not in the set.
	tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-2", []st.SlicePort{{Name: "http", Proto: "TCP", Port: 8081}},
		st.Endpoint{IP: "10.244.2.8", Node: "node-a"}))
	require.NoError(t, p.Sync(ctx))
	assert.Contains(t, fake.Dump(), ":TABBY-SEP-")
	assert.NotContains(t, sf.Dump(), "10.244.2.8,tcp:8080")
	assert.Equal(t, []string{"DNAT 10.244.2.10:8080", "DNAT 10.244.2.8:8080 masq", "DNAT 10.244.2.8:8081 masq", "DNAT 10.244.2.9:8080"},
		tr1("10.244.2.8", "10.96.0.20", 80))
}

// TestHairpinSetRewritesOnlyChangedChains: TestSyncRewritesOnlyChangedChains
// in the set layout: one endpoint added is one service chain written and
// one set member added; a removed Service takes its members out; the
// incremental state equals a full render's.
func TestHairpinSetRewritesOnlyChangedChains(t *testing.T) {
	fake, sf, tr, p := newSetFake(t)
	ctx := context.Background()
	st.Scenario(tr)
	require.NoError(t, p.Sync(ctx))
	n, calls := len(restores(fake)), sf.Calls()

	require.NoError(t, p.Sync(ctx))
	assert.Len(t, restores(fake), n)
	assert.Equal(t, calls, sf.Calls(), "nothing changed: no ipset call")

	tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", st.DNSPorts,
		st.Endpoint{IP: "10.244.1.5", Node: "node-a"}, st.Endpoint{IP: "10.244.2.7", Node: "node-b"}, st.Endpoint{IP: "10.244.3.3", Node: "node-c"}))
	require.NoError(t, p.Sync(ctx))
	rs := restores(fake)
	require.Len(t, rs, n+1)
	var written []string
	for _, l := range strings.Split(rs[n], "\n") {
		if strings.HasPrefix(l, ":") {
			written = append(written, strings.Fields(l[1:])[0])
		}
	}
	// dns has a TCP and a UDP port: one SVC chain each.
	require.Len(t, written, len(st.DNSPorts), "%s", rs[n])
	for _, c := range written {
		assert.Regexp(t, `^TABBY-SVC-`, c)
	}
	assert.Equal(t, calls+1, sf.Calls(), "the new members (one per port), in one batched add")
	assert.Contains(t, sf.Dump(), "10.244.3.3,udp:53,10.244.3.3")

	tr.OnServiceDelete(st.Service("kube-system", "dns", "10.96.0.10"))
	require.NoError(t, p.Sync(ctx))
	assert.NotContains(t, sf.Dump(), ",udp:53,")

	incremental, sets := fake.Dump(), sf.Dump()
	n = len(restores(fake))
	p.QueueResync()
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, incremental, fake.Dump())
	assert.Equal(t, sets, sf.Dump())
	assert.Len(t, restores(fake), n)
}

// TestKernelHairpinSetDefault: without WithHairpinSet or
// WithHairpinChains, New opens the ipsets of the IPTables' netns itself:
// an IPv4 and an IPv6 Proxier in one netns each own their set
// (TABBY-4-HAIRPIN, TABBY-6-HAIRPIN6), neither destroys the other's on a
// full resync, and Close releases the handle. An explicit
// WithHairpinSet over a kernel handle uses its own prefix instead.
func TestKernelHairpinSetDefault(t *testing.T) {
	ns := nettest.NewNetns(t, "svchp") // skips unless root
	ctx := context.Background()
	sets := func() string {
		out, err := ipt.OSExecer{Netns: ns.Name}.Run(ctx, ipt.Command{Name: "ipset", Args: []string{"list", "-n"}})
		require.NoError(t, err)
		return strings.Join(strings.Fields(string(out)), " ")
	}
	var ps []*sipt.Proxier
	for _, fam := range []ipt.Family{ipt.IPv4, ipt.IPv6} {
		table, err := sipt.NewIPTables(fam, ipt.BackendLegacy, ipt.WithNetns(ns.Name))
		require.NoError(t, err)
		tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
		p, err := sipt.New(table, tr, sipt.Config{Family: fam})
		require.NoError(t, err)
		ps = append(ps, p)
		require.NoError(t, p.Sync(ctx))
	}
	assert.Equal(t, "TABBY-4-HAIRPIN", ps[0].HairpinSet())
	assert.Equal(t, "TABBY-6-HAIRPIN6", ps[1].HairpinSet())
	assert.ElementsMatch(t, []string{"TABBY-4-HAIRPIN", "TABBY-6-HAIRPIN6"}, strings.Fields(sets()))
	for _, p := range ps {
		p.QueueResync()
		require.NoError(t, p.Sync(ctx))
	}
	assert.ElementsMatch(t, []string{"TABBY-4-HAIRPIN", "TABBY-6-HAIRPIN6"}, strings.Fields(sets()))
	for _, p := range ps {
		require.NoError(t, p.Close())
		require.NoError(t, p.Close(), "a second Close is a no-op")
		assert.ErrorIs(t, p.Sync(ctx), sipt.ErrClosed)
	}

	table, err := sipt.NewIPTables(ipt.IPv4, ipt.BackendNFT, ipt.WithNetns(ns.Name))
	require.NoError(t, err)
	h, err := ipsets.NewHandle(netns.NsHandle(ns.NS().Fd()))
	require.NoError(t, err)
	t.Cleanup(h.Close)
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4}, sipt.WithHairpinSet(ipsets.New(h, ipsets.WithPrefix("TABBY-SVC-"))))
	require.NoError(t, err)
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, "TABBY-SVC-HAIRPIN", p.HairpinSet())
	assert.Contains(t, strings.Fields(sets()), "TABBY-SVC-HAIRPIN")
	assert.NoError(t, p.Close(), "nothing to close: the caller owns the handle")

	// A netns that is gone: New says so.
	gone, err := sipt.NewIPTables(ipt.IPv4, ipt.BackendNFT, ipt.WithNetns("tabby-no-such-netns"))
	require.NoError(t, err)
	_, err = sipt.New(gone, tr, sipt.Config{Family: ipt.IPv4})
	assert.ErrorContains(t, err, "tabby-no-such-netns")
}

// createFailsOnce is an ipsets.Fake whose first IpsetCreate fails.
type createFailsOnce struct {
	*ipsets.Fake
	failed bool
}

func (h *createFailsOnce) IpsetCreate(name, typename string, o nl.IpsetCreateOptions) error {
	if !h.failed {
		h.failed = true
		return syscall.ENOMEM
	}
	return h.Fake.IpsetCreate(name, typename, o)
}

// TestHairpinSetCreateFailsOnFullSync: a full sync counts and declares the
// hairpin members beside the restore, after creating the set. When the
// create fails, the sync writes no rule and the next Sync, even with only
// one change from the tracker, counts every member again: the set and the
// rules end as a clean full sync's.
func TestHairpinSetCreateFailsOnFullSync(t *testing.T) {
	ctx := context.Background()
	h := &createFailsOnce{Fake: ipsets.NewFake()}
	fake, tr, p := newFakeWith(t, sipt.WithHairpinSet(ipsets.New(h, ipsets.WithPrefix(setPrefix))))
	st.Scenario(tr)
	err := p.Sync(ctx)
	require.ErrorIs(t, err, syscall.ENOMEM)
	assert.Contains(t, err.Error(), "TABBY-HAIRPIN")
	assert.Contains(t, err.Error(), "WithHairpinChains", "the error names the layout that needs no ipset")
	assert.Empty(t, restores(fake), "the set is missing: no restore may name it")

	tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", st.DNSPorts,
		st.Endpoint{IP: "10.244.1.5", Node: "node-a"}, st.Endpoint{IP: "10.244.3.3", Node: "node-c"}))
	require.NoError(t, p.Sync(ctx))

	wantIpt, wantSets, tr2, p2 := newSetFake(t)
	st.Scenario(tr2)
	tr2.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", st.DNSPorts,
		st.Endpoint{IP: "10.244.1.5", Node: "node-a"}, st.Endpoint{IP: "10.244.3.3", Node: "node-c"}))
	require.NoError(t, p2.Sync(ctx))
	assert.Equal(t, wantSets.Dump(), h.Dump())
	assert.Equal(t, wantIpt.Dump(), fake.Dump())
	assert.Contains(t, h.Dump(), "add TABBY-HAIRPIN 10.244.2.8,tcp:8080,10.244.2.8\n", "a member of a port the second sync did not change")
}

// TestKernelHairpinChainsDestroysLeftoverSet: a Proxier made
// WithHairpinChains where one of the default layout ran before destroys
// that layout's set after its first Sync (its own family's only); a set
// another rule still names stays, and the Sync succeeds.
func TestKernelHairpinChainsDestroysLeftoverSet(t *testing.T) {
	ns := nettest.NewNetns(t, "svchpl") // skips unless root
	ctx := context.Background()
	run := func(name string, args ...string) string {
		out, err := ipt.OSExecer{Netns: ns.Name}.Run(ctx, ipt.Command{Name: name, Args: args})
		require.NoError(t, err, "%s %v", name, args)
		return string(out)
	}
	sets := func() []string { return strings.Fields(run("ipset", "list", "-n")) }
	proxier := func(fam ipt.Family, opts ...sipt.Option) *sipt.Proxier {
		table, err := sipt.NewIPTables(fam, ipt.BackendLegacy, ipt.WithNetns(ns.Name))
		require.NoError(t, err)
		tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
		st.Scenario(tr)
		p, err := sipt.New(table, tr, sipt.Config{Family: fam}, opts...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	for _, fam := range []ipt.Family{ipt.IPv4, ipt.IPv6} {
		p := proxier(fam)
		require.NoError(t, p.Sync(ctx))
		require.NoError(t, p.Close())
	}
	require.ElementsMatch(t, []string{"TABBY-4-HAIRPIN", "TABBY-6-HAIRPIN6"}, sets())

	p := proxier(ipt.IPv4, sipt.WithHairpinChains())
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, []string{"TABBY-6-HAIRPIN6"}, sets(), "the IPv4 Proxier destroys only the IPv4 set")
	assert.NotContains(t, run("iptables-legacy-save", "-t", "nat"), "match-set", "the rules-only layout")

	// Another rule names the IPv6 set: it stays, the Sync succeeds.
	run("ip6tables-legacy", "-A", "INPUT", "-m", "set", "--match-set", "TABBY-6-HAIRPIN6", "src,dst,src", "-j", "ACCEPT")
	p6 := proxier(ipt.IPv6, sipt.WithHairpinChains())
	require.NoError(t, p6.Sync(ctx))
	assert.Equal(t, []string{"TABBY-6-HAIRPIN6"}, sets())
	require.NoError(t, p6.Sync(ctx), "looked for once only")
}
