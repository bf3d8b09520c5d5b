package bgp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReservedSource: the service CIDRs' source and a nameless source are
// refused by every write, and the service CIDRs stay advertised.
func TestReservedSource(t *testing.T) {
	ctx := context.Background()
	svc := pfx("10.96.0.0/12")
	s, err := New(Config{NodeName: "node-1", NodeIP: loopNode(1), ServiceClusterIPs: []netip.Prefix{svc}},
		WithLogger(testLogger(t)))
	require.NoError(t, err)
	ad := Advertisement{Prefix: pfx("10.244.1.0/26")}
	for _, name := range []string{serviceCIDRSource, ""} {
		src := s.Source(name)
		for op, f := range map[string]func() error{
			"Set nil":   func() error { return src.Set(ctx, nil) },
			"Set":       func() error { return src.Set(ctx, []Advertisement{ad}) },
			"Advertise": func() error { return src.Advertise(ctx, ad) },
			"Withdraw":  func() error { return src.Withdraw(ctx, svc) },
		} {
			t.Run(name+"/"+op, func(t *testing.T) {
				require.ErrorIs(t, f(), ErrInvalidSource)
				assert.Equal(t, []netip.Prefix{svc}, s.Advertised())
				assert.Equal(t, []string{serviceCIDRSource}, s.Why(svc).Sources)
			})
		}
	}
	require.NoError(t, s.Source("lb").Advertise(ctx, ad))
	assert.Equal(t, []netip.Prefix{svc, ad.Prefix}, s.Advertised())
}
