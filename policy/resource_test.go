package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
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
