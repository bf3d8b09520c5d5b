package kernelsuite

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// FamilyFactory makes the backend under test for one IP family on node,
// rendering tr; clusterCIDR is the pods' pool of that family
// (nettest.PoolCIDR or nettest.PoolCIDR6), for its ClusterCIDRs.
type FamilyFactory func(t *testing.T, node *nettest.Node, tr *services.Tracker, ipv6 bool, clusterCIDR netip.Prefix) Backend

// DualStack: on a dual-stack node, one backend per family (as kube-proxy
// runs one proxier per family) serves a dual-stack Service: both cluster
// IPs spread over both pods, the node port answers on the node's IPv6
// address from outside the node, a dual-stack Service without
// endpoints refuses connections on both, and a dual-stack LoadBalancer's
// loadBalancerSourceRanges apply per family (the external client is in
// its IPv4 range, outside its IPv6 one).
func DualStack(t *testing.T, f FamilyFactory) {
	topo := nettest.NewTopology(t, nettest.Nodes(1), nettest.IPv6()) // skips unless root
	node := topo.Node(0)
	var backends []*nettest.Pod
	for range 2 {
		b := node.AddPod(t)
		b.ListenTCP(t, 8080)
		backends = append(backends, b)
	}
	client := node.AddPod(t)
	ext := topo.AddClient(t)
	lb4, lb6 := netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8:cafe::10")
	for _, r := range []struct{ dst, gw netip.Addr }{{lb4, node.IP}, {lb6, node.IP6}} {
		dst := &net.IPNet{IP: r.dst.AsSlice(), Mask: net.CIDRMask(r.dst.BitLen(), r.dst.BitLen())}
		require.NoError(t, ext.NS.Handle().RouteAdd(&nl.Route{Dst: dst, Gw: r.gw.AsSlice()}))
	}
	ctx := context.Background()
	var bs []Backend
	var allowV6 []func() // per backend: the IPv6 range made to hold ext
	for _, v6 := range []bool{false, true} {
		pool := netip.MustParsePrefix(nettest.PoolCIDR)
		if v6 {
			pool = netip.MustParsePrefix(nettest.PoolCIDR6)
		}
		tr := services.NewTracker(services.TrackerConfig{NodeName: node.Name}, nil)
		dual := func(s *v1.Service) {
			s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, strings.Replace(s.Spec.ClusterIP, "10.96.0.", "fd00:96::", 1))
			s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
		}
		tr.OnServiceUpdate(st.Service("default", "empty", "10.96.0.11", st.Port("http", v1.ProtocolTCP, 80, 30081), dual))
		web := func(ranges ...string) *v1.Service {
			return st.Service("default", "web", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 30080), dual,
				st.LoadBalancer(lb4.String(), lb6.String()), st.SourceRanges(ranges...))
		}
		tr.OnServiceUpdate(web(ext.IP.String()+"/32", "2001:db8:ffff::/48"))
		allowV6 = append(allowV6, func() { tr.OnServiceUpdate(web(ext.IP.String()+"/32", ext.IP6.String()+"/128")) })
		var eps4, eps6 []st.Endpoint
		for _, b := range backends {
			eps4 = append(eps4, st.Endpoint{IP: b.IP.String(), Node: node.Name})
			eps6 = append(eps6, st.Endpoint{IP: b.IP6.String(), Node: node.Name})
		}
		tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-v4", st.WebPorts, eps4...))
		s6 := st.Slice("default", "web", "web-v6", st.WebPorts, eps6...)
		s6.AddressType = discovery.AddressTypeIPv6
		tr.OnEndpointSliceUpdate(s6)
		b := f(t, node, tr, v6, pool)
		require.NoError(t, b.Sync(ctx))
		bs = append(bs, b)
	}
	for _, vip := range []string{"10.96.0.10:80", "[fd00:96::10]:80"} {
		got := map[string]int{}
		for range 30 {
			name, err := client.Probe("tcp", netip.MustParseAddrPort(vip), 2*time.Second)
			require.NoError(t, err, vip)
			got[name]++
		}
		assert.Len(t, got, 2, "%s spreads over both backends: %v", vip, got)
	}
	name, err := ext.Probe("tcp", netip.AddrPortFrom(node.IP6, 30080), 2*time.Second)
	require.NoError(t, err, "IPv6 node port")
	assert.Contains(t, []string{backends[0].Name, backends[1].Name}, name)
	_, err = ext.Probe("tcp", netip.AddrPortFrom(lb4, 80), 2*time.Second)
	require.NoError(t, err, "IPv4 LB IP, client in the IPv4 source range")
	_, err = ext.Probe("tcp", netip.AddrPortFrom(lb6, 80), 500*time.Millisecond)
	require.Error(t, err, "IPv6 LB IP, client outside the IPv6 source range")
	assert.NotContains(t, err.Error(), "refused")
	for i, b := range bs {
		allowV6[i]()
		require.NoError(t, b.Sync(ctx))
	}
	_, err = ext.Probe("tcp", netip.AddrPortFrom(lb6, 80), 2*time.Second)
	require.NoError(t, err, "IPv6 LB IP, client added to the IPv6 source range")
	for _, c := range []struct {
		from *nettest.Pod
		to   netip.AddrPort
	}{
		{client, netip.MustParseAddrPort("[fd00:96::11]:80")},
		{ext, netip.AddrPortFrom(node.IP6, 30081)},
	} {
		_, err := c.from.Probe("tcp", c.to, 2*time.Second)
		require.Error(t, err, "%v has no endpoints", c.to)
		assert.Contains(t, err.Error(), "refused")
	}
}
