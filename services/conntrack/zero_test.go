package conntrack_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/services"
	"github.com/tabbynet/tabby/services/conntrack"
	"github.com/tabbynet/tabby/services/servicestest"
)

// TestZeroValue: a Cleaner without a Handle (nil, a zero value, or New
// given a nil Handle) never panics: Clean returns ErrInvalidConfig, and
// the function Func returns does nothing.
func TestZeroValue(t *testing.T) {
	stale := []services.StaleFlow{{Protocol: "UDP", Service: netip.MustParseAddrPort("10.96.0.10:53")}}
	for _, c := range []*conntrack.Cleaner{nil, {}, conntrack.New(nil, nil)} {
		require.NotPanics(t, func() {
			n, err := c.Clean(context.Background(), stale)
			require.ErrorIs(t, err, conntrack.ErrInvalidConfig)
			assert.Contains(t, err.Error(), "make it with New")
			assert.Zero(t, n)
			c.Func()(context.Background(), stale)
		})
	}
	servicestest.AssertMethods[conntrack.Cleaner](t, "Clean", "Func")
}
