package policy_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/policy"
)

// TestAnchorSemantics pins the semantics of Calico and Kubernetes that are easy
// to get wrong, each as a small world of YAML resources and one flow.
func TestAnchorSemantics(t *testing.T) {
	ip := netip.MustParseAddr
	endpoints := []*policy.Endpoint{
		{Name: "a", Namespace: "ns1", Labels: map[string]string{"app": "a"}, Addresses: []netip.Addr{ip("10.0.0.1")}},
		{Name: "b", Namespace: "ns1", Labels: map[string]string{"app": "b"}, Addresses: []netip.Addr{ip("10.0.0.2")}},
		{Name: "c", Namespace: "ns2", Labels: map[string]string{"app": "c", "x": "1"}, Addresses: []netip.Addr{ip("10.0.0.3")}},
	}
	namespaces := []*policy.Namespace{{Name: "ns1"}, {Name: "ns2"}}
	external := policy.IPPeer(ip("192.0.2.9"))
	tcp := func(src, dst policy.Peer, port uint16) policy.Flow {
		return policy.Flow{Src: src, Dst: dst, Protocol: policy.ProtoTCP, DstPort: port}
	}
	ep := policy.EndpointPeer
	tests := []struct {
		name string
		yaml string
		flow policy.Flow
		want policy.Action
	}{
		{"no policy at all: the namespace profile allows", ``, tcp(ep("ns1/a"), ep("ns1/b"), 80), policy.Allow},
		{"types [Ingress, Egress] without egress rules denies all egress (calico#1129)", `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: ns1}
spec:
  selector: app == 'a'
  types: [Ingress, Egress]
  ingress: [{action: Allow}]
`, tcp(ep("ns1/a"), ep("ns1/b"), 80), policy.Deny},
		{"an egress-only Kubernetes policy does not isolate ingress", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: ns1}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Egress]
`, tcp(ep("ns1/a"), ep("ns1/b"), 80), policy.Allow},
		{"a Log-only policy still ends in default deny (calico#3801)", `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: ns1}
spec:
  selector: app == 'b'
  ingress: [{action: Log}]
`, tcp(ep("ns1/a"), ep("ns1/b"), 80), policy.Deny},
		{"Pass skips to the next tier, whose policy decides", `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: first}
spec: {order: 10}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: first.pass}
spec:
  tier: first
  selector: all()
  ingress: [{action: Pass}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-a, namespace: ns1}
spec:
  selector: app == 'b'
  ingress: [{action: Deny, source: {selector: app == 'a'}}, {action: Allow}]
`, tcp(ep("ns1/a"), ep("ns1/b"), 80), policy.Deny},
		{"a tier with defaultAction Pass that matches nothing passes to profiles", `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: first}
spec: {order: 10, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: first.nothing}
spec:
  tier: first
  selector: all()
  ingress: [{action: Deny, source: {selector: app == 'zzz'}}]
`, tcp(ep("ns1/a"), ep("ns1/b"), 80), policy.Allow},
		{"notSelector matches an external source", `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  selector: app == 'b'
  ingress: [{action: Allow, source: {notSelector: has(x)}}]
`, tcp(external, ep("ns1/b"), 80), policy.Allow},
		{"selector: !has(x) does not match an external source", `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  selector: app == 'b'
  ingress: [{action: Allow, source: {selector: '!has(x)'}}]
`, tcp(external, ep("ns1/b"), 80), policy.Deny},
		{"lower order first; nil order last", `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a-unordered, namespace: ns1}
spec:
  selector: app == 'b'
  ingress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: z-ordered, namespace: ns1}
spec:
  order: 500
  selector: app == 'b'
  ingress: [{action: Deny}]
`, tcp(ep("ns1/a"), ep("ns1/b"), 80), policy.Deny},
		{"equal orders are broken by name", `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b-deny, namespace: ns1}
spec:
  order: 1
  selector: app == 'b'
  ingress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a-allow, namespace: ns1}
spec:
  order: 1
  selector: app == 'b'
  ingress: [{action: Allow}]
`, tcp(ep("ns1/a"), ep("ns1/b"), 80), policy.Allow},
		{"a namespaced policy's source selector stays in its own namespace", `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: ns1}
spec:
  selector: app == 'b'
  ingress: [{action: Allow, source: {selector: has(app)}}]
`, tcp(ep("ns2/c"), ep("ns1/b"), 80), policy.Deny},
		{"a namespaceSelector widens it to other namespaces", `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: ns1}
spec:
  selector: app == 'b'
  ingress: [{action: Allow, source: {selector: has(app), namespaceSelector: all()}}]
`, tcp(ep("ns2/c"), ep("ns1/b"), 80), policy.Allow},
		{"Kubernetes ipBlock except is subtracted in the same rule", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: ns1}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.8/29]}}]
`, tcp(external, ep("ns1/b"), 80), policy.Deny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res policy.Resources
			if tt.yaml != "" {
				objs, err := policy.Decode([]byte(tt.yaml))
				require.NoError(t, err)
				res.Add(objs...)
			}
			for _, e := range endpoints {
				res.Add(e)
			}
			for _, n := range namespaces {
				res.Add(n)
			}
			ps, err := policy.NewPolicySet(res)
			require.NoError(t, err)
			v, err := ps.Evaluate(tt.flow)
			require.NoError(t, err)
			assert.Equal(t, tt.want, v.Action, "%s", v)
		})
	}
}
