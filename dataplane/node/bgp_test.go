package node_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/node"
)

// TestLearnedRoutesAcrossRestart shows what the package doc says about BGP
// learned routes across an agent restart: on the node's own RouteOwner the
// first Reconcile of the new process deletes them (their source is empty
// until the speaker has synced), on a RouteOwner of their own, with another
// protocol, they stay.
func TestLearnedRoutesAcrossRestart(t *testing.T) {
	ctx := context.Background()
	learned := tnl.RouteVia(pfx("10.244.2.0/26"), addr("10.99.0.12"))
	has := func(k *tnl.FakeRouteHandle, proto int) bool {
		rs, err := k.RouteListFiltered(0, nil, 0)
		require.NoError(t, err)
		for _, r := range rs {
			if r.Dst != nil && r.Dst.String() == learned.Dst.String() && r.Protocol == nl.RouteProtocol(proto) {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		name      string
		ownOwner  bool
		wantAfter bool
	}{
		{"shared RouteOwner: deleted by the new agent's first Reconcile", false, false},
		{"own RouteOwner with its own protocol: kept", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := node.Config{Name: "node-1", Address: pfx("10.99.0.11/24")}
			d, fakes, err := node.NewFake(cfg)
			require.NoError(t, err)
			require.NoError(t, d.SetBlocks([]netip.Prefix{pfx("10.244.1.0/26")}))
			bgpRoutes, proto := d.Routes(), tnl.ProtocolRoutes
			if tc.ownOwner {
				proto = tnl.ProtocolRoutes + 2
				bgpRoutes, err = tnl.NewRouteOwner(fakes.Kernel, tnl.WithProtocol(proto))
				require.NoError(t, err)
			}
			require.NoError(t, bgpRoutes.Upsert("bgp", learned)) // the speaker's RouteProgrammer
			require.NoError(t, d.Reconcile(ctx))
			_, err = bgpRoutes.Reconcile(ctx)
			require.NoError(t, err)
			require.True(t, has(fakes.Kernel, proto))

			// The agent restarts: a new Dataplane on the same namespace
			// reconciles its blocks before the new speaker has synced.
			owner, err := tnl.NewRouteOwner(fakes.Kernel)
			require.NoError(t, err)
			d2, err := node.NewWith(cfg, node.Parts{Workloads: fakes.Workloads, Routes: owner})
			require.NoError(t, err)
			require.NoError(t, d2.SetBlocks(d.Blocks()))
			require.NoError(t, d2.Reconcile(ctx))
			assert.Equal(t, tc.wantAfter, has(fakes.Kernel, proto))
		})
	}
}
