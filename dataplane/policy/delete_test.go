package policy_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/natoutgoing"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/policy"
)

// twoPods is the package Example's state: a policy letting web reach db
// on 5432, both pods local.
func twoPods(t *testing.T, c *dppolicy.Compiler) {
	t.Helper()
	web := &policy.Endpoint{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"},
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	db := &policy.Endpoint{Name: "db", Namespace: "shop", Labels: map[string]string{"app": "db"},
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}
	np := &policy.NetworkPolicy{}
	np.Name, np.Namespace = "db", "shop"
	np.Spec.Selector = "app == 'db'"
	np.Spec.Ingress = []policy.Rule{{Action: policy.Allow, Protocol: ptrTo(policy.ProtoTCP),
		Source:      policy.EntityRule{Selector: "app == 'web'"},
		Destination: policy.EntityRule{Ports: []policy.Port{policy.SinglePort(5432)}}}}
	require.NoError(t, c.Replace(policy.Resources{Endpoints: []*policy.Endpoint{web, db}, NetworkPolicies: []*policy.NetworkPolicy{np}}))
	require.NoError(t, c.SetInterface("shop/web", "tby1"))
	require.NoError(t, c.SetInterface("shop/db", "tby2"))
}

// Delete removes the hooks, chains and sets the compiler wrote, and leaves
// what another user of the same IPTables and IPSets wrote (here outgoing
// NAT); the next Apply writes everything again. Before Delete existed,
// emptying the compiler (Replace with nothing) still left the hooks and the
// dispatch chains that drop traffic of unknown workload interfaces.
func TestDeleteRemovesWhatApplyWrote(t *testing.T) {
	ctx := context.Background()
	iptFake, setFake := iptables.NewFake(), ipsets.NewFake()
	ipt, err := iptables.New(iptables.Config{Family: iptables.IPv4, Backend: iptables.BackendNFT}, iptables.WithExecer(iptFake))
	require.NoError(t, err)
	sets := ipsets.New(setFake)
	nat, err := natoutgoing.New(natoutgoing.Config{}, ipt, sets)
	require.NoError(t, err)
	require.NoError(t, nat.Apply(ctx, []ipam.IPPool{{Name: "p", CIDR: netip.MustParsePrefix("10.0.0.0/16"), NATOutgoing: true}}))
	natIPT, natSets := iptFake.Dump(), setFake.Dump()

	c, err := dppolicy.New(dppolicy.Config{}, ipt, sets)
	require.NoError(t, err)
	require.NoError(t, c.Delete(ctx), "nothing applied yet: nothing to delete")
	assert.Equal(t, natIPT, iptFake.Dump())
	twoPods(t, c)
	_, err = c.Apply(ctx)
	require.NoError(t, err)
	applied, appliedSets := iptFake.Dump(), setFake.Dump()
	require.Contains(t, applied, "-A FORWARD")

	require.NoError(t, c.Delete(ctx))
	assert.Equal(t, natIPT, iptFake.Dump(), "only the NAT rules are left")
	assert.Equal(t, natSets, setFake.Dump(), "only the NAT sets are left")
	assert.True(t, ipt.InSync())
	assert.True(t, sets.InSync())

	p := c.Plan()
	assert.True(t, p.Hooks)
	assert.NotEmpty(t, p.Chains)
	_, err = c.Apply(ctx)
	require.NoError(t, err)
	assert.Equal(t, applied, iptFake.Dump(), "Apply after Delete writes everything again")
	assert.Equal(t, appliedSets, setFake.Dump())
}
