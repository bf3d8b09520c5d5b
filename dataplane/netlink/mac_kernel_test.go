package netlink_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
)

// TestKernelWorkloadMAC: a chosen MAC is on the pod's interface (up,
// reachable through proxy ARP), CHECK notices it changed behind tabby's
// back, and a setup puts it back.
func TestKernelWorkloadMAC(t *testing.T) {
	ctx := context.Background()
	node, w, podNS := dualStackNode(t, "tby-mac")
	mac := net.HardwareAddr{0x1c, 0x0c, 0x0a, 0xc0, 0xff, 0xee}
	spec := tnl.WorkloadSpec{ID: "k8s-pod-network.mac1", Netns: podNS.Path,
		Addresses: []netip.Addr{addr("10.244.1.20"), addr("fd00:244:0:1::20")}, MAC: mac}

	res, err := w.SetupWorkload(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, mac.String(), res.Container.MAC.String())
	podMAC := func() (net.HardwareAddr, bool) {
		l, err := podNS.Handle().LinkByName("eth0")
		require.NoError(t, err)
		return l.Attrs().HardwareAddr, l.Attrs().RawFlags&unix.IFF_UP != 0
	}
	got, up := podMAC()
	assert.Equal(t, mac.String(), got.String())
	assert.True(t, up)
	other := node.AddPod(t)
	_, err = podNS.Run(ctx, "ping", "-c", "1", "-W", "2", other.IP.String())
	require.NoError(t, err, "the pod with a chosen MAC reaches another pod")

	cres, err := w.CheckWorkload(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, mac.String(), cres.Container.MAC.String())
	_, err = w.CheckWorkload(ctx, tnl.WorkloadSpec{ID: spec.ID, Netns: spec.Netns, Addresses: spec.Addresses})
	require.ErrorIs(t, err, tnl.ErrMismatch, "without MAC the check expects ContainerMAC")

	// Changed behind tabby's back: CHECK fails, setup repairs.
	_, err = podNS.Run(ctx, "ip", "link", "set", "eth0", "address", "02:00:00:00:00:99")
	require.NoError(t, err)
	_, err = w.CheckWorkload(ctx, spec)
	require.ErrorIs(t, err, tnl.ErrMismatch)
	assert.ErrorContains(t, err, "02:00:00:00:00:99")
	_, err = w.SetupWorkload(ctx, spec)
	require.NoError(t, err)
	got, up = podMAC()
	assert.Equal(t, mac.String(), got.String())
	assert.True(t, up)

	// A retried setup with another MAC fixes the MAC; an invalid one is
	// refused before anything changes.
	mac2 := net.HardwareAddr{0x02, 0, 0, 0, 0xab, 0xcd}
	spec2 := spec
	spec2.MAC = mac2
	_, err = w.SetupWorkload(ctx, spec2)
	require.NoError(t, err)
	got, _ = podMAC()
	assert.Equal(t, mac2.String(), got.String())
	bad := spec
	bad.MAC = net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1}
	_, err = w.SetupWorkload(ctx, bad)
	require.ErrorIs(t, err, tnl.ErrInvalidSpec)
	assert.ErrorContains(t, err, "MAC")
	_, err = w.CheckWorkload(ctx, spec2)
	require.NoError(t, err, "the refused setup changed nothing")

	// DEL's detach finds the pod end by its peer, whatever its MAC.
	require.NoError(t, w.DetachWorkload(ctx, spec.ID, podNS.Path))
	_, err = podNS.Handle().LinkByName(tnl.DetachedIfaceName(spec.ID))
	require.NoError(t, err, "detached, not deleted")
}
