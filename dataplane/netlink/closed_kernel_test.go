package netlink_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// A closed Workloads or KernelHandle must fail with ErrClosed, never fall
// back to the calling thread's namespace (a closed vishvananda/netlink
// Handle does). The calls run from inside a "caller" namespace, standing
// in for the root namespace of an agent, that holds a link a
// TeardownWorkload("victim") would delete and a route a RouteOwner would
// delete.
func TestKernelUseAfterClose(t *testing.T) {
	ctx := context.Background()
	host := nettest.NewNetns(t, "tby-closed-h")
	caller := nettest.NewNetns(t, "tby-closed-c")
	victim := &nl.Veth{LinkAttrs: nl.LinkAttrs{Name: tnl.HostIfaceName(tnl.DefaultHostPrefix, "victim")}, PeerName: "victim-peer"}
	require.NoError(t, caller.Handle().LinkAdd(victim))
	require.NoError(t, caller.Handle().LinkSetAlias(victim, "tabby:victim"))
	stale := &nl.Route{Dst: &net.IPNet{IP: net.IPv4(10, 78, 0, 0), Mask: net.CIDRMask(24, 32)}, Type: unix.RTN_BLACKHOLE, Protocol: tnl.ProtocolRoutes}
	require.NoError(t, caller.Handle().RouteAdd(stale))

	w, err := tnl.NewWorkloads(host.Path)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, w.Close(), "closing twice")
	kh, err := tnl.NewKernelHandle(host.Path)
	require.NoError(t, err)
	ro, err := tnl.NewRouteOwner(kh)
	require.NoError(t, err)
	kh.Close()
	kh.Close() // twice: nothing

	spec := tnl.WorkloadSpec{ID: "late", Netns: host.Path, IfName: "late0", Addresses: []netip.Addr{addr("10.79.0.1")}}
	calls := []struct {
		name string
		call func() error
	}{
		{"ListWorkloads", func() error { _, err := w.ListWorkloads(ctx); return err }},
		{"TeardownWorkload", func() error { return w.TeardownWorkload(ctx, "victim") }},
		{"DetachWorkload", func() error { return w.DetachWorkload(ctx, "victim", "") }},
		{"RemoveDetached", func() error { return w.RemoveDetached(ctx, nil) }},
		{"SetupWorkload", func() error { _, err := w.SetupWorkload(ctx, spec); return err }},
		{"EnableForwarding", w.EnableForwarding},
		{"RouteOwner.Reconcile", func() error { _, err := ro.Reconcile(ctx); return err }},
		{"KernelHandle.LinkList", func() error { _, err := kh.LinkList(); return err }},
		{"KernelHandle.RouteBatch", func() error { return kh.RouteBatch([]tnl.RouteOp{{Kind: tnl.RouteOpDelete, Route: stale}})[0] }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := caller.Do(c.call)
			assert.ErrorIs(t, err, tnl.ErrClosed)
		})
	}

	_, err = caller.Handle().LinkByName(victim.Name)
	assert.NoError(t, err, "the caller's link is untouched")
	routes, err := caller.Handle().RouteListFiltered(nl.FAMILY_V4, &nl.Route{Protocol: tnl.ProtocolRoutes}, nl.RT_FILTER_PROTOCOL)
	require.NoError(t, err)
	assert.Len(t, routes, 1, "the caller's route is untouched")
}
