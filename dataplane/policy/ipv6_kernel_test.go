package policy_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

// TestIPv6NeighbourDiscoveryKernel: on an IPv6 node, a pod whose egress
// policy allows only TCP still resolves its gateway (the host veth's
// link-local address) and answers the host's neighbour solicitations, as
// Felix accepts ICMPv6 router and neighbour discovery from workloads to
// the host before their policy; without that the allowed connection never
// leaves the pod once its neighbour entry is gone.
func TestIPv6NeighbourDiscoveryKernel(t *testing.T) {
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(1), nettest.IPv6())
	n := topo.Node(0)
	a, b := n.AddPod(t), n.AddPod(t)
	b.Listen(t, "tcp", 8080)
	nf := netfilterHandle(t, n.NS)
	ipt, err := iptables.New(iptables.Config{Family: iptables.IPv6}, iptables.WithNetns(n.NS.Name))
	require.NoError(t, err)
	c, err := dppolicy.New(dppolicy.Config{Family: iptables.IPv6}, ipt, ipsets.New(nf))
	require.NoError(t, err)

	eps := []*policy.Endpoint{
		{Name: "a", Namespace: "ns0", Labels: map[string]string{"app": "a"}, Addresses: []netip.Addr{a.IP6}},
		{Name: "b", Namespace: "ns0", Labels: map[string]string{"app": "b"}, Addresses: []netip.Addr{b.IP6}},
	}
	tcpOnly := &policy.NetworkPolicy{}
	tcpOnly.Name, tcpOnly.Namespace = "tcp-only", "ns0"
	tcpOnly.Spec.Selector = "all()"
	tcpOnly.Spec.Types = []policy.PolicyType{policy.PolicyTypeIngress, policy.PolicyTypeEgress}
	tcpOnly.Spec.Ingress = []policy.Rule{{Action: policy.Allow, Protocol: ptrTo(policy.ProtoTCP)}}
	tcpOnly.Spec.Egress = []policy.Rule{{Action: policy.Allow, Protocol: ptrTo(policy.ProtoTCP)}}
	require.NoError(t, c.Replace(policy.Resources{Namespaces: []*policy.Namespace{{Name: "ns0"}}, Endpoints: eps,
		NetworkPolicies: []*policy.NetworkPolicy{tcpOnly}}))
	require.NoError(t, c.SetInterface("ns0/a", a.Result.Host.Name))
	require.NoError(t, c.SetInterface("ns0/b", b.Result.Host.Name))
	_, err = c.Apply(ctx)
	require.NoError(t, err)

	// Forget every neighbour, in the pods and on the node, so the
	// connection needs neighbour discovery both ways.
	for _, ns := range []*nettest.Netns{a.NS, b.NS, n.NS} {
		_, err := ns.Run(ctx, "ip", "-6", "neigh", "flush", "all")
		require.NoError(t, err)
	}
	_, err = a.Probe("tcp", netip.AddrPortFrom(b.IP6, 8080), 5*time.Second)
	require.NoError(t, err, "TCP is allowed both ways; neighbour discovery must not be policed")
	_, err = a.Probe("udp", netip.AddrPortFrom(b.IP6, 53), 300*time.Millisecond)
	require.Error(t, err, "UDP is not allowed")
}
