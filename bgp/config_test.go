package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/selector"
)

func TestConfigValidation(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.1")
	tests := []struct {
		name string
		mod  func(*Config)
		err  error
	}{
		{"defaults", func(*Config) {}, nil},
		{"AS_TRANS", func(c *Config) { c.ASNumber = 23456 }, ErrInvalidConfig},
		{"4-byte AS", func(c *Config) { c.ASNumber = 4200000000 }, nil},
		{"no address", func(c *Config) { c.NodeIP = netip.Addr{} }, ErrInvalidConfig},
		{"v6 only needs router ID", func(c *Config) { c.NodeIP, c.NodeIPv6 = netip.Addr{}, netip.MustParseAddr("fd00::1") }, ErrInvalidConfig},
		{"v6 only with router ID", func(c *Config) {
			c.NodeIP, c.NodeIPv6, c.RouterID = netip.Addr{}, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("1.2.3.4")
		}, nil},
		{"router ID v6", func(c *Config) { c.RouterID = netip.MustParseAddr("fd00::1") }, ErrInvalidConfig},
		{"router ID zero", func(c *Config) { c.RouterID = netip.MustParseAddr("0.0.0.0") }, ErrInvalidConfig},
		{"node IP is v6", func(c *Config) { c.NodeIP = netip.MustParseAddr("fd00::1") }, ErrInvalidConfig},
		{"node IP multicast", func(c *Config) { c.NodeIP = netip.MustParseAddr("224.0.0.1") }, ErrInvalidConfig},
		{"port too big", func(c *Config) { c.ListenPort = 70000 }, ErrInvalidConfig},
		{"port -2", func(c *Config) { c.ListenPort = -2 }, ErrInvalidConfig},
		{"no listen", func(c *Config) { c.ListenPort = -1 }, nil},
		{"restart not whole seconds", func(c *Config) { c.RestartTime = 1500 * time.Millisecond }, ErrInvalidConfig},
		{"restart too long", func(c *Config) { c.RestartTime = 2 * time.Hour }, ErrInvalidConfig},
		{"service CIDR unmasked", func(c *Config) { c.ServiceClusterIPs = []netip.Prefix{netip.MustParsePrefix("10.96.0.1/12")} }, ErrInvalidPrefix},
		{"bad community", func(c *Config) { c.Communities = []NamedCommunity{{Name: "x", Value: "1:70000"}} }, ErrInvalidCommunity},
		{"dup community name", func(c *Config) {
			c.Communities = []NamedCommunity{{Name: "x", Value: "1:1"}, {Name: "x", Value: "1:2"}}
		}, ErrInvalidCommunity},
		{"unknown community name", func(c *Config) {
			c.PrefixAdvertisements = []PrefixAdvertisement{{CIDR: netip.MustParsePrefix("10.0.0.0/8"), Communities: []string{"nope"}}}
		}, ErrInvalidCommunity},
		{"cluster ID not IPv4", func(c *Config) { c.RouteReflectorClusterID = "abc" }, ErrInvalidConfig},
		{"bad filter action", func(c *Config) { c.Export.V4 = []FilterRule{{Action: "Drop"}} }, ErrInvalidFilter},
		{"filter family", func(c *Config) {
			c.Import.V6 = []FilterRule{{Action: Accept, CIDR: netip.MustParsePrefix("10.0.0.0/8"), MatchOperator: In}}
		}, ErrInvalidFilter},
		{"filter length range", func(c *Config) {
			c.Import.V4 = []FilterRule{{Action: Accept, PrefixLength: struct{ Min, Max int }{30, 20}}}
		}, ErrInvalidFilter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{NodeIP: ip}
			tt.mod(&c)
			_, err := New(c)
			if tt.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.err)
		})
	}
}

func TestPeerValidation(t *testing.T) {
	a := netip.MustParseAddr("10.0.0.2")
	tests := []struct {
		name  string
		peers []Peer
		err   error
	}{
		{"ok", []Peer{{Address: a, ASNumber: 65000}}, nil},
		{"no AS", []Peer{{Address: a}}, ErrInvalidPeer},
		{"no address", []Peer{{ASNumber: 1}}, ErrInvalidPeer},
		{"unspecified", []Peer{{Address: netip.MustParseAddr("0.0.0.0"), ASNumber: 1}}, ErrInvalidPeer},
		{"ttl", []Peer{{Address: a, ASNumber: 1, EBGPMultihopTTL: 256}}, ErrInvalidPeer},
		{"port", []Peer{{Address: a, ASNumber: 1, Port: 65536}}, ErrInvalidPeer},
		{"ttlSecurity", []Peer{{Address: a, ASNumber: 1, TTLSecurity: 2}}, nil},
		{"ttlSecurity range", []Peer{{Address: a, ASNumber: 1, TTLSecurity: 256}}, ErrInvalidPeer},
		{"ttlSecurity and multihop", []Peer{{Address: a, ASNumber: 1, TTLSecurity: 2, EBGPMultihopTTL: 2}}, ErrInvalidPeer},
		{"bad filter", []Peer{{Address: a, ASNumber: 1, Filters: []BGPFilter{{Name: "f", Export: Filter{V4: []FilterRule{{Action: "Drop"}}}}}}}, ErrInvalidFilter},
		{"source family", []Peer{{Address: a, ASNumber: 1, SourceAddress: netip.MustParseAddr("fd00::1")}}, ErrInvalidPeer},
		{"restart", []Peer{{Address: a, ASNumber: 1, MaxRestartTime: time.Millisecond}}, ErrInvalidPeer},
		{"restart, also a config error", []Peer{{Address: a, ASNumber: 1, MaxRestartTime: time.Millisecond}}, ErrInvalidConfig},
		{"duplicate", []Peer{{Name: "x", Address: a, ASNumber: 1}, {Name: "y", Address: a, ASNumber: 2}}, ErrDuplicatePeer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validatePeers(tt.peers)
			if tt.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.err)
		})
	}
	s, err := New(Config{NodeIP: netip.MustParseAddr("10.0.0.1")})
	require.NoError(t, err)
	err = s.SetPeers(t.Context(), []Peer{{Address: netip.MustParseAddr("fd00::2"), ASNumber: 1}})
	require.ErrorIs(t, err, ErrInvalidPeer, "no IPv6 node address")
	err = s.SetPeers(t.Context(), []Peer{{Address: netip.MustParseAddr("10.0.0.1"), ASNumber: 1}})
	require.ErrorIs(t, err, ErrInvalidPeer, "the node itself")
}

func TestParseCommunity(t *testing.T) {
	for in, want := range map[string]Community{
		"64512:100":      {A: 64512, B: 100},
		"0:0":            {},
		"65535:65535":    {A: 65535, B: 65535},
		"4200000000:1:2": {Large: true, A: 4200000000, B: 1, C: 2},
	} {
		got, err := ParseCommunity(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
		assert.Equal(t, in, got.String())
	}
	for _, in := range []string{"", "1", "1:", ":1", "1:2:3:4", "65536:1", "1:65536", "a:b", "+1:2", "-1:2", "1:2:4294967296", " 1:2"} {
		_, err := ParseCommunity(in)
		assert.ErrorIs(t, err, ErrInvalidCommunity, in)
	}
}

func TestParsePeerIP(t *testing.T) {
	tests := []struct {
		in   string
		addr string
		port int
		ok   bool
	}{
		{"10.0.0.1", "10.0.0.1", 0, true},
		{"10.0.0.1:1179", "10.0.0.1", 1179, true},
		{"fd00::1", "fd00::1", 0, true},
		{"[fd00::1]:1179", "fd00::1", 1179, true},
		{"10.0.0.1:0", "", 0, false},
		{"fe80::1%eth0", "", 0, false},
		{"::ffff:10.0.0.1", "", 0, false},
		{"host:179", "", 0, false},
		{"", "", 0, false},
	}
	for _, tt := range tests {
		a, port, err := ParsePeerIP(tt.in)
		if !tt.ok {
			assert.ErrorIs(t, err, ErrInvalidPeer, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.addr, a.String())
		assert.Equal(t, tt.port, port)
	}
}

func TestFilterDecide(t *testing.T) {
	f := Filter{V4: []FilterRule{
		{Action: Reject, CIDR: pfx("10.244.0.0/16"), MatchOperator: In, PrefixLength: struct{ Min, Max int }{32, 32}},
		{Action: Accept, CIDR: pfx("10.244.0.0/16"), MatchOperator: In},
		{Action: Reject, CIDR: pfx("0.0.0.0/0"), MatchOperator: Equal},
		{Action: Reject, CIDR: pfx("192.168.0.0/16"), MatchOperator: NotIn, PrefixLength: struct{ Min, Max int }{28, 0}},
	}}
	tests := []struct {
		p    string
		act  Action
		rule int
	}{
		{"10.244.1.1/32", Reject, 0},
		{"10.244.1.0/26", Accept, 1},
		{"0.0.0.0/0", Reject, 2},
		{"172.16.0.0/28", Reject, 3},
		{"192.168.1.0/28", Accept, -1},
		// Calico: NotIn negates the whole prefix set 192.168.0.0/16{28,32},
		// so a prefix outside the length range matches too.
		{"172.16.0.0/24", Reject, 3},
		{"192.168.1.0/24", Reject, 3},
		{"fd00::/64", Accept, -1},
	}
	for _, tt := range tests {
		act, i := f.Decide(pfx(tt.p))
		assert.Equal(t, tt.act, act, tt.p)
		assert.Equal(t, tt.rule, i, tt.p)
	}
}

func TestFilterSourceAndInterface(t *testing.T) {
	f := Filter{V4: []FilterRule{
		{Action: Accept, CIDR: pfx("77.0.0.0/16"), MatchOperator: In, Source: RemotePeers},
		{Action: Reject, Interface: "*.calico"},
		{Action: Reject, CIDR: pfx("10.0.0.0/8"), MatchOperator: In, PrefixLength: struct{ Min, Max int }{0, 4}},
	}, V6: []FilterRule{{Action: Reject, Source: RemotePeers}}}
	tests := []struct {
		rt   FilterRoute
		act  Action
		rule int
	}{
		{FilterRoute{Prefix: pfx("77.0.1.0/24"), FromPeer: true}, Accept, 0},
		{FilterRoute{Prefix: pfx("77.0.1.0/24")}, Accept, -1},
		{FilterRoute{Prefix: pfx("10.244.0.0/26"), Interface: "vxlan.calico"}, Reject, 1},
		{FilterRoute{Prefix: pfx("10.244.0.0/26"), Interface: "eth0"}, Accept, -1},
		{FilterRoute{Prefix: pfx("10.244.0.0/26"), FromPeer: true, Interface: "vxlan.calico"}, Accept, -1},
		// max 4 < the CIDR's /8: the prefix set is empty, In never matches.
		{FilterRoute{Prefix: pfx("10.0.0.0/8")}, Accept, -1},
		{FilterRoute{Prefix: pfx("fd00::/64"), FromPeer: true}, Reject, 0},
		{FilterRoute{Prefix: pfx("fd00::/64")}, Accept, -1},
	}
	for _, tt := range tests {
		act, i := f.DecideRoute(tt.rt)
		assert.Equal(t, tt.act, act, "%+v", tt.rt)
		assert.Equal(t, tt.rule, i, "%+v", tt.rt)
	}
	for _, bad := range []FilterRule{
		{Action: Accept, Source: "Kernel"},
		{Action: Accept, Interface: "["},
		{Action: Accept, CIDR: pfx("10.0.0.0/8"), MatchOperator: Equal, PrefixLength: struct{ Min, Max int }{16, 0}},
	} {
		assert.ErrorIs(t, Filter{V4: []FilterRule{bad}}.validate(), ErrInvalidFilter, "%+v", bad)
	}
}

func TestResolvePeers(t *testing.T) {
	n := func(name, ip string, labels map[string]string, rr string) Node {
		return Node{Name: name, IPv4: netip.MustParseAddr(ip), Labels: labels, RouteReflectorClusterID: rr}
	}
	nodes := []Node{
		n("a", "10.0.0.1", map[string]string{"rack": "1"}, ""),
		n("b", "10.0.0.2", map[string]string{"rack": "1"}, ""),
		n("c", "10.0.0.3", map[string]string{"rack": "2", "rr": "true"}, "1.1.1.1"),
	}
	rack1 := selector.MustParse(`rack == "1"`)
	rrSel := selector.MustParse("has(rr)")
	tor := BGPPeer{Name: "tor1", NodeSelector: &rack1, PeerIP: "10.0.0.254:1179", ASNumber: 65000, Password: "s"}
	global := BGPPeer{Name: "core", PeerIP: "10.9.9.9", ASNumber: 65001}
	toRR := BGPPeer{Name: "rr", NodeSelector: &rack1, PeerSelector: &rrSel}
	off := false
	tests := []struct {
		node  string
		mesh  bool
		peers []BGPPeer
		want  []string // name@address, passive or active, rrclient
	}{
		{"a", true, nil, []string{"mesh/b@10.0.0.2 active", "mesh/c@10.0.0.3 active"}},
		{"b", true, nil, []string{"mesh/a@10.0.0.1 passive", "mesh/c@10.0.0.3 active"}},
		{"a", true, []BGPPeer{tor, global}, []string{"mesh/b@10.0.0.2 active", "mesh/c@10.0.0.3 active", "bgppeer/tor1@10.0.0.254 active", "bgppeer/core@10.9.9.9 active"}},
		{"c", true, []BGPPeer{tor}, []string{"mesh/a@10.0.0.1 passive rrclient", "mesh/b@10.0.0.2 passive rrclient"}},
		{"a", false, []BGPPeer{toRR}, []string{"bgppeer/rr/c@10.0.0.3 active"}},
		{"c", false, []BGPPeer{toRR}, []string{"bgppeer/rr/a@10.0.0.1 passive rrclient", "bgppeer/rr/b@10.0.0.2 passive rrclient"}},
		{"c", false, nil, nil},
	}
	for _, tt := range tests {
		var self Node
		for _, nd := range nodes {
			if nd.Name == tt.node {
				self = nd
			}
		}
		cfg := Config{NodeName: tt.node, NodeIP: self.IPv4}
		if !tt.mesh {
			cfg.NodeToNodeMeshEnabled = &off
		}
		got, err := ResolvePeers(cfg, Topology{Nodes: nodes, BGPPeers: tt.peers})
		require.NoError(t, err)
		var s []string
		for _, p := range got {
			x := p.Name + "@" + p.Address.String()
			if p.Passive {
				x += " passive"
			} else {
				x += " active"
			}
			if p.RouteReflectorClient {
				x += " rrclient"
			}
			s = append(s, x)
		}
		assert.Equal(t, tt.want, s, "node %s", tt.node)
	}
	_, err := ResolvePeers(Config{NodeName: "zz", NodeIP: netip.MustParseAddr("10.0.0.9")}, Topology{Nodes: nodes})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = ResolvePeers(Config{NodeName: "a", NodeIP: netip.MustParseAddr("10.0.0.1")},
		Topology{Nodes: nodes, BGPPeers: []BGPPeer{{Name: "bad", PeerIP: "nope", ASNumber: 1}}})
	assert.ErrorIs(t, err, ErrInvalidPeer)
	_, err = ResolvePeers(Config{NodeName: "a", NodeIP: netip.MustParseAddr("10.0.0.1")},
		Topology{Nodes: nodes, BGPPeers: []BGPPeer{{Name: "noas", PeerIP: "10.1.1.1"}}})
	assert.ErrorIs(t, err, ErrInvalidPeer)

	// Calico's exclusive fields, refused whether the BGPPeer applies to
	// the node or not.
	for _, tt := range []struct {
		bp  BGPPeer
		msg string
	}{
		{BGPPeer{Name: "x", Node: "zz", NodeSelector: &rack1, PeerIP: "10.1.1.1", ASNumber: 1}, "node must be empty when nodeSelector"},
		{BGPPeer{Name: "x", Node: "zz", PeerSelector: &rrSel, PeerIP: "10.1.1.1"}, "peerIP must be empty when peerSelector"},
		{BGPPeer{Name: "x", Node: "zz", PeerSelector: &rrSel, ASNumber: 65000}, "asNumber must be empty when peerSelector"},
	} {
		_, err = ResolvePeers(Config{NodeName: "a", NodeIP: netip.MustParseAddr("10.0.0.1")}, Topology{Nodes: nodes, BGPPeers: []BGPPeer{tt.bp}})
		assert.ErrorIs(t, err, ErrInvalidPeer, tt.msg)
		assert.ErrorContains(t, err, tt.msg)
	}
}

func TestWhyNotAdvertised(t *testing.T) {
	s, err := New(Config{NodeIP: netip.MustParseAddr("10.0.0.1"),
		ServiceLoadBalancerIPs: []netip.Prefix{pfx("192.0.2.0/24")},
		Communities:            []NamedCommunity{{Name: "lb", Value: "64512:300"}},
		PrefixAdvertisements:   []PrefixAdvertisement{{CIDR: pfx("192.0.2.0/24"), Communities: []string{"lb", "1:2:3"}}},
		Export:                 Filter{V4: []FilterRule{{Action: Reject, CIDR: pfx("10.99.0.0/16"), MatchOperator: In}}}})
	require.NoError(t, err)
	ctx := t.Context()
	lb := s.Source("lb-allocator")
	require.NoError(t, lb.Advertise(ctx,
		Advertisement{Prefix: pfx("192.0.2.10/32"), Kind: KindServiceLoadBalancerIP},
		Advertisement{Prefix: pfx("198.51.100.1/32"), Kind: KindServiceLoadBalancerIP}))
	require.NoError(t, s.Advertise(ctx, Advertisement{Prefix: pfx("10.99.1.0/26")}, Advertisement{Prefix: pfx("fd00::/64")}))

	w := s.Why(pfx("192.0.2.10/32"))
	assert.True(t, w.Advertised)
	assert.Equal(t, []string{"lb-allocator"}, w.Sources)
	assert.Equal(t, []Community{{A: 64512, B: 300}, {Large: true, A: 1, B: 2, C: 3}}, w.Communities)
	assert.Contains(t, s.Why(pfx("198.51.100.1/32")).NotAdvertised, "outside the configured serviceLoadBalancerIP CIDRs")
	assert.Contains(t, s.Why(pfx("10.99.1.0/26")).NotAdvertised, "export filter rule 0")
	assert.Contains(t, s.Why(pfx("fd00::/64")).NotAdvertised, "no address of this family")
	assert.True(t, s.Why(pfx("192.0.2.0/24")).Advertised, "service CIDRs are advertised whole")
	assert.Equal(t, []netip.Prefix{pfx("192.0.2.0/24"), pfx("192.0.2.10/32")}, s.Advertised())

	// Withdrawing from one source keeps what another source wants.
	require.NoError(t, s.Advertise(ctx, Advertisement{Prefix: pfx("192.0.2.10/32"), Kind: KindServiceLoadBalancerIP}))
	require.NoError(t, lb.Withdraw(ctx, pfx("192.0.2.10/32")))
	assert.True(t, s.Why(pfx("192.0.2.10/32")).Advertised)
	require.NoError(t, s.Withdraw(ctx, pfx("192.0.2.10/32")))
	assert.False(t, s.Why(pfx("192.0.2.10/32")).Advertised)

	err = s.Advertise(ctx, Advertisement{Prefix: netip.MustParsePrefix("10.0.0.1/24")})
	assert.ErrorIs(t, err, ErrInvalidPrefix)
	err = s.Advertise(ctx, Advertisement{Prefix: netip.MustParsePrefix("224.0.0.0/24")})
	assert.ErrorIs(t, err, ErrInvalidPrefix)
}

func TestAdvertisementCommunityValidation(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.0/24")
	for _, c := range []Community{{A: 70000, B: 1}, {A: 1, B: 65536}, {A: 1, B: 2, C: 3}} {
		err := Advertisement{Prefix: p, Communities: []Community{c}}.validate()
		assert.ErrorIs(t, err, ErrInvalidCommunity, "%+v", c)
	}
	for _, c := range []Community{{A: 65535, B: 65535}, {Large: true, A: 4200000000, B: 1, C: 2}} {
		assert.NoError(t, Advertisement{Prefix: p, Communities: []Community{c}}.validate(), "%+v", c)
	}
}
