package nftables_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/services"
	snft "github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

var nodeIP = netip.MustParseAddr(st.NodeIP)

func newFake(t testing.TB, opts ...snft.Option) (*knftables.Fake, *services.Tracker, *snft.Proxier) {
	t.Helper()
	fake := knftables.NewFake(knftables.IPv4Family, snft.DefaultTable)
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	p, err := snft.New(fake, tr, snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		NodeIPs: []netip.Addr{nodeIP}}, opts...)
	require.NoError(t, err)
	return fake, tr, p
}

// recorder is a knftables.Fake that keeps the text of every transaction
// it runs.
type recorder struct {
	*knftables.Fake
	txs []string
}

func (r *recorder) Run(ctx context.Context, tx *knftables.Transaction) error {
	r.txs = append(r.txs, tx.String())
	return r.Fake.Run(ctx, tx)
}

var (
	dnsPorts = st.DNSPorts
	webPorts = st.WebPorts
)

// scenario loads a set of Services covering every feature (shared with
// the iptables backend).
func scenario(tr *services.Tracker) { st.Scenario(tr) }

func trace(t *testing.T, fake *knftables.Fake, src, dst string, proto string, port uint16, fromHost bool) []string {
	t.Helper()
	return st.Trace(t, tracer(fake), src, dst, proto, port, fromHost)
}

func tracer(fake *knftables.Fake) st.Tracer {
	return func(p services.TracePacket) ([]services.TraceOutcome, error) {
		return snft.Trace(fake, snft.DefaultTable, []netip.Addr{nodeIP}, p)
	}
}

func TestTrace(t *testing.T) {
	fake, tr, p := newFake(t)
	scenario(tr)
	require.NoError(t, p.Sync(context.Background()))
	st.RunTraceCases(t, st.TraceCases(false), tracer(fake))
	assert.Contains(t, fake.Dump(), "update @affinity-default/sticky/tcp/http__10.244.1.12/8080 { ip saddr }")
	assert.Contains(t, fake.Dump(), "timeout 10800s")
}

// TestTraceBadInput: Trace returns an error, never panics, for a nil
// Fake (it used to dereference it) or a table the Fake does not hold.
func TestTraceBadInput(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fake  *knftables.Fake
		table string
		msg   string
	}{
		{"nil fake", nil, snft.DefaultTable, "nil knftables.Fake"},
		{"no table", knftables.NewFake(knftables.IPv4Family, snft.DefaultTable), snft.DefaultTable, "no table"},
		{"other table", knftables.NewFake(knftables.IPv4Family, "x"), snft.DefaultTable, "no table"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() {
				_, err = snft.Trace(tt.fake, tt.table, nil, snft.Packet{})
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
}

// TestIncremental checks that a sync carries only the changed service and
// that the result equals a full render of the same state.
// TestSourceRangesIncremental: changing a Service's
// loadBalancerSourceRanges writes only its firewall set's elements;
// removing them removes its firewall objects; without a range holding
// the node, the LB IP as source is dropped.
func TestSourceRangesIncremental(t *testing.T) {
	fake, tr, p := newFake(t)
	scenario(tr)
	ctx := context.Background()
	require.NoError(t, p.Sync(ctx))
	fw := func(ranges ...string) {
		tr.OnServiceUpdate(st.Service("default", "fw", "10.96.0.90", st.Port("http", v1.ProtocolTCP, 80, 30130),
			st.LoadBalancer("203.0.113.8"), st.SourceRanges(ranges...)))
		require.NoError(t, p.Sync(ctx))
	}
	fw("198.51.100.0/24", "198.51.99.0/24")
	assert.Equal(t, `delete element ip tabby-services firewall-sources-default/fw/tcp/http { 192.168.0.0/24 }
delete element ip tabby-services firewall-sources-default/fw/tcp/http { 203.0.113.8/32 }
add element ip tabby-services firewall-sources-default/fw/tcp/http { 198.51.99.0/24 }
`, fake.LastTransaction.String())
	assert.Equal(t, []string{"DNAT 10.244.2.13:8080 masq"}, trace(t, fake, "198.51.99.1", "203.0.113.8", "tcp", 80, false))
	assert.Equal(t, []string{"DROP"}, trace(t, fake, "203.0.113.8", "203.0.113.8", "tcp", 80, true), "no range holds the node")
	assert.Equal(t, []string{"DROP"}, trace(t, fake, "192.168.0.10", "203.0.113.8", "tcp", 80, true))

	fw()
	assert.NotContains(t, fake.Dump(), "firewall-sources-default/fw")
	assert.NotContains(t, fake.Dump(), "firewall-default/fw")
	assert.Equal(t, []string{"DNAT 10.244.2.13:8080 masq"}, trace(t, fake, "198.51.99.1", "203.0.113.8", "tcp", 80, false))

	// Incremental equals a full resync.
	inc := fake.Dump()
	p.QueueResync()
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, inc, fake.Dump())
}

func TestIncremental(t *testing.T) {
	fake, tr, p := newFake(t)
	scenario(tr)
	ctx := context.Background()
	require.NoError(t, p.Sync(ctx))

	require.NoError(t, p.Sync(ctx))
	before := fake.LastTransaction

	// One endpoint of dns replaced.
	tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", dnsPorts,
		st.Endpoint{IP: "10.244.1.5", Node: "node-a"}, st.Endpoint{IP: "10.244.2.99", Node: "node-b"}))
	require.NoError(t, p.Sync(ctx))
	tx := fake.LastTransaction.String()
	assert.NotSame(t, before, fake.LastTransaction)
	// Golden: only elements: the endpoint map's slot of the endpoint
	// that went, now pointing at the one that came, and the hairpin
	// elements of both (no chain or rule: those would make the kernel
	// re-validate the whole table).
	assert.Equal(t, `delete element ip tabby-services service-endpoints-udp { 10.96.0.10 . 53 . 2 }
delete element ip tabby-services hairpin { 10.244.2.7 . 10.244.2.7 }
add element ip tabby-services hairpin { 10.244.2.99 . 10.244.2.99 }
add element ip tabby-services service-endpoints-udp { 10.96.0.10 . 53 . 2 : 10.244.2.99 . 53 }
`, tx)
	assert.Equal(t, []string{"DNAT 10.244.1.5:53", "DNAT 10.244.2.99:53"}, trace(t, fake, "10.244.3.3", "10.96.0.10", "udp", 53, false))

	// Last endpoint of web goes: the cluster IP moves to the reject map.
	tr.OnEndpointSliceDelete(st.Slice("default", "web", "web-1", webPorts))
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, []string{"REJECT"}, trace(t, fake, "10.244.3.3", "10.96.0.20", "tcp", 80, false))

	// Service deleted: nothing of it remains.
	tr.OnServiceDelete(st.Service("default", "web", "10.96.0.20"))
	require.NoError(t, p.Sync(ctx))
	assert.NotContains(t, fake.Dump(), "default/web/")
	assert.NotContains(t, fake.Dump(), "10.96.0.20")
	assert.NotContains(t, fake.Dump(), "10.244.2.8 . 10.244.2.8", "hairpin element of web's only endpoint released")
	assert.Contains(t, fake.Dump(), "10.244.1.5 . 10.244.1.5", "hairpin element still used by dns kept")

	// Incremental result equals a fresh full render of the same state.
	incremental := fake.Dump()
	p.QueueResync()
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, incremental, fake.Dump())
}

// TestEndpointCountChange: a port whose endpoint count changes to one
// another port already has changes only elements; a count nobody had
// rewrites the protocol's dispatch chain, never the service's chain.
func TestEndpointCountChange(t *testing.T) {
	fake, tr, p := newFake(t)
	ctx := context.Background()
	eps := func(n int) []st.Endpoint {
		var out []st.Endpoint
		for i := range n {
			out = append(out, st.Endpoint{IP: fmt.Sprintf("10.244.7.%d", i+1)})
		}
		return out
	}
	// c keeps count 2 in use when a leaves it.
	for n, count := range map[string]int{"a": 2, "b": 3, "c": 2} {
		tr.OnServiceUpdate(st.Service("default", n, map[string]string{"a": "10.96.7.1", "b": "10.96.7.2", "c": "10.96.7.3"}[n], st.Port("http", v1.ProtocolTCP, 80, 0)))
		tr.OnEndpointSliceUpdate(st.Slice("default", n, n+"-1", webPorts, eps(count)...))
	}
	require.NoError(t, p.Sync(ctx))

	tr.OnEndpointSliceUpdate(st.Slice("default", "a", "a-1", webPorts, eps(3)...))
	require.NoError(t, p.Sync(ctx))
	assert.NotContains(t, fake.LastTransaction.String(), "rule")
	assert.NotContains(t, fake.LastTransaction.String(), "chain")
	assert.Len(t, trace(t, fake, "10.244.3.3", "10.96.7.1", "tcp", 80, false), 3)

	// The new count's rule and slots come in one transaction, the old
	// slots go in a second one (retireSlots): a packet the kernel is
	// running through the old rule as the first commits still finds them.
	rec := &recorder{Fake: fake}
	p2, err := snft.New(rec, tr, snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		NodeIPs: []netip.Addr{nodeIP}})
	require.NoError(t, err)
	require.NoError(t, p2.Sync(ctx)) // its first Sync recreates the table
	rec.txs = nil
	tr.OnEndpointSliceUpdate(st.Slice("default", "a", "a-1", webPorts, eps(4)...))
	require.NoError(t, p2.Sync(ctx))
	require.Len(t, rec.txs, 2)
	tx := rec.txs[0]
	assert.Contains(t, tx, "flush chain ip tabby-services endpoints-tcp\n")
	assert.Contains(t, tx, "add element ip tabby-services service-endpoints-tcp { 10.96.7.1 . 80 . 6 : 10.244.7.1 . 8080 }")
	assert.NotContains(t, tx, "delete element")
	assert.NotContains(t, tx, "service-default/a")
	assert.Equal(t, "delete element ip tabby-services service-endpoints-tcp { 10.96.7.1 . 80 . 3 }\n"+
		"delete element ip tabby-services service-endpoints-tcp { 10.96.7.1 . 80 . 4 }\n"+
		"delete element ip tabby-services service-endpoints-tcp { 10.96.7.1 . 80 . 5 }\n", rec.txs[1])
	p = p2
	assert.Len(t, trace(t, fake, "10.244.3.3", "10.96.7.1", "tcp", 80, false), 4)
	assert.Len(t, trace(t, fake, "10.244.3.3", "10.96.7.2", "tcp", 80, false), 3)

	sortedDump := func() []string {
		lines := strings.Split(fake.Dump(), "\n")
		slices.Sort(lines)
		return lines
	}
	incremental := sortedDump()
	p.QueueResync()
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, incremental, sortedDump())
}

// TestHairpinShared: two services share an endpoint; its hairpin element
// stays until the last one goes.
func TestHairpinShared(t *testing.T) {
	fake, tr, p := newFake(t)
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		tr.OnServiceUpdate(st.Service("default", n, map[string]string{"a": "10.96.1.1", "b": "10.96.1.2"}[n], st.Port("http", v1.ProtocolTCP, 80, 0)))
		tr.OnEndpointSliceUpdate(st.Slice("default", n, n+"-1", webPorts, st.Endpoint{IP: "10.244.5.5"}))
	}
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, []string{"DNAT 10.244.5.5:8080 masq"}, trace(t, fake, "10.244.5.5", "10.96.1.2", "tcp", 80, false), "hairpin masqueraded")
	assert.Equal(t, []string{"DNAT 10.244.5.5:8080"}, trace(t, fake, "10.244.5.6", "10.96.1.2", "tcp", 80, false))
	tr.OnServiceDelete(st.Service("default", "a", "10.96.1.1"))
	require.NoError(t, p.Sync(ctx))
	assert.Equal(t, []string{"DNAT 10.244.5.5:8080 masq"}, trace(t, fake, "10.244.5.5", "10.96.1.2", "tcp", 80, false))
	tr.OnServiceDelete(st.Service("default", "b", "10.96.1.2"))
	require.NoError(t, p.Sync(ctx))
	assert.NotContains(t, fake.Dump(), "10.244.5.5")
}

// TestHealthServer: every successful Sync hands the health server what it
// applied: the healthCheckNodePort answers 200 while the node has a ready
// local endpoint and 503 once it has none.
func TestHealthServer(t *testing.T) {
	hs, hp, status := st.HealthServer(t)
	_, tr, p := newFake(t, snft.WithHealthServer(hs))
	st.HealthChecks(t, tr, p.Sync, hp, status, nil)
}

// TestBothPoliciesLocalAffinity: with ClientIP affinity and both
// traffic policies Local, pods and the node short-circuit to a chain
// balancing over the cluster-wide endpoints (the service chain holds the
// local ones); outside clients still get the local one only. An
// endpoint change then rewrites that chain, and the Service going away
// removes it.
func TestBothPoliciesLocalAffinity(t *testing.T) {
	fake, tr, p := newFake(t)
	svc := st.Service("default", "stick", "10.96.0.85", st.Port("http", v1.ProtocolTCP, 80, 30160), func(s *v1.Service) {
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		local := v1.ServiceInternalTrafficPolicyLocal
		s.Spec.InternalTrafficPolicy = &local
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	})
	tr.OnServiceUpdate(svc)
	tr.OnEndpointSliceUpdate(st.Slice("default", "stick", "stick-1", webPorts,
		st.Endpoint{IP: "10.244.1.20", Node: "node-a"}, st.Endpoint{IP: "10.244.2.20", Node: "node-b"}))
	require.NoError(t, p.Sync(context.Background()))
	for _, tt := range []struct {
		name, src, dst string
		port           uint16
		fromHost       bool
		want           []string
	}{
		{"pod to the node port", "10.244.3.3", st.NodeIP, 30160, false, []string{"DNAT 10.244.1.20:8080", "DNAT 10.244.2.20:8080"}},
		{"node to the node port", st.NodeIP, st.NodeIP, 30160, true, []string{"DNAT 10.244.1.20:8080 masq", "DNAT 10.244.2.20:8080 masq"}},
		{"outside to the node port", "198.51.100.1", st.NodeIP, 30160, false, []string{"DNAT 10.244.1.20:8080"}},
		{"pod to the cluster IP", "10.244.3.3", "10.96.0.85", 80, false, []string{"DNAT 10.244.1.20:8080"}},
	} {
		assert.Equal(t, tt.want, trace(t, fake, tt.src, tt.dst, "tcp", tt.port, tt.fromHost), tt.name)
	}
	assert.Contains(t, fake.Dump(), "cluster-default/stick/tcp/http")

	tr.OnEndpointSliceUpdate(st.Slice("default", "stick", "stick-1", webPorts,
		st.Endpoint{IP: "10.244.1.20", Node: "node-a"}, st.Endpoint{IP: "10.244.2.21", Node: "node-b"}))
	require.NoError(t, p.Sync(context.Background()))
	assert.Equal(t, []string{"DNAT 10.244.1.20:8080", "DNAT 10.244.2.21:8080"}, trace(t, fake, "10.244.3.3", st.NodeIP, "tcp", 30160, false))

	tr.OnServiceDelete(svc)
	require.NoError(t, p.Sync(context.Background()))
	assert.NotContains(t, fake.Dump(), "stick")
}

// TestNewRejectsMismatchedInterface: a Config whose family or table is
// not the knftables.Interface's, or a nil Interface or Tracker, fails in
// New with ErrInvalidConfig naming it, not at the first Sync (a nil
// Tracker used to pass New and panic in Sync).
func TestNewRejectsMismatchedInterface(t *testing.T) {
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	nl4, err := snft.NewNetlink(knftables.IPv4Family, snft.DefaultTable, "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = nl4.Close() })
	for _, tt := range []struct {
		name       string
		nft        knftables.Interface
		cfg        snft.Config
		msg        string
		nilTracker bool
	}{
		{"v6 config, v4 fake", knftables.NewFake(knftables.IPv4Family, snft.DefaultTable), snft.Config{Family: knftables.IPv6Family}, "family ip6", false},
		{"v6 config, v4 netlink", nl4, snft.Config{Family: knftables.IPv6Family}, "writes family ip table", false},
		{"other table", knftables.NewFake(knftables.IPv4Family, "other"), snft.Config{Family: knftables.IPv4Family}, `table "other"`, false},
		{"default table, fake of another", knftables.NewFake(knftables.IPv4Family, "x"), snft.Config{Family: knftables.IPv4Family, Table: snft.DefaultTable}, `table "x"`, false},
		{"nil interface", nil, snft.Config{Family: knftables.IPv4Family}, "nil knftables.Interface", false},
		{"zero Netlink", &snft.Netlink{}, snft.Config{Family: knftables.IPv4Family}, "make it with NewNetlink", false},
		{"nil *Netlink", (*snft.Netlink)(nil), snft.Config{Family: knftables.IPv4Family}, "make it with NewNetlink", false},
		{"nil tracker", knftables.NewFake(knftables.IPv4Family, snft.DefaultTable), snft.Config{Family: knftables.IPv4Family}, "nil services.Tracker", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tracker := tr
			if tt.nilTracker {
				tracker = nil
			}
			var (
				p   *snft.Proxier
				err error
			)
			require.NotPanics(t, func() { p, err = snft.New(tt.nft, tracker, tt.cfg) })
			assert.Nil(t, p)
			require.ErrorIs(t, err, snft.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
	// Matching ones are accepted, the table defaulting to DefaultTable.
	_, err = snft.New(nl4, tr, snft.Config{Family: knftables.IPv4Family})
	require.NoError(t, err)
	_, err = snft.New(knftables.NewFake(knftables.IPv6Family, "t6"), tr, snft.Config{Family: knftables.IPv6Family, Table: "t6"})
	require.NoError(t, err)
}

// TestClusterIPsSet: a cluster IP is in the cluster-ips set while any
// port of it exists (reference-counted across ports), so a port no
// Service serves is rejected after NAT; once the last port goes, the
// address is left alone, and an incremental sync writes only that
// element.
func TestClusterIPsSet(t *testing.T) {
	rec := &recorder{Fake: knftables.NewFake(knftables.IPv4Family, snft.DefaultTable)}
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	p, err := snft.New(rec, tr, snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
	require.NoError(t, err)
	two := st.Service("default", "two", "10.96.0.5", st.Port("dns", v1.ProtocolUDP, 53, 0), st.Port("http", v1.ProtocolTCP, 80, 0))
	tr.OnServiceUpdate(two)
	tr.OnServiceUpdate(st.Service("default", "other", "10.96.0.6", st.Port("http", v1.ProtocolTCP, 80, 0)))
	require.NoError(t, p.Sync(context.Background()))
	tt := func(dst string, port uint16) []string {
		return trace(t, rec.Fake, "10.244.3.3", dst, "tcp", port, false)
	}
	assert.Equal(t, []string{"REJECT"}, tt("10.96.0.5", 81))
	assert.Equal(t, []string{"REJECT"}, tt("10.96.0.5", 80), "no endpoints")
	assert.Equal(t, []string{"ACCEPT"}, tt("10.96.0.7", 81), "not a cluster IP")

	// One port goes: the other keeps the address in the set.
	tr.OnServiceUpdate(st.Service("default", "two", "10.96.0.5", st.Port("dns", v1.ProtocolUDP, 53, 0)))
	require.NoError(t, p.Sync(context.Background()))
	assert.Equal(t, []string{"REJECT"}, tt("10.96.0.5", 80))
	assert.NotContains(t, rec.txs[len(rec.txs)-1], "cluster-ips")

	// The Service goes: only its element is deleted.
	tr.OnServiceDelete(two)
	require.NoError(t, p.Sync(context.Background()))
	assert.Equal(t, []string{"ACCEPT"}, tt("10.96.0.5", 81))
	assert.Equal(t, []string{"REJECT"}, tt("10.96.0.6", 81))
	assert.Contains(t, rec.txs[len(rec.txs)-1], "delete element ip tabby-services cluster-ips { 10.96.0.5 }")
}
