package services_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/tabbynet/tabby/services"
	st "github.com/tabbynet/tabby/services/servicestest"
)

var tcp80 = []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}}

func spn(ns, name, port string, p v1.Protocol) services.ServicePortName {
	return services.ServicePortName{Namespace: ns, Name: name, Port: port, Protocol: p}
}

func addrs(eps []services.Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.String())
	}
	return out
}

func TestServicePorts(t *testing.T) {
	npr := services.NodePortRange{Min: 30000, Max: 32767}
	tests := []struct {
		name    string
		svc     *v1.Service
		want    int
		wantErr bool
		check   func(t *testing.T, ps []*services.ServicePort)
	}{
		{name: "clusterIP", svc: st.Service("ns", "a", "10.96.0.10", st.Port("dns", v1.ProtocolUDP, 53, 0), st.Port("dns-tcp", v1.ProtocolTCP, 53, 0)), want: 2,
			check: func(t *testing.T, ps []*services.ServicePort) {
				assert.Equal(t, spn("ns", "a", "dns", v1.ProtocolUDP), ps[0].Name)
				assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.96.0.10")}, ps[0].ClusterIPs)
				assert.Zero(t, ps[0].AffinityTimeout)
				assert.False(t, ps[0].ExternallyAccessible())
			}},
		{name: "headless", svc: st.Service("ns", "a", "None", st.Port("", v1.ProtocolTCP, 80, 0)), want: 0},
		{name: "unallocated", svc: st.Service("ns", "a", "", st.Port("", v1.ProtocolTCP, 80, 0)), want: 0},
		// kube-proxy watches only Services without the
		// service.kubernetes.io/service-proxy-name label (whatever its
		// value): another proxy serves them.
		{name: "another proxy's", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", v1.ProtocolTCP, 80, 30080), func(s *v1.Service) {
			s.Labels = map[string]string{"service.kubernetes.io/service-proxy-name": "multus-proxy"}
		}), want: 0},
		{name: "another proxy's, empty name", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", v1.ProtocolTCP, 80, 0), func(s *v1.Service) {
			s.Labels = map[string]string{"service.kubernetes.io/service-proxy-name": ""}
		}), want: 0},
		{name: "externalName", svc: st.Service("ns", "a", "10.96.0.1", func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeExternalName }), want: 0},
		{name: "dual stack", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), func(s *v1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.1", "fd00:96::1"} }), want: 1,
			check: func(t *testing.T, ps []*services.ServicePort) {
				assert.Len(t, ps[0].ClusterIPs, 2)
				assert.Equal(t, v1.ProtocolTCP, ps[0].Name.Protocol, "protocol defaults to TCP")
			}},
		{name: "nodeport local affinity", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", v1.ProtocolSCTP, 80, 30080), func(s *v1.Service) {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
		}), want: 1, check: func(t *testing.T, ps []*services.ServicePort) {
			assert.Equal(t, uint16(30080), ps[0].NodePort)
			assert.True(t, ps[0].ExternalPolicyLocal)
			assert.Equal(t, time.Minute, ps[0].AffinityTimeout)
		}},
		{name: "default affinity timeout", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), func(s *v1.Service) { s.Spec.SessionAffinity = v1.ServiceAffinityClientIP }), want: 1,
			check: func(t *testing.T, ps []*services.ServicePort) { assert.Equal(t, 3*time.Hour, ps[0].AffinityTimeout) }},
		{name: "ETP local ignored on ClusterIP type", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), func(s *v1.Service) {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		}), want: 1, check: func(t *testing.T, ps []*services.ServicePort) { assert.False(t, ps[0].ExternalPolicyLocal) }},
		{name: "loadbalancer", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 31000), func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 32000
			s.Spec.ExternalIPs = []string{"192.0.2.1"}
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.7"}, {Hostname: "lb.example"}}
			s.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
		}), want: 1, check: func(t *testing.T, ps []*services.ServicePort) {
			p := ps[0]
			assert.Equal(t, []netip.Addr{netip.MustParseAddr("203.0.113.7")}, p.LoadBalancerIPs)
			assert.Equal(t, []netip.Addr{netip.MustParseAddr("192.0.2.1")}, p.ExternalIPs)
			assert.Equal(t, uint16(32000), p.HealthCheckNodePort)
			assert.True(t, p.InternalPolicyLocal)
		}},
		{name: "source ranges trimmed, masked, both families", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 31000),
			st.LoadBalancer("203.0.113.7", "2001:db8::7"), st.SourceRanges(" 198.51.100.0/24", "10.0.0.5/8\t", "2001:db8:1::/48", "192.0.2.9/32")),
			want: 1, check: func(t *testing.T, ps []*services.ServicePort) {
				assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("10.0.0.0/8"),
					netip.MustParsePrefix("2001:db8:1::/48"), netip.MustParsePrefix("192.0.2.9/32")}, ps[0].LoadBalancerSourceRanges)
			}},
		{name: "ipMode Proxy ingress skipped, VIP and unset kept", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 31000), func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.1", IPMode: ptr.To(v1.LoadBalancerIPModeProxy)},
				{IP: "203.0.113.2", IPMode: ptr.To(v1.LoadBalancerIPModeVIP)}, {IP: "203.0.113.3"}}
		}), want: 1, check: func(t *testing.T, ps []*services.ServicePort) {
			assert.Equal(t, []netip.Addr{netip.MustParseAddr("203.0.113.2"), netip.MustParseAddr("203.0.113.3")}, ps[0].LoadBalancerIPs)
		}},
		{name: "no source ranges", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 31000), st.LoadBalancer("203.0.113.7")), want: 1,
			check: func(t *testing.T, ps []*services.ServicePort) { assert.Nil(t, ps[0].LoadBalancerSourceRanges) }},
		{name: "source ranges ignored unless LoadBalancer", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 31000), st.SourceRanges("10.0.0.0/8", "bad")), want: 1,
			check: func(t *testing.T, ps []*services.ServicePort) { assert.Nil(t, ps[0].LoadBalancerSourceRanges) }},
		{name: "bad source range", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), st.LoadBalancer("203.0.113.7"), st.SourceRanges("10.0.0.0/8", "10.0.0.0/33")), wantErr: true},
		{name: "source range without length", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), st.LoadBalancer("203.0.113.7"), st.SourceRanges("10.0.0.1")), wantErr: true},
		{name: "empty source range", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), st.LoadBalancer("203.0.113.7"), st.SourceRanges(" ")), wantErr: true},
		{name: "source range with leading zeros", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), st.LoadBalancer("203.0.113.7"), st.SourceRanges("010.0.0.0/8")), wantErr: true},
		{name: "source range with a zone", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), st.LoadBalancer("203.0.113.7"), st.SourceRanges("fe80::%eth0/64")), wantErr: true},
		{name: "bad clusterIP", svc: st.Service("ns", "a", "10.96.0.300", st.Port("", "", 80, 0)), wantErr: true},
		{name: "bad externalIP", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), func(s *v1.Service) { s.Spec.ExternalIPs = []string{"x"} }), wantErr: true},
		{name: "bad protocol", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "ICMP", 80, 0)), wantErr: true},
		{name: "bad port", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 0, 0)), wantErr: true},
		{name: "nodePort out of range", svc: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 8080)), wantErr: true},
		{name: "duplicate port", svc: st.Service("ns", "a", "10.96.0.1", st.Port("x", "", 80, 0), st.Port("x", "", 81, 0)), wantErr: true},
		{name: "same port and protocol under two names", svc: st.Service("ns", "a", "10.96.0.1", st.Port("x", "", 80, 0), st.Port("y", v1.ProtocolTCP, 80, 0)), wantErr: true},
		{name: "same nodePort and protocol twice", svc: st.Service("ns", "a", "10.96.0.1", st.Port("x", "", 80, 30080), st.Port("y", "", 81, 30080)), wantErr: true},
		{name: "same port and nodePort, other protocol", svc: st.Service("ns", "a", "10.96.0.1", st.Port("x", v1.ProtocolTCP, 53, 30053), st.Port("y", v1.ProtocolUDP, 53, 30053)), want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := services.ServicePorts(tt.svc, npr)
			if tt.wantErr {
				require.ErrorIs(t, err, services.ErrInvalidService)
				assert.Contains(t, err.Error(), "ns/a")
				return
			}
			require.NoError(t, err)
			require.Len(t, ps, tt.want)
			if tt.check != nil {
				tt.check(t, ps)
			}
		})
	}
}

// The zero NodePortRange is the default one, as TrackerConfig's.
func TestServicePortsDefaultNodePortRange(t *testing.T) {
	svc := st.Service("default", "web", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 30080))
	svc.Spec.Type = v1.ServiceTypeNodePort
	ps, err := services.ServicePorts(svc, services.NodePortRange{})
	require.NoError(t, err)
	require.Len(t, ps, 1)
	assert.Equal(t, uint16(30080), ps[0].NodePort)
	svc.Spec.Ports[0].NodePort = 29999
	_, err = services.ServicePorts(svc, services.NodePortRange{})
	assert.ErrorIs(t, err, services.ErrInvalidService)
}

func TestFirewallSources(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	sp := &services.ServicePort{
		LoadBalancerIPs:          []netip.Addr{a("203.0.113.7"), a("2001:db8::7")},
		LoadBalancerSourceRanges: []netip.Prefix{p("198.51.100.0/24"), p("2001:db8:1::/48"), p("192.168.0.0/24")},
	}
	tests := []struct {
		name    string
		sp      *services.ServicePort
		ipv6    bool
		nodeIPs []netip.Addr
		want    []netip.Prefix
	}{
		{"IPv4 ranges only", sp, false, nil, []netip.Prefix{p("198.51.100.0/24"), p("192.168.0.0/24")}},
		{"IPv6 ranges only", sp, true, []netip.Addr{a("192.168.0.10")}, []netip.Prefix{p("2001:db8:1::/48")}},
		{"a range holds the node: the LB IP too", sp, false, []netip.Addr{a("2001:db8:1::10"), a("192.168.0.10")},
			[]netip.Prefix{p("198.51.100.0/24"), p("192.168.0.0/24"), p("203.0.113.7/32")}},
		{"IPv6 node address in an IPv6 range", sp, true, []netip.Addr{a("2001:db8:1::10")}, []netip.Prefix{p("2001:db8:1::/48"), p("2001:db8::7/128")}},
		{"node outside every range", sp, false, []netip.Addr{a("10.0.0.1")}, []netip.Prefix{p("198.51.100.0/24"), p("192.168.0.0/24")}},
		{"IPv4-mapped node address counts as IPv4", sp, false, []netip.Addr{a("::ffff:192.168.0.10")},
			[]netip.Prefix{p("198.51.100.0/24"), p("192.168.0.0/24"), p("203.0.113.7/32")}},
		{"no LB IP of the family: not filtered", &services.ServicePort{LoadBalancerIPs: []netip.Addr{a("203.0.113.7")},
			LoadBalancerSourceRanges: sp.LoadBalancerSourceRanges}, true, nil, nil},
		{"no range of the family: not filtered", &services.ServicePort{LoadBalancerIPs: sp.LoadBalancerIPs,
			LoadBalancerSourceRanges: []netip.Prefix{p("10.0.0.0/8")}}, true, nil, nil},
		{"no LB IP", &services.ServicePort{LoadBalancerSourceRanges: sp.LoadBalancerSourceRanges}, false, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.sp.FirewallSources(tt.ipv6, tt.nodeIPs))
		})
	}
}

func TestCategorize(t *testing.T) {
	tests := []struct {
		name         string
		zone         string
		eps          []st.Endpoint
		cluster, loc []string
	}{
		{name: "ready only", eps: []st.Endpoint{{IP: "10.0.0.2", Node: "me"}, {IP: "10.0.0.1", Node: "other"}, {IP: "10.0.0.3", NotReady: true, NotServing: true}},
			cluster: []string{"10.0.0.1:8080", "10.0.0.2:8080"}, loc: []string{"10.0.0.2:8080"}},
		{name: "terminating ignored while a ready one exists", eps: []st.Endpoint{{IP: "10.0.0.1", Node: "other"}, {IP: "10.0.0.2", Node: "me", Terminating: true}},
			cluster: []string{"10.0.0.1:8080"}, loc: []string{"10.0.0.2:8080"}},
		{name: "terminating fallback", eps: []st.Endpoint{{IP: "10.0.0.1", Terminating: true}, {IP: "10.0.0.2", Terminating: true, NotServing: true}},
			cluster: []string{"10.0.0.1:8080"}},
		{name: "none", eps: []st.Endpoint{{IP: "10.0.0.1", NotReady: true, NotServing: true}}},
		// Topology-aware routing (kube-proxy's CategorizeEndpoints): when
		// every ready endpoint of a family has node hints
		// (hints.forNodes) and one names this node, the Cluster set is
		// the endpoints hinted for it; else when every ready endpoint has
		// zone hints and one names this node's zone, those hinted for the
		// zone. Otherwise, and for the terminating fallback and the Local
		// set, hints are ignored.
		{name: "zone hints for this zone", zone: "a", eps: []st.Endpoint{
			{IP: "10.0.0.1", Node: "n1", Zones: []string{"a"}}, {IP: "10.0.0.2", Node: "me", Zones: []string{"b"}},
			{IP: "10.0.0.3", Node: "n3", Zones: []string{"b", "a"}}, {IP: "10.0.0.4", NotReady: true}},
			cluster: []string{"10.0.0.1:8080", "10.0.0.3:8080"}, loc: []string{"10.0.0.2:8080"}},
		{name: "one ready endpoint without hints", zone: "a", eps: []st.Endpoint{
			{IP: "10.0.0.1", Zones: []string{"a"}}, {IP: "10.0.0.2"}},
			cluster: []string{"10.0.0.1:8080", "10.0.0.2:8080"}},
		{name: "no hint for this zone", zone: "c", eps: []st.Endpoint{
			{IP: "10.0.0.1", Zones: []string{"a"}}, {IP: "10.0.0.2", Zones: []string{"b"}}},
			cluster: []string{"10.0.0.1:8080", "10.0.0.2:8080"}},
		{name: "node without a zone", eps: []st.Endpoint{
			{IP: "10.0.0.1", Zones: []string{"a"}}, {IP: "10.0.0.2", Zones: []string{"b"}}},
			cluster: []string{"10.0.0.1:8080", "10.0.0.2:8080"}},
		{name: "terminating fallback ignores hints", zone: "a", eps: []st.Endpoint{
			{IP: "10.0.0.1", Terminating: true, Zones: []string{"b"}}, {IP: "10.0.0.2", Terminating: true, Zones: []string{"a"}}},
			cluster: []string{"10.0.0.1:8080", "10.0.0.2:8080"}},
		{name: "node hints win over zone hints", zone: "a", eps: []st.Endpoint{
			{IP: "10.0.0.1", Node: "me", Nodes: []string{"me"}, Zones: []string{"b"}}, {IP: "10.0.0.2", Nodes: []string{"n2"}, Zones: []string{"a"}}},
			cluster: []string{"10.0.0.1:8080"}, loc: []string{"10.0.0.1:8080"}},
		{name: "node hints not for this node: zone hints", zone: "a", eps: []st.Endpoint{
			{IP: "10.0.0.1", Nodes: []string{"n1"}, Zones: []string{"b"}}, {IP: "10.0.0.2", Nodes: []string{"n2"}, Zones: []string{"a"}}},
			cluster: []string{"10.0.0.2:8080"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := services.NewTracker(services.TrackerConfig{NodeName: "me", Zone: tt.zone}, nil)
			tr.OnServiceUpdate(st.Service("ns", "s", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0)))
			tr.OnEndpointSliceUpdate(st.Slice("ns", "s", "s-1", tcp80, tt.eps...))
			r := tr.Changes()[spn("ns", "s", "http", v1.ProtocolTCP)]
			require.NotNil(t, r)
			assert.Equal(t, tt.cluster, addrs(r.Endpoints.Cluster))
			assert.Equal(t, tt.loc, addrs(r.Endpoints.Local))
		})
	}
}

func TestTrackerChanges(t *testing.T) {
	var logs bytes.Buffer
	tr := services.NewTracker(services.TrackerConfig{NodeName: "me"}, slog.New(slog.NewTextHandler(&logs, nil)))
	web := st.Service("ns", "web", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 30080), st.Port("dns", v1.ProtocolUDP, 53, 0))
	tr.OnServiceUpdate(web)
	tr.OnEndpointSliceUpdate(st.Slice("ns", "web", "web-1", []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}, {Name: "dns", Proto: v1.ProtocolUDP, Port: 5353}}, st.Endpoint{IP: "10.244.0.1"}))
	tr.OnEndpointSliceUpdate(st.Slice("ns", "web", "web-2", tcp80, st.Endpoint{IP: "10.244.0.2"}, st.Endpoint{IP: "bad"}))
	ch := tr.Changes()
	require.Len(t, ch, 2)
	assert.Equal(t, []string{"10.244.0.1:8080", "10.244.0.2:8080"}, addrs(ch[spn("ns", "web", "http", v1.ProtocolTCP)].Endpoints.Cluster))
	assert.Equal(t, []string{"10.244.0.1:5353"}, addrs(ch[spn("ns", "web", "dns", v1.ProtocolUDP)].Endpoints.Cluster))
	assert.Contains(t, logs.String(), `address \"bad\"`)
	assert.Empty(t, tr.Changes(), "nothing changed since")

	// A clashing node port: the later Service (by name) is skipped and
	// logged; the owner keeps working; when the owner goes the other one
	// takes over.
	clash := st.Service("ns", "zzz", "10.96.0.2", st.Port("", v1.ProtocolTCP, 81, 30080))
	tr.OnServiceUpdate(clash)
	ch = tr.Changes()
	assert.Empty(t, ch[spn("ns", "zzz", "", v1.ProtocolTCP)])
	assert.NotNil(t, ch[spn("ns", "web", "http", v1.ProtocolTCP)], "owner re-evaluated and still valid")
	assert.Contains(t, logs.String(), "node port already allocated")
	tr.OnServiceDelete(web)
	ch = tr.Changes()
	assert.Contains(t, ch, spn("ns", "web", "http", v1.ProtocolTCP))
	assert.Nil(t, ch[spn("ns", "web", "http", v1.ProtocolTCP)], "deleted port reported as nil")
	assert.NotNil(t, ch[spn("ns", "zzz", "", v1.ProtocolTCP)], "clash resolved")
	assert.Len(t, tr.All(), 1)

	// A Service turning invalid removes its ports and leaves the others.
	tr.OnServiceUpdate(st.Service("ns", "zzz", "nope", st.Port("", v1.ProtocolTCP, 81, 30080)))
	ch = tr.Changes()
	assert.Equal(t, map[services.ServicePortName]*services.Resolved{spn("ns", "zzz", "", v1.ProtocolTCP): nil}, ch)
	assert.Empty(t, tr.All())
}

func TestAnnounce(t *testing.T) {
	p := netip.MustParsePrefix
	cfg := services.AnnounceConfig{
		ServiceClusterIPs:      []netip.Prefix{p("10.96.0.0/12")},
		ServiceExternalIPs:     []netip.Prefix{p("192.0.2.0/24")},
		ServiceLoadBalancerIPs: []netip.Prefix{p("203.0.113.0/25")},
	}
	local := func(ready bool) func(*v1.Service) {
		return func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.ExternalIPs = []string{"192.0.2.9", "198.51.100.1"}
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.5"}, {IP: "203.0.113.200"}}
		}
	}
	base := []string{"10.96.0.0/12", "192.0.2.0/24", "203.0.113.0/25"}
	tests := []struct {
		name      string
		eps, eps6 []st.Endpoint
		etp, dual bool
		want      []string
	}{
		{name: "ranges only without a local endpoint", etp: true, eps: []st.Endpoint{{IP: "10.244.0.1", Node: "other"}}, want: base},
		{name: "local ready endpoint adds /32s inside ranges", etp: true, eps: []st.Endpoint{{IP: "10.244.0.1", Node: "me"}},
			want: []string{"10.96.0.0/12", "10.96.0.10/32", "192.0.2.0/24", "192.0.2.9/32", "203.0.113.0/25", "203.0.113.5/32"}},
		{name: "terminating local endpoint is not announced", etp: true, eps: []st.Endpoint{{IP: "10.244.0.1", Node: "me", Terminating: true}}, want: base},
		{name: "cluster policy never /32", etp: false, eps: []st.Endpoint{{IP: "10.244.0.1", Node: "me"}}, want: base},
		{name: "dual stack: a local IPv4 endpoint announces only the IPv4 addresses", etp: true, dual: true,
			eps:  []st.Endpoint{{IP: "10.244.0.1", Node: "me"}},
			eps6: []st.Endpoint{{IP: "fd00:244::1", Node: "other"}},
			want: []string{"10.96.0.0/12", "10.96.0.10/32", "192.0.2.0/24", "192.0.2.9/32", "203.0.113.0/25", "203.0.113.5/32", "fd00:96::/112", "fd00:203::/64"}},
		{name: "dual stack: a local IPv6 endpoint announces only the IPv6 addresses", etp: true, dual: true,
			eps:  []st.Endpoint{{IP: "10.244.0.1", Node: "other"}},
			eps6: []st.Endpoint{{IP: "fd00:244::1", Node: "me"}},
			want: append(slices.Clone(base), "fd00:96::/112", "fd00:96::10/128", "fd00:203::/64", "fd00:203::5/128")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := services.NewTracker(services.TrackerConfig{NodeName: "me"}, nil)
			mods := []func(*v1.Service){st.Port("http", v1.ProtocolTCP, 80, 30080)}
			if tt.etp {
				mods = append(mods, local(true))
			}
			cfg := cfg
			if tt.dual {
				mods = append(mods, func(s *v1.Service) {
					s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, "fd00:96::10")
					s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: "fd00:203::5"})
				})
				cfg.ServiceClusterIPs = append(slices.Clone(cfg.ServiceClusterIPs), p("fd00:96::/112"))
				cfg.ServiceLoadBalancerIPs = append(slices.Clone(cfg.ServiceLoadBalancerIPs), p("fd00:203::/64"))
			}
			tr.OnServiceUpdate(st.Service("ns", "s", "10.96.0.10", mods...))
			tr.OnEndpointSliceUpdate(st.Slice("ns", "s", "s-1", tcp80, tt.eps...))
			if tt.eps6 != nil {
				s6 := st.Slice("ns", "s", "s-2", tcp80, tt.eps6...)
				s6.AddressType = discovery.AddressTypeIPv6
				tr.OnEndpointSliceUpdate(s6)
			}
			tr.Changes()
			var got []string
			for _, x := range services.Announce(tr.All(), cfg) {
				got = append(got, x.String())
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// A destination (address, protocol, port) shared by several Services'
// ports goes to one of them: cluster IPs before load-balancer IPs before
// external IPs, then the oldest, then by namespace/name. The loser keeps
// its other destinations and gets the lost one back once the owner goes.
func TestTrackerDestinationClash(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name          string
		winner, loser *v1.Service
		check         func(t *testing.T, w, l *services.ServicePort)
		noClash       bool
	}{
		{name: "same external IP: the older wins",
			winner: st.Service("ns", "z-old", "10.96.0.1", st.Port("", "", 80, 0), st.ExternalIPs("192.0.2.1"), st.Created(1)),
			loser:  st.Service("ns", "a-new", "10.96.0.2", st.Port("", "", 80, 0), st.ExternalIPs("192.0.2.1", "192.0.2.2"), st.Created(2)),
			check: func(t *testing.T, w, l *services.ServicePort) {
				assert.Equal(t, []netip.Addr{a("192.0.2.1")}, w.ExternalIPs)
				assert.Equal(t, []netip.Addr{a("192.0.2.2")}, l.ExternalIPs, "only the clashing destination is dropped")
				assert.Equal(t, []netip.Addr{a("10.96.0.2")}, l.ClusterIPs)
			}},
		{name: "external IP equal to another's cluster IP: the cluster IP wins even if younger",
			winner: st.Service("ns", "b", "10.96.0.1", st.Port("", "", 80, 0), st.Created(2)),
			loser:  st.Service("ns", "a", "10.96.0.2", st.Port("", "", 80, 0), st.ExternalIPs("10.96.0.1"), st.Created(1)),
			check: func(t *testing.T, w, l *services.ServicePort) {
				assert.Equal(t, []netip.Addr{a("10.96.0.1")}, w.ClusterIPs)
				assert.Empty(t, l.ExternalIPs)
			}},
		{name: "same cluster IP and port: the older wins",
			winner: st.Service("ns", "b", "10.96.0.1", st.Port("", "", 80, 0), st.Created(1)),
			loser:  st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), st.Created(2)),
			check: func(t *testing.T, w, l *services.ServicePort) {
				assert.Equal(t, []netip.Addr{a("10.96.0.1")}, w.ClusterIPs)
				assert.Empty(t, l.ClusterIPs)
			}},
		{name: "same load-balancer IP: same age, the first by namespace/name wins",
			winner: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 30080), st.LoadBalancer("203.0.113.1")),
			loser:  st.Service("ns", "b", "10.96.0.2", st.Port("", "", 80, 30081), st.LoadBalancer("203.0.113.1", "203.0.113.2")),
			check: func(t *testing.T, w, l *services.ServicePort) {
				assert.Equal(t, []netip.Addr{a("203.0.113.1")}, w.LoadBalancerIPs)
				assert.Equal(t, []netip.Addr{a("203.0.113.2")}, l.LoadBalancerIPs)
				assert.Equal(t, uint16(30081), l.NodePort)
			}},
		{name: "load-balancer IP before external IP",
			winner: st.Service("ns", "b", "10.96.0.1", st.Port("", "", 80, 30080), st.LoadBalancer("203.0.113.1"), st.Created(2)),
			loser:  st.Service("ns", "a", "10.96.0.2", st.Port("", "", 80, 0), st.ExternalIPs("203.0.113.1"), st.Created(1)),
			check: func(t *testing.T, w, l *services.ServicePort) {
				assert.Equal(t, []netip.Addr{a("203.0.113.1")}, w.LoadBalancerIPs)
				assert.Empty(t, l.ExternalIPs)
			}},
		{name: "same external IP, other port: no clash", noClash: true,
			winner: st.Service("ns", "a", "10.96.0.1", st.Port("", "", 80, 0), st.ExternalIPs("192.0.2.1")),
			loser:  st.Service("ns", "b", "10.96.0.2", st.Port("", "", 81, 0), st.ExternalIPs("192.0.2.1")),
			check: func(t *testing.T, w, l *services.ServicePort) {
				assert.Equal(t, w.ExternalIPs, l.ExternalIPs)
			}},
		{name: "same external IP, other protocol: no clash", noClash: true,
			winner: st.Service("ns", "a", "10.96.0.1", st.Port("", v1.ProtocolTCP, 80, 0), st.ExternalIPs("192.0.2.1")),
			loser:  st.Service("ns", "b", "10.96.0.2", st.Port("", v1.ProtocolUDP, 80, 0), st.ExternalIPs("192.0.2.1")),
			check: func(t *testing.T, w, l *services.ServicePort) {
				assert.Equal(t, w.ExternalIPs, l.ExternalIPs)
			}},
	}
	port := func(ch map[services.ServicePortName]*services.Resolved, s *v1.Service) *services.ServicePort {
		proto := s.Spec.Ports[0].Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		r := ch[spn(s.Namespace, s.Name, "", proto)]
		require.NotNil(t, r, "%s/%s resolved", s.Namespace, s.Name)
		return r.Port
	}
	for _, tt := range tests {
		for _, order := range []string{"winner first", "loser first"} {
			t.Run(tt.name+"/"+order, func(t *testing.T) {
				var logs bytes.Buffer
				tr := services.NewTracker(services.TrackerConfig{}, slog.New(slog.NewTextHandler(&logs, nil)))
				if order == "winner first" {
					tr.OnServiceUpdate(tt.winner)
					tr.OnServiceUpdate(tt.loser)
				} else {
					tr.OnServiceUpdate(tt.loser)
					tr.OnServiceUpdate(tt.winner)
				}
				ch := tr.Changes()
				tt.check(t, port(ch, tt.winner), port(ch, tt.loser))
				if tt.noClash {
					assert.NotContains(t, logs.String(), "dropping service destination")
					return
				}
				assert.Contains(t, logs.String(), "dropping service destination")
				assert.Contains(t, logs.String(), "service="+tt.loser.Namespace+"/"+tt.loser.Name+":")
				assert.Contains(t, logs.String(), "owner="+tt.winner.Namespace+"/"+tt.winner.Name+":")

				// The owner goes: the loser gets the destination back.
				want, err := services.ServicePorts(tt.loser, services.NodePortRange{})
				require.NoError(t, err)
				tr.OnServiceDelete(tt.winner)
				ch = tr.Changes()
				assert.Equal(t, want[0], port(ch, tt.loser))
			})
		}
	}
}

// An invalid Service claims no node port: a valid one asking for the
// same node port gets it.
func TestTrackerInvalidServiceClaimsNothing(t *testing.T) {
	tests := []struct {
		name string
		bad  *v1.Service
	}{
		{"bad clusterIP", st.Service("ns", "a-bad", "not-an-ip", st.Port("", v1.ProtocolTCP, 80, 30080))},
		{"bad protocol", st.Service("ns", "a-bad", "10.96.0.1", st.Port("", "ICMP", 80, 30080), st.Port("x", v1.ProtocolTCP, 81, 30080))},
		{"bad externalIP on a shared destination", st.Service("ns", "a-bad", "10.96.0.2", st.Port("", v1.ProtocolTCP, 80, 30080),
			func(s *v1.Service) { s.Spec.ExternalIPs = []string{"10.96.0.9", "x"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			tr := services.NewTracker(services.TrackerConfig{}, slog.New(slog.NewTextHandler(&logs, nil)))
			tr.OnServiceUpdate(tt.bad)
			tr.OnServiceUpdate(st.Service("ns", "b-good", "10.96.0.9", st.Port("", v1.ProtocolTCP, 80, 30080)))
			ch := tr.Changes()
			r := ch[spn("ns", "b-good", "", v1.ProtocolTCP)]
			require.NotNil(t, r)
			assert.Equal(t, uint16(30080), r.Port.NodePort)
			assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.96.0.9")}, r.Port.ClusterIPs)
			assert.NotContains(t, logs.String(), "already")
			assert.Contains(t, logs.String(), "invalid service")
		})
	}
}

// One address:port in several slices of a Service resolves the same way
// whatever the order of events: slices are walked by name and a later
// copy replaces the kept one unless it is terminating (kube-proxy's rule).
func TestTrackerDuplicateEndpointAcrossSlices(t *testing.T) {
	tests := []struct {
		name           string
		slices         map[string]st.Endpoint // slice name → its copy of 10.244.0.1
		cluster, local []string
	}{
		{name: "ready copy in the later slice wins over a not-ready one",
			slices:  map[string]st.Endpoint{"s-a": {IP: "10.244.0.1", NotReady: true}, "s-b": {IP: "10.244.0.1", Node: "me"}},
			cluster: []string{"10.244.0.1:8080"}, local: []string{"10.244.0.1:8080"}},
		{name: "not-ready copy in the later slice wins over a ready one",
			slices: map[string]st.Endpoint{"s-a": {IP: "10.244.0.1", Node: "me"}, "s-b": {IP: "10.244.0.1", NotReady: true}}},
		{name: "a terminating copy never replaces a kept one",
			slices:  map[string]st.Endpoint{"s-a": {IP: "10.244.0.1", Node: "me"}, "s-b": {IP: "10.244.0.1", Terminating: true, NotReady: true}},
			cluster: []string{"10.244.0.1:8080"}, local: []string{"10.244.0.1:8080"}},
		{name: "all terminating: the first by slice name",
			slices:  map[string]st.Endpoint{"s-a": {IP: "10.244.0.1", Terminating: true, NotReady: true}, "s-b": {IP: "10.244.0.1", Terminating: true, NotReady: true, NotServing: true}},
			cluster: []string{"10.244.0.1:8080"}},
	}
	for _, tt := range tests {
		names := slices.Sorted(maps.Keys(tt.slices))
		for _, reverse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reverse=%v", tt.name, reverse), func(t *testing.T) {
				tr := services.NewTracker(services.TrackerConfig{NodeName: "me"}, nil)
				tr.OnServiceUpdate(st.Service("ns", "s", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0)))
				order := slices.Clone(names)
				if reverse {
					slices.Reverse(order)
				}
				for _, n := range order {
					tr.OnEndpointSliceUpdate(st.Slice("ns", "s", n, tcp80, tt.slices[n]))
				}
				r := tr.Changes()[spn("ns", "s", "http", v1.ProtocolTCP)]
				require.NotNil(t, r)
				assert.Equal(t, tt.cluster, addrs(r.Endpoints.Cluster))
				assert.Equal(t, tt.local, addrs(r.Endpoints.Local))
			})
		}
	}
}

// Slices are tracked by namespace/name: a relabelled slice moves to its
// new Service, an unlabelled one is dropped, and a delete removes it
// wherever it was recorded, whatever labels the deleted object carries.
func TestTrackerSliceRelabel(t *testing.T) {
	a, b := spn("ns", "a", "http", v1.ProtocolTCP), spn("ns", "b", "http", v1.ProtocolTCP)
	relabel := func(svc string) *discovery.EndpointSlice {
		s := st.Slice("ns", "a", "shared", tcp80, st.Endpoint{IP: "10.244.0.1"})
		if svc == "" {
			delete(s.Labels, discovery.LabelServiceName)
		} else {
			s.Labels[discovery.LabelServiceName] = svc
		}
		return s
	}
	tests := []struct {
		name   string
		events func(tr *services.Tracker)
		a, b   []string
	}{
		{name: "relabelled to another Service", events: func(tr *services.Tracker) { tr.OnEndpointSliceUpdate(relabel("b")) },
			b: []string{"10.244.0.1:8080"}},
		{name: "label removed", events: func(tr *services.Tracker) { tr.OnEndpointSliceUpdate(relabel("")) }},
		{name: "deleted with the label removed", events: func(tr *services.Tracker) { tr.OnEndpointSliceDelete(relabel("")) }},
		{name: "deleted with another label", events: func(tr *services.Tracker) { tr.OnEndpointSliceDelete(relabel("b")) }},
		{name: "relabelled, then deleted with the old label", events: func(tr *services.Tracker) {
			tr.OnEndpointSliceUpdate(relabel("b"))
			tr.OnEndpointSliceDelete(relabel("a"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := services.NewTracker(services.TrackerConfig{}, nil)
			tr.OnServiceUpdate(st.Service("ns", "a", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0)))
			tr.OnServiceUpdate(st.Service("ns", "b", "10.96.0.2", st.Port("http", v1.ProtocolTCP, 80, 0)))
			tr.OnEndpointSliceUpdate(relabel("a"))
			require.Equal(t, []string{"10.244.0.1:8080"}, addrs(tr.Changes()[a].Endpoints.Cluster))
			tt.events(tr)
			tr.Changes()
			all := tr.All()
			assert.Equal(t, tt.a, addrs(all[a].Endpoints.Cluster))
			assert.Equal(t, tt.b, addrs(all[b].Endpoints.Cluster))
		})
	}
}

func TestConfigValidate(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{"zero node port range is the default", services.NodePortRange{}.Validate(), ""},
		{"node port range", services.NodePortRange{Min: 30000, Max: 32767}.Validate(), ""},
		{"one-port range", services.NodePortRange{Min: 31000, Max: 31000}.Validate(), ""},
		{"swapped node port range", services.NodePortRange{Min: 32000, Max: 31000}.Validate(), "32000-31000"},
		{"node port range from 0", services.NodePortRange{Max: 31000}.Validate(), "0-31000"},
		{"tracker config", services.TrackerConfig{NodePorts: services.NodePortRange{Min: 2, Max: 1}}.Validate(), "2-1"},
		{"announce config", services.AnnounceConfig{ServiceClusterIPs: []netip.Prefix{p("10.96.0.0/12"), p("fd00::/108")}}.Validate(), ""},
		{"zero prefix", services.AnnounceConfig{ServiceExternalIPs: []netip.Prefix{{}}}.Validate(), "serviceExternalIPs[0]"},
		{"IPv4-mapped prefix", services.AnnounceConfig{ServiceLoadBalancerIPs: []netip.Prefix{p("10.0.0.0/8"), p("::ffff:10.96.0.0/108")}}.Validate(), "serviceLoadBalancerIPs[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr == "" {
				assert.NoError(t, tt.err)
				return
			}
			require.ErrorIs(t, tt.err, services.ErrInvalidConfig)
			assert.Contains(t, tt.err.Error(), tt.wantErr)
		})
	}
}

// Bad configuration is skipped or replaced, never turned into bad rules.
func TestInvalidConfigHandling(t *testing.T) {
	svc := st.Service("ns", "s", "10.96.0.10", st.Port("", v1.ProtocolTCP, 80, 30080))
	_, err := services.ServicePorts(svc, services.NodePortRange{Min: 32000, Max: 31000})
	require.ErrorIs(t, err, services.ErrInvalidConfig)

	var logs bytes.Buffer
	tr := services.NewTracker(services.TrackerConfig{NodePorts: services.NodePortRange{Min: 32000, Max: 31000}}, slog.New(slog.NewTextHandler(&logs, nil)))
	assert.Contains(t, logs.String(), "using the default node port range")
	tr.OnServiceUpdate(svc)
	r := tr.Changes()[spn("ns", "s", "", v1.ProtocolTCP)]
	require.NotNil(t, r, "the default range applies")
	assert.Equal(t, uint16(30080), r.Port.NodePort)

	got := services.Announce(nil, services.AnnounceConfig{
		ServiceClusterIPs:  []netip.Prefix{{}, netip.MustParsePrefix("::ffff:10.96.0.0/108"), netip.MustParsePrefix("10.96.0.0/12")},
		ServiceExternalIPs: []netip.Prefix{{}},
	})
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}, got)
}

// A named targetPort ("web") is resolved per pod by the EndpointSlice
// controller: pods whose container calls port "web" by different numbers
// end up in different slices, each slice port named after the Service
// port ("http") with that pod's number. The Tracker takes each
// endpoint's number from its own slice.
func TestTrackerNamedTargetPort(t *testing.T) {
	tr := services.NewTracker(services.TrackerConfig{NodeName: "me"}, nil)
	tr.OnServiceUpdate(st.Service("ns", "web", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0), func(s *v1.Service) {
		s.Spec.Ports[0].TargetPort = intstr.FromString("web")
	}))
	tr.OnEndpointSliceUpdate(st.Slice("ns", "web", "web-a", []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}}, st.Endpoint{IP: "10.244.0.1"}))
	tr.OnEndpointSliceUpdate(st.Slice("ns", "web", "web-b", []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 9090}}, st.Endpoint{IP: "10.244.0.2"}))
	r := tr.Changes()[spn("ns", "web", "http", v1.ProtocolTCP)]
	require.NotNil(t, r)
	assert.Equal(t, uint16(80), r.Port.Port)
	assert.Equal(t, []string{"10.244.0.1:8080", "10.244.0.2:9090"}, addrs(r.Endpoints.Cluster))
}

// An externalTrafficPolicy Local Service's /32 follows its ready local
// endpoints through the Tracker: announced with the first one, kept
// while one is left, withdrawn when the last one goes (not ready,
// moved to another node, slice deleted), back when one returns.
func TestAnnounceWithdrawnWithLastLocalEndpoint(t *testing.T) {
	cfg := services.AnnounceConfig{ServiceClusterIPs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}}
	tr := services.NewTracker(services.TrackerConfig{NodeName: "me"}, nil)
	tr.OnServiceUpdate(st.Service("ns", "s", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 30080), func(s *v1.Service) {
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	}))
	announced := func() []string {
		tr.Changes()
		var out []string
		for _, p := range services.Announce(tr.All(), cfg) {
			out = append(out, p.String())
		}
		return out
	}
	with, without := []string{"10.96.0.0/12", "10.96.0.10/32"}, []string{"10.96.0.0/12"}
	assert.Equal(t, without, announced(), "no endpoint yet")
	for _, step := range []struct {
		name string
		eps  []st.Endpoint
		want []string
	}{
		{"two local endpoints", []st.Endpoint{{IP: "10.244.0.1", Node: "me"}, {IP: "10.244.0.2", Node: "me"}}, with},
		{"one local left", []st.Endpoint{{IP: "10.244.0.1", Node: "me"}, {IP: "10.244.0.2", Node: "other"}}, with},
		{"the last local one not ready", []st.Endpoint{{IP: "10.244.0.1", Node: "me", NotReady: true}, {IP: "10.244.0.2", Node: "other"}}, without},
		{"ready again", []st.Endpoint{{IP: "10.244.0.1", Node: "me"}}, with},
		{"moved to another node", []st.Endpoint{{IP: "10.244.0.1", Node: "other"}}, without},
		{"back", []st.Endpoint{{IP: "10.244.0.1", Node: "me"}}, with},
	} {
		tr.OnEndpointSliceUpdate(st.Slice("ns", "s", "s-1", tcp80, step.eps...))
		assert.Equal(t, step.want, announced(), step.name)
	}
	tr.OnEndpointSliceDelete(st.Slice("ns", "s", "s-1", tcp80))
	assert.Equal(t, without, announced(), "slice deleted")
}

// Endpoints of a family the Service has no cluster IP of (an IPv6 slice
// of a single-stack IPv4 Service: a selectorless Service's own slices,
// or those left while a dual-stack Service turns single-stack) are not
// the Service's: kube-proxy's per-family proxiers never see them. They
// must not count as its local endpoints for the health check.
func TestTrackerEndpointFamily(t *testing.T) {
	v6 := func(s *discovery.EndpointSlice) *discovery.EndpointSlice {
		s.AddressType = discovery.AddressTypeIPv6
		return s
	}
	tr := services.NewTracker(services.TrackerConfig{NodeName: "me"}, nil)
	tr.OnServiceUpdate(st.Service("ns", "v4", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0)))
	tr.OnServiceUpdate(st.Service("ns", "ds", "10.96.0.2", st.Port("http", v1.ProtocolTCP, 80, 0), func(s *v1.Service) {
		s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, "fd00::2")
	}))
	for _, svc := range []string{"v4", "ds"} {
		tr.OnEndpointSliceUpdate(st.Slice("ns", svc, svc+"-4", tcp80, st.Endpoint{IP: "10.244.0.1", Node: "me"}))
		tr.OnEndpointSliceUpdate(v6(st.Slice("ns", svc, svc+"-6", tcp80, st.Endpoint{IP: "fd00:244::1", Node: "me"})))
	}
	ch := tr.Changes()
	v4, ds := ch[spn("ns", "v4", "http", v1.ProtocolTCP)], ch[spn("ns", "ds", "http", v1.ProtocolTCP)]
	require.NotNil(t, v4)
	require.NotNil(t, ds)
	assert.Equal(t, []string{"10.244.0.1:8080"}, addrs(v4.Endpoints.Cluster))
	assert.Equal(t, []string{"10.244.0.1:8080"}, addrs(v4.Endpoints.Local))
	assert.Equal(t, []string{"10.244.0.1:8080", "[fd00:244::1]:8080"}, addrs(ds.Endpoints.Cluster))
	assert.Equal(t, []string{"10.244.0.1:8080", "[fd00:244::1]:8080"}, addrs(ds.Endpoints.Local))

	// The IPv4 endpoint goes: the IPv4-only Service has none left, so its
	// health check answers 503 though the node has its IPv6 one.
	tr.OnEndpointSliceDelete(st.Slice("ns", "v4", "v4-4", nil))
	v4 = tr.Changes()[spn("ns", "v4", "http", v1.ProtocolTCP)]
	require.NotNil(t, v4)
	assert.Empty(t, v4.Endpoints.Cluster)
	assert.Empty(t, v4.Endpoints.Local)
}

// Topology hints are weighed per address family, as kube-proxy's
// per-family proxiers do (TestCategorize has the single-family cases).
func TestCategorizeTopologyPerFamily(t *testing.T) {
	// Hinted IPv4 endpoints are filtered, the unhinted IPv6 ones are all
	// used.
	tr := services.NewTracker(services.TrackerConfig{NodeName: "me", Zone: "a"}, nil)
	tr.OnServiceUpdate(st.Service("ns", "s", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0), func(s *v1.Service) {
		s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, "fd00::1")
	}))
	tr.OnEndpointSliceUpdate(st.Slice("ns", "s", "s-4", tcp80, st.Endpoint{IP: "10.0.0.1", Zones: []string{"a"}}, st.Endpoint{IP: "10.0.0.2", Zones: []string{"b"}}))
	s6 := st.Slice("ns", "s", "s-6", tcp80, st.Endpoint{IP: "fd00:244::1"}, st.Endpoint{IP: "fd00:244::2"})
	s6.AddressType = discovery.AddressTypeIPv6
	tr.OnEndpointSliceUpdate(s6)
	r := tr.Changes()[spn("ns", "s", "http", v1.ProtocolTCP)]
	require.NotNil(t, r)
	assert.Equal(t, []string{"10.0.0.1:8080", "[fd00:244::1]:8080", "[fd00:244::2]:8080"}, addrs(r.Endpoints.Cluster))
}

// Overlapping and repeated ranges: each distinct masked range is
// announced once (a range inside another too, as Calico exports every
// configured CIDR); a /32 is announced once when an address is both an
// external and a load-balancer IP; a load-balancer IP outside
// serviceLoadBalancerIPs is not announced, even when another kind's
// range holds it.
func TestAnnounceOverlappingRanges(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	cfg := services.AnnounceConfig{
		ServiceClusterIPs:      []netip.Prefix{p("10.96.0.0/12"), p("10.96.0.7/12"), p("fd00:96::/112")},
		ServiceExternalIPs:     []netip.Prefix{p("192.0.2.0/24"), p("192.0.2.0/28"), p("198.51.100.0/24")},
		ServiceLoadBalancerIPs: []netip.Prefix{p("192.0.2.0/24")},
	}
	r := &services.Resolved{
		Port: &services.ServicePort{
			Name: spn("ns", "s", "http", v1.ProtocolTCP), ClusterIPs: []netip.Addr{a("10.96.0.10")}, Port: 80,
			ExternalIPs: []netip.Addr{a("192.0.2.9"), a("198.51.100.7")}, LoadBalancerIPs: []netip.Addr{a("192.0.2.9"), a("198.51.100.8")},
			ExternalPolicyLocal: true,
		},
		Endpoints: services.EndpointSets{Local: []services.Endpoint{{Addr: a("10.244.0.1"), Port: 8080, Local: true, Ready: true, Serving: true}}},
	}
	var got []string
	for _, x := range services.Announce(map[services.ServicePortName]*services.Resolved{r.Port.Name: r}, cfg) {
		got = append(got, x.String())
	}
	assert.Equal(t, []string{"10.96.0.0/12", "10.96.0.10/32", "192.0.2.0/24", "192.0.2.0/28", "192.0.2.9/32",
		"198.51.100.0/24", "198.51.100.7/32", "fd00:96::/112"}, got)
}

// An update then a delete between two syncs: the port handed out before
// is reported gone, the renamed port never handed out is not reported,
// and the node port and cluster IP the Service held go, in the same
// Changes, to the Services asking for them. Re-created with another
// cluster IP, it finds its slices again.
func TestTrackerUpdateDeleteBetweenSyncs(t *testing.T) {
	tr := services.NewTracker(services.TrackerConfig{NodeName: "me"}, nil)
	tr.OnServiceUpdate(st.Service("ns", "s", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 30080), st.ExternalIPs("192.0.2.1")))
	tr.OnEndpointSliceUpdate(st.Slice("ns", "s", "s-1", tcp80, st.Endpoint{IP: "10.244.0.1"}))
	require.Len(t, tr.Changes(), 1)
	tr.OnServiceUpdate(st.Service("ns", "s", "10.96.0.1", st.Port("web", v1.ProtocolTCP, 80, 30080)))
	tr.OnServiceDelete(st.Service("ns", "s", "10.96.0.1"))
	tr.OnServiceUpdate(st.Service("ns", "t", "10.96.0.2", st.Port("http", v1.ProtocolTCP, 80, 30080), st.Created(100)))
	tr.OnServiceUpdate(st.Service("ns", "u", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0), st.Created(100)))
	ch := tr.Changes()
	assert.Contains(t, ch, spn("ns", "s", "http", v1.ProtocolTCP))
	assert.Nil(t, ch[spn("ns", "s", "http", v1.ProtocolTCP)])
	assert.NotContains(t, ch, spn("ns", "s", "web", v1.ProtocolTCP))
	require.NotNil(t, ch[spn("ns", "t", "http", v1.ProtocolTCP)])
	assert.Equal(t, uint16(30080), ch[spn("ns", "t", "http", v1.ProtocolTCP)].Port.NodePort)
	require.NotNil(t, ch[spn("ns", "u", "http", v1.ProtocolTCP)])
	assert.Len(t, ch[spn("ns", "u", "http", v1.ProtocolTCP)].Port.ClusterIPs, 1)
	// Re-created with another cluster IP: its slices still apply.
	tr.OnServiceUpdate(st.Service("ns", "s", "10.96.0.3", st.Port("http", v1.ProtocolTCP, 80, 0)))
	ch = tr.Changes()
	require.NotNil(t, ch[spn("ns", "s", "http", v1.ProtocolTCP)])
	assert.Len(t, ch[spn("ns", "s", "http", v1.ProtocolTCP)].Endpoints.Cluster, 1)
}
