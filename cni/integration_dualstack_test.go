package cni_test

import (
	"fmt"
	"net/netip"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// Dual stack through the binaries: every pod gets an IPv4 and an IPv6
// address (assign_ipv6, one pool per family), pods talk TCP over both,
// CHECK passes, and DEL leaves nothing.
func TestIntegrationDualStack(t *testing.T) {
	l := newLab(t)
	require.NoError(t, l.node.Sysctl("net.ipv6.conf.all.forwarding", "1"))
	list := l.tabbyList("dualnet", map[string]any{"assign_ipv6": true, "pools": []any{
		map[string]any{"name": "v4", "cidr": "10.78.0.0/24"},
		map[string]any{"name": "v6", "cidr": "fd00:78::/120"},
	}}, nil)
	var pods []*nettest.Netns
	var v4, v6 []string
	for i := range 2 {
		pod := nettest.NewNetns(t, "cni-pod6")
		r, err := l.add(list, rt(fmt.Sprint("dual", i), pod.Path))
		require.NoError(t, err)
		a4, a6 := families(t, r)
		assert.True(t, netip.MustParsePrefix("10.78.0.0/24").Contains(netip.MustParseAddr(a4)), a4)
		assert.True(t, netip.MustParsePrefix("fd00:78::/120").Contains(netip.MustParseAddr(a6)), a6)
		pods, v4, v6 = append(pods, pod), append(v4, a4), append(v6, a6)
	}
	for i, p := range pods {
		serve(t, p, v4[i], 8080)
		serve(t, p, v6[i], 8080)
	}
	assert.NoError(t, talk(pods[0], v4[1], 8080), "IPv4 pod0 -> pod1")
	assert.NoError(t, talk(pods[0], v6[1], 8080), "IPv6 pod0 -> pod1")
	assert.NoError(t, talk(pods[1], v6[0], 8080), "IPv6 pod1 -> pod0")
	for i, p := range pods {
		require.NoError(t, l.check(list, rt(fmt.Sprint("dual", i), p.Path)))
		require.NoError(t, l.del(list, rt(fmt.Sprint("dual", i), p.Path)))
	}
	l.assertClean("dualnet", "dual0", "dual1")
}

// families returns the result's IPv4 and IPv6 address (one of each).
func families(t *testing.T, r *current.Result) (v4, v6 string) {
	t.Helper()
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil {
			require.Empty(t, v4, "two IPv4 addresses")
			v4 = ip.Address.IP.String()
		} else {
			require.Empty(t, v6, "two IPv6 addresses")
			v6 = ip.Address.IP.String()
		}
	}
	require.NotEmpty(t, v4, "no IPv4 address")
	require.NotEmpty(t, v6, "no IPv6 address")
	return v4, v6
}
