package bgp

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSetConfigReResolvesTopology: after SetTopology, SetConfig applies
// the BGPConfiguration fields that shape the peers at once, as Calico
// re-renders BIRD's configuration: nodeMeshPassword, nodeToNodeMeshEnabled.
// A configuration the topology cannot resolve with is refused whole;
// after SetPeers the peers are the caller's and SetConfig leaves them.
func TestSetConfigReResolvesTopology(t *testing.T) {
	off := false
	topo := Topology{Nodes: []Node{{Name: "node-1", IPv4: loopNode(1)}, {Name: "node-2", IPv4: loopNode(2)}}}
	for _, tc := range []struct {
		name     string
		setPeers bool // SetPeers(nil) after SetTopology
		change   func(*Config)
		wantErr  error
		wantPass string
		wantNone bool
	}{
		{name: "mesh password", change: func(c *Config) { c.NodeMeshPassword = "s3cret" }, wantPass: "s3cret"},
		{name: "mesh off", change: func(c *Config) { c.NodeToNodeMeshEnabled = &off }, wantNone: true},
		{name: "node not in the topology", change: func(c *Config) { c.NodeName = "node-9"; c.NodeMeshPassword = "x" },
			wantErr: ErrInvalidConfig},
		{name: "peers set by hand", setPeers: true, change: func(c *Config) { c.NodeMeshPassword = "s3cret" }, wantNone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, cfg := startIdleSpeaker(t, nil)
			ctx := context.Background()
			require.NoError(t, s.SetTopology(ctx, topo))
			if tc.setPeers {
				require.NoError(t, s.SetPeers(ctx, nil))
			}
			tc.change(&cfg)
			err := s.SetConfig(ctx, cfg)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				ps, err := s.Peers(ctx)
				require.NoError(t, err)
				require.Len(t, ps, 1, "unchanged")
				assert.Empty(t, ps[0].Password, "unchanged")
				return
			}
			require.NoError(t, err)
			ps, err := s.Peers(ctx)
			require.NoError(t, err)
			if tc.wantNone {
				assert.Empty(t, ps)
				assert.Nil(t, gobgpPeer(t, s, loopNode(2)))
				return
			}
			require.Len(t, ps, 1)
			assert.Equal(t, tc.wantPass, ps[0].Password)
			p := gobgpPeer(t, s, loopNode(2))
			require.NotNil(t, p)
			assert.Equal(t, tc.wantPass, p.GetConf().GetAuthPassword())
		})
	}
}
