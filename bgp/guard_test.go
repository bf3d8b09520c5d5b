package bgp

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ctxMethods calls every Speaker method that takes a context.
var ctxMethods = []struct {
	name string
	op   string // the operation the error names
	call func(ctx context.Context, s *Speaker) error
}{
	{"Start", "start BGP speaker", func(ctx context.Context, s *Speaker) error { return s.Start(ctx) }},
	{"Advertise", "advertise from bgp", func(ctx context.Context, s *Speaker) error {
		return s.Advertise(ctx, Advertisement{Prefix: pfx("10.244.1.0/26")})
	}},
	{"Withdraw", "withdraw from bgp", func(ctx context.Context, s *Speaker) error {
		return s.Withdraw(ctx, pfx("10.244.1.0/26"))
	}},
	{"SetAdvertisements", "set advertisements of bgp", func(ctx context.Context, s *Speaker) error {
		return s.SetAdvertisements(ctx, []Advertisement{{Prefix: pfx("10.244.1.0/26")}})
	}},
	{"Source.Set", "set advertisements of lb", func(ctx context.Context, s *Speaker) error {
		return s.Source("lb").Set(ctx, []Advertisement{{Prefix: pfx("10.244.1.0/26")}})
	}},
	{"SetPeers", "set BGP peers", func(ctx context.Context, s *Speaker) error {
		return s.SetPeers(ctx, []Peer{{Name: "b", Address: loopNode(2), ASNumber: 64513}})
	}},
	{"SetTopology", "set BGP topology", func(ctx context.Context, s *Speaker) error { return s.SetTopology(ctx, Topology{}) }},
	{"SetConfig", "set BGP configuration", func(ctx context.Context, s *Speaker) error {
		return s.SetConfig(ctx, Config{NodeName: "node-1", NodeIP: loopNode(1), ListenPort: -1})
	}},
	{"Peers", "list BGP peers", func(ctx context.Context, s *Speaker) error { _, err := s.Peers(ctx); return err }},
}

func TestSpeakerDoneContext(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range ctxMethods {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{NodeName: "node-1", NodeIP: loopNode(1), ListenPort: -1})
			require.NoError(t, err)
			t.Cleanup(s.Stop)
			err = tc.call(cancelled, s)
			require.ErrorIs(t, err, context.Canceled)
			assert.Contains(t, err.Error(), tc.op)
			// Nothing changed: not started, nothing advertised, no peers.
			assert.Empty(t, s.Advertised())
			ps, err := s.Peers(context.Background())
			require.NoError(t, err)
			assert.Empty(t, ps)
			require.NoError(t, s.Start(context.Background()), "the failed call must not have started it")
		})
	}
}

func TestZeroSpeaker(t *testing.T) {
	for _, tc := range ctxMethods {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range []*Speaker{{}, nil} {
				var err error
				require.NotPanics(t, func() { err = tc.call(context.Background(), s) })
				require.ErrorIs(t, err, ErrInvalidConfig)
				assert.Contains(t, err.Error(), tc.op)
				assert.False(t, errors.Is(err, ErrNotStarted))
			}
		})
	}
	t.Run("no error methods", func(t *testing.T) {
		for _, s := range []*Speaker{{}, nil} {
			require.NotPanics(t, func() {
				assert.Nil(t, s.Advertised())
				assert.Nil(t, s.Learned())
				assert.Nil(t, s.Synced())
				assert.Equal(t, Explanation{Prefix: pfx("10.0.0.0/8")}, s.Why(pfx("10.0.0.0/8")))
				s.Stop()
			})
		}
	})
}
