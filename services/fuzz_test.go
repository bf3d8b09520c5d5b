package services_test

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tabbynet/tabby/services"
)

// FuzzTracker feeds Services and EndpointSlices with arbitrary
// addresses, ports and protocols: the tracker must never panic, and every
// port it resolves must carry parseable, valid values.
func FuzzTracker(f *testing.F) {
	f.Add("10.96.0.1", "192.0.2.1", "TCP", int32(80), int32(30080), "10.244.0.1", int32(8080), "IPv4", " 10.0.0.1/8 ")
	f.Add("fd00::1", "", "UDP", int32(53), int32(0), "fd00:244::1", int32(53), "IPv6", "fd00::/8")
	f.Add("None", "x", "ICMP", int32(-1), int32(99999), "bad", int32(0), "FQDN", "010.0.0.0/33")
	f.Fuzz(func(t *testing.T, cip, ext, proto string, port, nodePort int32, epIP string, epPort int32, addrType, sourceRange string) {
		tr := services.NewTracker(services.TrackerConfig{NodeName: "n"}, nil)
		svc := &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"},
			Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, ClusterIP: cip, ClusterIPs: []string{cip}, ExternalIPs: []string{ext},
				Ports:                    []v1.ServicePort{{Name: "p", Protocol: v1.Protocol(proto), Port: port, NodePort: nodePort}},
				LoadBalancerSourceRanges: []string{sourceRange}},
		}
		svc.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: ext}}
		p := v1.Protocol(proto)
		name := "p"
		s := &discovery.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "s-1", Labels: map[string]string{discovery.LabelServiceName: "s"}},
			AddressType: discovery.AddressType(addrType),
			Endpoints:   []discovery.Endpoint{{Addresses: []string{epIP}}},
			Ports:       []discovery.EndpointPort{{Name: &name, Protocol: &p, Port: &epPort}},
		}
		// A second Service asking for the first one's addresses: no
		// destination may be handed to two ports.
		other := svc.DeepCopy()
		other.Name = "t"
		other.Spec.ClusterIP, other.Spec.ClusterIPs, other.Spec.ExternalIPs = ext, []string{ext}, []string{cip, ext}
		tr.OnServiceUpdate(svc)
		tr.OnServiceUpdate(other)
		tr.OnEndpointSliceUpdate(s)
		type dest struct {
			a     netip.Addr
			proto v1.Protocol
			port  uint16
		}
		taken := map[dest]services.ServicePortName{}
		for name, r := range tr.Changes() {
			if r == nil {
				continue
			}
			for _, set := range [][]netip.Addr{r.Port.ClusterIPs, r.Port.LoadBalancerIPs, r.Port.ExternalIPs} {
				for _, a := range set {
					d := dest{a, name.Protocol, r.Port.Port}
					if o, ok := taken[d]; ok {
						t.Fatalf("destination %v handed to %v and %v", d, o, name)
					}
					taken[d] = name
				}
			}
			if r.Port.Port == 0 || len(r.Port.ClusterIPs) == 0 && name.Name == "s" {
				t.Fatalf("resolved port without port or cluster IP: %+v", r.Port)
			}
			for _, p := range r.Port.LoadBalancerSourceRanges {
				if !p.IsValid() || p != p.Masked() {
					t.Fatalf("source range %v not a valid masked prefix", p)
				}
			}
			for _, e := range r.Endpoints.Cluster {
				if !e.Addr.IsValid() || e.Port == 0 {
					t.Fatalf("invalid endpoint %v", e)
				}
			}
		}
		tr.OnEndpointSliceDelete(s)
		tr.OnServiceDelete(svc)
		tr.OnServiceDelete(other)
		tr.Changes()
	})
}

// Nil inputs are logged or reported, never a panic.
func TestNilInputs(t *testing.T) {
	name := services.ServicePortName{Namespace: "ns", Name: "s", Port: "p", Protocol: v1.ProtocolTCP}
	tests := []struct {
		name string
		call func(tr *services.Tracker)
	}{
		{"OnServiceUpdate", func(tr *services.Tracker) { tr.OnServiceUpdate(nil) }},
		{"OnServiceDelete", func(tr *services.Tracker) { tr.OnServiceDelete(nil) }},
		{"OnEndpointSliceUpdate", func(tr *services.Tracker) { tr.OnEndpointSliceUpdate(nil) }},
		{"OnEndpointSliceDelete", func(tr *services.Tracker) { tr.OnEndpointSliceDelete(nil) }},
		{"ServicePorts", func(*services.Tracker) {
			_, err := services.ServicePorts(nil, services.NodePortRange{})
			require.ErrorIs(t, err, services.ErrInvalidService)
		}},
		{"Announce with a nil Port", func(*services.Tracker) {
			assert.Empty(t, services.Announce(map[services.ServicePortName]*services.Resolved{name: {}, {}: nil}, services.AnnounceConfig{}))
		}},
		{"HealthServer.Update with a nil Port", func(*services.Tracker) {
			services.NewHealthServer(services.HealthConfig{}, nil).Update(map[services.ServicePortName]*services.Resolved{name: {}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := services.NewTracker(services.TrackerConfig{}, slog.New(slog.DiscardHandler))
			require.NotPanics(t, func() { tt.call(tr) })
			assert.Empty(t, tr.Changes())
		})
	}
}
