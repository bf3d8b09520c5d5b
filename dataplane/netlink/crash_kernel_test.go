package netlink_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
)

// TestKernelSetupAfterCrashBeforeAlias: a SetupWorkload (or CNI ADD)
// killed after the veth pair was made but before the host end got its
// alias leaves the pair as createPair made it: host end named
// HostIfaceName, MAC ee:ee:ee:ee:ee:ee, pod end in the pod netns with
// the pod MAC, both down, no alias. The retried SetupWorkload rebuilds
// it, DetachWorkload with the pod netns takes such a pair off the
// network, and TeardownWorkload (a DEL without the pod netns) deletes it,
// rather than all refusing it as another program's link forever.
func TestKernelSetupAfterCrashBeforeAlias(t *testing.T) {
	ctx := context.Background()
	node, w, podNS := dualStackNode(t, "tby-crash")
	crashedPair := func(spec tnl.WorkloadSpec) {
		t.Helper()
		_, err := node.NS.Run(ctx, "ip", "link", "add", tnl.HostIfaceName(tnl.DefaultHostPrefix, spec.ID),
			"mtu", "1400", "address", tnl.HostMAC().String(), "type", "veth", "peer", "name", "eth0",
			"mtu", "1400", "address", spec.PodMAC().String(), "netns", podNS.Name)
		require.NoError(t, err)
	}
	spec := tnl.WorkloadSpec{ID: "k8s-pod-network.crash1", Netns: podNS.Path, MTU: 1400,
		Addresses: []netip.Addr{addr("10.244.1.30"), addr("fd00:244:0:1::30")}}
	crashedPair(spec)
	_, err := w.SetupWorkload(ctx, spec)
	require.NoError(t, err, "retried setup after a crash before the alias")
	_, err = w.CheckWorkload(ctx, spec)
	require.NoError(t, err)
	require.NoError(t, w.TeardownWorkload(ctx, spec.ID))

	// The runtime gives up and sends DEL with the pod netns instead.
	crashedPair(spec)
	require.NoError(t, w.DetachWorkload(ctx, spec.ID, podNS.Path))
	_, err = node.NS.Handle().LinkByName(tnl.HostIfaceName(tnl.DefaultHostPrefix, spec.ID))
	assert.Error(t, err, "host end gone or renamed")
	ids, err := w.ListWorkloads(ctx)
	require.NoError(t, err)
	assert.Empty(t, ids)
	require.NoError(t, w.TeardownWorkload(ctx, spec.ID))

	// A DEL without the pod netns: the pair is recognised by its host end
	// alone (name, HostMAC, a veth whose peer is in another namespace).
	crashedPair(spec)
	require.NoError(t, w.TeardownWorkload(ctx, spec.ID))
	_, err = node.NS.Handle().LinkByName(tnl.HostIfaceName(tnl.DefaultHostPrefix, spec.ID))
	assert.Error(t, err, "host end deleted")
	out, err := podNS.Run(ctx, "ip", "-o", "link", "show")
	require.NoError(t, err)
	assert.NotContains(t, out, "eth0", "pod end deleted with it")
	require.NoError(t, w.TeardownWorkload(ctx, spec.ID), "again: nothing left")
}
