package policy_test

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/policy"
)

// TestDeleteKernel: a host endpoint policy cuts port 9090; Delete leaves
// no tabby rule, chain or set in the node and the port connects again;
// Apply afterwards enforces the policy again.
func TestDeleteKernel(t *testing.T) {
	n := newHEPNode(t, 9090)
	node, client, c, ipt, h, hep := n.node, n.client, n.c, n.ipt, n.h, n.hep
	gnp := &policy.GlobalNetworkPolicy{}
	gnp.Name = "node-ingress"
	gnp.Spec.Selector = "host == 'node0'"
	gnp.Spec.Ingress = []policy.Rule{{Action: policy.Allow, Protocol: ptrTo(policy.ProtoTCP),
		Source: policy.EntityRule{Selector: "host == 'node0'"}}}
	gnp.Spec.Types = []policy.PolicyType{policy.PolicyTypeIngress}
	require.NoError(t, c.Replace(policy.Resources{Endpoints: []*policy.Endpoint{hep}, GlobalNetworkPolicies: []*policy.GlobalNetworkPolicy{gnp}}))
	require.NoError(t, c.SetInterface(hep.Key(), "eth0"))
	ctx := context.Background()
	_, err := c.Apply(ctx)
	require.NoError(t, err)
	reach := func(timeout time.Duration) error {
		_, err := client.Probe("tcp", netip.AddrPortFrom(node.IP, 9090), timeout)
		return err
	}
	require.Error(t, reach(300*time.Millisecond), "the policy cuts the client")
	sets, err := h.IpsetListAll()
	require.NoError(t, err)
	require.NotEmpty(t, sets, "the rule selector is a set")

	require.NoError(t, c.Delete(ctx))
	require.NoError(t, reach(2*time.Second), "nothing enforced after Delete")
	save := "iptables-nft-save"
	if ipt.Backend() == iptables.BackendLegacy {
		save = "iptables-legacy-save"
	}
	out, err := exec.Command("ip", "netns", "exec", node.NS.Name, save).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.NotContains(t, string(out), "tabby", "no rule or chain left")
	sets, err = h.IpsetListAll()
	require.NoError(t, err)
	for _, s := range sets {
		assert.False(t, strings.HasPrefix(s.SetName, "tabby-"), "set %s left", s.SetName)
	}

	_, err = c.Apply(ctx)
	require.NoError(t, err)
	require.Error(t, reach(300*time.Millisecond), "Apply after Delete enforces again")
}
