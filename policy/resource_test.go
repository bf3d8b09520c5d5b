package policy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResourceIdentity(t *testing.T) {
	tests := []struct {
		r              Resource
		kind, ns, name string
	}{
		{&Tier{ObjectMeta: objMeta("", "t")}, KindTier, "", "t"},
		{&NetworkPolicy{ObjectMeta: objMeta("ns1", "p")}, KindNetworkPolicy, "ns1", "p"},
		{&GlobalNetworkPolicy{ObjectMeta: objMeta("", "g")}, KindGlobalNetworkPolicy, "", "g"},
		{&NetworkSet{ObjectMeta: objMeta("ns1", "s")}, KindNetworkSet, "ns1", "s"},
		{&GlobalNetworkSet{ObjectMeta: objMeta("", "gs")}, KindGlobalNetworkSet, "", "gs"},
		{wep("ns1", "pod", ""), "WorkloadEndpoint", "ns1", "pod"},
		{hep("eth0", ""), "HostEndpoint", "", "eth0"},
		{&Namespace{Name: "ns1"}, KindNamespace, "", "ns1"},
		{&ServiceEndpoints{Name: "db", Namespace: "ns1"}, KindServiceEndpoints, "ns1", "db"},
	}
	var r Resources
	for _, tt := range tests {
		assert.Equal(t, tt.kind, tt.r.ResourceKind())
		assert.Equal(t, tt.ns, tt.r.GetNamespace())
		assert.Equal(t, tt.name, tt.r.GetName())
		r.Add(tt.r)
	}
	r.Add(nil)
	assert.Len(t, r.Tiers, 1)
	assert.Len(t, r.NetworkPolicies, 1)
	assert.Len(t, r.GlobalNetworkPolicies, 1)
	assert.Len(t, r.NetworkSets, 1)
	assert.Len(t, r.GlobalNetworkSets, 1)
	assert.Len(t, r.Endpoints, 2)
	assert.Len(t, r.Namespaces, 1)
	assert.Len(t, r.ServiceEndpoints, 1)
}

func TestEndpointAndServiceValidation(t *testing.T) {
	ip := netip.MustParseAddr
	tests := []struct {
		name string
		r    Resource
		want []string
	}{
		{"endpoint port 0", &Endpoint{Name: "a", Namespace: "ns1", Ports: []EndpointPort{{Name: "http", Protocol: ProtoTCP}}},
			[]string{"WorkloadEndpoint ns1/a: ports[0].port: must be 1-65535"}},
		{"endpoint port needs a name", &Endpoint{Name: "a", Namespace: "ns1", Ports: []EndpointPort{{Protocol: ProtoTCP, Port: 80}}},
			[]string{"WorkloadEndpoint ns1/a: ports[0].name: "}},
		{"endpoint port on ICMP", &Endpoint{Name: "a", Namespace: "ns1", Ports: []EndpointPort{{Name: "x", Protocol: ProtoICMP, Port: 1}}},
			[]string{`WorkloadEndpoint ns1/a: ports[0].protocol: must be TCP, UDP or SCTP, got "ICMP"`}},
		{"service port without name", &ServiceEndpoints{Name: "s", Namespace: "ns1", Ports: []EndpointPort{{Protocol: ProtoTCP, Port: 80}}}, nil},
		{"service port with a bad name", &ServiceEndpoints{Name: "s", Namespace: "ns1", Ports: []EndpointPort{{Name: "Bad!", Protocol: ProtoTCP, Port: 80}}},
			[]string{"ServiceEndpoints ns1/s: ports[0].name: "}},
		{"service port 0 and zone", &ServiceEndpoints{Name: "s", Namespace: "ns1", Addresses: []netip.Addr{ip("fe80::1%eth0")}, Ports: []EndpointPort{{Protocol: ProtoUDP}}},
			[]string{"ServiceEndpoints ns1/s: ports[0].port: must be 1-65535", "ServiceEndpoints ns1/s: addresses[0]: invalid address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { requireProblems(t, tt.r.Validate(), tt.want) })
	}

	s := &ServiceEndpoints{Name: "s", Namespace: "ns1"}
	_, err := NewPolicySet(Resources{ServiceEndpoints: []*ServiceEndpoints{s, s}})
	require.ErrorIs(t, err, ErrDuplicate)
	assert.EqualError(t, err, "ServiceEndpoints ns1/s: duplicate resource")
}
