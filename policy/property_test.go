package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/selector"
)

// This file holds a brute-force reference evaluator written straight from
// Calico's documented semantics, the way Calico itself implements them:
// namespace and service-account labels are copied onto every endpoint with
// the prefixes pcns. and pcsa., a rule's selectors are combined into one
// selector string (as libcalico-go's rule conversion does), and a selector
// matches an address when any endpoint or network set owning that address
// matches. It shares nothing with the evaluator but the selector package and
// the model types, and the property test checks that both agree on random
// policies, endpoints and flows.

// Pools of namespace and service-account selectors, each with the form
// Calico rewrites it to (labels prefixed).
var refNamespaceSelectors = [][2]string{
	{"", ""},
	{"all()", "all()"},
	{"global()", "global()"},
	{"env == 'prod'", "pcns.env == 'prod'"},
	{"!has(env)", "!has(pcns.env)"},
	{"projectcalico.org/name == 'b'", "pcns.projectcalico.org/name == 'b'"},
	{"env in {'prod', 'dev'}", "pcns.env in {'prod', 'dev'}"},
	{"kubernetes.io/metadata.name == 'a'", "pcns.kubernetes.io/metadata.name == 'a'"},
}

var refSASelectors = [][2]string{
	{"all()", "all()"},
	{"team == 'x'", "pcsa.team == 'x'"},
	{"has(team)", "has(pcsa.team)"},
	{"projectcalico.org/name == 'sa1'", "pcsa.projectcalico.org/name == 'sa1'"},
}

var refSelectors = []string{
	"", "all()", "app == 'x'", "app == 'y'", "!has(app)", "app != 'x'", "tier in {'1', '2'}",
	"has(app) && tier == '1'", "app == 'z' || tier == '2'", "projectcalico.org/namespace == 'a'",
	"kind == 'set'",
}

func prefixed(pool [][2]string, raw string) string {
	for _, p := range pool {
		if p[0] == raw {
			return p[1]
		}
	}
	panic("selector not in pool: " + raw)
}

type refItem struct {
	ns     string
	labels map[string]string // everything Calico would put on it, prefixed labels included
	addrs  []netip.Addr
	nets   []netip.Prefix
	ep     *Endpoint
	isHost bool
	isSet  bool
	saName string
}

type refWorld struct {
	r     Resources
	items []*refItem
}

func newRefWorld(r Resources) *refWorld {
	w := &refWorld{r: r}
	nsLabels := func(ns string) map[string]string {
		for _, n := range r.Namespaces {
			if n.Name == ns {
				return n.Labels
			}
		}
		return nil
	}
	addNS := func(l map[string]string, ns string) {
		l["projectcalico.org/namespace"] = ns
		for k, v := range nsLabels(ns) {
			l["pcns."+k] = v
		}
		l["pcns.projectcalico.org/name"] = ns
		l["pcns.kubernetes.io/metadata.name"] = ns
	}
	for _, ep := range r.Endpoints {
		l := map[string]string{}
		for k, v := range ep.Labels {
			l[k] = v
		}
		it := &refItem{ns: ep.Namespace, labels: l, addrs: ep.Addresses, ep: ep, isHost: ep.Kind == HostEndpoint, saName: ep.ServiceAccount}
		if !it.isHost {
			addNS(l, ep.Namespace)
			l["projectcalico.org/orchestrator"] = "k8s"
			if ep.ServiceAccount != "" {
				l["projectcalico.org/serviceaccount"] = ep.ServiceAccount
				l["pcsa.projectcalico.org/name"] = ep.ServiceAccount
				for k, v := range ep.ServiceAccountLabels {
					l["pcsa."+k] = v
				}
			}
		}
		w.items = append(w.items, it)
	}
	addSet := func(ns string, labels map[string]string, nets []string) {
		l := map[string]string{}
		for k, v := range labels {
			l[k] = v
		}
		if ns != "" {
			addNS(l, ns)
		}
		it := &refItem{ns: ns, labels: l, isSet: true}
		for _, n := range nets {
			it.nets = append(it.nets, netip.MustParsePrefix(n).Masked())
		}
		w.items = append(w.items, it)
	}
	for _, s := range r.NetworkSets {
		addSet(s.Namespace, s.Labels, s.Spec.Nets)
	}
	for _, s := range r.GlobalNetworkSets {
		addSet("", s.Labels, s.Spec.Nets)
	}
	return w
}

func (it *refItem) owns(ip netip.Addr) bool {
	if slices.Contains(it.addrs, ip) {
		return true
	}
	for _, n := range it.nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func and(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return "(" + a + ") && (" + b + ")"
}

// refRuleSelector is Calico's combination of an entity rule's selector,
// namespaceSelector, serviceAccounts and the policy's namespace into one
// selector; "" means no selector condition.
func refRuleSelector(er *EntityRule, ns string) string {
	nsSel := ""
	if er.NamespaceSelector != "" {
		nsSel = prefixed(refNamespaceSelectors, er.NamespaceSelector)
		nsSel = strings.ReplaceAll(nsSel, "all()", "has(projectcalico.org/namespace)")
		nsSel = strings.ReplaceAll(nsSel, "global()", "!has(projectcalico.org/namespace)")
	} else if ns != "" {
		nsSel = "projectcalico.org/namespace == '" + ns + "'"
	}
	sa := ""
	if er.ServiceAccounts != nil {
		if er.ServiceAccounts.Selector != "" {
			sa = prefixed(refSASelectors, er.ServiceAccounts.Selector)
		}
		if len(er.ServiceAccounts.Names) > 0 {
			sa = and(sa, "projectcalico.org/serviceaccount in {'"+strings.Join(er.ServiceAccounts.Names, "', '")+"'}")
		}
	}
	sel := and(sa, er.Selector)
	if nsSel != "" && (sel != "" || er.NotSelector != "" || er.NamespaceSelector != "") {
		sel = and(nsSel, sel)
	}
	return sel
}

func (w *refWorld) anyOwner(ip netip.Addr, sel string, endpointsOnly bool, extra func(*refItem) bool) bool {
	s := selector.MustParse(sel)
	for _, it := range w.items {
		if endpointsOnly && it.ep == nil {
			continue
		}
		if it.owns(ip) && s.Evaluate(selector.Map(it.labels)) && (extra == nil || extra(it)) {
			return true
		}
	}
	return false
}

func refProto(p *Protocol) (uint8, bool) {
	if p == nil {
		return 0, false
	}
	return uint8(*p), true
}

func (w *refWorld) refPorts(ports []Port, er *EntityRule, ns string, ip netip.Addr, port uint16, proto uint8) bool {
	for _, p := range ports {
		if p.PortName == "" {
			if p.MinPort <= port && port <= p.MaxPort {
				return true
			}
			continue
		}
		sel := refRuleSelector(er, ns)
		if sel == "" {
			sel = "all()"
		}
		if w.anyOwner(ip, sel, true, func(it *refItem) bool {
			for _, np := range it.ep.Ports {
				n, _ := refProto(&np.Protocol)
				if np.Name == p.PortName && n == proto && np.Port == port {
					return true
				}
			}
			return false
		}) {
			return true
		}
	}
	return false
}

func (w *refWorld) refEntity(er *EntityRule, ns string, ip netip.Addr, port uint16, proto uint8, isDst bool) bool {
	if er.Services != nil {
		svcNS := er.Services.Namespace
		if svcNS == "" {
			svcNS = ns
		}
		found := false
		for _, svc := range w.r.ServiceEndpoints {
			if svc.Name != er.Services.Name || svc.Namespace != svcNS || !slices.Contains(svc.Addresses, ip) {
				continue
			}
			if !isDst || len(svc.Ports) == 0 {
				found = true
			}
			for _, sp := range svc.Ports {
				if n, _ := refProto(&sp.Protocol); n == proto && sp.Port == port {
					found = true
				}
			}
		}
		if !found {
			return false
		}
	}
	if len(er.Nets) > 0 && !slices.ContainsFunc(er.Nets, func(n string) bool { return netip.MustParsePrefix(n).Contains(ip) }) {
		return false
	}
	if slices.ContainsFunc(er.NotNets, func(n string) bool { return netip.MustParsePrefix(n).Contains(ip) }) {
		return false
	}
	if sel := refRuleSelector(er, ns); sel != "" && !w.anyOwner(ip, sel, false, nil) {
		return false
	}
	if er.NotSelector != "" && w.anyOwner(ip, er.NotSelector, false, nil) {
		return false
	}
	if len(er.Ports) > 0 && !w.refPorts(er.Ports, er, ns, ip, port, proto) {
		return false
	}
	if len(er.NotPorts) > 0 && w.refPorts(er.NotPorts, er, ns, ip, port, proto) {
		return false
	}
	return true
}

func (w *refWorld) refRule(r *Rule, ns string, f *Flow, src, dst netip.Addr) bool {
	if r.IPVersion != nil && (*r.IPVersion == 4) != src.Is4() {
		return false
	}
	fp := uint8(f.Protocol)
	if n, ok := refProto(r.Protocol); ok && n != fp {
		return false
	}
	if n, ok := refProto(r.NotProtocol); ok && n == fp {
		return false
	}
	icmp := func(m *ICMPFields) bool {
		if fp != 1 && fp != 58 {
			return false
		}
		if m.Type == nil {
			return true
		}
		return f.ICMP != nil && int(f.ICMP.Type) == *m.Type && (m.Code == nil || int(f.ICMP.Code) == *m.Code)
	}
	if r.ICMP != nil && !icmp(r.ICMP) {
		return false
	}
	if r.NotICMP != nil && icmp(r.NotICMP) {
		return false
	}
	if r.HTTP != nil {
		if f.HTTP == nil || (len(r.HTTP.Methods) > 0 && !slices.Contains(r.HTTP.Methods, f.HTTP.Method)) {
			return false
		}
		if len(r.HTTP.Paths) > 0 && !slices.ContainsFunc(r.HTTP.Paths, func(p HTTPPath) bool {
			return (p.Exact != "" && p.Exact == f.HTTP.Path) || (p.Prefix != "" && strings.HasPrefix(f.HTTP.Path, p.Prefix))
		}) {
			return false
		}
	}
	return w.refEntity(&r.Source, ns, src, f.SrcPort, fp, false) && w.refEntity(&r.Destination, ns, dst, f.DstPort, fp, true)
}

type refPolicy struct {
	key, ns, tier   string
	order           *float64
	sel             string // Calico's combined endpoint selector
	ingress, egress []Rule
	types           []PolicyType
	untracked       bool
}

func (w *refWorld) policies() []refPolicy {
	var out []refPolicy
	for _, p := range w.r.NetworkPolicies {
		sel := and("projectcalico.org/namespace == '"+p.Namespace+"'", p.Spec.Selector)
		if p.Spec.ServiceAccountSelector != "" {
			sel = and(sel, prefixed(refSASelectors, p.Spec.ServiceAccountSelector))
		}
		out = append(out, refPolicy{key: p.Namespace + "/" + p.Name, ns: p.Namespace, tier: p.Spec.Tier, order: p.Spec.Order,
			sel: sel, ingress: p.Spec.Ingress, egress: p.Spec.Egress, types: p.Spec.Types})
	}
	for _, p := range w.r.GlobalNetworkPolicies {
		// As Calico's GlobalNetworkPolicy conversion: append the prefixed
		// selectors and rewrite every all() in the combined string.
		sel := p.Spec.Selector
		if p.Spec.NamespaceSelector != "" {
			sel = and(sel, prefixed(refNamespaceSelectors, p.Spec.NamespaceSelector))
			sel = strings.ReplaceAll(sel, "all()", "has(projectcalico.org/namespace)")
		}
		if p.Spec.ServiceAccountSelector != "" {
			sel = and(sel, prefixed(refSASelectors, p.Spec.ServiceAccountSelector))
			sel = strings.ReplaceAll(sel, "all()", "has(projectcalico.org/serviceaccount)")
		}
		out = append(out, refPolicy{key: p.Name, tier: p.Spec.Tier, order: p.Spec.Order, sel: sel,
			ingress: p.Spec.Ingress, egress: p.Spec.Egress, types: p.Spec.Types, untracked: p.Spec.DoNotTrack || p.Spec.PreDNAT})
	}
	for i := range out {
		if out[i].tier == "" {
			out[i].tier = "default"
		}
		if out[i].sel == "" {
			out[i].sel = "all()"
		}
	}
	return out
}

func before(ao, bo *float64, an, bn string) bool {
	if ao != nil && bo != nil && *ao != *bo {
		return *ao < *bo
	}
	if (ao == nil) != (bo == nil) {
		return ao != nil
	}
	return an < bn
}

type refDecision struct {
	action Action
	policy string
	rule   int
}

// refDirection evaluates one direction for one endpoint, from scratch.
func (w *refWorld) refDirection(it *refItem, ingress bool, f *Flow, src, dst netip.Addr) refDecision {
	tiers := slices.Clone(w.r.Tiers)
	for _, b := range BuiltinTiers() {
		if !slices.ContainsFunc(tiers, func(t *Tier) bool { return t.Name == b.Name }) {
			tiers = append(tiers, b)
		}
	}
	slices.SortFunc(tiers, func(a, b *Tier) int {
		if before(a.Spec.Order, b.Spec.Order, a.Name, b.Name) {
			return -1
		}
		return 1
	})
	pols := w.policies()
	slices.SortFunc(pols, func(a, b refPolicy) int {
		if before(a.order, b.order, a.key, b.key) {
			return -1
		}
		return 1
	})
	for _, t := range tiers {
		var applying []refPolicy
		for _, p := range pols {
			if p.tier != t.Name || p.untracked || !selector.MustParse(p.sel).Evaluate(selector.Map(it.labels)) {
				continue
			}
			types := p.types
			if len(types) == 0 {
				switch {
				case len(p.egress) == 0:
					types = []PolicyType{"Ingress"}
				case len(p.ingress) == 0:
					types = []PolicyType{"Egress"}
				default:
					types = []PolicyType{"Ingress", "Egress"}
				}
			}
			if (ingress && slices.Contains(types, "Ingress")) || (!ingress && slices.Contains(types, "Egress")) {
				applying = append(applying, p)
			}
		}
		if len(applying) == 0 {
			continue
		}
		passed := false
	policies:
		for _, p := range applying {
			rules := p.egress
			if ingress {
				rules = p.ingress
			}
			for i := range rules {
				if !w.refRule(&rules[i], p.ns, f, src, dst) {
					continue
				}
				switch rules[i].Action {
				case Allow, Deny:
					return refDecision{rules[i].Action, p.key, i}
				case Pass:
					passed = true
					break policies
				}
			}
		}
		if passed {
			continue
		}
		if t.Spec.DefaultAction == nil || *t.Spec.DefaultAction == Deny {
			return refDecision{Deny, "", -1}
		}
	}
	if it.isHost {
		if slices.Contains(it.ep.Profiles, DefaultAllowProfile) {
			return refDecision{Allow, "", -2}
		}
		return refDecision{Deny, "", -2}
	}
	return refDecision{Allow, "", -2}
}

func (w *refWorld) endpointFor(ip netip.Addr) *refItem {
	var best *refItem
	for _, it := range w.items {
		if it.ep != nil && slices.Contains(it.addrs, ip) && (best == nil || it.ep.Key() < best.ep.Key()) {
			best = it
		}
	}
	return best
}

// refEvaluate decides a flow between two addresses.
func (w *refWorld) refEvaluate(f *Flow) (egress, ingress refDecision) {
	egress, ingress = refDecision{Allow, "", -3}, refDecision{Allow, "", -3}
	if it := w.endpointFor(f.Src.IP); it != nil {
		egress = w.refDirection(it, false, f, f.Src.IP, f.Dst.IP)
	}
	if it := w.endpointFor(f.Dst.IP); it != nil {
		ingress = w.refDirection(it, true, f, f.Src.IP, f.Dst.IP)
	}
	return egress, ingress
}

func decisionOf(t *DirectionTrace) refDecision {
	if t.Endpoint == "" {
		return refDecision{t.Action, "", -3}
	}
	if t.Profile != "" {
		return refDecision{t.Action, "", -2}
	}
	ref, _ := t.Decider()
	return refDecision{t.Action, ref.Policy, ref.Rule}
}

// ---- random generation ----

type gen struct{ r *rand.Rand }

func (g gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }
func (g gen) chance(p float64) bool    { return g.r.Float64() < p }

func (g gen) labels() map[string]string {
	l := map[string]string{}
	if g.chance(0.8) {
		l["app"] = g.pick("x", "y", "z")
	}
	if g.chance(0.5) {
		l["tier"] = g.pick("1", "2", "3")
	}
	return l
}

var refNets = []string{"10.0.0.0/24", "10.0.0.0/29", "10.0.0.4/30", "10.0.1.0/24", "192.168.0.0/16", "8.8.8.0/24", "10.0.0.3/32"}

func (g gen) entity(dst bool, proto *Protocol, services bool, global bool) EntityRule {
	var er EntityRule
	if services && g.chance(0.15) {
		er.Services = &ServiceMatch{Name: g.pick("svc1", "svc2")}
		if global || g.chance(0.5) {
			er.Services.Namespace = g.pick("a", "b")
		}
		if !dst && proto != nil && proto.SupportsPorts() && g.chance(0.3) {
			er.Ports = []Port{SinglePort(40000)}
		}
		return er
	}
	if g.chance(0.15) {
		er.Nets = []string{g.pick(refNets...)}
	}
	if g.chance(0.1) {
		er.NotNets = []string{g.pick(refNets...)}
	}
	if g.chance(0.3) {
		er.Selector = g.pick(refSelectors...)
	}
	if g.chance(0.1) {
		er.NotSelector = g.pick(refSelectors[1:]...)
	}
	if g.chance(0.15) {
		er.NamespaceSelector = refNamespaceSelectors[g.r.IntN(len(refNamespaceSelectors))][0]
	}
	if g.chance(0.08) {
		er.ServiceAccounts = &ServiceAccountMatch{}
		if g.chance(0.5) {
			er.ServiceAccounts.Names = []string{g.pick("sa1", "sa2")}
		}
		if g.chance(0.6) {
			er.ServiceAccounts.Selector = refSASelectors[g.r.IntN(len(refSASelectors))][0]
		}
	}
	if proto != nil && proto.SupportsPorts() {
		portList := func() []Port {
			var ps []Port
			for range 1 + g.r.IntN(2) {
				switch g.r.IntN(4) {
				case 0:
					ps = append(ps, SinglePort(uint16(g.pick4(80, 443, 53, 8080))))
				case 1:
					ps = append(ps, PortRange(80, 443))
				default:
					switch {
					case dst:
						ps = append(ps, NamedPort(g.pick("http", "dns")))
					case g.chance(0.5):
						// A source named port: the flows' source ports are
						// 40000 ("cli") and 53 ("dns").
						ps = append(ps, NamedPort(g.pick("cli", "dns")))
					default:
						ps = append(ps, SinglePort(40000))
					}
				}
			}
			return ps
		}
		if g.chance(0.4) {
			er.Ports = portList()
		}
		if g.chance(0.1) {
			er.NotPorts = portList()
		}
	}
	return er
}

func (g gen) pick4(xs ...int) int { return xs[g.r.IntN(len(xs))] }

func (g gen) rule(ingress, global bool) Rule {
	r := Rule{Action: []Action{Allow, Allow, Deny, Log, Pass}[g.r.IntN(5)]}
	switch g.r.IntN(5) {
	case 0:
		p := mustProto("TCP")
		r.Protocol = &p
	case 1:
		p := mustProto("udp")
		r.Protocol = &p
	case 2:
		p := mustProto("ICMP")
		r.Protocol = &p
		if g.chance(0.5) {
			t := g.pick4(0, 8)
			r.ICMP = &ICMPFields{Type: &t}
			if g.chance(0.5) {
				c := g.pick4(0, 1)
				r.ICMP.Code = &c
			}
		}
	case 3:
		if g.chance(0.5) {
			p := Protocol(6)
			r.NotProtocol = &p
		}
	}
	if g.chance(0.1) {
		v := 4
		r.IPVersion = &v
	}
	r.Source = g.entity(false, r.Protocol, ingress, global)
	r.Destination = g.entity(true, r.Protocol, !ingress, global)
	if ingress && r.Action == Allow && (r.Protocol == nil || *r.Protocol == ProtoTCP) && g.chance(0.2) {
		r.HTTP = &HTTPMatch{}
		if g.chance(0.6) {
			r.HTTP.Methods = []string{g.pick("GET", "POST")}
		}
		if g.chance(0.6) {
			r.HTTP.Paths = []HTTPPath{{Exact: "/a"}, {Prefix: g.pick("/b", "/")}}
		}
	}
	return r
}

func (g gen) order() *float64 {
	if g.chance(0.3) {
		return nil
	}
	o := float64(g.r.IntN(4) * 10)
	return &o
}

func (g gen) types() []PolicyType {
	switch g.r.IntN(5) {
	case 0:
		return []PolicyType{PolicyTypeIngress}
	case 1:
		return []PolicyType{PolicyTypeEgress}
	case 2:
		return []PolicyType{PolicyTypeEgress, PolicyTypeIngress}
	}
	return nil
}

func (g gen) rules(ingress, global bool) []Rule {
	var rs []Rule
	for range g.r.IntN(4) {
		rs = append(rs, g.rule(ingress, global))
	}
	return rs
}

func (g gen) world() Resources {
	var r Resources
	da := Pass
	r.Tiers = []*Tier{
		{ObjectMeta: objMeta("", "t1"), Spec: TierSpec{Order: ptr(100.0)}},
		{ObjectMeta: objMeta("", "t2"), Spec: TierSpec{Order: ptr(100.0), DefaultAction: &da}},
		{ObjectMeta: objMeta("", "t3")},
	}
	r.Namespaces = []*Namespace{
		{Name: "a", Labels: map[string]string{"env": "prod"}},
		{Name: "b", Labels: map[string]string{"env": "dev"}},
		{Name: "c"},
	}
	for i := range 10 {
		ep := &Endpoint{Name: fmt.Sprintf("ep%d", i), Namespace: g.pick("a", "b", "c"), Labels: g.labels(),
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i / 5), byte(i)})}}
		if g.chance(0.5) {
			ep.ServiceAccount = g.pick("sa1", "sa2")
			if g.chance(0.5) {
				ep.ServiceAccountLabels = map[string]string{"team": g.pick("x", "y")}
			}
		}
		if g.chance(0.5) {
			ep.Ports = append(ep.Ports, EndpointPort{Name: "http", Protocol: mustProto("TCP"), Port: uint16(g.pick4(80, 8080))})
		}
		if g.chance(0.3) {
			ep.Ports = append(ep.Ports, EndpointPort{Name: "dns", Protocol: mustProto(g.pick("UDP", "TCP")), Port: 53})
		}
		if g.chance(0.4) { // a client port, for source named ports
			ep.Ports = append(ep.Ports, EndpointPort{Name: "cli", Protocol: mustProto(g.pick("UDP", "TCP")), Port: uint16(g.pick4(40000, 40001))})
		}
		r.Endpoints = append(r.Endpoints, ep)
	}
	// Two endpoints share an address now and then (as a pod and a host
	// endpoint with the host's IP can).
	for i := range 2 {
		h := &Endpoint{Kind: HostEndpoint, Name: fmt.Sprintf("host%d", i), Labels: g.labels(),
			Addresses: []netip.Addr{netip.MustParseAddr(g.pick("192.168.0.1", "10.0.0.3"))}}
		if g.chance(0.5) {
			h.Profiles = []string{DefaultAllowProfile}
		}
		r.Endpoints = append(r.Endpoints, h)
	}
	for i, name := range []string{"svc1", "svc2"} {
		svc := &ServiceEndpoints{Name: name, Namespace: g.pick("a", "b")}
		for range 1 + g.r.IntN(3) {
			svc.Addresses = append(svc.Addresses, r.Endpoints[g.r.IntN(len(r.Endpoints))].Addresses[0])
		}
		if i == 0 || g.chance(0.5) {
			svc.Ports = []EndpointPort{{Protocol: mustProto("TCP"), Port: uint16(g.pick4(80, 443))}}
		}
		r.ServiceEndpoints = append(r.ServiceEndpoints, svc)
	}
	r.GlobalNetworkSets = []*GlobalNetworkSet{{ObjectMeta: objMeta("", "gs", "kind", "set", "app", g.pick("x", "y")), Spec: NetworkSetSpec{Nets: []string{g.pick("8.8.8.0/24", "10.0.0.0/29")}}}}
	r.NetworkSets = []*NetworkSet{{ObjectMeta: objMeta(g.pick("a", "b"), "ns", "kind", "set"), Spec: NetworkSetSpec{Nets: []string{g.pick("10.0.1.0/24", "8.8.0.0/16")}}}}

	for i := range 1 + g.r.IntN(6) {
		tier := g.pick("", "", "t1", "t2", "t3", "kube-admin", "kube-baseline")
		if g.chance(0.5) {
			p := &NetworkPolicy{ObjectMeta: objMeta(g.pick("a", "b", "c"), fmt.Sprintf("np%d", i))}
			p.Spec = NetworkPolicySpec{Tier: tier, Order: g.order(), Selector: g.pick(refSelectors...), Types: g.types(), Ingress: g.rules(true, false), Egress: g.rules(false, false)}
			if g.chance(0.1) {
				p.Spec.ServiceAccountSelector = refSASelectors[g.r.IntN(len(refSASelectors))][0]
			}
			r.NetworkPolicies = append(r.NetworkPolicies, p)
			continue
		}
		p := &GlobalNetworkPolicy{ObjectMeta: objMeta("", fmt.Sprintf("gnp%d", i))}
		p.Spec = GlobalNetworkPolicySpec{Tier: tier, Order: g.order(), Selector: g.pick(refSelectors...), Types: g.types(), Ingress: g.rules(true, true), Egress: g.rules(false, true)}
		if g.chance(0.2) {
			p.Spec.NamespaceSelector = g.pick("all()", "env == 'prod'", "!has(env)")
		}
		if g.chance(0.1) {
			p.Spec.ServiceAccountSelector = refSASelectors[g.r.IntN(len(refSASelectors))][0]
		}
		if g.chance(0.05) {
			p.Spec.DoNotTrack, p.Spec.ApplyOnForward = true, true
		}
		r.GlobalNetworkPolicies = append(r.GlobalNetworkPolicies, p)
	}
	return r
}

func ptr[T any](v T) *T { return &v }

func (g gen) addr(r Resources) netip.Addr {
	if g.chance(0.75) {
		ep := r.Endpoints[g.r.IntN(len(r.Endpoints))]
		return ep.Addresses[0]
	}
	return netip.MustParseAddr(g.pick("8.8.8.8", "10.0.1.77", "10.0.0.6", "1.2.3.4", "8.8.1.1"))
}

func (g gen) flow(r Resources) Flow {
	f := Flow{Src: IPPeer(g.addr(r)), Dst: IPPeer(g.addr(r)), SrcPort: uint16(g.pick4(40000, 53))}
	switch g.r.IntN(4) {
	case 0, 1:
		f.Protocol = ProtoTCP
		f.DstPort = uint16(g.pick4(80, 443, 53, 8080, 22))
	case 2:
		f.Protocol = ProtoUDP
		f.DstPort = uint16(g.pick4(53, 80))
	default:
		f.Protocol = ProtoICMP
		f.SrcPort = 0 // ICMP has no ports
		f.ICMP = &ICMPInfo{Type: uint8(g.pick4(0, 8)), Code: uint8(g.pick4(0, 1))}
	}
	if f.Protocol == ProtoTCP && g.chance(0.5) {
		f.HTTP = &HTTPRequest{Method: g.pick("GET", "POST"), Path: g.pick("/a", "/b/c", "/x")}
	}
	return f
}

func TestPropertyAgainstReference(t *testing.T) {
	worlds, flows := 400, 100
	if !testing.Short() {
		worlds = 3000
	}
	invalid := 0
	kinds := map[string]int{}
	for seed := range worlds {
		g := gen{rand.New(rand.NewPCG(uint64(seed), 7))}
		res := g.world()
		ps, err := NewPolicySet(res)
		if err != nil {
			invalid++
			continue
		}
		ref := newRefWorld(res)
		for range flows {
			f := g.flow(res)
			v, err := ps.Evaluate(f)
			require.NoError(t, err)
			wantE, wantI := ref.refEvaluate(&f)
			gotE, gotI := decisionOf(&v.Egress), decisionOf(&v.Ingress)
			for _, d := range []refDecision{gotE, gotI} {
				kinds[fmt.Sprintf("%s/%d", d.action, min(d.rule, 0))]++
			}
			if gotE != wantE || gotI != wantI {
				t.Fatalf("seed %d: evaluator and reference disagree\nflow %+v\negress: got %+v want %+v\ningress: got %+v want %+v\n%s\npolicies:\n%s",
					seed, f, gotE, wantE, gotI, wantI, v, dumpPolicies(res))
			}
		}
	}
	t.Logf("invalid worlds %d of %d; decisions (action/rule: 0 a rule, -1 tier end, -2 profile, -3 no endpoint): %v", invalid, worlds, kinds)
	require.Less(t, invalid, worlds/10, "the generator should make valid worlds")
}

func dumpPolicies(r Resources) string {
	var b strings.Builder
	for _, p := range r.NetworkPolicies {
		fmt.Fprintf(&b, "%s/%s: %+v\n", p.Namespace, p.Name, p.Spec)
	}
	for _, p := range r.GlobalNetworkPolicies {
		fmt.Fprintf(&b, "%s: %+v\n", p.Name, p.Spec)
	}
	for _, e := range r.Endpoints {
		fmt.Fprintf(&b, "%s %+v\n", e.Key(), *e)
	}
	return b.String()
}
