package nftables_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/services"
	snft "github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestServiceCIDRs: with Config.ServiceCIDRs, a new connection to an
// address inside them that is no cluster IP in use is dropped after NAT,
// from a pod and from the node (kube-proxy's nftables mode), while
// cluster IPs behave as before (the Scenario's trace cases, where the
// unserved port of a cluster IP is still rejected: the reject rule comes
// first) and addresses outside the CIDRs are left alone.
func TestServiceCIDRs(t *testing.T) {
	fake := knftables.NewFake(knftables.IPv4Family, snft.DefaultTable)
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	// A nested and an unmasked prefix: one element, the outer, masked.
	p, err := snft.New(fake, tr, snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: prefixes("10.244.0.0/16"),
		NodeIPs: []netip.Addr{nodeIP}, ServiceCIDRs: prefixes("10.96.1.0/24", "10.96.7.7/16")})
	require.NoError(t, err)
	scenario(tr)
	require.NoError(t, p.Sync(context.Background()))

	cases := st.TraceCases(false)
	for i, c := range cases {
		if c.Name == "not a service" {
			cases[i].Want = []string{"DROP"} // 10.96.0.99: unallocated
		}
	}
	st.RunTraceCases(t, cases, tracer(fake))
	assert.Equal(t, []string{"DROP"}, trace(t, fake, "192.168.0.10", "10.96.0.99", "tcp", 80, true), "from the node")
	assert.Equal(t, []string{"DROP"}, trace(t, fake, "10.244.3.3", "10.96.255.255", "udp", 53, false))
	assert.Equal(t, []string{"ACCEPT"}, trace(t, fake, "10.244.3.3", "10.97.0.1", "tcp", 80, false), "outside the CIDRs")

	dump := fake.Dump()
	assert.Contains(t, dump, "add set ip tabby-services service-cidrs { type ipv4_addr ; flags interval ; }")
	assert.Contains(t, dump, "add element ip tabby-services service-cidrs { 10.96.0.0/16 }")
	assert.NotContains(t, dump, "10.96.1.0/24")
	assert.Contains(t, dump, "add rule ip tabby-services cluster-ips-check ip daddr @cluster-ips reject\n"+
		"add rule ip tabby-services cluster-ips-check ip daddr @service-cidrs drop\n")
}

// TestServiceCIDRsEmpty: without ServiceCIDRs the table has no
// service-cidrs set and cluster-ips-check only rejects (the trace cases
// unchanged: an unallocated address is left alone).
func TestServiceCIDRsEmpty(t *testing.T) {
	fake, tr, p := newFake(t)
	scenario(tr)
	require.NoError(t, p.Sync(context.Background()))
	assert.NotContains(t, fake.Dump(), "service-cidrs")
	assert.Equal(t, []string{"ACCEPT"}, trace(t, fake, "10.244.3.3", "10.96.0.99", "tcp", 80, false))
	assert.Equal(t, []string{"ACCEPT"}, trace(t, fake, "192.168.0.10", "10.96.0.99", "tcp", 80, true))
}

// TestSetServiceCIDRs: changing the CIDRs is only element changes while
// there are some; the first adds the set and the drop rule, removing the
// last takes them away; a sync without a change writes nothing; each
// incremental result equals a full resync.
func TestSetServiceCIDRs(t *testing.T) {
	rec := &recorder{Fake: knftables.NewFake(knftables.IPv4Family, snft.DefaultTable)}
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	p, err := snft.New(rec, tr, snft.Config{Family: knftables.IPv4Family})
	require.NoError(t, err)
	tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.5", st.Port("http", v1.ProtocolTCP, 80, 0)))
	ctx := context.Background()
	require.NoError(t, p.Sync(ctx))
	tt := func(dst string) []string { return trace(t, rec.Fake, "10.244.3.3", dst, "tcp", 80, false) }
	assert.Equal(t, []string{"ACCEPT"}, tt("10.96.0.99"))

	step := func(want string, cidrs ...string) {
		t.Helper()
		n := len(rec.txs)
		require.NoError(t, p.SetServiceCIDRs(prefixes(cidrs...)))
		require.NoError(t, p.Sync(ctx))
		if want == "" {
			assert.Len(t, rec.txs, n, "no transaction")
		} else {
			require.Len(t, rec.txs, n+1)
			assert.Equal(t, want, rec.txs[n])
		}
		inc := rec.Dump()
		p.QueueResync()
		require.NoError(t, p.Sync(ctx))
		assert.Equal(t, inc, rec.Dump(), "incremental equals a full resync")
	}
	step(`add set ip tabby-services service-cidrs { type ipv4_addr ; flags interval ; }
add element ip tabby-services service-cidrs { 10.96.0.0/16 }
add rule ip tabby-services cluster-ips-check ip daddr @service-cidrs drop
`, "10.96.0.0/16")
	assert.Equal(t, []string{"DROP"}, tt("10.96.0.99"))
	assert.Equal(t, []string{"REJECT"}, tt("10.96.0.5"), "allocated, no endpoints")
	assert.Equal(t, []string{"ACCEPT"}, tt("10.100.0.1"))

	step("", "10.96.0.0/16")
	step(`delete element ip tabby-services service-cidrs { 10.96.0.0/16 }
add element ip tabby-services service-cidrs { 10.96.0.0/12 }
add element ip tabby-services service-cidrs { 172.30.0.0/16 }
`, "172.30.0.0/16", "10.96.0.0/12")
	assert.Equal(t, []string{"DROP"}, tt("10.100.0.1"))
	assert.Equal(t, []string{"DROP"}, tt("172.30.1.1"))

	step(`flush chain ip tabby-services cluster-ips-check
add rule ip tabby-services cluster-ips-check ip daddr @cluster-ips reject
delete set ip tabby-services service-cidrs
`)
	assert.NotContains(t, rec.Dump(), "service-cidrs")
	assert.Equal(t, []string{"ACCEPT"}, tt("10.96.0.99"))
	assert.Equal(t, []string{"REJECT"}, tt("10.96.0.5"))
}

// TestServiceCIDRsIPv6: the ip6 table drops unallocated addresses of
// its IPv6 service CIDR.
func TestServiceCIDRsIPv6(t *testing.T) {
	fake := knftables.NewFake(knftables.IPv6Family, snft.DefaultTable)
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	p, err := snft.New(fake, tr, snft.Config{Family: knftables.IPv6Family, ServiceCIDRs: prefixes("fd00:10:96::/112")})
	require.NoError(t, err)
	tr.OnServiceUpdate(st.Service("default", "six", "fd00:10:96::20", st.Port("http", v1.ProtocolTCP, 80, 0)))
	require.NoError(t, p.Sync(context.Background()))
	assert.Contains(t, fake.Dump(), "add rule ip6 tabby-services cluster-ips-check ip6 daddr @service-cidrs drop")
	assert.Contains(t, fake.Dump(), "add element ip6 tabby-services service-cidrs { fd00:10:96::/112 }")
	tracer6 := func(p services.TracePacket) ([]services.TraceOutcome, error) {
		return snft.Trace(fake, snft.DefaultTable, nil, p)
	}
	assert.Equal(t, []string{"DROP"}, st.Trace(t, tracer6, "fd00:10:244::3", "fd00:10:96::99", "tcp", 80, false))
	assert.Equal(t, []string{"REJECT"}, st.Trace(t, tracer6, "fd00:10:244::3", "fd00:10:96::20", "tcp", 81, false))
	assert.Equal(t, []string{"ACCEPT"}, st.Trace(t, tracer6, "fd00:10:244::3", "fd00:10:97::1", "tcp", 80, false))
}

// TestServiceCIDRsInvalid: New and SetServiceCIDRs refuse a prefix that
// is invalid or of the other family, with ErrInvalidConfig naming it;
// SetServiceCIDRs then changes nothing.
func TestServiceCIDRsInvalid(t *testing.T) {
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	for _, tt := range []struct {
		name  string
		fam   knftables.Family
		cidrs []netip.Prefix
		msg   string
	}{
		{"zero prefix", knftables.IPv4Family, []netip.Prefix{{}}, "ServiceCIDRs[0]"},
		{"v6 in ip", knftables.IPv4Family, prefixes("10.96.0.0/16", "fd00:10:96::/112"), "ServiceCIDRs[1] fd00:10:96::/112 is not a family ip prefix"},
		{"v4 in ip6", knftables.IPv6Family, prefixes("10.96.0.0/16"), "not a family ip6 prefix"},
		{"v4-mapped in ip6", knftables.IPv6Family, prefixes("::ffff:10.96.0.0/112"), "not a family ip6 prefix"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := snft.Config{Family: tt.fam, ServiceCIDRs: tt.cidrs}
			require.ErrorIs(t, cfg.Validate(), snft.ErrInvalidConfig)
			_, err := snft.New(knftables.NewFake(tt.fam, snft.DefaultTable), tr, cfg)
			require.ErrorIs(t, err, snft.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.msg)

			fake := knftables.NewFake(tt.fam, snft.DefaultTable)
			p, err := snft.New(fake, tr, snft.Config{Family: tt.fam})
			require.NoError(t, err)
			require.ErrorIs(t, p.SetServiceCIDRs(tt.cidrs), snft.ErrInvalidConfig)
			require.NoError(t, p.Sync(context.Background()))
			assert.NotContains(t, fake.Dump(), "service-cidrs")
		})
	}
	require.NoError(t, snft.Config{Family: knftables.IPv4Family, ServiceCIDRs: prefixes("10.96.0.0/12")}.Validate())
	require.ErrorIs(t, snft.Config{Family: "inet"}.Validate(), snft.ErrInvalidConfig)
}

// TestConfigValidate: the pod CIDRs and the masquerade mark are checked
// as services/iptables checks them, except that pod CIDRs of the other
// family are ignored (kube-proxy's dual-stack --cluster-cidr).
func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  snft.Config
		msg  string // "" for valid
	}{
		{"defaults", snft.Config{Family: knftables.IPv4Family}, ""},
		{"dual-stack pod CIDRs", snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: prefixes("10.244.0.0/16", "fd00:244::/64")}, ""},
		{"zero pod CIDR", snft.Config{Family: knftables.IPv6Family, ClusterCIDRs: []netip.Prefix{{}}}, "ClusterCIDRs[0]"},
		{"one mark bit", snft.Config{Family: knftables.IPv4Family, MasqueradeMark: 0x8000}, ""},
		{"three mark bits", snft.Config{Family: knftables.IPv4Family, MasqueradeMark: 0x7}, "MasqueradeMark 0x7"},
		{"all mark bits", snft.Config{Family: knftables.IPv4Family, MasqueradeMark: 0xffffffff}, "not a single bit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.msg == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, snft.ErrInvalidConfig)
			assert.ErrorContains(t, err, tt.msg)
		})
	}
}
