package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/selector"
)

// Resources is everything a PolicySet is built from. Tiers that are not
// given default to the built-in ones (see BuiltinTiers); namespaces that
// endpoints name but that are not given have no labels.
type Resources struct {
	Tiers                 []*Tier
	NetworkPolicies       []*NetworkPolicy
	GlobalNetworkPolicies []*GlobalNetworkPolicy
	NetworkSets           []*NetworkSet
	GlobalNetworkSets     []*GlobalNetworkSet
	Endpoints             []*Endpoint
	Namespaces            []*Namespace
	ServiceEndpoints      []*ServiceEndpoints
}

// PolicySet is an immutable, validated snapshot of policy and the endpoints
// it applies to, indexed for evaluation. Build it with NewPolicySet; it is
// safe for concurrent use.
type PolicySet struct {
	tiers      []*tierInfo // in evaluation order
	tierByName map[string]*tierInfo

	policies    []*ResolvedPolicy // in evaluation order (tier, order, key)
	policyIndex map[string]int    // key -> position in policies

	endpoints  []*item // sorted by key
	endpointBy map[string]int
	byAddr     map[netip.Addr][]*item
	netsets    []*item

	namespaces map[string]selector.Map
	services   map[string]*ServiceEndpoints // "namespace/name"

	selIndex map[string]*policyIndex // namespace ("" for global policies) -> index
	cache    []epCache               // per endpoint, lazily filled
}

type tierInfo struct {
	name          string
	order         *float64
	defaultAction Action
}

// item is an endpoint or a network set as selectors see it.
type item struct {
	key       string
	namespace string
	labels    selector.Map // own labels plus the ones Calico adds
	nsLabels  selector.Map // the namespace's labels; empty when not namespaced
	sa        string
	saLabels  selector.Map
	ep        *Endpoint      // nil for a network set
	nets      []netip.Prefix // network sets only
}

type epCache struct {
	once sync.Once
	dirs [2][]TierPolicies
}

// TierPolicies is one tier and the policies in it that apply to an
// endpoint in one direction, in evaluation order.
type TierPolicies struct {
	Tier          string
	DefaultAction Action
	Policies      []*ResolvedPolicy
	keys          []string
}

// NewPolicySet validates every resource and builds the set. On any error it
// returns nil and one *ValidationError (wrapping ErrInvalid) listing every
// problem of every resource, duplicates (ErrDuplicate) and unknown tiers
// (ErrUnknownTier) included: nothing is partially applied.
func NewPolicySet(r Resources) (*PolicySet, error) {
	ps := &PolicySet{
		tierByName:  map[string]*tierInfo{},
		policyIndex: map[string]int{},
		endpointBy:  map[string]int{},
		byAddr:      map[netip.Addr][]*item{},
		namespaces:  map[string]selector.Map{},
		services:    map[string]*ServiceEndpoints{},
		selIndex:    map[string]*policyIndex{},
	}
	var all []error
	fail := func(err error) {
		if err != nil {
			all = append(all, err)
		}
	}

	tiers := slices.Clone(r.Tiers)
	for _, bt := range BuiltinTiers() {
		if !slices.ContainsFunc(tiers, func(t *Tier) bool { return t != nil && t.Name == bt.Name }) {
			tiers = append(tiers, bt)
		}
	}
	for _, t := range tiers {
		if t == nil {
			continue
		}
		if err := t.Validate(); err != nil {
			fail(err)
			continue
		}
		if _, dup := ps.tierByName[t.Name]; dup {
			fail(resourceError(KindTier, t.Name, "", ErrDuplicate))
			continue
		}
		ti := &tierInfo{name: t.Name, order: t.Spec.Order, defaultAction: Deny}
		if t.Spec.DefaultAction != nil {
			ti.defaultAction = *t.Spec.DefaultAction
		}
		ps.tierByName[t.Name] = ti
		ps.tiers = append(ps.tiers, ti)
	}
	slices.SortFunc(ps.tiers, func(a, b *tierInfo) int { return compareOrder(a.order, b.order, a.name, b.name) })

	addPolicy := func(kind string, rp *ResolvedPolicy, err error) {
		if err != nil {
			fail(err)
			return
		}
		if _, ok := ps.tierByName[rp.Tier]; !ok {
			fail(resourceError(kind, rp.Key, "spec.tier", fmt.Errorf("%q: %w", rp.Tier, ErrUnknownTier)))
			return
		}
		if _, dup := ps.policyIndex[rp.Key]; dup {
			fail(resourceError(kind, rp.Key, "", ErrDuplicate))
			return
		}
		ps.policyIndex[rp.Key] = -1
		ps.policies = append(ps.policies, rp)
	}
	for _, p := range r.NetworkPolicies {
		if p != nil {
			rp, err := p.Resolve()
			addPolicy(KindNetworkPolicy, rp, err)
		}
	}
	for _, p := range r.GlobalNetworkPolicies {
		if p != nil {
			rp, err := p.Resolve()
			addPolicy(KindGlobalNetworkPolicy, rp, err)
		}
	}

	for _, n := range r.Namespaces {
		if n == nil {
			continue
		}
		if err := n.Validate(); err != nil {
			fail(err)
			continue
		}
		if _, dup := ps.namespaces[n.Name]; dup {
			fail(resourceError(KindNamespace, n.Name, "", ErrDuplicate))
			continue
		}
		ps.namespaces[n.Name] = namespaceLabels(n.Name, n.Labels)
	}
	for _, s := range r.ServiceEndpoints {
		if s == nil {
			continue
		}
		if err := s.Validate(); err != nil {
			fail(err)
			continue
		}
		if _, dup := ps.services[s.Namespace+"/"+s.Name]; dup {
			fail(resourceError(KindServiceEndpoints, s.Namespace+"/"+s.Name, "", ErrDuplicate))
			continue
		}
		ps.services[s.Namespace+"/"+s.Name] = s
	}

	for _, ep := range r.Endpoints {
		if ep == nil {
			continue
		}
		if err := ep.Validate(); err != nil {
			fail(err)
			continue
		}
		if _, dup := ps.endpointBy[ep.Key()]; dup {
			fail(resourceError(ep.ResourceKind(), ep.Key(), "", ErrDuplicate))
			continue
		}
		ps.endpointBy[ep.Key()] = -1
		ps.endpoints = append(ps.endpoints, ps.endpointItem(ep))
	}
	seenSets := map[string]bool{}
	addSet := func(kind, ns, name string, labels map[string]string, nets []string, err error) {
		if err != nil {
			fail(err)
			return
		}
		key := kind + " " + ns + "/" + name
		if seenSets[key] {
			fail(resourceError(kind, strings.TrimPrefix(ns+"/"+name, "/"), "", ErrDuplicate))
			return
		}
		seenSets[key] = true
		it := &item{key: strings.TrimPrefix(ns+"/"+name, "/"), namespace: ns, labels: selector.Map{}, nsLabels: selector.Map{}}
		for k, v := range labels {
			it.labels[k] = v
		}
		if ns != "" {
			it.labels[LabelNamespace] = ns
			it.nsLabels = ps.nsLabels(ns)
		}
		for _, s := range nets {
			pfx, _ := parseNet(s) // validated
			it.nets = append(it.nets, pfx)
		}
		ps.netsets = append(ps.netsets, it)
	}
	for _, n := range r.NetworkSets {
		if n != nil {
			addSet(KindNetworkSet, n.Namespace, n.Name, n.Labels, n.Spec.Nets, n.Validate())
		}
	}
	for _, n := range r.GlobalNetworkSets {
		if n != nil {
			addSet(KindGlobalNetworkSet, "", n.Name, n.Labels, n.Spec.Nets, n.Validate())
		}
	}
	if len(all) > 0 {
		return nil, joinValidation(all)
	}

	// Evaluation order: tier order, then policy order (nil last), then key.
	tierPos := map[string]int{}
	for i, t := range ps.tiers {
		tierPos[t.name] = i
	}
	slices.SortFunc(ps.policies, func(a, b *ResolvedPolicy) int {
		if c := cmp.Compare(tierPos[a.Tier], tierPos[b.Tier]); c != 0 {
			return c
		}
		return compareOrder(a.Order, b.Order, a.Key, b.Key)
	})
	for i, p := range ps.policies {
		ps.policyIndex[p.Key] = i
		ns := p.Namespace
		idx := ps.selIndex[ns]
		if idx == nil {
			idx = newPolicyIndex()
			ps.selIndex[ns] = idx
		}
		idx.add(i, p)
	}

	slices.SortFunc(ps.endpoints, func(a, b *item) int { return strings.Compare(a.key, b.key) })
	for i, it := range ps.endpoints {
		ps.endpointBy[it.key] = i
		for _, a := range it.ep.Addresses {
			a = a.Unmap()
			ps.byAddr[a] = append(ps.byAddr[a], it)
		}
	}
	ps.cache = make([]epCache, len(ps.endpoints))
	return ps, nil
}

// compareOrder sorts by order (nil last), then by name.
func compareOrder(a, b *float64, an, bn string) int {
	switch {
	case a != nil && b != nil:
		if c := cmp.Compare(*a, *b); c != 0 {
			return c
		}
	case a != nil:
		return -1
	case b != nil:
		return 1
	}
	return strings.Compare(an, bn)
}

func namespaceLabels(name string, labels map[string]string) selector.Map {
	m := selector.Map{}
	for k, v := range labels {
		m[k] = v
	}
	m[LabelName] = name
	m[LabelMetadataName] = name
	return m
}

func (ps *PolicySet) nsLabels(ns string) selector.Map {
	if m, ok := ps.namespaces[ns]; ok {
		return m
	}
	m := namespaceLabels(ns, nil)
	ps.namespaces[ns] = m
	return m
}

func (ps *PolicySet) endpointItem(ep *Endpoint) *item {
	it := &item{key: ep.Key(), namespace: ep.Namespace, ep: ep, labels: selector.Map{}, nsLabels: selector.Map{}, saLabels: selector.Map{}}
	for k, v := range ep.Labels {
		it.labels[k] = v
	}
	if !ep.IsHost() {
		// The labels Calico gives every workload endpoint; they win over
		// labels of the same name.
		it.labels[LabelNamespace] = ep.Namespace
		it.labels[LabelOrchestrator] = OrchestratorK8s
		if ep.ServiceAccount != "" {
			it.labels[LabelServiceAccount] = ep.ServiceAccount
		}
		it.nsLabels = ps.nsLabels(ep.Namespace)
		it.sa = ep.ServiceAccount
		for k, v := range ep.ServiceAccountLabels {
			it.saLabels[k] = v
		}
		if ep.ServiceAccount != "" {
			it.saLabels[LabelName] = ep.ServiceAccount
		}
	}
	return it
}

// policyIndex finds the policies that might select an endpoint without
// evaluating every selector: a policy whose selector requires label k to
// have one of a few values is filed under (k, value).
type policyIndex struct {
	keyed     map[string]map[string][]int // label -> value -> policy positions
	unindexed []int
}

func newPolicyIndex() *policyIndex { return &policyIndex{keyed: map[string]map[string][]int{}} }

func (x *policyIndex) add(pos int, p *ResolvedPolicy) {
	best, bestVals := "", []string(nil)
	for k, r := range p.Selector.LabelRestrictions() {
		if len(r.MustHaveOneOfValues) == 0 {
			continue
		}
		better := bestVals == nil ||
			(strings.HasPrefix(best, "projectcalico.org/") && !strings.HasPrefix(k, "projectcalico.org/")) ||
			(strings.HasPrefix(best, "projectcalico.org/") == strings.HasPrefix(k, "projectcalico.org/") &&
				(len(r.MustHaveOneOfValues) < len(bestVals) || (len(r.MustHaveOneOfValues) == len(bestVals) && k < best)))
		if better {
			best, bestVals = k, r.MustHaveOneOfValues
		}
	}
	if bestVals == nil {
		x.unindexed = append(x.unindexed, pos)
		return
	}
	m := x.keyed[best]
	if m == nil {
		m = map[string][]int{}
		x.keyed[best] = m
	}
	for _, v := range slices.Compact(slices.Sorted(slices.Values(bestVals))) {
		m[v] = append(m[v], pos)
	}
}

func (x *policyIndex) candidates(labels selector.Map, out []int) []int {
	if x == nil {
		return out
	}
	out = append(out, x.unindexed...)
	for k, vals := range x.keyed {
		if v, ok := labels[k]; ok {
			out = append(out, vals[v]...)
		}
	}
	return out
}

// selectsItem is the full test of whether a policy applies to an
// endpoint (in either direction).
func (p *ResolvedPolicy) selectsItem(it *item) bool {
	if !scopeMatches(p.Scope, p.Namespace, p.NamespaceSelector, it) {
		return false
	}
	if p.ServiceAccountSelector != nil && !p.ServiceAccountSelector.Evaluate(it.saLabels) {
		return false
	}
	return p.Selector.Evaluate(it.labels)
}

func scopeMatches(s Scope, ns string, nsSel selector.Selector, it *item) bool {
	switch s {
	case ScopeNamespace:
		return it.namespace == ns
	case ScopeAllNamespaces:
		return it.namespace != ""
	case ScopeGlobal:
		return it.namespace == ""
	case ScopeNamespaceSelector:
		return nsSel.Evaluate(it.nsLabels)
	default:
		return true
	}
}

// tiersFor returns the tiers with policies applying to endpoint i in
// direction d (untracked and pre-DNAT policies excluded), computed once.
func (ps *PolicySet) tiersFor(i int, d Direction) []TierPolicies {
	c := &ps.cache[i]
	c.once.Do(func() {
		it := ps.endpoints[i]
		cand := ps.selIndex[""].candidates(it.labels, nil)
		if it.namespace != "" {
			cand = ps.selIndex[it.namespace].candidates(it.labels, cand)
		}
		slices.Sort(cand)
		cand = slices.Compact(cand)
		for _, pos := range cand {
			p := ps.policies[pos]
			if p.DoNotTrack || p.PreDNAT || !p.selectsItem(it) {
				continue
			}
			for _, dir := range []Direction{Ingress, Egress} {
				if !p.AppliesTo(dir) {
					continue
				}
				groups := c.dirs[dir]
				if n := len(groups); n == 0 || groups[n-1].Tier != p.Tier {
					t := ps.tierByName[p.Tier]
					groups = append(groups, TierPolicies{Tier: t.name, DefaultAction: t.defaultAction})
				}
				g := &groups[len(groups)-1]
				g.Policies = append(g.Policies, p)
				g.keys = append(g.keys, p.Key)
				c.dirs[dir] = groups
			}
		}
	})
	return c.dirs[d]
}
