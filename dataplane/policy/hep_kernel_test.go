package policy_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

// hepNode is a one-node topology whose eth0 is the host endpoint hep (label
// host=node0), with a client outside the node and a compiler on the
// node's netfilter (backend detected).
type hepNode struct {
	node   *nettest.Node
	client *nettest.Pod
	c      *dppolicy.Compiler
	ipt    *iptables.IPTables
	h      *nl.Handle
	hep    *policy.Endpoint
}

func newHEPNode(t *testing.T, listen ...int) *hepNode {
	topo := nettest.NewTopology(t, nettest.Nodes(1))
	n := &hepNode{node: topo.Node(0), client: topo.AddClient(t)}
	for _, port := range listen {
		n.node.Host().Listen(t, "tcp", port)
	}
	n.h = netfilterHandle(t, n.node.NS)
	n.c, n.ipt = newKernelCompiler(t, n.node.NS, n.h, dppolicy.Config{}, iptables.BackendAuto)
	n.hep = &policy.Endpoint{Kind: policy.HostEndpoint, Name: "node0-eth0", Labels: map[string]string{"host": "node0"},
		Addresses: []netip.Addr{n.node.IP}}
	return n
}

// TestHostEndpointKernel puts the node's eth0 under a host endpoint: an
// ingress policy lets an external client reach port 8080 of the node and
// nothing else; without projectcalico-default-allow the rest is dropped;
// with it (and the policy gone) everything is allowed again.
func TestHostEndpointKernel(t *testing.T) {
	n := newHEPNode(t, 8080, 9090)
	node, client, c, hep := n.node, n.client, n.c, n.hep
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
