package policy

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tabbynet/tabby/selector"
)

// Scope says which items (endpoints, network sets) the positive part of an
// EntityMatch considers, before its Selector is applied.
type Scope uint8

// Scopes. They follow Calico's rule conversion: a namespaced policy's entity
// rule with a selector, notSelector or serviceAccounts but no
// namespaceSelector is confined to the policy's namespace; a global policy's
// is not confined; namespaceSelector all() means "any namespaced item",
// global() "any non-namespaced item", and any other namespace selector is
// evaluated against the item's namespace labels (a non-namespaced item has
// none).
const (
	ScopeAny Scope = iota
	ScopeNamespace
	ScopeAllNamespaces
	ScopeGlobal
	ScopeNamespaceSelector
)

func (s Scope) String() string {
	switch s {
	case ScopeNamespace:
		return "namespace"
	case ScopeAllNamespaces:
		return "all-namespaces"
	case ScopeGlobal:
		return "global"
	case ScopeNamespaceSelector:
		return "namespace-selector"
	default:
		return "any"
	}
}

// EntityMatch is an EntityRule resolved for evaluation or compilation: CIDRs
// parsed, selectors parsed and combined with the namespace scope, service
// namespaces defaulted. The dataplane compiler renders one of these into
// ipset and port matches.
type EntityMatch struct {
	Nets    []netip.Prefix // address must be in one (when non-empty)
	NotNets []netip.Prefix // address must be in none

	// HasSelector: the address must belong to an item (endpoint or network
	// set) in Scope that matches Selector and the service-account match.
	// False means no selector condition at all, so external addresses can
	// match.
	HasSelector            bool
	Scope                  Scope
	Namespace              string            // for ScopeNamespace
	NamespaceSelector      selector.Selector // for ScopeNamespaceSelector
	Selector               selector.Selector
	ServiceAccountNames    []string           // workload's SA must be one of these, when non-empty
	ServiceAccountSelector *selector.Selector // evaluated against SA labels, when non-nil

	// NotSelector, when non-nil: the address must not belong to any item
	// whose own labels match it. External addresses never do.
	NotSelector *selector.Selector

	Ports    []Port // numeric ranges and names; the port must be in one (when non-empty)
	NotPorts []Port // the port must be in none

	// Service, when non-nil, matches the endpoints of that Kubernetes
	// Service (namespace defaulted to the policy's).
	Service *ServiceMatch

	selection selection // MatchSelector and NotMatchSelector, worked out by Resolve
}

// ICMPMatch is a resolved ICMP type/code match; Code is -1 when any code.
type ICMPMatch struct {
	Type int
	Code int
}

// ResolvedRule is a Rule ready to evaluate or compile.
type ResolvedRule struct {
	Index       int // position in the policy's ingress or egress list
	Action      Action
	IPVersion   int       // 0 (any), 4 or 6
	Protocol    *Protocol // nil: any
	NotProtocol *Protocol
	ICMP        *ICMPMatch
	NotICMP     *ICMPMatch
	Src, Dst    EntityMatch
	HTTP        *HTTPMatch
}

// ResolvedPolicy is a NetworkPolicy or GlobalNetworkPolicy ready to evaluate
// or compile: selectors parsed, types defaulted, rules resolved.
type ResolvedPolicy struct {
	Key       string // "namespace/name" for a NetworkPolicy, "name" for a global one
	Name      string
	Namespace string // empty for a GlobalNetworkPolicy
	Tier      string
	Order     *float64 // nil: after every ordered policy

	// Endpoint selection: Scope/Namespace/NamespaceSelector as in
	// EntityMatch (ScopeNamespace for a NetworkPolicy), then Selector on the
	// endpoint's labels and ServiceAccountSelector on its SA's labels.
	Scope                  Scope
	NamespaceSelector      selector.Selector
	Selector               selector.Selector
	ServiceAccountSelector *selector.Selector

	Ingress, Egress bool // the defaulted types
	IngressRules    []ResolvedRule
	EgressRules     []ResolvedRule

	DoNotTrack, PreDNAT, ApplyOnForward bool

	selection selection // EndpointSelector, worked out by Resolve
}

// Rules returns the rules for a direction.
func (p *ResolvedPolicy) Rules(d Direction) []ResolvedRule {
	if d == Ingress {
		return p.IngressRules
	}
	return p.EgressRules
}

// AppliesTo reports whether the policy's types include the direction.
func (p *ResolvedPolicy) AppliesTo(d Direction) bool {
	if d == Ingress {
		return p.Ingress
	}
	return p.Egress
}

// DefaultTypes returns the types Calico gives a policy that lists none:
// Ingress when there are no egress rules (even with no ingress rules either),
// Egress when there are only egress rules, both when there are both.
func DefaultTypes(ingressRules, egressRules int) []PolicyType {
	switch {
	case egressRules == 0:
		return []PolicyType{PolicyTypeIngress}
	case ingressRules == 0:
		return []PolicyType{PolicyTypeEgress}
	default:
		return []PolicyType{PolicyTypeIngress, PolicyTypeEgress}
	}
}

// policyFields is what NetworkPolicySpec and GlobalNetworkPolicySpec share,
// plus the global-only fields (zero for a NetworkPolicy).
type policyFields struct {
	global                              bool
	name, namespace                     string
	tier                                string
	order                               *float64
	ingress, egress                     []Rule
	sel, saSel, nsSel                   string
	types                               []PolicyType
	doNotTrack, preDNAT, applyOnForward bool
}

func cloneOrder(o *float64) *float64 {
	if o == nil {
		return nil
	}
	v := *o
	return &v
}

func resolvePolicy(f policyFields, r *Resolver, e *errs) *ResolvedPolicy {
	spec := root("spec")
	rp := &ResolvedPolicy{
		Name:           f.name,
		Namespace:      f.namespace,
		Tier:           f.tier,
		Order:          cloneOrder(f.order), // not the caller's pointer
		DoNotTrack:     f.doNotTrack,
		PreDNAT:        f.preDNAT,
		ApplyOnForward: f.applyOnForward,
	}
	rp.Key = f.name
	if !f.global {
		rp.Key = f.namespace + "/" + f.name
		rp.Scope = ScopeNamespace
	}
	if rp.Tier == "" {
		rp.Tier = TierDefault
	} else if msg := checkDNSLabel(rp.Tier); msg != "" {
		e.add(spec.field("tier"), msg)
	}
	checkOrder(f.order, spec.field("order"), e)
	rp.Selector = r.parseSel(f.sel, spec.field("selector"), false, e)
	if strings.TrimSpace(f.saSel) != "" {
		s := r.parseSel(f.saSel, spec.field("serviceAccountSelector"), false, e)
		rp.ServiceAccountSelector = &s
	}
	if f.global && strings.TrimSpace(f.nsSel) != "" {
		s := r.parseSel(f.nsSel, spec.field("namespaceSelector"), false, e)
		rp.Scope, rp.NamespaceSelector = namespaceScope(s)
	}
	if f.global {
		globalPolicyQuirks(rp, f)
	}

	types := f.types
	seen := map[PolicyType]bool{}
	for i, t := range types {
		p := spec.field("types").at(i)
		switch t {
		case PolicyTypeIngress, PolicyTypeEgress:
		default:
			e.add(p, fmt.Sprintf("unknown type %q, want Ingress or Egress", t))
		}
		if seen[t] {
			e.add(p, fmt.Sprintf("type %q listed more than once", t))
		}
		seen[t] = true
	}
	if len(types) == 0 {
		types = DefaultTypes(len(f.ingress), len(f.egress))
	}
	rp.Ingress = slices.Contains(types, PolicyTypeIngress)
	rp.Egress = slices.Contains(types, PolicyTypeEgress)

	if f.global {
		if f.doNotTrack && f.preDNAT {
			e.add(spec.field("preDNAT"), "preDNAT and doNotTrack cannot both be true")
		}
		if f.preDNAT && (len(f.egress) > 0 || slices.Contains(f.types, PolicyTypeEgress)) {
			e.add(spec.field("preDNAT"), "a preDNAT policy cannot have egress rules or the Egress type")
		}
		if (f.doNotTrack || f.preDNAT) && !f.applyOnForward {
			e.add(spec.field("applyOnForward"), "must be true when preDNAT or doNotTrack is true")
		}
	}

	ctx := ruleContext{global: f.global, namespace: f.namespace, r: r}
	if len(f.ingress) > 0 {
		rp.IngressRules = make([]ResolvedRule, 0, len(f.ingress))
	}
	if len(f.egress) > 0 {
		rp.EgressRules = make([]ResolvedRule, 0, len(f.egress))
	}
	for i := range f.ingress {
		ctx.ingress = true
		rp.IngressRules = append(rp.IngressRules, resolveRule(&f.ingress[i], i, ctx, spec.field("ingress").at(i), e))
	}
	for i := range f.egress {
		ctx.ingress = false
		rp.EgressRules = append(rp.EgressRules, resolveRule(&f.egress[i], i, ctx, spec.field("egress").at(i), e))
	}
	resolveSelections(rp, r, e)
	return rp
}

type ruleContext struct {
	global    bool
	namespace string
	ingress   bool
	r         *Resolver // nil: no cache
}

func checkOrder(o *float64, p path, e *errs) {
	if o == nil {
		return
	}
	switch {
	case math.IsNaN(*o) || math.IsInf(*o, 0):
		e.add(p, "must be a finite number")
	case *o < 0:
		e.add(p, fmt.Sprintf("must not be negative, got %v", *o))
	}
}

// parseSel parses a selector; global() is refused unless allowGlobal, and
// then only on its own.
func parseSel(s string, p path, allowGlobal bool, e *errs) selector.Selector {
	sel, err := selector.Parse(s)
	if err != nil {
		e.addErr(p, err)
		return selector.Nothing()
	}
	if isGlobal(sel) {
		if allowGlobal {
			return sel
		}
		e.add(p, "global() is only valid as an entity rule's namespaceSelector")
		return selector.Nothing()
	}
	if strings.Contains(sel.String(), "global()") {
		if allowGlobal {
			e.add(p, "global() must be the whole namespaceSelector")
		} else {
			e.add(p, "global() is only valid as an entity rule's namespaceSelector")
		}
		return selector.Nothing()
	}
	return sel
}

func isGlobal(s selector.Selector) bool { return s.String() == "global()" }

func namespaceScope(s selector.Selector) (Scope, selector.Selector) {
	switch {
	case isGlobal(s):
		return ScopeGlobal, selector.Selector{}
	case s.IsAll():
		return ScopeAllNamespaces, selector.Selector{}
	default:
		return ScopeNamespaceSelector, s
	}
}

func resolveRule(r *Rule, idx int, ctx ruleContext, p path, e *errs) ResolvedRule {
	rr := ResolvedRule{Index: idx, Action: r.Action}
	switch r.Action {
	case Allow, Deny, Log, Pass:
	case "":
		e.add(p.field("action"), "required: one of Allow, Deny, Log, Pass")
	default:
		e.add(p.field("action"), fmt.Sprintf("unknown action %q, want Allow, Deny, Log or Pass", r.Action))
	}
	if r.IPVersion != nil {
		if *r.IPVersion != 4 && *r.IPVersion != 6 {
			e.add(p.field("ipVersion"), fmt.Sprintf("must be 4 or 6, got %d", *r.IPVersion))
		} else {
			rr.IPVersion = *r.IPVersion
		}
	}
	rr.Protocol = resolveProtocol(r.Protocol, p.field("protocol"), e)
	rr.NotProtocol = resolveProtocol(r.NotProtocol, p.field("notProtocol"), e)

	// Calico's API validation requires protocol ICMP or ICMPv6 for icmp
	// only; Felix renders notICMP as the iptables icmp (icmp6) match, which
	// the kernel accepts only after -p icmp (ipv6-icmp), so a notICMP
	// without that protocol can never be programmed. Both need it here.
	isICMP := func(n *Protocol) bool { return n != nil && n.IsICMP() }
	if r.ICMP != nil && !isICMP(rr.Protocol) {
		e.add(p.field("icmp"), "requires protocol ICMP or ICMPv6")
	}
	if r.NotICMP != nil && !isICMP(rr.Protocol) {
		e.add(p.field("notICMP"), "requires protocol ICMP or ICMPv6")
	}
	rr.ICMP = resolveICMP(r.ICMP, p.field("icmp"), e)
	rr.NotICMP = resolveICMP(r.NotICMP, p.field("notICMP"), e)
	for _, n := range []*Protocol{rr.Protocol, rr.NotProtocol} {
		if n == nil || rr.IPVersion == 0 {
			continue
		}
		if *n == ProtoICMP && rr.IPVersion != 4 {
			e.add(p.field("ipVersion"), "must be 4 with protocol ICMP")
		}
		if *n == ProtoICMPv6 && rr.IPVersion != 6 {
			e.add(p.field("ipVersion"), "must be 6 with protocol ICMPv6")
		}
	}

	// Ports need a protocol that has them. Named ports are valid on both
	// sides, as in Calico's validator: in a source one matches the packet's
	// source address and port (Felix's SrcNamedPortIpSetIds).
	portsOK := rr.Protocol != nil && protoHasPorts(*rr.Protocol)
	for _, pf := range [...]struct {
		side, name string
		ports      []Port
	}{
		{"source", "ports", r.Source.Ports},
		{"source", "notPorts", r.Source.NotPorts},
		{"destination", "ports", r.Destination.Ports},
		{"destination", "notPorts", r.Destination.NotPorts},
	} {
		if len(pf.ports) > 0 && !portsOK {
			sp := p.field(pf.side)
			e.add(sp.field(pf.name), "ports require protocol TCP, UDP or SCTP")
		}
	}

	v4, v6 := false, false
	rr.Src = resolveEntity(&r.Source, ctx, p.field("source"), e, &v4, &v6)
	rr.Dst = resolveEntity(&r.Destination, ctx, p.field("destination"), e, &v4, &v6)
	if v4 && v6 {
		e.add(p, "rule mixes IPv4 and IPv6 CIDRs")
	}
	if (rr.IPVersion == 4 && v6) || (rr.IPVersion == 6 && v4) {
		e.add(p.field("ipVersion"), "does not match the version of the rule's CIDRs")
	}

	if ctx.ingress && r.Destination.Services != nil {
		e.add(p.field("destination").field("services"), "not allowed in an ingress rule's destination")
	}
	if !ctx.ingress && r.Source.Services != nil {
		e.add(p.field("source").field("services"), "not allowed in an egress rule's source")
	}
	if r.Destination.Services != nil && (len(r.Destination.Ports) > 0 || len(r.Destination.NotPorts) > 0) {
		e.add(p.field("destination").field("ports"), "cannot be combined with services (the service's ports apply)")
	}

	if r.HTTP != nil {
		hp := p.field("http")
		if r.Action != Allow {
			e.add(hp, "only valid in Allow rules")
		}
		if !ctx.ingress {
			e.add(hp, "not allowed in egress rules")
		}
		if rr.Protocol != nil && *rr.Protocol != ProtoTCP {
			e.add(p.field("protocol"), "must be TCP in a rule with http")
		}
		for i, m := range r.HTTP.Methods {
			if m == "" || strings.ContainsAny(m, " \t\r\n") {
				e.add(hp.field("methods").at(i), fmt.Sprintf("invalid HTTP method %q", m))
			}
		}
		for i, hpth := range r.HTTP.Paths {
			pp := hp.field("paths").at(i)
			if (hpth.Exact == "") == (hpth.Prefix == "") {
				e.add(pp, "exactly one of exact and prefix must be set")
			}
		}
		h := *r.HTTP
		rr.HTTP = &h
	}
	return rr
}

func resolveProtocol(pr *Protocol, p path, e *errs) *Protocol {
	if pr == nil {
		return nil
	}
	if *pr == 0 {
		e.add(p, "must be a protocol name or 1-255, got 0")
		return nil
	}
	n := *pr
	return &n
}

func resolveICMP(f *ICMPFields, p path, e *errs) *ICMPMatch {
	if f == nil {
		return nil
	}
	m := &ICMPMatch{Type: -1, Code: -1}
	if f.Type != nil {
		if *f.Type < 0 || *f.Type > 254 {
			e.add(p.field("type"), fmt.Sprintf("must be 0-254, got %d", *f.Type))
		}
		m.Type = *f.Type
	}
	if f.Code != nil {
		if f.Type == nil {
			e.add(p.field("code"), "requires type")
		}
		if *f.Code < 0 || *f.Code > 255 {
			e.add(p.field("code"), fmt.Sprintf("must be 0-255, got %d", *f.Code))
		}
		m.Code = *f.Code
	}
	if f.Type == nil {
		// An empty icmp block matches any ICMP packet.
		return &ICMPMatch{Type: -1, Code: -1}
	}
	return m
}

func resolveNets(nets []string, p path, e *errs, v4, v6 *bool) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range nets {
		pfx, err := parseNet(s)
		if err != nil {
			e.add(p.at(i), err.Error())
			continue
		}
		if pfx.Addr().Is4() {
			*v4 = true
		} else {
			*v6 = true
		}
		out = append(out, pfx)
	}
	return out
}

// parseNet reads a CIDR (host bits are masked off) or a bare address (as a
// full-length prefix).
func parseNet(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		if pfx.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: zones are not allowed", s)
		}
		return pfx.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func resolveEntity(er *EntityRule, ctx ruleContext, p path, e *errs, v4, v6 *bool) EntityMatch {
	m := EntityMatch{
		Nets:    resolveNets(er.Nets, p.field("nets"), e, v4, v6),
		NotNets: resolveNets(er.NotNets, p.field("notNets"), e, v4, v6),
	}
	hasSel := strings.TrimSpace(er.Selector) != ""
	hasNotSel := strings.TrimSpace(er.NotSelector) != ""
	hasNsSel := strings.TrimSpace(er.NamespaceSelector) != ""
	hasSA := er.ServiceAccounts != nil && (len(er.ServiceAccounts.Names) > 0 || strings.TrimSpace(er.ServiceAccounts.Selector) != "")

	if hasSel {
		m.Selector = ctx.r.parseSel(er.Selector, p.field("selector"), false, e)
	}
	if hasNotSel {
		s := ctx.r.parseSel(er.NotSelector, p.field("notSelector"), false, e)
		m.NotSelector = &s
	}
	if er.ServiceAccounts != nil {
		sp := p.field("serviceAccounts")
		for i, n := range er.ServiceAccounts.Names {
			if n == "" {
				e.add(sp.field("names").at(i), "empty service account name")
			}
		}
		m.ServiceAccountNames = slices.Clone(er.ServiceAccounts.Names)
		if strings.TrimSpace(er.ServiceAccounts.Selector) != "" {
			s := ctx.r.parseSel(er.ServiceAccounts.Selector, sp.field("selector"), false, e)
			m.ServiceAccountSelector = &s
		}
	}
	// The positive selection exists when there is a selector (or SA match),
	// or, with a scope to apply, a notSelector or namespaceSelector.
	switch {
	case hasNsSel:
		s := ctx.r.parseSel(er.NamespaceSelector, p.field("namespaceSelector"), true, e)
		m.Scope, m.NamespaceSelector = namespaceScope(s)
		m.HasSelector = true
	case !ctx.global && (hasSel || hasSA || hasNotSel):
		m.Scope, m.Namespace = ScopeNamespace, ctx.namespace
		m.HasSelector = true
	case hasSel || hasSA:
		m.HasSelector = true
	}

	for i, port := range er.Ports {
		checkPort(port, p.field("ports").at(i), e)
	}
	for i, port := range er.NotPorts {
		checkPort(port, p.field("notPorts").at(i), e)
	}
	m.Ports = slices.Clone(er.Ports)
	m.NotPorts = slices.Clone(er.NotPorts)

	if er.Services != nil {
		sp := p.field("services")
		if er.Services.Name == "" {
			e.add(sp.field("name"), "required")
		}
		if hasSel || hasNotSel {
			e.add(sp, "cannot be combined with selector or notSelector")
		}
		if hasNsSel {
			e.add(sp, "cannot be combined with namespaceSelector")
		}
		if er.ServiceAccounts != nil {
			e.add(sp, "cannot be combined with serviceAccounts")
		}
		if len(er.Nets) > 0 || len(er.NotNets) > 0 {
			e.add(sp, "cannot be combined with nets or notNets")
		}
		svc := *er.Services
		if svc.Namespace == "" {
			if ctx.global {
				e.add(sp.field("namespace"), "required in a global policy")
			}
			svc.Namespace = ctx.namespace
		}
		m.Service = &svc
	}
	return m
}

func checkPort(port Port, p path, e *errs) {
	if port.IsNamed() {
		if err := validatePortName(port.PortName); err != nil {
			e.add(p, err.Error())
		}
		return
	}
	if port.MinPort > port.MaxPort {
		e.add(p, fmt.Sprintf("port range %d:%d has its minimum above its maximum", port.MinPort, port.MaxPort))
	}
}

// checkDNSLabel checks a tier or namespace name as Kubernetes checks a DNS
// label. It returns "" when valid.
func checkDNSLabel(s string) string {
	if s == "" {
		return "required"
	}
	return joinProblems(s, validation.IsDNS1123Label(s))
}

// checkName checks a resource name as Kubernetes checks a DNS subdomain.
func checkName(s string) string {
	if s == "" {
		return "required"
	}
	return joinProblems(s, validation.IsDNS1123Subdomain(s))
}

func joinProblems(s string, problems []string) string {
	if len(problems) == 0 {
		return ""
	}
	return fmt.Sprintf("%q: %s", s, strings.Join(problems, "; "))
}

// globalPolicyQuirks reproduces what Calico's GlobalNetworkPolicy conversion
// does to all() when it combines the policy's selectors into one: with a
// namespaceSelector, every all() in the combined selector (the policy's own
// selector included) becomes has(projectcalico.org/namespace); then, with a
// serviceAccountSelector, every remaining all() (a serviceAccountSelector of
// all() included) becomes has(projectcalico.org/serviceaccount). So a global
// policy with serviceAccountSelector: all() selects only endpoints that have
// a service account. NetworkPolicy conversion does no such rewriting.
func globalPolicyQuirks(rp *ResolvedPolicy, f policyFields) {
	ownSel := strings.TrimSpace(f.sel) != ""
	rewrite := func(s selector.Selector, with string) selector.Selector {
		c := s.String()
		if !strings.Contains(c, "all()") {
			return s
		}
		out, err := selector.Parse(strings.ReplaceAll(c, "all()", with))
		if err != nil {
			return s // cannot happen: the canonical form re-parses
		}
		return out
	}
	if strings.TrimSpace(f.nsSel) != "" && ownSel {
		rp.Selector = rewrite(rp.Selector, "has("+LabelNamespace+")")
	}
	if rp.ServiceAccountSelector != nil {
		if ownSel {
			rp.Selector = rewrite(rp.Selector, "has("+LabelServiceAccount+")")
		}
		if rp.ServiceAccountSelector.IsAll() {
			rp.Selector = rp.Selector.And(selector.Has(LabelServiceAccount))
			rp.ServiceAccountSelector = nil
		}
	}
}
