package netlink

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHostIfaceName(t *testing.T) {
	a := HostIfaceName("tby", "k8s-pod-network.1")
	assert.Len(t, a, 15)
	assert.Equal(t, a, HostIfaceName("tby", "k8s-pod-network.1"), "stable")
	assert.NotEqual(t, a, HostIfaceName("tby", "k8s-pod-network.2"))
	assert.Equal(t, "cali", HostIfaceName("cali", "x")[:4])
	assert.Len(t, HostIfaceName("cali", "x"), 15)
}

func TestWorkloadSpecValidate(t *testing.T) {
	ok := WorkloadSpec{ID: "net.c1", Netns: "/var/run/netns/p", Addresses: []netip.Addr{addr("10.244.1.2"), addr("fd00::2")}}
	tests := []struct {
		name   string
		mutate func(*WorkloadSpec)
		want   error
	}{
		{"ok", func(*WorkloadSpec) {}, nil},
		{"no addresses is fine", func(s *WorkloadSpec) { s.Addresses = nil }, nil},
		{"empty id", func(s *WorkloadSpec) { s.ID = "" }, ErrInvalidSpec},
		{"long id", func(s *WorkloadSpec) { s.ID = string(make([]byte, 201)) }, ErrInvalidSpec},
		{"no netns", func(s *WorkloadSpec) { s.Netns = "" }, ErrInvalidSpec},
		{"mtu", func(s *WorkloadSpec) { s.MTU = 20 }, ErrInvalidSpec},
		{"ifname", func(s *WorkloadSpec) { s.IfName = "this-name-is-too-long" }, ErrInvalidName},
		{"dup address", func(s *WorkloadSpec) { s.Addresses = append(s.Addresses, addr("10.244.1.2")) }, ErrInvalidSpec},
		{"link-local", func(s *WorkloadSpec) { s.Addresses = []netip.Addr{addr("169.254.1.1")} }, ErrInvalidSpec},
		{"unspecified", func(s *WorkloadSpec) { s.Addresses = []netip.Addr{addr("0.0.0.0")} }, ErrInvalidSpec},
		{"mapped", func(s *WorkloadSpec) { s.Addresses = []netip.Addr{addr("::ffff:10.0.0.1")} }, ErrInvalidSpec},
		{"MAC", func(s *WorkloadSpec) { s.MAC = net.HardwareAddr{0x1c, 0x0c, 0x0a, 0xc0, 0xff, 0xee} }, nil},
		{"MAC locally administered", func(s *WorkloadSpec) { s.MAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1} }, nil},
		{"MAC multicast", func(s *WorkloadSpec) { s.MAC = net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1} }, ErrInvalidSpec},
		{"MAC broadcast", func(s *WorkloadSpec) { s.MAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }, ErrInvalidSpec},
		{"MAC zero", func(s *WorkloadSpec) { s.MAC = make(net.HardwareAddr, 6) }, ErrInvalidSpec},
		{"MAC EUI-64", func(s *WorkloadSpec) { s.MAC = net.HardwareAddr{2, 0, 0, 0, 0, 0, 0, 1} }, ErrInvalidSpec},
		{"MAC empty, not nil", func(s *WorkloadSpec) { s.MAC = net.HardwareAddr{} }, ErrInvalidSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			s.Addresses = append([]netip.Addr(nil), ok.Addresses...)
			tt.mutate(&s)
			err := s.Validate()
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
			if s.MAC != nil {
				assert.ErrorContains(t, err, "MAC", "the error names the field")
			}
		})
	}
}

func TestWorkloadSpecPodMAC(t *testing.T) {
	s := WorkloadSpec{ID: "net.c1"}
	assert.Equal(t, ContainerMAC("net.c1").String(), s.PodMAC().String(), "nil: derived from the ID")
	s.MAC = net.HardwareAddr{0x1c, 0x0c, 0x0a, 0xc0, 0xff, 0xee}
	assert.Equal(t, "1c:0c:0a:c0:ff:ee", s.PodMAC().String())
	require.NoError(t, ValidateMAC(ContainerMAC("anything")), "the derived MAC is valid")
}

func TestVXLANConfigValidate(t *testing.T) {
	ok := VXLANConfig{Parent: "eth0", LocalIP: addr("10.99.0.11"), TunnelAddr: addr("10.244.1.0")}
	require.NoError(t, ok.Validate())
	d := ok.withDefaults()
	assert.Equal(t, DefaultVXLANName, d.Name)
	assert.Equal(t, 4096, d.VNI)
	assert.Equal(t, 4789, d.Port)
	assert.Equal(t, "66:cc:0a:f4:01:00", d.MAC.String())
	for name, c := range map[string]VXLANConfig{
		"no parent": {LocalIP: ok.LocalIP, TunnelAddr: ok.TunnelAddr},
		"v6 local":  {Parent: "eth0", LocalIP: addr("fd00::1"), TunnelAddr: ok.TunnelAddr},
		"no tunnel": {Parent: "eth0", LocalIP: ok.LocalIP},
		"vni":       {Parent: "eth0", LocalIP: ok.LocalIP, TunnelAddr: ok.TunnelAddr, VNI: 1 << 24},
		"port":      {Parent: "eth0", LocalIP: ok.LocalIP, TunnelAddr: ok.TunnelAddr, Port: 70000},
		"multicast": {Parent: "eth0", LocalIP: ok.LocalIP, TunnelAddr: ok.TunnelAddr, MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}},
		"mtu":       {Parent: "eth0", LocalIP: ok.LocalIP, TunnelAddr: ok.TunnelAddr, MTU: 10},
		"long name": {Name: "vxlan.tabby.long", Parent: "eth0", LocalIP: ok.LocalIP, TunnelAddr: ok.TunnelAddr},
	} {
		assert.Error(t, c.Validate(), name)
	}
}

func TestVXLANPeersToRoutes(t *testing.T) {
	_, o := newFakeNode(t)
	v, err := NewVXLAN(nil, o, VXLANConfig{Parent: "eth0", LocalIP: addr("10.99.0.11"), TunnelAddr: addr("10.244.1.0")})
	require.NoError(t, err)
	require.NoError(t, v.SetPeers([]VXLANPeer{
		{Name: "n2", NodeIP: addr("10.99.0.12"), TunnelAddr: addr("10.244.2.0"), Blocks: []netip.Prefix{pfx("10.244.2.0/26"), pfx("10.244.5.0/26")}},
		{Name: "n3", NodeIP: addr("10.99.0.13"), TunnelAddr: addr("10.244.3.0"), Blocks: []netip.Prefix{pfx("10.244.3.0/26")}},
	}))
	assert.Len(t, o.Desired(), 3)
	assert.Equal(t, "10.244.2.0/26 via 10.244.2.0 dev vxlan.tabby onlink", o.Desired()[0].String())
	require.NoError(t, v.RemovePeer("n2"))
	assert.Len(t, o.Desired(), 1)
	assert.Len(t, v.Peers(), 1)
	require.ErrorIs(t, v.UpsertPeer(VXLANPeer{Name: "bad", NodeIP: addr("fd00::1"), TunnelAddr: addr("10.244.4.0")}), ErrInvalidSpec)
	require.ErrorIs(t, v.SetPeers([]VXLANPeer{{Name: "x", NodeIP: addr("10.99.0.14"), TunnelAddr: addr("10.244.4.0"), Blocks: []netip.Prefix{pfx("10.244.4.1/26")}}}), ErrInvalidPrefix)
	require.ErrorIs(t, v.SetPeers([]VXLANPeer{{Name: "x", NodeIP: addr("10.99.0.14"), TunnelAddr: addr("10.244.4.0")}, {Name: "x", NodeIP: addr("10.99.0.14"), TunnelAddr: addr("10.244.4.0")}}), ErrInvalidSpec)
	assert.Len(t, v.Peers(), 1, "failed SetPeers changes nothing")
}

func TestRouteHelpers(t *testing.T) {
	assert.Equal(t, "10.0.0.0/8 nexthop via 10.1.1.1 nexthop via 10.1.1.2", RouteVia(pfx("10.0.0.0/8"), addr("10.1.1.1"), addr("10.1.1.2")).String())
	assert.Equal(t, "10.0.0.0/8 via 10.1.1.1", RouteVia(pfx("10.0.0.0/8"), addr("10.1.1.1")).String())
	assert.Equal(t, "blackhole 10.244.1.0/26", Blackhole(pfx("10.244.1.0/26")).String())
	require.NoError(t, Blackhole(pfx("10.244.1.0/26")).Validate())
}

func TestRemoveNormalisesKeys(t *testing.T) {
	_, o := newFakeNode(t)
	require.NoError(t, o.Upsert("bgp", RouteVia(pfx("fd00:244:2::/122"), addr("fd00:99::12")), RouteVia(pfx("10.244.2.0/26"), addr("10.99.0.12"))))
	o.Remove("bgp", RouteKey{Dst: pfx("fd00:244:2::/122")}, RouteKey{Dst: pfx("10.244.2.0/26")})
	assert.Empty(t, o.Desired())
}

func TestEncapMode(t *testing.T) {
	underlay := pfx("10.99.0.0/24")
	for _, tt := range []struct {
		mode string
		peer string
		want bool
	}{
		{"Always", "10.99.0.12", true},
		{"Never", "10.98.0.12", false},
		{"", "10.98.0.12", false},
		{"CrossSubnet", "10.99.0.12", false},
		{"CrossSubnet", "10.98.0.12", true},
	} {
		m, err := ParseEncapMode(tt.mode)
		require.NoError(t, err)
		assert.Equal(t, tt.want, m.Encapsulate(underlay, addr(tt.peer)), "%s %s", tt.mode, tt.peer)
	}
	_, err := ParseEncapMode("always")
	require.ErrorIs(t, err, ErrInvalidSpec)
}
