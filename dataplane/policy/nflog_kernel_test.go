package policy_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDropAttributionKernel denies a real connection with a Kubernetes
// NetworkPolicy and a Calico Deny rule, reads the NFLOG group in the node's
// netns and maps each logged packet back to tier, policy and rule.
func TestDropAttributionKernel(t *testing.T) {
	const group = 7
	k := newKernelNode(t, 3, dppolicy.Config{NFLOGGroup: group}, 1)
	r, err := dppolicy.ListenDrops(group, int(k.node.NS.NS().Fd()))
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })

	db, client, other := k.w.endpoints[0], k.w.endpoints[1], k.w.endpoints[2]
	db.Namespace, client.Namespace, other.Namespace = "yaobank", "yaobank", "yaobank"
	db.Labels = map[string]string{"app": "database"}
	client.Labels = map[string]string{"app": "customer"}
	other.Labels = map[string]string{"app": "summary"}
	for i, ep := range k.w.endpoints {
		require.NoError(t, k.c.SetInterface(ep.Key(), k.pods[i].Result.Host.Name))
	}
	// Only summary may reach the database (end of tier for the customer) ...
	knp, err := policy.FromK8s(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "database", Namespace: "yaobank"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "database"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "summary"}}}}}},
		}})
	require.NoError(t, err)
	// ... and the customer may not send UDP at all (a Deny rule).
	deny := &policy.NetworkPolicy{}
	deny.Name, deny.Namespace = "no-udp", "yaobank"
	deny.Spec.Tier = "security"
	deny.Spec.Selector = "app == 'customer'"
	deny.Spec.Egress = []policy.Rule{{Action: policy.Deny, Protocol: ptrTo(policy.ProtoUDP)}, {Action: policy.Pass}}
	sec := &policy.Tier{}
	sec.Name = "security"
	sec.Spec.Order = ptrTo(100.0)
	require.NoError(t, k.c.Replace(policy.Resources{Tiers: []*policy.Tier{sec}, Endpoints: k.w.endpoints,
		NetworkPolicies: []*policy.NetworkPolicy{knp, deny}}))
	_, err = k.c.Apply(context.Background())
	require.NoError(t, err)

	dbAddr := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(k.pods[0].IP, port) }
	_, err = k.pods[2].Probe("tcp", dbAddr(80), 2*time.Second)
	require.NoError(t, err, "summary reaches the database")
	_, err = k.pods[1].Probe("tcp", dbAddr(80), 300*time.Millisecond)
	require.Error(t, err, "customer is denied by the end of tier")
	_, err = k.pods[1].Probe("udp", dbAddr(53), 300*time.Millisecond)
	require.Error(t, err, "customer is denied UDP by the Deny rule")

	want := map[string]string{
		"tcp": "denied by tier default, policy yaobank/knp.default.database, end of tier (ingress of yaobank/p0)",
		"udp": "denied by tier security, policy yaobank/no-udp, egress rule 0",
	}
	got := map[string]string{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for len(got) < 2 {
		pkts, err := r.Read(ctx)
		require.NoError(t, err, "got so far: %v", got)
		for _, p := range pkts {
			cause, err := k.c.ExplainDrop(p.Prefix)
			require.NoError(t, err)
			assert.Equal(t, k.pods[1].IP, p.Src)
			assert.Equal(t, k.pods[0].IP, p.Dst)
			switch p.Protocol {
			case 6:
				got["tcp"] = cause.String()
				assert.Equal(t, uint16(80), p.DstPort)
			case 17:
				got["udp"] = cause.String()
				assert.Equal(t, uint16(53), p.DstPort)
			}
		}
	}
	assert.Equal(t, want, got)
}
