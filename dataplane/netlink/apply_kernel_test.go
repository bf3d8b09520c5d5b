package netlink_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// TestKernelRouteOwnerApply: Apply writes deltas to the real kernel; drift
// it cannot see (a route deleted by hand) waits for the next full
// Reconcile, which repairs it.
func TestKernelRouteOwnerApply(t *testing.T) {
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(2))
	n0, gw := topo.Node(0), topo.Node(1).IP
	owner, err := tnl.NewRouteOwner(n0.NS.Handle(), tnl.WithProtocol(150))
	require.NoError(t, err)
	show := func(p string) string {
		out, err := n0.NS.Run(ctx, "ip", "route", "show", p, "proto", "150")
		require.NoError(t, err)
		return out
	}
	route := func(p string) tnl.Route { return tnl.Route{Dst: pfx(p), NextHops: []tnl.NextHop{{Gateway: gw}}} }

	require.NoError(t, owner.Upsert("bgp", route("10.61.0.0/24"), route("10.61.1.0/24")))
	res, err := owner.Apply(ctx) // first call: a full Reconcile
	require.NoError(t, err)
	assert.Equal(t, tnl.ReconcileResult{Added: 2}, res)
	require.NoError(t, owner.Upsert("bgp", route("10.61.2.0/24")))
	owner.Remove("bgp", tnl.RouteKey{Dst: pfx("10.61.0.0/24")})
	res, err = owner.Apply(ctx)
	require.NoError(t, err)
	assert.Equal(t, tnl.ReconcileResult{Added: 1, Deleted: 1}, res)
	assert.Contains(t, show("10.61.2.0/24"), "via "+gw.String())
	assert.Empty(t, show("10.61.0.0/24"))

	_, err = n0.NS.Run(ctx, "ip", "route", "del", "10.61.1.0/24", "proto", "150")
	require.NoError(t, err)
	res, err = owner.Apply(ctx)
	require.NoError(t, err)
	assert.Equal(t, tnl.ReconcileResult{}, res, "Apply trusts its view until the resync interval")
	res, err = owner.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, tnl.ReconcileResult{Added: 1}, res)
	assert.Contains(t, show("10.61.1.0/24"), "via "+gw.String())
}
