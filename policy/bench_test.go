package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/tabbynet/tabby/selector"
)

// benchWorld builds nPolicies policies of 10 rules each over 10,000
// endpoints in 100 namespaces: mostly namespaced policies selecting one of 50
// apps, some global ones, rules with selectors, namespace selectors, nets and
// port lists.
func benchWorld(nPolicies int) Resources {
	rng := rand.New(rand.NewPCG(1, 2))
	var r Resources
	for i := range 100 {
		r.Namespaces = append(r.Namespaces, &Namespace{Name: fmt.Sprintf("ns%d", i), Labels: map[string]string{"team": fmt.Sprintf("t%d", i%10)}})
	}
	for i := range 10_000 {
		ep := &Endpoint{
			Name:      fmt.Sprintf("pod%d", i),
			Namespace: fmt.Sprintf("ns%d", i%100),
			Labels:    map[string]string{"app": fmt.Sprintf("app%d", rng.IntN(50)), "version": fmt.Sprintf("v%d", rng.IntN(3))},
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			Ports:     []EndpointPort{{Name: "http", Protocol: mustProto("TCP"), Port: 8080}},
		}
		r.Endpoints = append(r.Endpoints, ep)
	}
	tcp := mustProto("TCP")
	for i := range nPolicies {
		var rules []Rule
		for j := range 10 {
			rule := Rule{Action: Allow, Protocol: &tcp}
			switch j % 5 {
			case 0:
				rule.Source.Selector = fmt.Sprintf("app == 'app%d'", rng.IntN(50))
			case 1:
				rule.Source.NamespaceSelector = fmt.Sprintf("team == 't%d'", rng.IntN(10))
				rule.Source.Selector = fmt.Sprintf("version in {'v%d', 'v%d'}", rng.IntN(3), rng.IntN(3))
			case 2:
				rule.Source.Nets = []string{fmt.Sprintf("10.0.%d.0/24", rng.IntN(40))}
			case 3:
				rule.Destination.Ports = []Port{SinglePort(uint16(8000 + rng.IntN(100))), NamedPort("http")}
				rule.Source.Selector = fmt.Sprintf("app == 'app%d'", rng.IntN(50))
			case 4:
				rule.Action = Deny
				rule.Source.NotSelector = "has(version)"
			}
			rules = append(rules, rule)
		}
		order := float64(rng.IntN(100))
		if i%10 == 0 {
			p := &GlobalNetworkPolicy{ObjectMeta: objMeta("", fmt.Sprintf("gnp%d", i))}
			p.Spec = GlobalNetworkPolicySpec{Order: &order, Selector: fmt.Sprintf("app == 'app%d'", rng.IntN(50)), Ingress: rules, Egress: rules[:5]}
			r.GlobalNetworkPolicies = append(r.GlobalNetworkPolicies, p)
			continue
		}
		p := &NetworkPolicy{ObjectMeta: objMeta(fmt.Sprintf("ns%d", rng.IntN(100)), fmt.Sprintf("np%d", i))}
		p.Spec = NetworkPolicySpec{Order: &order, Selector: fmt.Sprintf("app == 'app%d'", rng.IntN(50)), Ingress: rules}
		r.NetworkPolicies = append(r.NetworkPolicies, p)
	}
	return r
}

func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			start := time.Now()
			ps, err := NewPolicySet(benchWorld(n))
			if err != nil {
				b.Fatal(err)
			}
			build := time.Since(start)
			rng := rand.New(rand.NewPCG(3, 4))
			flows := make([]Flow, 4096)
			for i := range flows {
				flows[i] = Flow{
					Src:      IPPeer(ps.endpoints[rng.IntN(len(ps.endpoints))].ep.Addresses[0]),
					Dst:      IPPeer(ps.endpoints[rng.IntN(len(ps.endpoints))].ep.Addresses[0]),
					Protocol: ProtoTCP, SrcPort: 40000, DstPort: uint16(8000 + rng.IntN(100)),
				}
			}
			// Warm the per-endpoint caches, as a long-lived set would be.
			start = time.Now()
			for i := range ps.endpoints {
				ps.tiersFor(i, Ingress)
			}
			warm := time.Since(start)
			allowed := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				v, err := ps.Evaluate(flows[i%len(flows)])
				if err != nil {
					b.Fatal(err)
				}
				if v.Action == Allow {
					allowed++
				}
			}
			b.ReportMetric(float64(build.Milliseconds()), "build-ms")
			b.ReportMetric(float64(warm.Milliseconds()), "warm-ms")
			b.ReportMetric(float64(allowed)/float64(b.N), "allowed/op")
		})
	}
}

// BenchmarkModelEndpointUpdate measures one endpoint label change (its app
// label moves to another of the 50 apps) in a Model holding benchWorld's
// 10,000 endpoints and 1,000 or 10,000 policies, with every match kept up
// to date and reported (events/op counts rule-selector and policy match
// starts and stops). Its peer, scan-all, evaluates every selector the
// model holds once against the endpoint's labels: what finding the changed
// matches costs without an index, before any bookkeeping.
func BenchmarkModelEndpointUpdate(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		r := benchWorld(n)
		events := 0
		count := func(SelectorID, ItemID) { events++ }
		countPolicy := func(string, ItemID) { events++ }
		start := time.Now()
		m := NewModel(OnMatchStarted(count), OnMatchStopped(count), OnPolicyMatch(countPolicy), OnPolicyMatchStopped(countPolicy))
		for _, ns := range r.Namespaces {
			if err := m.UpdateNamespace(ns); err != nil {
				b.Fatal(err)
			}
		}
		for _, ep := range r.Endpoints {
			if err := m.UpdateEndpoint(ep); err != nil {
				b.Fatal(err)
			}
		}
		for _, p := range r.NetworkPolicies {
			rp, err := p.Resolve()
			if err != nil {
				b.Fatal(err)
			}
			if err := m.UpdatePolicy(rp); err != nil {
				b.Fatal(err)
			}
		}
		for _, p := range r.GlobalNetworkPolicies {
			rp, err := p.Resolve()
			if err != nil {
				b.Fatal(err)
			}
			if err := m.UpdatePolicy(rp); err != nil {
				b.Fatal(err)
			}
		}
		build := time.Since(start)
		// Each changed endpoint alternates between two versions.
		rng := rand.New(rand.NewPCG(5, 6))
		versions := make([][2]*Endpoint, 1024)
		for i := range versions {
			ep := r.Endpoints[rng.IntN(len(r.Endpoints))]
			other := ep.DeepCopy()
			other.Labels["app"] = fmt.Sprintf("app%d", rng.IntN(50))
			versions[i] = [2]*Endpoint{other, ep}
		}
		b.Run(fmt.Sprintf("policies=%d/model", n), func(b *testing.B) {
			events = 0
			for i := 0; i < b.N; i++ {
				v := versions[i%len(versions)][(i/len(versions))%2]
				if err := m.UpdateEndpoint(v); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(events)/float64(b.N), "events/op")
			b.ReportMetric(float64(len(m.selNums)), "selectors")
			b.ReportMetric(float64(build.Milliseconds()), "build-ms")
		})
		b.Run(fmt.Sprintf("policies=%d/scan-all", n), func(b *testing.B) {
			sels := make([]selector.Selector, 0, len(m.selNums))
			for _, u := range m.sels {
				if u != nil {
					sels = append(sels, u.sel)
				}
			}
			matched := 0
			for i := 0; i < b.N; i++ {
				v := versions[i%len(versions)][(i/len(versions))%2]
				l := selector.Map(v.Labels)
				for _, s := range sels {
					if s.Evaluate(l) {
						matched++
					}
				}
			}
			b.ReportMetric(float64(len(sels)), "selectors")
		})
	}
}

// BenchmarkNewPolicySet builds the snapshot of benchWorld: resolving the
// policies and filling the model's index with every match.
func BenchmarkNewPolicySet(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		r := benchWorld(n)
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := NewPolicySet(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResolve resolves every policy of benchWorld(1,000) one by one
// with Resolve (the peer) and with one shared Resolver, as NewPolicySet and
// a dataplane's full sync do.
func BenchmarkResolve(b *testing.B) {
	r := benchWorld(1_000)
	b.Run("resolve", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, p := range r.NetworkPolicies {
				if _, err := p.Resolve(); err != nil {
					b.Fatal(err)
				}
			}
			for _, p := range r.GlobalNetworkPolicies {
				if _, err := p.Resolve(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("resolver", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var res Resolver
			for _, p := range r.NetworkPolicies {
				if _, err := res.ResolveNetworkPolicy(p); err != nil {
					b.Fatal(err)
				}
			}
			for _, p := range r.GlobalNetworkPolicies {
				if _, err := res.ResolveGlobalNetworkPolicy(p); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
