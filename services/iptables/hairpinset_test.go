package iptables_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	fake, tr, p := newFake(t, append([]sipt.Option{sipt.WithHairpinSet(ipsets.New(sf, ipsets.WithPrefix(setPrefix)))}, opts...)...)
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

// kernelSets returns an IPSets in ns (prefix setPrefix) over the batched
// ipsets.KernelHandle.
func kernelSets(t testing.TB, ns *nettest.Netns) *ipsets.IPSets {
	t.Helper()
	h, err := ipsets.NewHandle(netns.NsHandle(ns.NS().Fd()))
	require.NoError(t, err)
	t.Cleanup(h.Close)
	return ipsets.New(h, ipsets.WithPrefix(setPrefix))
}

// TestHairpinSetIPv6: an IPv6 Proxier's set is <prefix>HAIRPIN6, family
// inet6, and its POSTROUTING rule names it.
func TestHairpinSetIPv6(t *testing.T) {
	fake, sf := ipt.NewFake(), ipsets.NewFake()
	table, err := sipt.NewIPTables(ipt.IPv6, ipt.BackendNFT, ipt.WithExecer(fake))
	require.NoError(t, err)
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv6}, sipt.WithHairpinSet(ipsets.New(sf, ipsets.WithPrefix(setPrefix))))
	require.NoError(t, err)
	tr.OnServiceUpdate(st.Service("default", "web", "fd00:96::20", st.Port("http", "TCP", 80, 0)))
	sl := st.Slice("default", "web", "web-1", st.WebPorts, st.Endpoint{IP: "fd00:244::8", Node: "node-a"}, st.Endpoint{IP: "fd00:244::9", Node: "node-b"})
	sl.AddressType = "IPv6"
	tr.OnEndpointSliceUpdate(sl)
	require.NoError(t, p.Sync(context.Background()))
	assert.Equal(t, "TABBY-HAIRPIN6", p.HairpinSet())
	assert.Contains(t, fake.Dump(), "--match-set TABBY-HAIRPIN6 dst,dst,src")
	assert.NotContains(t, fake.Dump(), "TABBY-HP-")
	assert.Equal(t, "create TABBY-HAIRPIN6 hash:ip,port,ip family inet6 maxelem 1024\n"+
		"add TABBY-HAIRPIN6 fd00:244::8,tcp:8080,fd00:244::8\nadd TABBY-HAIRPIN6 fd00:244::9,tcp:8080,fd00:244::9\n", sf.Dump())
}
