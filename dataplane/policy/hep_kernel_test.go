package policy_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

// TestHostEndpointKernel puts the node's eth0 under a host endpoint: an
// ingress policy lets an external client reach port 8080 of the node and
// nothing else; without projectcalico-default-allow the rest is dropped;
// with it (and the policy gone) everything is allowed again.
func TestHostEndpointKernel(t *testing.T) {
	topo := nettest.NewTopology(t, nettest.Nodes(1))
	node := topo.Node(0)
	client := topo.AddClient(t)
	host := node.Host()
	host.Listen(t, "tcp", 8080)
	host.Listen(t, "tcp", 9090)
	c, _ := newKernelCompiler(t, node.NS, netfilterHandle(t, node.NS), dppolicy.Config{}, iptables.BackendAuto)

	hep := &policy.Endpoint{Kind: policy.HostEndpoint, Name: "node0-eth0", Labels: map[string]string{"host": "node0"},
		Addresses: []netip.Addr{node.IP}}
	gnp := &policy.GlobalNetworkPolicy{}
	gnp.Name = "node-ingress"
	gnp.Spec.Selector = "host == 'node0'"
	gnp.Spec.Ingress = []policy.Rule{{Action: policy.Allow, Protocol: ptrTo(policy.ProtoTCP),
		Source:      policy.EntityRule{Nets: []string{client.IP.String() + "/32"}},
		Destination: policy.EntityRule{Ports: []policy.Port{policy.SinglePort(8080)}}}}
	gnp.Spec.Types = []policy.PolicyType{policy.PolicyTypeIngress}
	require.NoError(t, c.Replace(policy.Resources{Endpoints: []*policy.Endpoint{hep}, GlobalNetworkPolicies: []*policy.GlobalNetworkPolicy{gnp}}))
	require.NoError(t, c.SetInterface(hep.Key(), "eth0"))
	ctx := context.Background()
	_, err := c.Apply(ctx)
	require.NoError(t, err)

	ps, err := policy.NewPolicySet(policy.Resources{Endpoints: []*policy.Endpoint{hep}, GlobalNetworkPolicies: []*policy.GlobalNetworkPolicy{gnp}})
	require.NoError(t, err)
	reach := func(port uint16, timeout time.Duration) error {
		_, err := client.Probe("tcp", netip.AddrPortFrom(node.IP, port), timeout)
		if v, eerr := ps.Evaluate(policy.Flow{Src: policy.IPPeer(client.IP), Dst: policy.EndpointPeer(hep.Key()),
			Protocol: policy.ProtoTCP, DstPort: port}); eerr == nil {
			require.Equal(t, v.Allowed(), err == nil, "kernel vs evaluator: %s", v)
		}
		return err
	}
	require.NoError(t, reach(8080, 2*time.Second), "the policy allows the client on 8080")
	require.Error(t, reach(9090, 300*time.Millisecond), "ingress policy applies: default deny")

	hep.Profiles = []string{policy.DefaultAllowProfile}
	require.NoError(t, c.Replace(policy.Resources{Endpoints: []*policy.Endpoint{hep}}))
	_, err = c.Apply(ctx)
	require.NoError(t, err)
	ps, err = policy.NewPolicySet(policy.Resources{Endpoints: []*policy.Endpoint{hep}})
	require.NoError(t, err)
	require.NoError(t, reach(9090, 2*time.Second), "no policy, default-allow profile")
}
