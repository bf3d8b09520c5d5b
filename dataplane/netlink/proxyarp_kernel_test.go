package netlink_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// SetupWorkload's documented prerequisite: proxy ARP answers the pod's ARP
// for 169.254.1.1 only when the host namespace has a route to it through
// another interface. Without one, setup and CHECK succeed but IPv4 pods
// reach nothing; with a default route they reach each other.
func TestKernelProxyARPNeedsHostRoute(t *testing.T) {
	ctx := context.Background()
	host := nettest.NewNetns(t, "tby-parp-h")
	pods := []*nettest.Netns{nettest.NewNetns(t, "tby-parp-a"), nettest.NewNetns(t, "tby-parp-b")}
	addrs := []netip.Addr{addr("10.80.0.1"), addr("10.80.0.2")}
	w, err := tnl.NewWorkloads(host.Path)
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	require.NoError(t, w.EnableForwarding())
	for i, p := range pods {
		spec := tnl.WorkloadSpec{ID: p.Name, Netns: p.Path, Addresses: []netip.Addr{addrs[i]}}
		_, err := w.SetupWorkload(ctx, spec)
		require.NoError(t, err)
		_, err = w.CheckWorkload(ctx, spec)
		require.NoError(t, err)
	}
	ping := func(wait string) error {
		_, err := pods[0].Run(ctx, "ping", "-c1", "-W", wait, addrs[1].String())
		return err
	}
	assert.Error(t, ping("1"), "no host route to 169.254.1.1: no proxy ARP answer")

	// Any interface will do for the default route; a veth pair inside the host.
	out := &nl.Veth{LinkAttrs: nl.LinkAttrs{Name: "uplink0"}, PeerName: "uplink1"}
	require.NoError(t, host.Handle().LinkAdd(out))
	for _, n := range []string{"uplink0", "uplink1"} {
		l, err := host.Handle().LinkByName(n)
		require.NoError(t, err)
		require.NoError(t, host.Handle().LinkSetUp(l))
	}
	l, err := host.Handle().LinkByName("uplink0")
	require.NoError(t, err)
	require.NoError(t, host.Handle().RouteAdd(&nl.Route{LinkIndex: l.Attrs().Index, Scope: nl.SCOPE_LINK, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}))
	// The pod's entry for 169.254.1.1 is still INCOMPLETE, with its next
	// probe up to a second away: start over.
	out2, err := pods[0].Run(ctx, "ip", "neigh", "flush", "all")
	require.NoError(t, err, out2)
	assert.NoError(t, ping("3"), "with a default route the pods reach each other")
}
