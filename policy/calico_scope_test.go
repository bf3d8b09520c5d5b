package policy

import (
	"testing"
)

// TestEvaluateCalicoOnlySemantics pins Calico behaviours that a Kubernetes
// NetworkPolicy engine never exercises, each checked against libcalico-go's
// rule conversion (getEndpointSelector prefixes a rule's namespaceSelector
// with pcns., so a negative one also holds for non-namespaced items) and
// Felix's rendering.
func TestEvaluateCalicoOnlySemantics(t *testing.T) {
	res := append(fixture(),
		&GlobalNetworkSet{ObjectMeta: objMeta("", "ext", "kind", "ext"), Spec: NetworkSetSpec{Nets: []string{"8.8.8.0/24"}}},
		&NetworkSet{ObjectMeta: objMeta("prod", "partners", "kind", "partner"), Spec: NetworkSetSpec{Nets: []string{"9.9.9.0/24"}}},
	)
	ps := build(t, `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: from-unlabelled-namespaces, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source:
      namespaceSelector: "!has(env)"
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: dev-icmp}
spec:
  namespaceSelector: "env == 'dev'"
  ingress:
  - {action: Allow, protocol: 1, icmp: {type: 8}}
`, res...)
	runFlows(t, ps, []flowCase{
		// !has(pcns.env) holds for a GlobalNetworkSet (no namespace labels).
		{"global network set matches a negative namespaceSelector", tcp("8.8.8.8", "prod/db", 5432), Allow, "prod/from-unlabelled-namespaces rule 0 (Allow)"},
		// A NetworkSet in prod carries pcns.env=prod.
		{"network set in a labelled namespace does not", tcp("9.9.9.9", "prod/db", 5432), Deny, "end of tier"},
		// The selector's IP set holds only known items.
		{"unknown address does not", tcp("1.1.1.1", "prod/db", 5432), Deny, "end of tier"},
		{"pod in a labelled namespace does not", tcp("prod/web", "prod/db", 5432), Deny, "end of tier"},
		// protocol: 1 is ICMP.
		{"numeric protocol 1 is ICMP", Flow{Src: peer("prod/web"), Dst: peer("dev/web"), Protocol: ProtoICMP, ICMP: &ICMPInfo{Type: 8}}, Allow, "policy dev-icmp rule 0 (Allow)"},
		{"other ICMP type", Flow{Src: peer("prod/web"), Dst: peer("dev/web"), Protocol: ProtoICMP, ICMP: &ICMPInfo{Type: 13}}, Deny, "end of tier"},
		// A GlobalNetworkPolicy's namespaceSelector never selects a host
		// endpoint (it has no namespace labels).
		{"global policy with namespaceSelector skips host endpoints", tcp("prod/web", "hep:node1-eth0", 22), Deny, "no policy applies → profile (none) (Deny)"},
	})
}
