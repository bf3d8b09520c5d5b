package services_test

import (
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/services"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// Track a LoadBalancer Service with externalTrafficPolicy Local and
// compute what this node announces over BGP.
func Example() {
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	tr.OnServiceUpdate(st.Service("shop", "frontend", "10.96.5.5", st.Port("http", v1.ProtocolTCP, 80, 30080), func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.10"}}
	}))
	tr.OnEndpointSliceUpdate(st.Slice("shop", "frontend", "frontend-1",
		[]st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}},
		st.Endpoint{IP: "10.244.1.7", Node: "node-a"}, st.Endpoint{IP: "10.244.2.9", Node: "node-b"}))
	for name, r := range tr.Changes() {
		fmt.Println(name, "cluster:", r.Endpoints.Cluster, "local:", r.Endpoints.Local)
	}
	cfg := services.AnnounceConfig{
		ServiceClusterIPs:      []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
		ServiceLoadBalancerIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
	}
	fmt.Println(services.Announce(tr.All(), cfg))
	// Output:
	// shop/frontend:http/TCP cluster: [10.244.1.7:8080 10.244.2.9:8080] local: [10.244.1.7:8080]
	// [10.96.0.0/12 10.96.5.5/32 203.0.113.0/24 203.0.113.10/32]
}
