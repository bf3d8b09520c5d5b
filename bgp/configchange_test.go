package bgp

import (
	"context"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConfigChangeReachesSessions: the Config fields the speaker renders
// into a session (graceful-restart time, the mesh's restart time, the
// route-reflector cluster ID) reach GoBGP when SetConfig changes them on a
// running speaker, not only when the peer itself changes.
func TestConfigChangeReachesSessions(t *testing.T) {
	peer := loopNode(2)
	for _, tc := range []struct {
		name   string
		peer   Peer
		change func(*Config)
		check  func(t *testing.T, p *api.Peer)
	}{
		{"restart time", Peer{Name: "bgppeer/tor"}, func(c *Config) { c.RestartTime = 60 * time.Second },
			func(t *testing.T, p *api.Peer) { assert.Equal(t, uint32(60), p.GetGracefulRestart().GetRestartTime()) }},
		{"restart time off", Peer{Name: "bgppeer/tor"}, func(c *Config) { c.RestartTime = -1 },
			func(t *testing.T, p *api.Peer) { assert.False(t, p.GetGracefulRestart().GetEnabled()) }},
		{"mesh max restart time", Peer{Name: "mesh/node-2"}, func(c *Config) { c.NodeMeshMaxRestartTime = 30 * time.Second },
			func(t *testing.T, p *api.Peer) { assert.Equal(t, uint32(30), p.GetGracefulRestart().GetRestartTime()) }},
		{"route reflector cluster ID", Peer{Name: "bgppeer/client", RouteReflectorClient: true},
			func(c *Config) { c.RouteReflectorClusterID = "10.0.0.9" },
			func(t *testing.T, p *api.Peer) {
				assert.Equal(t, "10.0.0.9", p.GetRouteReflector().GetRouteReflectorClusterId())
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, cfg := startIdleSpeaker(t, nil)
			ctx := context.Background()
			p := tc.peer
			p.Address, p.ASNumber, p.Passive = peer, DefaultASNumber, true
			require.NoError(t, s.SetPeers(ctx, []Peer{p}))
			require.NotNil(t, gobgpPeer(t, s, peer))
			tc.change(&cfg)
			require.NoError(t, s.SetConfig(ctx, cfg))
			got := gobgpPeer(t, s, peer)
			require.NotNil(t, got, "the peer is still configured")
			tc.check(t, got)
		})
	}
}
