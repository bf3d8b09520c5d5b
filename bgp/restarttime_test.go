package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAnnouncedRestartTime: Peer.MaxRestartTime (and the config's
// RestartTime and NodeMeshMaxRestartTime behind it) is the time this node
// announces in its graceful-restart capability, as Calico's maxRestartTime
// is BIRD's "graceful restart time"; 0 in the table means no capability.
func TestAnnouncedRestartTime(t *testing.T) {
	for _, tc := range []struct {
		name             string
		restart, meshMax time.Duration
		peer             Peer
		want             uint32
	}{
		{"default", 0, 0, Peer{Name: "bgppeer/tor"}, 120},
		{"config", 60 * time.Second, 0, Peer{Name: "bgppeer/tor"}, 60},
		{"peer", 60 * time.Second, 0, Peer{Name: "bgppeer/tor", MaxRestartTime: 5 * time.Second}, 5},
		{"mesh", 60 * time.Second, 30 * time.Second, Peer{Name: "mesh/node-2"}, 30},
		{"mesh setting is not for other peers", 60 * time.Second, 30 * time.Second, Peer{Name: "bgppeer/tor"}, 60},
		{"disabled", -1, 0, Peer{Name: "bgppeer/tor"}, 0},
		{"disabled but set on the peer", -1, 0, Peer{Name: "bgppeer/tor", MaxRestartTime: 7 * time.Second}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{NodeName: "node-1", NodeIP: loopNode(1), RestartTime: tc.restart,
				NodeMeshMaxRestartTime: tc.meshMax}, WithLogger(testLogger(t)))
			require.NoError(t, err)
			p := tc.peer
			p.Address, p.ASNumber = loopNode(2), 64512
			ap := s.apiPeer(p)
			if tc.want == 0 {
				assert.Nil(t, ap.GracefulRestart)
				return
			}
			require.NotNil(t, ap.GracefulRestart)
			assert.True(t, ap.GracefulRestart.Enabled)
			assert.Equal(t, tc.want, ap.GracefulRestart.RestartTime)
		})
	}
}

// TestResolvePeersSortedByAddress: the sessions come in numeric address
// order (IPv4 before IPv6), not in the order of their strings.
func TestResolvePeersSortedByAddress(t *testing.T) {
	a := netip.MustParseAddr
	nodes := []Node{{Name: "n1", IPv4: a("10.0.0.1"), IPv6: a("fd00::1")}, {Name: "n10", IPv4: a("10.0.0.10"), IPv6: a("fd00::10")},
		{Name: "n9", IPv4: a("10.0.0.9"), IPv6: a("fd00::9")}, {Name: "n2", IPv4: a("10.0.0.2"), IPv6: a("fd00::2")}}
	ps, err := ResolvePeers(Config{NodeName: "n1", NodeIP: a("10.0.0.1"), NodeIPv6: a("fd00::1")}, Topology{Nodes: nodes})
	require.NoError(t, err)
	var got []string
	for _, p := range ps {
		got = append(got, p.Address.String())
	}
	assert.Equal(t, []string{"10.0.0.2", "10.0.0.9", "10.0.0.10", "fd00::2", "fd00::9", "fd00::10"}, got)
}
