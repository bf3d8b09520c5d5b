package netlink

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// countingHandle counts route dumps of the handle underneath.
type countingHandle struct {
	*FakeRouteHandle
	dumps atomic.Int32
}

func (c *countingHandle) RouteListFiltered(family int, filter *nl.Route, mask uint64) ([]nl.Route, error) {
	c.dumps.Add(1)
	return c.FakeRouteHandle.RouteListFiltered(family, filter, mask)
}

func TestRouteOwnerApply(t *testing.T) {
	ctx := context.Background()
	f, _ := newFakeNode(t)
	h := &countingHandle{FakeRouteHandle: f}
	o := mustRouteOwner(t, h, WithResyncInterval(time.Hour))
	r := func(dst, gw string) Route { return Route{Dst: pfx(dst), NextHops: []NextHop{{Gateway: addr(gw)}}} }

	// The first Apply has never seen the kernel: a full Reconcile.
	require.NoError(t, o.Upsert("bgp", r("10.244.2.0/26", "10.99.0.12")))
	res, err := o.Apply(ctx)
	require.NoError(t, err)
	assert.Equal(t, ReconcileResult{Added: 1}, res)
	assert.EqualValues(t, 1, h.dumps.Load())

	// Then deltas only: add, replace, delete, and nothing when nothing changed.
	require.NoError(t, o.Upsert("bgp", r("10.244.3.0/26", "10.99.0.13"), r("10.244.2.0/26", "10.99.0.14"), r("fd00:244:2::/122", "fd00:99::12")))
	res, err = o.Apply(ctx)
	require.NoError(t, err)
	assert.Equal(t, ReconcileResult{Added: 2, Replaced: 1}, res)
	o.Remove("bgp", RouteKey{Dst: pfx("10.244.3.0/26")})
	res, err = o.Apply(ctx)
	require.NoError(t, err)
	assert.Equal(t, ReconcileResult{Deleted: 1}, res)
	res, err = o.Apply(ctx)
	require.NoError(t, err)
	assert.Equal(t, ReconcileResult{}, res)
	assert.EqualValues(t, 1, h.dumps.Load(), "no dump on the steady path")
	plan, err := o.Plan(ctx)
	require.NoError(t, err)
	assert.True(t, plan.Empty(), "the kernel matches: %s", plan)

	// Drift is not seen by Apply until a write fails...
	require.NoError(t, f.RouteDel(&nl.Route{Dst: prefixToIPNet(pfx("10.244.2.0/26")), Table: TableMain}))
	require.NoError(t, f.RouteAdd(&nl.Route{Family: nl.FAMILY_V4, Type: unix.RTN_UNICAST, Dst: prefixToIPNet(pfx("10.244.4.0/26")), Gw: addrToIP(addr("10.99.0.1")), Protocol: ProtocolRoutes, Table: TableMain}))
	require.NoError(t, o.Upsert("bgp", r("10.244.4.0/26", "10.99.0.15")))
	_, err = o.Apply(ctx) // the kernel already has 10.244.4.0/26: EEXIST
	require.Error(t, err)
	// ... then the next Apply reconciles fully and repairs both.
	dumps := h.dumps.Load()
	res, err = o.Apply(ctx)
	require.NoError(t, err)
	assert.Equal(t, ReconcileResult{Added: 1, Replaced: 1}, res)
	assert.Equal(t, dumps+1, h.dumps.Load())

	// And once the resync interval has passed.
	o2 := mustRouteOwner(t, h, WithResyncInterval(time.Nanosecond))
	require.NoError(t, o2.Set("bgp", o.Desired()))
	dumps = h.dumps.Load()
	for range 2 {
		_, err = o2.Apply(ctx)
		require.NoError(t, err)
	}
	assert.Equal(t, dumps+2, h.dumps.Load(), "every Apply past the interval dumps")

	_, err = NewRouteOwner(f, WithResyncInterval(0))
	assert.ErrorIs(t, err, ErrInvalidOption)
}
