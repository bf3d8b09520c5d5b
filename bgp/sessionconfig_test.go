package bgp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/stretchr/testify/require"
)

// gobgpPeer returns what the speaker's GoBGP server has configured for
// addr (nil when it has no such peer).
func gobgpPeer(t *testing.T, s *Speaker, addr netip.Addr) *api.Peer {
	t.Helper()
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	require.NotNil(t, srv, "speaker not started")
	var out *api.Peer
	require.NoError(t, srv.ListPeer(context.Background(), &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) {
		if p.GetConf().GetNeighborAddress() == addr.String() {
			out = p
		}
	}))
	return out
}

// startIdleSpeaker starts a speaker on loopNode(1) whose peers never come
// up (nothing listens for them): enough to see what GoBGP is configured
// with.
func startIdleSpeaker(t *testing.T, mod func(*Config)) (*Speaker, Config) {
	t.Helper()
	cfg := Config{NodeName: "node-1", NodeIP: loopNode(1), ListenAddresses: []netip.Addr{loopNode(1)},
		ListenPort: freePort(t), StartupSyncTimeout: time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, WithLogger(testLogger(t)))
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(s.Stop)
	return s, cfg
}

// TestSetConfigRightAfterStart: SetConfig may follow Start at once; the
// startup sync Start launched reads its timeout without racing the new
// configuration (a data race under -race before).
func TestSetConfigRightAfterStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		startup time.Duration
	}{
		{"same timeout", time.Second},
		{"new timeout", 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, cfg := startIdleSpeaker(t, nil)
			cfg.StartupSyncTimeout = tc.startup
			require.NoError(t, s.SetConfig(context.Background(), cfg))
			select {
			case <-s.Synced():
			case <-time.After(10 * time.Second):
				t.Fatal("not synced: a speaker without peers syncs at once")
			}
		})
	}
}
