package policy_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

// TestUnenforcedPoliciesAreLogged: doNotTrack and preDNAT policies are
// taken (Evaluate skips them as well) but not rendered; the compiler says
// so at Warn, naming the policy, once per policy and not again for an
// unchanged update, rather than dropping them in silence.
func TestUnenforcedPoliciesAreLogged(t *testing.T) {
	var logs strings.Builder
	ipt, err := iptables.New(iptables.Config{Family: iptables.IPv4, Backend: iptables.BackendNFT}, iptables.WithExecer(iptables.NewFake()))
	require.NoError(t, err)
	c, err := dppolicy.New(dppolicy.Config{}, ipt, ipsets.New(ipsets.NewFake()),
		dppolicy.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	mk := func(name string, untracked, preDNAT bool) *policy.GlobalNetworkPolicy {
		g := &policy.GlobalNetworkPolicy{}
		g.Name = name
		g.Spec.Selector = "has(host)"
		g.Spec.ApplyOnForward, g.Spec.DoNotTrack, g.Spec.PreDNAT = true, untracked, preDNAT
		g.Spec.Ingress = []policy.Rule{{Action: policy.Deny}}
		return g
	}
	res := policy.Resources{GlobalNetworkPolicies: []*policy.GlobalNetworkPolicy{
		mk("untracked", true, false), mk("pre-dnat", false, true), mk("plain", false, false)}}
	require.NoError(t, c.Replace(res))
	_, err = c.Apply(context.Background())
	require.NoError(t, err)
	out := logs.String()
	assert.Contains(t, out, "level=WARN")
	assert.Regexp(t, `doNotTrack policies .* policy=untracked\n`, out)
	assert.Regexp(t, `preDNAT policies .* policy=pre-dnat\n`, out)
	assert.NotContains(t, out, "policy=plain")
	logs.Reset()
	require.NoError(t, c.Replace(res))
	assert.NotContains(t, logs.String(), "level=WARN", "logged once, not on every update")
}
