package cni_test

import (
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/cni"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// The pod's MAC through libcni: the hwAddr annotation, runtimeConfig.mac
// (capability "mac") winning over it, both on eth0 inside the pod and in
// the result; pods with chosen MACs talk; CHECK fails once the MAC is
// changed behind the plugin's back and a retried ADD puts it back; a bad
// MAC is code 7 with nothing left.
func TestIntegrationPodMAC(t *testing.T) {
	l := newLab(t)
	annotations := map[string]any{"pods": map[string]any{
		"default/anno":   map[string]string{cni.AnnotationHWAddr: "1c:0c:0a:c0:ff:ee"},
		"default/both":   map[string]string{cni.AnnotationHWAddr: "1c:0c:0a:c0:ff:01"},
		"default/badmac": map[string]string{cni.AnnotationHWAddr: "invalid MAC address"},
	}}
	list := l.tabbyList("macnet", nil, map[string]any{"annotations": annotations, "capabilities": map[string]bool{"mac": true}})
	podMAC := func(pod *nettest.Netns) string {
		eth0, err := pod.Handle().LinkByName("eth0")
		require.NoError(t, err)
		return eth0.Attrs().HardwareAddr.String()
	}

	anno := nettest.NewNetns(t, "cni-mac")
	ra, err := l.add(list, rt("anno", anno.Path))
	require.NoError(t, err)
	require.Len(t, ra.Interfaces, 2)
	assert.Equal(t, "1c:0c:0a:c0:ff:ee", ra.Interfaces[1].Mac)
	assert.Equal(t, "1c:0c:0a:c0:ff:ee", podMAC(anno))

	both := nettest.NewNetns(t, "cni-mac")
	rtBoth := rt("both", both.Path)
	rtBoth.CapabilityArgs = map[string]any{"mac": "02:CA:FE:00:00:01"}
	rb, err := l.add(list, rtBoth)
	require.NoError(t, err)
	assert.Equal(t, "02:ca:fe:00:00:01", rb.Interfaces[1].Mac, "runtimeConfig.mac wins over the annotation")
	assert.Equal(t, "02:ca:fe:00:00:01", podMAC(both))

	serve(t, both, podAddr(t, rb), 8080)
	require.NoError(t, talk(anno, podAddr(t, rb), 8080), "pods with chosen MACs talk")
	require.NoError(t, l.check(list, rt("anno", anno.Path)))
	require.NoError(t, l.check(list, rtBoth))

	// Changed behind the plugin's back: CHECK fails; a retried ADD repairs.
	eth0, err := anno.Handle().LinkByName("eth0")
	require.NoError(t, err)
	require.NoError(t, anno.Handle().LinkSetHardwareAddr(eth0, net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}))
	err = l.check(list, rt("anno", anno.Path))
	require.Error(t, err)
	assert.Equal(t, types.ErrInternal, cniCode(t, err))
	assert.Contains(t, err.Error(), "MAC 02:00:00:00:00:99, want 1c:0c:0a:c0:ff:ee")
	ra2, err := l.add(list, rt("anno", anno.Path))
	require.NoError(t, err)
	assert.Equal(t, "1c:0c:0a:c0:ff:ee", podMAC(anno))
	assert.Equal(t, ra.IPs[0].Address.String(), ra2.IPs[0].Address.String(), "the same address")
	require.NoError(t, l.check(list, rt("anno", anno.Path)))

	// A bad MAC, from the annotation or the runtime: code 7, nothing left.
	bad := nettest.NewNetns(t, "cni-mac")
	_, err = l.add(list, rt("badmac", bad.Path))
	require.Error(t, err)
	assert.Equal(t, types.ErrInvalidNetworkConfig, cniCode(t, err))
	assert.Contains(t, err.Error(), cni.AnnotationHWAddr)
	rtBad := rt("mcast", bad.Path)
	rtBad.CapabilityArgs = map[string]any{"mac": "01:00:5e:00:00:01"}
	_, err = l.add(list, rtBad)
	require.Error(t, err)
	assert.Equal(t, types.ErrInvalidNetworkConfig, cniCode(t, err))
	assert.Contains(t, err.Error(), "runtimeConfig.mac")
	out, err := bad.Run(t.Context(), "ip", "-o", "link", "show")
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(out, "\n"), "only lo in the pod: %s", out)
	l.assertClean("macnet", "badmac", "mcast")

	require.NoError(t, l.del(list, rt("anno", anno.Path)))
	require.NoError(t, l.del(list, rtBoth))
	l.assertClean("macnet", "anno", "both")
}
