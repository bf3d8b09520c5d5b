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
// safe for concurrent use. Which policies apply to which endpoints and which
// items each rule selector matches come from a Model built once from the
// resources, so the snapshot and an incremental Model fed the same
// resources never disagree.
type PolicySet struct {
	tiers      []*tierInfo // in evaluation order
	tierByName map[string]*tierInfo

	policies    []*ResolvedPolicy // in evaluation order (tier, order, key)
	policyIndex map[string]int    // key -> position in policies

	endpoints  []*item // sorted by key
	endpointBy map[string]int
	byAddr     map[netip.Addr][]*item
	netsets    []*item
	items      map[ItemID]*item

	services map[string]*ServiceEndpoints // "namespace/name"

	model *Model    // read only once built
	cache []epCache // per endpoint, lazily filled
}

type tierInfo struct {
	name          string
	order         *float64
	defaultAction Action
}

// item is an endpoint or a network set as evaluation sees it; its labels
// live in the model.
type item struct {
	id        ItemID
	num       uint32 // in the model
	key       string
	namespace string
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
		items:       map[ItemID]*item{},
		services:    map[string]*ServiceEndpoints{},
		model:       NewModel(),
	}
	namespaces := map[string]bool{}
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
	var res Resolver
	for _, p := range r.NetworkPolicies {
		if p != nil {
			rp, err := res.ResolveNetworkPolicy(p)
			addPolicy(KindNetworkPolicy, rp, err)
		}
	}
	for _, p := range r.GlobalNetworkPolicies {
		if p != nil {
			rp, err := res.ResolveGlobalNetworkPolicy(p)
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
		if namespaces[n.Name] {
			fail(resourceError(KindNamespace, n.Name, "", ErrDuplicate))
			continue
		}
		namespaces[n.Name] = true
		ps.model.updateNamespace(n)
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
		it := &item{id: ep.ID(), key: ep.Key(), namespace: ep.Namespace, ep: ep}
		ps.endpoints = append(ps.endpoints, it)
		ps.items[it.id] = it
		ps.model.updateEndpoint(ep)
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
		it := &item{id: ItemID{Kind: ItemNetworkSet, Namespace: ns, Name: name}, key: strings.TrimPrefix(ns+"/"+name, "/"), namespace: ns, nets: parseNets(nets)}
		ps.netsets = append(ps.netsets, it)
		ps.items[it.id] = it
		ps.model.updateNetworkSet(ns, name, labels, it.nets)
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
		_ = ps.model.UpdatePolicy(p) // cannot fail: resolved, with a key
	}
	for id, it := range ps.items {
		it.num = ps.model.itemNums[id]
	}
	// The set resolved its policies itself, so it may note in their rules
	// the model's numbers of their selectors, saving a lookup by canonical
	// form per rule when evaluating.
	for _, p := range ps.policies {
		for _, d := range []Direction{Ingress, Egress} {
			rules := p.Rules(d)
			for i := range rules {
				for _, em := range []*EntityMatch{&rules[i].Src, &rules[i].Dst} {
					em.selection.owner = ps
					if sel, ok := em.MatchSelector(); ok {
						em.selection.num = ps.model.selNums[SelectorID(sel.String())]
					}
					if sel, ok := em.NotMatchSelector(); ok {
						em.selection.notNum = ps.model.selNums[SelectorID(sel.String())]
					}
				}
			}
		}
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

// tiersFor returns the tiers with policies applying to endpoint i in
// direction d (untracked and pre-DNAT policies excluded), computed once.
func (ps *PolicySet) tiersFor(i int, d Direction) []TierPolicies {
	c := &ps.cache[i]
	c.once.Do(func() {
		for _, pos := range ps.applying(ps.endpoints[i]) {
			p := ps.policies[pos]
			if p.DoNotTrack || p.PreDNAT {
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

// applying returns the positions of the policies that select an endpoint,
// in evaluation order, from the model's matches.
func (ps *PolicySet) applying(it *item) []int {
	var out []int
	for n := range ps.model.selectorsMatching(it.num) {
		for key := range ps.model.sels[n].policies {
			out = append(out, ps.policyIndex[key])
		}
	}
	slices.Sort(out)
	return out
}

// selNumber returns the model's number of an entity match's positive (or,
// with not, negative) selector; ok is false when it has none.
func (ps *PolicySet) selNumber(m *EntityMatch, not bool) (n uint32, ok bool) {
	var sel selector.Selector
	if not {
		sel, ok = m.NotMatchSelector()
		n = m.selection.notNum
	} else {
		sel, ok = m.MatchSelector()
		n = m.selection.num
	}
	if ok && m.selection.owner != ps {
		n, ok = ps.model.selNums[SelectorID(sel.String())]
	}
	return n, ok
}
