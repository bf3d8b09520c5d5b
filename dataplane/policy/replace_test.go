package policy_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

// Replace refuses two objects of one kind with the same key, as
// policy.NewPolicySet does, and then changes nothing.
func TestReplaceRefusesDuplicates(t *testing.T) {
	ep := func(name, ip string) *policy.Endpoint {
		return &policy.Endpoint{Name: name, Namespace: "shop", Labels: map[string]string{"app": name},
			Addresses: []netip.Addr{netip.MustParseAddr(ip)}}
	}
	np := func(sel string) *policy.NetworkPolicy {
		p := &policy.NetworkPolicy{}
		p.Name, p.Namespace = "p", "shop"
		p.Spec.Selector = sel
		return p
	}
	gnp := &policy.GlobalNetworkPolicy{}
	gnp.Name = "g"
	tier := &policy.Tier{}
	tier.Name = "security"
	tier.Spec.Order = ptr(100.0)
	ns := &policy.Namespace{Name: "shop"}
	nset := &policy.NetworkSet{}
	nset.Name, nset.Namespace = "n", "shop"
	gset := &policy.GlobalNetworkSet{}
	gset.Name = "g"
	tests := []struct {
		name string
		r    policy.Resources
	}{
		{"endpoints, the second differs", policy.Resources{Endpoints: []*policy.Endpoint{ep("web", "10.0.0.1"), ep("web", "10.0.0.9")}}},
		{"network policies", policy.Resources{NetworkPolicies: []*policy.NetworkPolicy{np("app == 'web'"), np("all()")}}},
		{"global network policies", policy.Resources{GlobalNetworkPolicies: []*policy.GlobalNetworkPolicy{gnp, gnp}}},
		{"tiers", policy.Resources{Tiers: []*policy.Tier{tier, tier}}},
		{"namespaces", policy.Resources{Namespaces: []*policy.Namespace{ns, ns}}},
		{"network sets", policy.Resources{NetworkSets: []*policy.NetworkSet{nset, nset}}},
		{"global network sets", policy.Resources{GlobalNetworkSets: []*policy.GlobalNetworkSet{gset, gset}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, perr := policy.NewPolicySet(tt.r)
			require.ErrorIs(t, perr, policy.ErrDuplicate, "the evaluator refuses it")

			ipt, err := iptables.New(iptables.Config{Backend: iptables.BackendNFT}, iptables.WithExecer(iptables.NewFake()))
			require.NoError(t, err)
			c, err := dppolicy.New(dppolicy.Config{}, ipt, ipsets.New(ipsets.NewFake()))
			require.NoError(t, err)
			require.NoError(t, c.SetInterface("shop/web", "tby1"))
			before := c.Plan().String()
			err = c.Replace(tt.r)
			assert.ErrorIs(t, err, policy.ErrDuplicate)
			assert.Equal(t, before, c.Plan().String(), "nothing changed")
		})
	}
}
