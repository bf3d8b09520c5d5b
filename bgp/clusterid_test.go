package bgp

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTopologyRouteReflectorClusterID: a node is a route reflector by its
// routeReflectorClusterID (Node.spec.bgp, given as the topology's node or
// as Config.RouteReflectorClusterID, which wins when both are set), and
// that ID is the cluster ID of its client sessions, as Calico renders
// BIRD's "rr cluster id"; two reflectors of one cluster share it.
func TestTopologyRouteReflectorClusterID(t *testing.T) {
	for _, tc := range []struct {
		name              string
		cfgID, nodeID     string
		then              string // the local node's ID in a second SetTopology ("": no second call)
		wantClient        bool
		wantID, wantAfter string
	}{
		{name: "node's cluster ID", nodeID: "10.0.0.1", wantClient: true, wantID: "10.0.0.1"},
		{name: "config's cluster ID", cfgID: "10.0.0.7", wantClient: true, wantID: "10.0.0.7"},
		{name: "config's wins", cfgID: "10.0.0.7", nodeID: "10.0.0.1", wantClient: true, wantID: "10.0.0.7"},
		{name: "not a reflector", wantClient: false},
		{name: "node's cluster ID changes", nodeID: "10.0.0.1", then: "10.0.0.2", wantClient: true, wantID: "10.0.0.1", wantAfter: "10.0.0.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, cfg := startIdleSpeaker(t, func(c *Config) { c.RouteReflectorClusterID = tc.cfgID })
			topo := func(id string) Topology {
				return Topology{Nodes: []Node{{Name: "node-1", IPv4: loopNode(1), RouteReflectorClusterID: id},
					{Name: "node-2", IPv4: loopNode(2)}}}
			}
			ps, err := ResolvePeers(cfg, topo(tc.nodeID))
			require.NoError(t, err)
			require.Len(t, ps, 1)
			assert.Equal(t, tc.wantClient, ps[0].RouteReflectorClient, "ResolvePeers")

			ctx := context.Background()
			require.NoError(t, s.SetTopology(ctx, topo(tc.nodeID)))
			p := gobgpPeer(t, s, loopNode(2))
			require.NotNil(t, p)
			assert.Equal(t, tc.wantClient, p.GetRouteReflector().GetRouteReflectorClient())
			if tc.wantClient {
				assert.Equal(t, tc.wantID, p.GetRouteReflector().GetRouteReflectorClusterId())
			}
			if tc.then == "" {
				return
			}
			require.NoError(t, s.SetTopology(ctx, topo(tc.then)))
			p = gobgpPeer(t, s, loopNode(2))
			require.NotNil(t, p)
			assert.Equal(t, tc.wantAfter, p.GetRouteReflector().GetRouteReflectorClusterId())
		})
	}
}

// TestResolvePeersBadClusterID: a node's routeReflectorClusterID must be
// an IPv4 address, as Config's; ResolvePeers says which node has a bad
// one instead of handing it to GoBGP.
func TestResolvePeersBadClusterID(t *testing.T) {
	for _, tc := range []struct{ name, id string }{
		{"not an address", "abc"},
		{"IPv6", "fd00::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ResolvePeers(Config{NodeName: "node-1", NodeIP: loopNode(1)}, Topology{Nodes: []Node{
				{Name: "node-1", IPv4: loopNode(1)}, {Name: "node-2", IPv4: loopNode(2), RouteReflectorClusterID: tc.id}}})
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), "node-2")
		})
	}
}
