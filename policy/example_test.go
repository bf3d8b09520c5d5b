package policy_test

import (
	"errors"
	"fmt"
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selector"
)

// A Kubernetes NetworkPolicy converted as Calico converts it, and two flows
// explained.
func ExampleFromK8s() {
	port := intstr.FromInt32(8080)
	knp := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-web", Namespace: "shop"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "backend"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}},
		},
	}
	np, err := policy.FromK8s(knp)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(np.Name, np.Spec.Tier, *np.Spec.Order, np.Spec.Types)
	fmt.Println(np.Spec.Selector)
	fmt.Println(np.Spec.Ingress[0].Source.Selector, np.Spec.Ingress[0].Protocol, np.Spec.Ingress[0].Destination.Ports)

	ps, err := policy.NewPolicySet(policy.Resources{
		NetworkPolicies: []*policy.NetworkPolicy{np},
		Endpoints: []*policy.Endpoint{
			{Name: "frontend", Namespace: "shop", Labels: map[string]string{"app": "frontend"}, Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
			{Name: "backend", Namespace: "shop", Labels: map[string]string{"app": "backend"}, Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range []uint16{8080, 22} {
		v, err := ps.Evaluate(policy.Flow{
			Src: policy.EndpointPeer("shop/frontend"), Dst: policy.EndpointPeer("shop/backend"),
			Protocol: policy.ProtoTCP, DstPort: p,
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(v)
	}
	// Output:
	// knp.default.allow-web default 1000 [Ingress]
	// (projectcalico.org/orchestrator == "k8s" && app == "backend")
	// (projectcalico.org/orchestrator == "k8s" && app == "frontend") TCP [8080]
	// Allow TCP shop/frontend (10.0.0.1) → shop/backend (10.0.0.2):8080
	//   egress of shop/frontend (10.0.0.1): no policy applies → profile kns.shop (Allow)
	//   ingress of shop/backend (10.0.0.2): tier default → policy shop/knp.default.allow-web rule 0 (Allow)
	// Deny TCP shop/frontend (10.0.0.1) → shop/backend (10.0.0.2):22
	//   egress of shop/frontend (10.0.0.1): no policy applies → profile kns.shop (Allow)
	//   ingress of shop/backend (10.0.0.2): tier default → end of tier, no rule matched in shop/knp.default.allow-web (Deny)
}

// Calico resources decoded from YAML, with a tier that passes, and the
// allow matrix between three pods.
func ExamplePolicySet_Matrix() {
	objs, err := policy.Decode([]byte(`
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.quarantine}
spec:
  tier: security
  selector: all()
  types: [Ingress, Egress]
  ingress:
  - {action: Deny, source: {selector: quarantine == 'true'}}
  - {action: Pass}
  egress:
  - {action: Deny, destination: {selector: quarantine == 'true'}}
  - {action: Pass}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: bank}
spec:
  selector: app == 'db'
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'api'}, destination: {ports: [5432]}}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	var res policy.Resources
	res.Add(objs...)
	ip := netip.MustParseAddr
	res.Add(
		&policy.Endpoint{Name: "api", Namespace: "bank", Labels: map[string]string{"app": "api"}, Addresses: []netip.Addr{ip("10.0.0.1")}},
		&policy.Endpoint{Name: "db", Namespace: "bank", Labels: map[string]string{"app": "db"}, Addresses: []netip.Addr{ip("10.0.0.2")}},
		&policy.Endpoint{Name: "bad", Namespace: "bank", Labels: map[string]string{"app": "api", "quarantine": "true"}, Addresses: []netip.Addr{ip("10.0.0.3")}},
	)
	ps, err := policy.NewPolicySet(res)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := ps.Matrix(nil, policy.ProtoTCP, 5432)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(m)
	v, _ := ps.Evaluate(policy.Flow{Src: policy.EndpointPeer("bank/bad"), Dst: policy.EndpointPeer("bank/db"), Protocol: policy.ProtoTCP, DstPort: 5432})
	fmt.Println(v)
	// Output:
	// TCP/5432       1  2  3
	//  1 bank/api    ✓  ✗  ✓
	//  2 bank/bad    ✗  ✗  ✗
	//  3 bank/db     ✓  ✗  ✗
	// Deny TCP bank/bad (10.0.0.3) → bank/db (10.0.0.2):5432
	//   egress of bank/bad (10.0.0.3): tier security → policy security.quarantine rule 1 (Pass) → profile kns.bank (Allow)
	//   ingress of bank/db (10.0.0.2): tier security → policy security.quarantine rule 0 (Deny)
}

// Decode reports every problem of every document at once, one per line,
// and keeps the selector's own error.
func ExampleDecode_errors() {
	_, err := policy.Decode([]byte(`
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: bank}
spec:
  order: first
  ingress:
  - {action: Allow, source: {selector: "app == 'api' &"}}
  - {action: Accept}
`))
	fmt.Println(err)
	var ve *policy.ValidationError
	if errors.As(err, &ve) {
		f := ve.Errors[0]
		fmt.Println(f.Document, f.Kind, f.Name, f.Field)
	}
	var pe *selector.ParseError
	fmt.Println(errors.Is(err, policy.ErrInvalid), errors.Is(err, selector.ErrInvalid), errors.As(err, &pe))
	// Output:
	// document 1: NetworkPolicy bank/db: spec.order: must be a number, got a string
	// document 1: NetworkPolicy bank/db: spec.ingress[0].source.selector: unexpected "&" at column 14, expected "&&"
	// document 1: NetworkPolicy bank/db: spec.ingress[1].action: unknown action "Accept", want Allow, Deny, Log or Pass
	// 1 NetworkPolicy bank/db spec.order
	// true true true
}
