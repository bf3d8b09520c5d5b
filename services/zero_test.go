package services_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/services"
	"github.com/tabbynet/tabby/services/servicestest"
)

// TestZeroValue: a Tracker or HealthServer not made by its constructor
// (nil or a zero value) never panics. Its only method with an error,
// HealthServer.Run, returns ErrInvalidConfig; the others do nothing and
// return zero values. The reflect check keeps the lists complete.
func TestZeroValue(t *testing.T) {
	svc := servicestest.Service("ns", "a", "10.96.0.1")
	for _, tr := range []*services.Tracker{nil, {}} {
		require.NotPanics(t, func() {
			tr.OnServiceUpdate(svc)
			tr.OnServiceDelete(svc)
			tr.OnEndpointSliceUpdate(nil)
			tr.OnEndpointSliceDelete(nil)
			assert.Nil(t, tr.Changes())
			assert.Nil(t, tr.All())
		})
	}
	for _, h := range []*services.HealthServer{nil, {}} {
		require.NotPanics(t, func() {
			h.Update(map[services.ServicePortName]*services.Resolved{{}: nil})
			h.QueuedUpdate()
			h.Updated()
			assert.Nil(t, h.ListenErrors())
			err := h.Run(context.Background())
			require.ErrorIs(t, err, services.ErrInvalidConfig)
			assert.Contains(t, err.Error(), "make it with NewHealthServer")
		})
	}
	servicestest.AssertMethods[services.Tracker](t, "OnServiceUpdate", "OnServiceDelete",
		"OnEndpointSliceUpdate", "OnEndpointSliceDelete", "Changes", "All")
	servicestest.AssertMethods[services.HealthServer](t, "Update", "QueuedUpdate", "Updated", "ListenErrors", "Run")
}
