package iptables_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/services/iptables"
	"github.com/tabbynet/tabby/services/servicestest"
)

// TestZeroValue: a Proxier not made by New (nil or a zero value) never
// panics: Sync returns ErrInvalidConfig, Close nil, QueueResync does
// nothing and HairpinSet returns "".
func TestZeroValue(t *testing.T) {
	for _, p := range []*iptables.Proxier{nil, {}} {
		require.NotPanics(t, func() {
			err := p.Sync(context.Background())
			require.ErrorIs(t, err, iptables.ErrInvalidConfig)
			assert.Contains(t, err.Error(), "make it with New")
			p.QueueResync()
			assert.Empty(t, p.HairpinSet())
			assert.NoError(t, p.Close())
		})
	}
	servicestest.AssertMethods[iptables.Proxier](t, "Sync", "QueueResync", "HairpinSet", "Close")
}
