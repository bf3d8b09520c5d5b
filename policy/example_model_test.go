package policy_test

import (
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selector"
)

// A dataplane subscribes to a Model: one IP set per rule selector, filled
// and emptied as matches start and stop, and the policies to render for
// each endpoint. Updates arrive one at a time, as from informers.
func ExampleModel() {
	var m *policy.Model
	m = policy.NewModel(
		policy.OnSelectorAdded(func(id policy.SelectorID, s selector.Selector) {
			fmt.Printf("ipset create %s (%s)\n", s.UniqueID()[:10], id)
		}),
		policy.OnSelectorRemoved(func(id policy.SelectorID) { fmt.Printf("ipset destroy (%s)\n", id) }),
		policy.OnMatchStarted(func(id policy.SelectorID, it policy.ItemID) {
			fmt.Printf("ipset add %s %v\n", it, m.ItemNets(it))
		}),
		policy.OnMatchStopped(func(id policy.SelectorID, it policy.ItemID) {
			fmt.Printf("ipset del %s %v\n", it, m.ItemNets(it))
		}),
		policy.OnPolicyMatch(func(p string, ep policy.ItemID) { fmt.Printf("policy %s applies to %s\n", p, ep) }),
		policy.OnPolicyMatchStopped(func(p string, ep policy.ItemID) { fmt.Printf("policy %s no longer applies to %s\n", p, ep) }),
	)
	pod := func(name, app, ip string) *policy.Endpoint {
		return &policy.Endpoint{Name: name, Namespace: "shop", Labels: map[string]string{"app": app},
			Addresses: []netip.Addr{netip.MustParseAddr(ip)}}
	}
	check := func(err error) {
		if err != nil {
			fmt.Println(err)
		}
	}
	check(m.UpdateNamespace(&policy.Namespace{Name: "shop", Labels: map[string]string{"env": "prod"}}))
	check(m.UpdateEndpoint(pod("frontend", "frontend", "10.0.0.1")))
	check(m.UpdateEndpoint(pod("backend", "backend", "10.0.0.2")))

	np := &policy.NetworkPolicy{}
	np.Name, np.Namespace = "allow-frontend", "shop"
	np.Spec.Selector = "app == 'backend'"
	np.Spec.Ingress = []policy.Rule{{Action: policy.Allow, Source: policy.EntityRule{Selector: "app == 'frontend'"}}}
	rp, err := np.Resolve()
	check(err)
	check(m.UpdatePolicy(rp))

	fmt.Println("-- frontend relabelled")
	check(m.UpdateEndpoint(pod("frontend", "web", "10.0.0.1")))
	fmt.Println("-- policy deleted")
	m.DeletePolicy("shop/allow-frontend")
	// Output:
	// ipset create s:wCCJHeIN ((projectcalico.org/namespace == "shop" && app == "frontend"))
	// ipset add shop/frontend [10.0.0.1/32]
	// policy shop/allow-frontend applies to shop/backend
	// -- frontend relabelled
	// ipset del shop/frontend [10.0.0.1/32]
	// -- policy deleted
	// ipset destroy ((projectcalico.org/namespace == "shop" && app == "frontend"))
	// policy shop/allow-frontend no longer applies to shop/backend
}
