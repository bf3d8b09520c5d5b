package bgp

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResolvePeersFilters(t *testing.T) {
	nodes := []Node{{Name: "a", IPv4: netip.MustParseAddr("10.0.0.1")}, {Name: "b", IPv4: netip.MustParseAddr("10.0.0.2")}}
	f := BGPFilter{Name: "no-lb", Export: Filter{V4: []FilterRule{{Action: Reject, CIDR: pfx("10.96.0.0/12"), MatchOperator: In}}}}
	g := BGPFilter{Name: "remote", Export: Filter{V4: []FilterRule{{Action: Reject, Source: RemotePeers}}}}
	off := false
	cfg := Config{NodeName: "a", NodeIP: netip.MustParseAddr("10.0.0.1"), NodeToNodeMeshEnabled: &off}
	topo := Topology{Nodes: nodes, BGPFilters: []BGPFilter{f, g},
		BGPPeers: []BGPPeer{{Name: "tor", PeerIP: "10.0.0.254", ASNumber: 65000, Filters: []string{"remote", "no-lb"}}}}
	peers, err := ResolvePeers(cfg, topo)
	require.NoError(t, err)
	require.Len(t, peers, 1)
	assert.Equal(t, []BGPFilter{g, f}, peers[0].Filters, "filters in the BGPPeer's order")

	topo.BGPPeers[0].Filters = []string{"missing"}
	_, err = ResolvePeers(cfg, topo)
	assert.ErrorIs(t, err, ErrInvalidFilter)
	topo.BGPPeers[0].Filters = nil
	topo.BGPFilters = append(topo.BGPFilters, f)
	_, err = ResolvePeers(cfg, topo)
	assert.ErrorIs(t, err, ErrInvalidFilter, "duplicate filter name")
	topo.BGPFilters = []BGPFilter{{Name: "bad", Import: Filter{V6: []FilterRule{{Action: "Drop"}}}}}
	_, err = ResolvePeers(cfg, topo)
	assert.ErrorIs(t, err, ErrInvalidFilter)
}

// sessionsUpSince fails unless every session of s has been Established
// since before since (uptime from GoBGP, whole seconds, so the sessions
// must be up at least 2 s at since): none was reset after it.
func sessionsUpSince(t *testing.T, s *Speaker, since time.Time) {
	t.Helper()
	ps, err := s.Peers(context.Background())
	require.NoError(t, err)
	for _, p := range ps {
		assert.Equal(t, StateEstablished, p.State, p.Name)
		assert.Greater(t, p.Uptime, time.Since(since), "session %s was reset", p.Name)
	}
}

// TestBIRDPeerFilters: BGPFilters on one peer change what that peer gets
// and what the node takes from it, while the other peer is unaffected; the
// filters change at run time without resetting the session.
func TestBIRDPeerFilters(t *testing.T) {
	b1, b2, s := twoBIRDs(t, birdASN+1)
	ctx := context.Background()

	// Export to bird1: no 10.244.8.0/26. Import from bird1: nothing in
	// 10.55.0.0/16. Export to bird2: neither routes learned from peers nor
	// the vxlan.calico prefix; IPv6: nothing longer than /64 to bird2.
	toB1 := BGPFilter{Name: "b1", Export: Filter{V4: []FilterRule{{Action: Reject, CIDR: pfx("10.244.8.0/26"), MatchOperator: Equal}}},
		Import: Filter{V4: []FilterRule{{Action: Reject, CIDR: pfx("10.55.0.0/16"), MatchOperator: In}}}}
	toB2 := BGPFilter{Name: "b2", Export: Filter{
		V4: []FilterRule{{Action: Reject, Source: RemotePeers}, {Action: Reject, Interface: "*.calico"}},
		V6: []FilterRule{{Action: Reject, CIDR: pfx("fd00::/8"), MatchOperator: NotIn, PrefixLength: struct{ Min, Max int }{0, 64}}},
	}}
	setFilters := func(f1, f2 []BGPFilter) {
		t.Helper()
		ps := []Peer{
			{Name: "bird1-v4", Address: b1.addr4(), ASNumber: b1.asn, SourceAddress: b1.local4(), Filters: f1},
			{Name: "bird1-v6", Address: b1.addr6(), ASNumber: b1.asn, SourceAddress: b1.local6(), Filters: f1},
			{Name: "bird2-v4", Address: b2.addr4(), ASNumber: b2.asn, SourceAddress: b2.local4(), Filters: f2},
			{Name: "bird2-v6", Address: b2.addr6(), ASNumber: b2.asn, SourceAddress: b2.local6(), Filters: f2},
		}
		require.NoError(t, s.SetPeers(ctx, ps))
	}
	setFilters([]BGPFilter{toB1}, []BGPFilter{toB2})
	require.NoError(t, s.Advertise(ctx,
		Advertisement{Prefix: pfx("10.244.7.0/26")},
		Advertisement{Prefix: pfx("10.244.8.0/26")},
		Advertisement{Prefix: pfx("10.244.9.0/26"), Interface: "vxlan.calico"},
		Advertisement{Prefix: pfx("fd00:244:7::/64")},
		Advertisement{Prefix: pfx("fd00:244:8::/122")}))
	require.NoError(t, s.Start(ctx))
	t.Cleanup(s.Stop)
	require.Eventually(t, func() bool {
		return b1.established("tabby4") && b1.established("tabby6") && b2.established("tabby4") && b2.established("tabby6")
	}, 30*time.Second, 100*time.Millisecond, "BIRD sessions")

	wait := func(msg string, cond func() bool) {
		t.Helper()
		require.Eventually(t, cond, 15*time.Second, 100*time.Millisecond, msg)
	}
	has := func(b *birdPeer, p string) bool { return b.route(p) != "" }
	wait("bird1 gets 10.244.7.0/26 and the vxlan prefix", func() bool { return has(b1, "10.244.7.0/26") && has(b1, "10.244.9.0/26") })
	wait("bird2 gets 10.244.7.0/26 and 10.244.8.0/26", func() bool { return has(b2, "10.244.7.0/26") && has(b2, "10.244.8.0/26") })
	wait("bird2 gets fd00:244:7::/64", func() bool { return has(b2, "fd00:244:7::/64") })
	wait("bird1 gets both IPv6 prefixes", func() bool { return has(b1, "fd00:244:7::/64") && has(b1, "fd00:244:8::/122") })
	wait("10.55.0.0/24 only via bird2 (bird1's import filter)", func() bool {
		k := kernelRoute(t, "10.55.0.0/24")
		return strings.Contains(k, "via 10.123.2.2") && !strings.Contains(k, "10.123.1.2")
	})
	wait("10.66.1.0/24 from bird1 passes its import filter", func() bool { return strings.Contains(kernelRoute(t, "10.66.1.0/24"), "via 10.123.1.2") })
	// What the filters keep away, after everything else has arrived.
	assert.False(t, has(b1, "10.244.8.0/26"), "bird1's export filter")
	assert.False(t, has(b2, "10.244.9.0/26"), "bird2's interface rule")
	assert.False(t, has(b2, "10.66.1.0/24"), "bird2's source rule: a route learned from bird1")
	assert.False(t, has(b2, "fd00:244:8::/122"), "bird2's IPv6 NotIn rule")
	why := s.Why(pfx("10.55.0.0/24"))
	assert.Len(t, why.NextHops, 1)

	// At run time: bird1 loses its filters, bird2 keeps only the source
	// rule. No session is reset.
	// Uptime has whole seconds: let the sessions age first.
	require.Eventually(t, func() bool {
		ps, err := s.Peers(ctx)
		return err == nil && !slices.ContainsFunc(ps, func(p PeerStatus) bool { return p.Uptime < 2*time.Second })
	}, 15*time.Second, 100*time.Millisecond)
	changed := time.Now()
	setFilters(nil, []BGPFilter{{Name: "b2", Export: Filter{V4: []FilterRule{{Action: Reject, Source: RemotePeers}}}}})
	wait("bird1 now gets 10.244.8.0/26", func() bool { return has(b1, "10.244.8.0/26") })
	wait("bird2 now gets the vxlan prefix", func() bool { return has(b2, "10.244.9.0/26") })
	wait("10.55.0.0/24 is ECMP again", func() bool {
		k := kernelRoute(t, "10.55.0.0/24")
		return strings.Contains(k, "10.123.1.2") && strings.Contains(k, "10.123.2.2")
	})
	assert.False(t, has(b2, "10.66.1.0/24"), "bird2's source rule still applies")
	sessionsUpSince(t, s, changed)

	// And the reverse: a filter added at run time withdraws what it rejects.
	setFilters([]BGPFilter{toB1}, nil)
	wait("bird1 loses 10.244.8.0/26 again", func() bool { return !has(b1, "10.244.8.0/26") })
	wait("bird2 gets bird1's 10.66.1.0/24", func() bool { return has(b2, "10.66.1.0/24") })
	wait("10.55.0.0/24 only via bird2 again", func() bool { return !strings.Contains(kernelRoute(t, "10.55.0.0/24"), "10.123.1.2") })
}
