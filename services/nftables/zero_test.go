package nftables_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/services/nftables"
	"github.com/tabbynet/tabby/services/servicestest"
)

// TestZeroValue: a Proxier not made by New (nil or a zero value) never
// panics: Sync and SetServiceCIDRs return ErrInvalidConfig, QueueResync
// does nothing.
func TestZeroValue(t *testing.T) {
	for _, p := range []*nftables.Proxier{nil, {}} {
		require.NotPanics(t, func() {
			err := p.Sync(context.Background())
			require.ErrorIs(t, err, nftables.ErrInvalidConfig)
			assert.Contains(t, err.Error(), "make it with New")
			err = p.SetServiceCIDRs([]netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")})
			require.ErrorIs(t, err, nftables.ErrInvalidConfig)
			p.QueueResync()
		})
	}
	servicestest.AssertMethods[nftables.Proxier](t, "Sync", "SetServiceCIDRs", "QueueResync")
}
