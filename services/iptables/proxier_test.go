package iptables_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/services"
	sipt "github.com/tabbynet/tabby/services/iptables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

var podCIDR = netip.MustParsePrefix("10.244.0.0/16")

// newFake is a Proxier over ipt.Fake in the WithHairpinChains layout
// (the goldens' rule shapes); newSetFake gives the default layout.
func newFake(t testing.TB, opts ...sipt.Option) (*ipt.Fake, *services.Tracker, *sipt.Proxier) {
	t.Helper()
	return newFakeWith(t, append([]sipt.Option{sipt.WithHairpinChains()}, opts...)...)
}

// newFakeWith is a Proxier over ipt.Fake with opts only.
func newFakeWith(t testing.TB, opts ...sipt.Option) (*ipt.Fake, *services.Tracker, *sipt.Proxier) {
	t.Helper()
	fake := ipt.NewFake()
	table, err := sipt.NewIPTables(ipt.IPv4, ipt.BackendNFT, ipt.WithExecer(fake))
	require.NoError(t, err)
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	opts = append([]sipt.Option{sipt.WithSysctl(func(string, string) error { return nil })}, opts...)
	p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4, ClusterCIDRs: []netip.Prefix{podCIDR}, LocalhostNodePorts: true,
		NodeIPs: []netip.Addr{netip.MustParseAddr(st.NodeIP)}}, opts...)
	require.NoError(t, err)
	return fake, tr, p
}

// golden compares got with testdata/name, rewriting it when
// TABBY_UPDATE_GOLDEN is set.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("TABBY_UPDATE_GOLDEN") != "" {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), got)
}

func TestScenarioGolden(t *testing.T) {
	fake, tr, p := newFake(t)
	st.Scenario(tr)
	require.NoError(t, p.Sync(context.Background()))
	golden(t, "scenario.golden", fake.Dump())
}

// restores returns the restore inputs the fake saw.
func restores(f *ipt.Fake) []string {
	var out []string
	for _, c := range f.Commands() {
		if strings.HasSuffix(c.Name, "-restore") {
			out = append(out, string(c.Stdin))
		}
	}
	return out
}

// writtenChains returns the chains a restore input declares.
func writtenChains(input string) []string {
	var written []string
	for _, l := range strings.Split(input, "\n") {
		if strings.HasPrefix(l, ":") {
			written = append(written, strings.Fields(l[1:])[0])
		}
	}
	return written
}

// TestSourceRangesIncremental: changing a Service's
// loadBalancerSourceRanges rewrites only its TABBY-FW- chain; removing
// them removes the chain and its TABBY-PROXY-FIREWALL rule; without a
// range holding the node, the LB IP as source is dropped.
func TestSourceRangesIncremental(t *testing.T) {
	fake, tr, p := newFake(t)
	ctx := context.Background()
	st.Scenario(tr)
	require.NoError(t, p.Sync(ctx))
	fw := func(ranges ...string) string {
		n := len(restores(fake))
		tr.OnServiceUpdate(st.Service("default", "fw", "10.96.0.90", st.Port("http", v1.ProtocolTCP, 80, 30130),
			st.LoadBalancer("203.0.113.8"), st.SourceRanges(ranges...)))
		require.NoError(t, p.Sync(ctx))
		rs := restores(fake)
		require.Len(t, rs, n+1)
		return rs[n]
	}
	last := fw("198.51.100.0/24", "198.51.99.0/24")
	written := writtenChains(last)
	require.Len(t, written, 1, "%s", last)
	assert.Regexp(t, `^TABBY-FW-`, written[0])
	assert.Equal(t, []string{"DNAT 10.244.2.13:8080 masq"}, trace(t, fake, "198.51.99.1", "203.0.113.8", "tcp", 80, false))
	assert.Equal(t, []string{"DROP"}, trace(t, fake, "203.0.113.8", "203.0.113.8", "tcp", 80, true), "no range holds the node")

	last = fw()
	// The two dispatch chains that held its rules, and the FW chain's deletion.
	assert.Equal(t, []string{"TABBY-PROXY-FIREWALL", "TABBY-SERVICES"}, writtenChains(last)[:2], "%s", last)
	assert.Contains(t, last, "-X TABBY-FW-")
	assert.NotContains(t, fake.Dump(), "TABBY-FW-")
	assert.Equal(t, []string{"DNAT 10.244.2.13:8080 masq"}, trace(t, fake, "198.51.99.1", "203.0.113.8", "tcp", 80, false))

	// Incremental equals a full resync, which writes nothing.
	inc := fake.Dump()
	n := len(restores(fake))
	p.QueueResync()
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, inc, fake.Dump())
	assert.Len(t, restores(fake), n)
}

func TestSyncRewritesOnlyChangedChains(t *testing.T) {
	fake, tr, p := newFake(t)
	ctx := context.Background()
	st.Scenario(tr)
	require.NoError(t, p.Sync(ctx))
	n := len(restores(fake))

	// Nothing changed: no restore.
	require.NoError(t, p.Sync(ctx))
	assert.Len(t, restores(fake), n)

	// One endpoint added to dns: only its service chain and its hairpin
	// chain (endpoints have no chain of their own) are written; no
	// dispatch chain.
	tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", st.DNSPorts,
		st.Endpoint{IP: "10.244.1.5", Node: "node-a"}, st.Endpoint{IP: "10.244.2.7", Node: "node-b"}, st.Endpoint{IP: "10.244.3.3", Node: "node-c"}))
	require.NoError(t, p.Sync(ctx))
	rs := restores(fake)
	require.Len(t, rs, n+1)
	last := rs[n]
	var written []string
	for _, l := range strings.Split(last, "\n") {
		if strings.HasPrefix(l, ":") {
			written = append(written, strings.Fields(l[1:])[0])
		}
	}
	assert.Len(t, written, 2, "%s", last)
	for _, c := range written {
		assert.Regexp(t, `^TABBY-(SVC|HP)-`, c)
	}
	assert.Contains(t, last, "--probability 0.33333333349")
	assert.Contains(t, last, "--probability 0.50000000000")

	// The last endpoint of web goes: its chains go, the cluster IP and
	// node port are rejected.
	tr.OnEndpointSliceDelete(st.Slice("default", "web", "web-1", st.WebPorts))
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, []string{"REJECT"}, trace(t, fake, "10.244.3.3", "10.96.0.20", "tcp", 80, false))
	assert.Equal(t, []string{"REJECT"}, trace(t, fake, "192.168.0.99", st.NodeIP, "tcp", 30080, false))
	assert.NotContains(t, fake.Dump(), "10.244.2.8:8080")

	// The Service goes: its chains are deleted, the dispatch chain rewritten.
	tr.OnServiceDelete(st.Service("kube-system", "dns", "10.96.0.10"))
	require.NoError(t, p.Sync(ctx))
	assert.NotContains(t, fake.Dump(), "10.96.0.10")
	assert.NotContains(t, fake.Dump(), "10.244.3.3")

	// The incremental result equals a full render of the same state, and
	// the full resync finds nothing to write.
	incremental := fake.Dump()
	n = len(restores(fake))
	p.QueueResync()
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, incremental, fake.Dump())
	assert.Len(t, restores(fake), n)
}

// TestApplyFailureRetried: a failed restore returns an error; the next
// Sync writes the same changes, and the stale UDP flows are handed over
// only then.
func TestApplyFailureRetried(t *testing.T) {
	var stale int
	fake, tr, p := newFake(t, sipt.WithStaleFlows(func(_ context.Context, s []services.StaleFlow) { stale += len(s) }))
	ctx := context.Background()
	st.Scenario(tr)
	require.NoError(t, p.Sync(ctx))
	stale = 0
	tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", st.DNSPorts, st.Endpoint{IP: "10.244.1.5", Node: "node-a"}))
	fake.FailNext(1, errors.New("boom"))
	require.Error(t, p.Sync(ctx))
	assert.Zero(t, stale)
	require.NoError(t, p.Sync(ctx))
	assert.Positive(t, stale)
	assert.Equal(t, []string{"DNAT 10.244.1.5:53"}, trace(t, fake, "10.244.3.3", "10.96.0.10", "udp", 53, false))
}

func TestUDPStaleFlowsAfterApply(t *testing.T) {
	var got []services.StaleFlow
	_, tr, p := newFake(t, sipt.WithStaleFlows(func(_ context.Context, s []services.StaleFlow) { got = append(got, s...) }))
	ctx := context.Background()
	tr.OnServiceUpdate(st.Service("kube-system", "dns", "10.96.0.10", st.Port("dns", v1.ProtocolUDP, 53, 0)))
	tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", st.DNSPorts, st.Endpoint{IP: "10.244.1.5", Node: "node-a"}))
	require.NoError(t, p.Sync(ctx))
	got = nil
	tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", st.DNSPorts, st.Endpoint{IP: "10.244.1.6", Node: "node-a"}))
	require.NoError(t, p.Sync(ctx))
	require.NotEmpty(t, got)
}

func TestNewRejectsBadConfig(t *testing.T) {
	table, err := sipt.NewIPTables(ipt.IPv6, ipt.BackendNFT, ipt.WithExecer(ipt.NewFake()))
	require.NoError(t, err)
	tr := services.NewTracker(services.TrackerConfig{}, nil)
	for _, c := range []sipt.Config{
		{},
		{Family: ipt.IPv4}, // the IPTables is IPv6
		{Family: ipt.IPv6, LocalhostNodePorts: true},
		{Family: ipt.IPv6, ClusterCIDRs: []netip.Prefix{podCIDR}},
		{Family: ipt.IPv6, MasqueradeMark: 0x4001},     // two bits
		{Family: ipt.IPv6, MasqueradeMark: 0xffffffff}, // every bit
	} {
		_, err := sipt.New(table, tr, c, sipt.WithHairpinChains())
		assert.ErrorIs(t, err, sipt.ErrInvalidConfig, "%+v", c)
	}

	// The zero prefix is named as such, not as a prefix of the other family.
	_, err = sipt.New(table, tr, sipt.Config{Family: ipt.IPv6, ClusterCIDRs: []netip.Prefix{{}}}, sipt.WithHairpinChains())
	assert.ErrorIs(t, err, sipt.ErrInvalidConfig)
	assert.ErrorContains(t, err, "ClusterCIDRs[0] is not a valid prefix")

	// Any single bit is a mark (kube-proxy's --iptables-masquerade-bit 0..31).
	for _, mark := range []uint32{1, 0x4000, 1 << 31} {
		_, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv6, MasqueradeMark: mark}, sipt.WithHairpinChains())
		assert.NoError(t, err, "%#x", mark)
	}

	// Nil arguments are refused, not a panic in New or the first Sync.
	chains := sipt.WithHairpinChains()
	for _, c := range []struct {
		name  string
		table *ipt.IPTables
		tr    *services.Tracker
	}{
		{"nil IPTables", nil, tr},
		{"nil Tracker", table, nil},
		{"both nil", nil, nil},
	} {
		assert.NotPanics(t, func() {
			_, err := sipt.New(c.table, c.tr, sipt.Config{Family: ipt.IPv6}, chains)
			assert.ErrorIs(t, err, sipt.ErrInvalidConfig, c.name)
		}, c.name)
	}

	// The default hairpin set needs the kernel: over ipt.Fake, New asks
	// for WithHairpinSet or WithHairpinChains; both at once are refused.
	_, err = sipt.New(table, tr, sipt.Config{Family: ipt.IPv6})
	assert.ErrorIs(t, err, sipt.ErrInvalidConfig)
	assert.ErrorContains(t, err, "WithHairpinChains")
	_, err = sipt.New(table, tr, sipt.Config{Family: ipt.IPv6}, sipt.WithHairpinChains(),
		sipt.WithHairpinSet(ipsets.New(ipsets.NewFake(), ipsets.WithPrefix(setPrefix))))
	assert.ErrorIs(t, err, sipt.ErrInvalidConfig)

	// LocalhostNodePorts writes route_localnet: with an IPTables in
	// another namespace, only through a WithSysctl that reaches it.
	nsTable, err := sipt.NewIPTables(ipt.IPv4, ipt.BackendNFT, ipt.WithNetns("node1"))
	require.NoError(t, err)
	assert.Equal(t, "node1", nsTable.Netns())
	_, err = sipt.New(nsTable, tr, sipt.Config{Family: ipt.IPv4, LocalhostNodePorts: true}, sipt.WithHairpinChains())
	assert.ErrorIs(t, err, sipt.ErrInvalidConfig)
	assert.ErrorContains(t, err, "WithSysctl")
	_, err = sipt.New(nsTable, tr, sipt.Config{Family: ipt.IPv4, LocalhostNodePorts: true},
		sipt.WithSysctl(func(string, string) error { return nil }), sipt.WithHairpinChains())
	assert.NoError(t, err)

	// The hairpin IPSets must not own the policy compiler's sets, and its
	// set's name must fit the kernel's 31 bytes.
	tests := []struct {
		prefix  string
		wantErr string
	}{
		{prefix: ipsets.DefaultPrefix, wantErr: "overlaps"},
		{prefix: "tabby-svc-", wantErr: "overlaps"},
		{prefix: "tab", wantErr: "overlaps"},
		{prefix: "A-VERY-LONG-PREFIX-FOR-SET", wantErr: "hairpin ipsets"},
		{prefix: "SEVENTEEN-CHARS-PREFIX-", wantErr: "hairpin ipsets"}, // 23 bytes: the IPSets' temporary names would not fit
		{prefix: "TABBY-"},
		{prefix: "SIXTEEN-CHARS-PREFIX-"}, // 21 bytes
	}
	for _, tc := range tests {
		_, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv6},
			sipt.WithHairpinSet(ipsets.New(ipsets.NewFake(), ipsets.WithPrefix(tc.prefix))))
		if tc.wantErr == "" {
			assert.NoError(t, err, tc.prefix)
			continue
		}
		assert.ErrorIs(t, err, sipt.ErrInvalidConfig, tc.prefix)
		assert.ErrorContains(t, err, tc.wantErr, tc.prefix)
	}
}

func trace(t *testing.T, fake *ipt.Fake, src, dst, proto string, port uint16, fromHost bool) []string {
	t.Helper()
	return st.Trace(t, tracer(fake), src, dst, proto, port, fromHost)
}

func tracer(fake *ipt.Fake) st.Tracer {
	return func(p services.TracePacket) ([]services.TraceOutcome, error) {
		return sipt.Trace(fake, []netip.Addr{netip.MustParseAddr(st.NodeIP)}, p)
	}
}

// TestTrace follows the shared trace cases (the same as services/nftables,
// except that node ports answer on 127.0.0.1) through the fake.
func TestTrace(t *testing.T) {
	fake, tr, p := newFake(t)
	st.Scenario(tr)
	require.NoError(t, p.Sync(context.Background()))
	st.RunTraceCases(t, st.TraceCases(true), tracer(fake))
	// A neighbour's packet for 127.0.0.1 is not DNATed and the guard drops it.
	assert.Equal(t, []string{"DROP"}, trace(t, fake, "192.168.0.99", "127.0.0.1", "tcp", 30080, false))
	// Three endpoints: each reachable through the statistic chain.
	tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", st.WebPorts,
		st.Endpoint{IP: "10.244.2.8"}, st.Endpoint{IP: "10.244.2.9"}, st.Endpoint{IP: "10.244.2.10"}))
	require.NoError(t, p.Sync(context.Background()))
	assert.Equal(t, []string{"DNAT 10.244.2.10:8080", "DNAT 10.244.2.8:8080", "DNAT 10.244.2.9:8080"},
		trace(t, fake, "10.244.3.3", "10.96.0.20", "tcp", 80, false))
}

func TestIPv6(t *testing.T) {
	fake := ipt.NewFake()
	table, err := sipt.NewIPTables(ipt.IPv6, ipt.BackendNFT, ipt.WithExecer(fake))
	require.NoError(t, err)
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv6, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00:244::/64")}}, sipt.WithHairpinChains())
	require.NoError(t, err)
	tr.OnServiceUpdate(st.Service("default", "web", "fd00:96::20", st.Port("http", v1.ProtocolTCP, 80, 30080), func(s *v1.Service) {
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	}))
	sl := st.Slice("default", "web", "web-1", st.WebPorts, st.Endpoint{IP: "fd00:244::8", Node: "node-a"}, st.Endpoint{IP: "fd00:244::9", Node: "node-b"})
	sl.AddressType = "IPv6"
	tr.OnEndpointSliceUpdate(sl)
	// An IPv4 Service renders nothing into the IPv6 tables.
	tr.OnServiceUpdate(st.Service("default", "v4", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0)))
	require.NoError(t, p.Sync(context.Background()))
	d := fake.Dump()
	assert.Contains(t, d, "# ip6tables-nft")
	assert.Contains(t, d, "-j DNAT --to-destination [fd00:244::8]:8080")
	assert.Contains(t, d, "--mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	assert.Contains(t, d, "! -d ::1/128")
	assert.NotContains(t, d, "10.96.0.1")
	assert.NotContains(t, d, "TABBY-FIREWALL", "the localnet guard is IPv4 only")
}

// TestHealthServer: a Sync hands the health server what it applied; a
// failed Apply hands nothing, and the next successful one everything.
func TestHealthServer(t *testing.T) {
	hs, hp, status := st.HealthServer(t)
	fake, tr, p := newFake(t, sipt.WithHealthServer(hs))
	st.HealthChecks(t, tr, p.Sync, hp, status, func() { fake.FailNext(1, errors.New("boom")) })
}

// TestHairpinLayout: endpoints have no chain of their own; a client
// that is an endpoint is masqueraded only when it lands on itself, with
// and without affinity. A port whose endpoints share an address with
// different ports keeps kube-proxy's SEP chain per endpoint.
func TestHairpinLayout(t *testing.T) {
	fake, tr, p := newFake(t)
	ctx := context.Background()
	st.Scenario(tr)
	require.NoError(t, p.Sync(ctx))
	sepChains := func() bool { return strings.Contains(fake.Dump(), ":TABBY-SEP-") }
	assert.False(t, sepChains(), "no endpoint chain")
	assert.Equal(t, []string{"DNAT 10.244.1.12:8080 masq"}, trace(t, fake, "10.244.1.12", "10.96.0.70", "tcp", 80, false), "affinity, from the endpoint")
	assert.Equal(t, []string{"DNAT 10.244.1.9:8080", "DNAT 10.244.2.9:8080 masq"}, trace(t, fake, "10.244.2.9", "203.0.113.7", "tcp", 80, false),
		"local policy from a pod endpoint goes cluster-wide")

	// The same pod address with two ports (a rolling targetPort change).
	tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-2", []st.SlicePort{{Name: "http", Proto: "TCP", Port: 8081}},
		st.Endpoint{IP: "10.244.2.8", Node: "node-a"}))
	require.NoError(t, p.Sync(ctx))
	assert.True(t, sepChains())
	assert.Equal(t, []string{"DNAT 10.244.2.8:8080", "DNAT 10.244.2.8:8081"}, trace(t, fake, "10.244.3.3", "10.96.0.20", "tcp", 80, false))
	assert.Equal(t, []string{"DNAT 10.244.2.8:8080 masq", "DNAT 10.244.2.8:8081 masq"}, trace(t, fake, "10.244.2.8", "10.96.0.20", "tcp", 80, false))
	// Back to one port: the SEP chains go.
	tr.OnEndpointSliceDelete(st.Slice("default", "web", "web-2", nil))
	require.NoError(t, p.Sync(ctx))
	assert.False(t, sepChains())
	assert.Equal(t, []string{"DNAT 10.244.2.8:8080"}, trace(t, fake, "10.244.3.3", "10.96.0.20", "tcp", 80, false))

	// The same with more endpoints than the hairpin check scans linearly.
	var many []st.Endpoint
	for i := range 20 {
		many = append(many, st.Endpoint{IP: fmt.Sprintf("10.244.5.%d", i+1), Node: "node-a"})
	}
	tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", st.WebPorts, many...))
	require.NoError(t, p.Sync(ctx))
	assert.False(t, sepChains())
	assert.Len(t, trace(t, fake, "10.244.3.3", "10.96.0.20", "tcp", 80, false), 20)
	tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-2", []st.SlicePort{{Name: "http", Proto: "TCP", Port: 8081}},
		st.Endpoint{IP: "10.244.5.20", Node: "node-a"}))
	require.NoError(t, p.Sync(ctx))
	assert.True(t, sepChains())
	assert.Len(t, trace(t, fake, "10.244.3.3", "10.96.0.20", "tcp", 80, false), 21)
}

// Sync after Close returns ErrClosed and writes nothing, in both hairpin
// layouts, whatever changed (a rule-only change used to be written, a
// set change to fail half-way through with ipsets' "handle closed"),
// and the tracker's changes stay pending.
func TestSyncAfterClose(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		opts []sipt.Option
	}{
		{"hairpin chains", []sipt.Option{sipt.WithHairpinChains()}},
		{"hairpin set", []sipt.Option{sipt.WithHairpinSet(ipsets.New(ipsets.NewFake(), ipsets.WithPrefix(setPrefix)))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake, tr, p := newFakeWith(t, c.opts...)
			tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 0)))
			require.NoError(t, p.Sync(ctx))
			before := fake.Dump()
			require.NoError(t, p.Close())
			require.NoError(t, p.Close(), "a second Close is a no-op")
			for _, change := range []struct {
				name string
				do   func()
			}{
				{"nothing", func() {}},
				{"service without endpoints (rules only)", func() {
					tr.OnServiceUpdate(st.Service("default", "empty", "10.96.0.11", st.Port("http", v1.ProtocolTCP, 80, 0)))
				}},
				{"endpoint (set member)", func() {
					tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", st.WebPorts, st.Endpoint{IP: "10.244.1.5", Node: "node-a"}))
				}},
			} {
				change.do()
				assert.ErrorIs(t, p.Sync(ctx), sipt.ErrClosed, change.name)
				p.QueueResync()
				assert.ErrorIs(t, p.Sync(ctx), sipt.ErrClosed, change.name+", full")
				assert.Equal(t, before, fake.Dump(), change.name)
			}
			assert.Len(t, tr.Changes(), 2, "the changes were not consumed")
		})
	}
}
