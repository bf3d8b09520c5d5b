package policy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/selector"
)

func TestModelReservedLabels(t *testing.T) {
	var got []ItemID
	m := NewModel(OnMatchStarted(func(_ SelectorID, it ItemID) { got = append(got, it) }))
	require.NoError(t, m.UpdateNamespace(&Namespace{Name: "prod", Labels: map[string]string{"env": "prod"}}))
	require.NoError(t, m.UpdateEndpoint(hep("h", "10.0.0.9", LabelNamespace, "prod", "pcns.env", "prod")))
	require.NoError(t, m.UpdateEndpoint(wep("dev", "pod", "10.0.0.8", "pcns.env", "prod", LabelNamespace, "prod")))
	p := &GlobalNetworkPolicy{ObjectMeta: objMeta("", "g")}
	p.Spec.Ingress = []Rule{{Action: Allow, Source: EntityRule{NamespaceSelector: "env == 'prod'"}}}
	rp, err := p.Resolve()
	require.NoError(t, err)
	require.NoError(t, m.UpdatePolicy(rp))
	assert.Empty(t, got, "neither a host endpoint nor a pod can claim a namespace or its labels")
	require.NoError(t, m.UpdateEndpoint(wep("prod", "pod", "10.0.0.7")))
	assert.Equal(t, []ItemID{{ItemEndpoint, "prod", "pod"}}, got)
}

// recorder keeps the state the Model's events describe, and fails on any
// event that does not fit it (a start of a current match, a stop of a
// missing one, a match of a selector not added, a removal of a selector
// with matches).
type recorder struct {
	t    testing.TB
	m    *Model                                   // set once the model exists
	sels map[SelectorID]map[ItemID][]netip.Prefix // the IP sets: members by item
	pols map[string]map[ItemID]bool
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, sels: map[SelectorID]map[ItemID][]netip.Prefix{}, pols: map[string]map[ItemID]bool{}}
}

// newRecordedModel returns a Model whose events feed a new recorder.
func newRecordedModel(t testing.TB) (*Model, *recorder) {
	rec := newRecorder(t)
	rec.m = NewModel(rec.options()...)
	return rec.m, rec
}

// members is what the recorder's IP set for a selector holds.
func (r *recorder) members(id SelectorID) []netip.Prefix {
	var out []netip.Prefix
	for _, nets := range r.sels[id] {
		out = append(out, nets...)
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

func (r *recorder) options() []ModelOption {
	return []ModelOption{
		OnSelectorAdded(func(id SelectorID, sel selector.Selector) {
			require.NotContains(r.t, r.sels, id, "added twice")
			require.Equal(r.t, string(id), sel.String())
			r.sels[id] = map[ItemID][]netip.Prefix{}
		}),
		OnSelectorRemoved(func(id SelectorID) {
			require.Contains(r.t, r.sels, id, "removed but not added")
			require.Empty(r.t, r.sels[id], "removed with matches")
			delete(r.sels, id)
		}),
		OnMatchStarted(func(id SelectorID, it ItemID) {
			require.Contains(r.t, r.sels, id, "match of a selector not added")
			_, dup := r.sels[id][it]
			require.False(r.t, dup, "started twice: %s %s", id, it)
			r.sels[id][it] = r.m.ItemNets(it)
		}),
		OnMatchStopped(func(id SelectorID, it ItemID) {
			nets, ok := r.sels[id][it]
			require.True(r.t, ok, "stopped but not started: %s %s", id, it)
			require.Equal(r.t, nets, r.m.ItemNets(it), "nets changed without OnItemNetsChanged: %s", it)
			delete(r.sels[id], it)
		}),
		OnItemNetsChanged(func(it ItemID, old, cur []netip.Prefix) {
			require.NotEqual(r.t, old, cur)
			require.Equal(r.t, cur, r.m.ItemNets(it))
			for _, id := range r.m.SelectorsMatching(it) {
				require.Equal(r.t, old, r.sels[id][it], "%s in %s", it, id)
				r.sels[id][it] = cur
			}
		}),
		OnPolicyMatch(func(p string, it ItemID) {
			require.Equal(r.t, ItemEndpoint, it.Kind)
			if r.pols[p] == nil {
				r.pols[p] = map[ItemID]bool{}
			}
			require.False(r.t, r.pols[p][it], "policy match started twice: %s %s", p, it)
			r.pols[p][it] = true
		}),
		OnPolicyMatchStopped(func(p string, it ItemID) {
			require.True(r.t, r.pols[p][it], "policy match stopped but not started: %s %s", p, it)
			delete(r.pols[p], it)
		}),
	}
}

// modelWorld is the truth a random test changes: what the Model is fed,
// and from which Resources for a fresh PolicySet are derived. Endpoints in
// shared mode get their service account's labels from a ServiceAccount in
// the Model and flattened onto the endpoint in the Resources, as do
// endpoints whose ServiceAccountLabels are nil.
type modelWorld struct {
	base   Resources // tiers and services, never changed
	eps    map[string]*Endpoint
	shared map[string]bool
	sas    map[[2]string]map[string]string
	nss    map[string]*Namespace
	sets   map[string]*NetworkSet
	gsets  map[string]*GlobalNetworkSet
	nps    map[string]*NetworkPolicy
	gnps   map[string]*GlobalNetworkPolicy
}

func (w *modelWorld) resources() Resources {
	r := Resources{Tiers: w.base.Tiers, ServiceEndpoints: w.base.ServiceEndpoints}
	for _, k := range slices.Sorted(maps.Keys(w.eps)) {
		ep := w.eps[k]
		if ep.ServiceAccount != "" && (w.shared[k] || ep.ServiceAccountLabels == nil) {
			c := *ep
			c.ServiceAccountLabels = w.sas[[2]string{ep.Namespace, ep.ServiceAccount}]
			ep = &c
		}
		r.Endpoints = append(r.Endpoints, ep)
	}
	for _, k := range slices.Sorted(maps.Keys(w.nss)) {
		r.Namespaces = append(r.Namespaces, w.nss[k])
	}
	for _, k := range slices.Sorted(maps.Keys(w.sets)) {
		r.NetworkSets = append(r.NetworkSets, w.sets[k])
	}
	for _, k := range slices.Sorted(maps.Keys(w.gsets)) {
		r.GlobalNetworkSets = append(r.GlobalNetworkSets, w.gsets[k])
	}
	for _, k := range slices.Sorted(maps.Keys(w.nps)) {
		r.NetworkPolicies = append(r.NetworkPolicies, w.nps[k])
	}
	for _, k := range slices.Sorted(maps.Keys(w.gnps)) {
		r.GlobalNetworkPolicies = append(r.GlobalNetworkPolicies, w.gnps[k])
	}
	return r
}

func (w *modelWorld) feedEndpoint(t testing.TB, m *Model, ep *Endpoint) {
	if w.shared[ep.Key()] {
		c := *ep
		c.ServiceAccountLabels = nil
		ep = &c
	}
	require.NoError(t, m.UpdateEndpoint(ep))
}

func mustResolve[T interface {
	Resolve() (*ResolvedPolicy, error)
}](t testing.TB, p T) *ResolvedPolicy {
	rp, err := p.Resolve()
	require.NoError(t, err)
	return rp
}

// TestModelMatchesSnapshot feeds random changes, one at a time, to a Model
// and after each one compares it (its queries and the state its events
// describe) with a fresh NewPolicySet of the same resources and with the
// reference's Calico-style combined selectors.
func TestModelMatchesSnapshot(t *testing.T) {
	worlds, steps := 60, 40
	if !testing.Short() {
		worlds = 400
	}
	for seed := range worlds {
		g := gen{rand.New(rand.NewPCG(uint64(seed), 11))}
		res := g.world()
		if _, err := NewPolicySet(res); err != nil {
			continue
		}
		w := &modelWorld{base: res, eps: map[string]*Endpoint{}, shared: map[string]bool{}, sas: map[[2]string]map[string]string{},
			nss: map[string]*Namespace{}, sets: map[string]*NetworkSet{}, gsets: map[string]*GlobalNetworkSet{},
			nps: map[string]*NetworkPolicy{}, gnps: map[string]*GlobalNetworkPolicy{}}
		m, rec := newRecordedModel(t)
		for _, n := range res.Namespaces {
			w.nss[n.Name] = n
			require.NoError(t, m.UpdateNamespace(n))
		}
		for _, ep := range res.Endpoints {
			w.eps[ep.Key()] = ep
			w.feedEndpoint(t, m, ep)
		}
		for _, s := range res.NetworkSets {
			w.sets[s.Namespace+"/"+s.Name] = s
			require.NoError(t, m.UpdateNetworkSet(s))
		}
		for _, s := range res.GlobalNetworkSets {
			w.gsets[s.Name] = s
			require.NoError(t, m.UpdateGlobalNetworkSet(s))
		}
		for _, p := range res.NetworkPolicies {
			w.nps[p.Namespace+"/"+p.Name] = p
			require.NoError(t, m.UpdatePolicy(mustResolve(t, p)))
		}
		for _, p := range res.GlobalNetworkPolicies {
			w.gnps[p.Name] = p
			require.NoError(t, m.UpdatePolicy(mustResolve(t, p)))
		}
		compareModel(t, seed, -1, m, rec, w)
		for step := range steps {
			randomChange(t, g, m, w)
			compareModel(t, seed, step, m, rec, w)
		}
	}
}

func randomChange(t testing.TB, g gen, m *Model, w *modelWorld) {
	pickKey := func(keys []string) string { return keys[g.r.IntN(len(keys))] }
	switch g.r.IntN(12) {
	case 0, 1: // relabel an endpoint
		if len(w.eps) == 0 {
			return
		}
		k := pickKey(slices.Sorted(maps.Keys(w.eps)))
		c := w.eps[k].DeepCopy()
		c.Labels = g.labels()
		w.eps[k] = c
		w.feedEndpoint(t, m, c)
	case 2: // change a workload's service account, or move it to or from shared mode
		k := pickKey(slices.Sorted(maps.Keys(w.eps)))
		c := w.eps[k].DeepCopy()
		if c.IsHost() {
			return
		}
		c.ServiceAccount = g.pick("", "sa1", "sa2")
		c.ServiceAccountLabels = nil
		if g.chance(0.5) {
			c.ServiceAccountLabels = map[string]string{"team": g.pick("x", "y")}
		}
		w.shared[k] = g.chance(0.5)
		w.eps[k] = c
		w.feedEndpoint(t, m, c)
	case 3: // a service account's labels
		sa := &ServiceAccount{Namespace: g.pick("a", "b", "c"), Name: g.pick("sa1", "sa2")}
		key := [2]string{sa.Namespace, sa.Name}
		if g.chance(0.2) {
			delete(w.sas, key)
			m.DeleteServiceAccount(sa.Namespace, sa.Name)
			return
		}
		sa.Labels = map[string]string{"team": g.pick("x", "y")}
		if g.chance(0.3) {
			sa.Labels = map[string]string{}
		}
		w.sas[key] = sa.Labels
		require.NoError(t, m.UpdateServiceAccount(sa))
	case 4: // a namespace's labels, or its deletion
		n := &Namespace{Name: g.pick("a", "b", "c")}
		if g.chance(0.2) {
			delete(w.nss, n.Name)
			m.DeleteNamespace(n.Name)
			return
		}
		if g.chance(0.7) {
			n.Labels = map[string]string{"env": g.pick("prod", "dev")}
		}
		w.nss[n.Name] = n
		require.NoError(t, m.UpdateNamespace(n))
	case 5: // delete an endpoint, or add one
		if g.chance(0.5) && len(w.eps) > 2 {
			k := pickKey(slices.Sorted(maps.Keys(w.eps)))
			delete(w.eps, k)
			m.DeleteEndpoint(k)
			return
		}
		ep := &Endpoint{Name: fmt.Sprintf("new%d", g.r.IntN(5)), Namespace: g.pick("a", "b", "c"), Labels: g.labels(),
			Addresses: []netip.Addr{netip.MustParseAddr(g.pick("10.0.0.1", "10.0.1.77", "10.0.0.200", "8.8.8.8"))}}
		if g.chance(0.5) {
			ep.ServiceAccount = g.pick("sa1", "sa2")
		}
		w.eps[ep.Key()] = ep
		w.feedEndpoint(t, m, ep)
	case 6: // move an endpoint to another address
		k := pickKey(slices.Sorted(maps.Keys(w.eps)))
		c := w.eps[k].DeepCopy()
		c.Addresses = []netip.Addr{netip.MustParseAddr(g.pick("10.0.0.1", "10.0.1.77", "8.8.8.8"))}
		w.eps[k] = c
		w.feedEndpoint(t, m, c)
	case 7: // network sets
		if g.chance(0.5) {
			s := &NetworkSet{ObjectMeta: objMeta(g.pick("a", "b"), g.pick("ns", "ns2"), "kind", "set"), Spec: NetworkSetSpec{Nets: []string{g.pick(refNets...)}}}
			if g.chance(0.5) {
				s.Labels["app"] = g.pick("x", "y")
			}
			if g.chance(0.3) {
				delete(w.sets, s.Namespace+"/"+s.Name)
				m.DeleteNetworkSet(s.Namespace, s.Name)
				return
			}
			w.sets[s.Namespace+"/"+s.Name] = s
			require.NoError(t, m.UpdateNetworkSet(s))
			return
		}
		s := &GlobalNetworkSet{ObjectMeta: objMeta("", "gs", "kind", "set", "app", g.pick("x", "y", "z")), Spec: NetworkSetSpec{Nets: []string{g.pick(refNets...)}}}
		if g.chance(0.3) {
			delete(w.gsets, s.Name)
			m.DeleteNetworkSet("", s.Name)
			return
		}
		w.gsets[s.Name] = s
		require.NoError(t, m.UpdateGlobalNetworkSet(s))
	default: // replace, add or delete a policy: take one from another random world
		other := g.world()
		if len(w.nps)+len(w.gnps) > 0 && g.chance(0.25) {
			keys := slices.Sorted(maps.Keys(w.nps))
			for k := range w.gnps {
				keys = append(keys, k)
			}
			k := pickKey(keys)
			delete(w.nps, k)
			delete(w.gnps, k)
			m.DeletePolicy(k)
			return
		}
		var rp *ResolvedPolicy
		var err error
		switch {
		case len(other.NetworkPolicies) > 0:
			p := other.NetworkPolicies[0]
			p.Name = g.pick("np0", "np1", "np2")
			if rp, err = p.Resolve(); err == nil {
				w.nps[p.Namespace+"/"+p.Name] = p
			}
		case len(other.GlobalNetworkPolicies) > 0:
			p := other.GlobalNetworkPolicies[0]
			p.Name = g.pick("gnp0", "gnp1", "gnp2")
			if rp, err = p.Resolve(); err == nil {
				w.gnps[p.Name] = p
			}
		default:
			return
		}
		if err == nil {
			require.NoError(t, m.UpdatePolicy(rp))
		}
	}
}

func compareModel(t *testing.T, seed, step int, m *Model, rec *recorder, w *modelWorld) {
	t.Helper()
	res := w.resources()
	ps, err := NewPolicySet(res)
	require.NoError(t, err, "seed %d step %d", seed, step)
	msg := fmt.Sprintf("seed %d step %d", seed, step)

	// Which policies apply to which endpoints.
	for _, ep := range ps.Endpoints() {
		pols, err := ps.PoliciesFor(ep.Key())
		require.NoError(t, err)
		var want []string
		for _, p := range pols {
			want = append(want, p.Key)
		}
		slices.Sort(want)
		require.Equal(t, want, m.PoliciesMatching(ep.ID()), "%s: policies for %s", msg, ep.Key())
	}
	refW := newRefWorld(res)
	refPols := refW.policies()
	for _, p := range ps.Policies() {
		eps, err := ps.EndpointsFor(p.Key)
		require.NoError(t, err)
		var want []ItemID
		for _, ep := range eps {
			want = append(want, ep.ID())
		}
		require.Equal(t, want, m.EndpointsMatching(p.Key), "%s: endpoints of %s", msg, p.Key)
		got := slices.SortedFunc(maps.Keys(rec.pols[p.Key]), compareItems)
		require.Equal(t, want, nilIfEmpty(got), "%s: events for policy %s", msg, p.Key)
		// Against the reference's combined selector.
		i := slices.IndexFunc(refPols, func(r refPolicy) bool { return r.key == p.Key })
		var refEPs []ItemID
		s := selector.MustParse(refPols[i].sel)
		for _, it := range refW.items {
			if it.ep != nil && s.Evaluate(selector.Map(it.labels)) {
				refEPs = append(refEPs, it.ep.ID())
			}
		}
		slices.SortFunc(refEPs, compareItems)
		require.Equal(t, refEPs, want, "%s: reference endpoints of %s (%s)", msg, p.Key, refPols[i].sel)
	}
	for k, set := range rec.pols {
		if _, err := ps.Policy(k); err != nil {
			require.Empty(t, set, "%s: deleted policy %s still matches", msg, k)
		}
	}

	// Rule selectors: the model's, the events', the snapshot's and the
	// reference's members.
	wantSels := map[SelectorID]bool{}
	// one checks a selector's matches against the events, the snapshot's
	// members and the reference's.
	one := func(sel selector.Selector, members []netip.Prefix, ref selector.Selector, what string) {
		id := SelectorID(sel.String())
		wantSels[id] = true
		items := slices.SortedFunc(m.ItemsMatching(id), compareItems)
		require.Equal(t, nilIfEmpty(items), nilIfEmpty(slices.SortedFunc(maps.Keys(rec.sels[id]), compareItems)), "%s: events of %s", msg, what)
		require.Equal(t, members, itemNets(m, items), "%s: members of %s", msg, what)
		require.Equal(t, members, rec.members(id), "%s: recorded members of %s", msg, what)
		require.Equal(t, members, refMembers(refW, ref), "%s: reference members of %s (%s)", msg, what, ref)
	}
	check := func(ns string, er *EntityRule, em *EntityMatch, where string) {
		if sel, ok := em.MatchSelector(); ok {
			members, _ := ps.SelectorMembers(em)
			one(sel, members, selector.MustParse(refRuleSelector(er, ns)), where+" "+sel.String())
		}
		if sel, ok := em.NotMatchSelector(); ok {
			members, _ := ps.NotSelectorMembers(em)
			one(sel, members, selector.MustParse(er.NotSelector), where+" not "+sel.String())
		}
	}
	sides := func(ns, key string, raw []Rule, rules []ResolvedRule) {
		for i := range rules {
			check(ns, &raw[i].Source, &rules[i].Src, fmt.Sprintf("%s rule %d source", key, i))
			check(ns, &raw[i].Destination, &rules[i].Dst, fmt.Sprintf("%s rule %d destination", key, i))
		}
	}
	for _, p := range res.NetworkPolicies {
		rp, _ := ps.Policy(p.Namespace + "/" + p.Name)
		sides(p.Namespace, rp.Key, p.Spec.Ingress, rp.IngressRules)
		sides(p.Namespace, rp.Key, p.Spec.Egress, rp.EgressRules)
	}
	for _, p := range res.GlobalNetworkPolicies {
		rp, _ := ps.Policy(p.Name)
		sides("", rp.Key, p.Spec.Ingress, rp.IngressRules)
		sides("", rp.Key, p.Spec.Egress, rp.EgressRules)
	}
	require.Equal(t, wantSels, maps.Collect(func(yield func(SelectorID, bool) bool) {
		for id := range m.RuleSelectors() {
			if !yield(id, true) {
				return
			}
		}
	}), "%s: rule selectors in use", msg)
	require.Equal(t, len(wantSels), len(rec.sels), "%s: selectors added and not removed", msg)
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func itemNets(m *Model, items []ItemID) []netip.Prefix {
	var out []netip.Prefix
	for _, it := range items {
		out = append(out, m.ItemNets(it)...)
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

func refMembers(ref *refWorld, s selector.Selector) []netip.Prefix {
	var out []netip.Prefix
	for _, it := range ref.items {
		if !s.Evaluate(selector.Map(it.labels)) {
			continue
		}
		for _, a := range it.addrs {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
		out = append(out, it.nets...)
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

func TestModelPolicyUpdates(t *testing.T) {
	m, rec := newRecordedModel(t)
	require.NoError(t, m.UpdateEndpoint(wep("a", "web", "10.0.0.1", "app", "web")))
	require.NoError(t, m.UpdateEndpoint(wep("a", "db", "10.0.0.2", "app", "db")))
	np := func(sel, src string) *ResolvedPolicy {
		p := &NetworkPolicy{ObjectMeta: objMeta("a", "p")}
		p.Spec.Selector = sel
		p.Spec.Ingress = []Rule{{Action: Allow, Source: EntityRule{Selector: src}}, {Action: Allow, Source: EntityRule{Selector: src}}}
		return mustResolve(t, p)
	}
	require.NoError(t, m.UpdatePolicy(np("app == 'db'", "app == 'web'")))
	webSel := SelectorID(`(projectcalico.org/namespace == "a" && app == "web")`)
	assert.Equal(t, map[string]map[ItemID]bool{"a/p": {{ItemEndpoint, "a", "db"}: true}}, rec.pols)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}, rec.members(webSel))

	// A new address moves the members of the sets holding the endpoint,
	// before the label change of the same update stops the match.
	require.NoError(t, m.UpdateEndpoint(wep("a", "web", "10.0.0.9", "app", "web")))
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.9/32")}, rec.members(webSel))
	require.NoError(t, m.UpdateEndpoint(wep("a", "web", "10.0.0.1", "app", "none")))
	assert.Empty(t, rec.members(webSel))
	require.NoError(t, m.UpdateEndpoint(wep("a", "web", "10.0.0.1", "app", "web")))
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}, rec.members(webSel))

	// The policy's selector becomes the old rule selector: one selector,
	// two uses.
	require.NoError(t, m.UpdatePolicy(np("app == 'web'", "app == 'web'")))
	assert.Equal(t, map[ItemID]bool{{ItemEndpoint, "a", "web"}: true}, rec.pols["a/p"])
	assert.Len(t, m.selNums, 1)
	require.NoError(t, m.UpdatePolicy(np("app == 'web'", "app == 'db'")))
	assert.Len(t, rec.sels, 1)
	assert.Contains(t, rec.sels, SelectorID(`(projectcalico.org/namespace == "a" && app == "db")`))
	assert.Equal(t, map[ItemID]bool{{ItemEndpoint, "a", "web"}: true}, rec.pols["a/p"], "the policy still applies, reported through its selector")
	got, ok := m.Policy("a/p")
	assert.True(t, ok)
	assert.Equal(t, "a/p", got.Key)
	m.DeletePolicy("a/p")
	_, ok = m.Policy("a/p")
	assert.False(t, ok)
	assert.Empty(t, rec.sels)
	assert.Empty(t, rec.pols["a/p"])
	assert.Empty(t, m.selNums)
	assert.Equal(t, 2, m.global.Stats().Items)

	// Unknown deletes do nothing.
	m.DeletePolicy("a/none")
	m.DeleteEndpoint("a/none")
	m.DeleteNetworkSet("", "none")
	m.DeleteNamespace("none")
	m.DeleteServiceAccount("a", "none")
}

func TestModelValidates(t *testing.T) {
	m := NewModel()
	assert.ErrorIs(t, m.UpdateEndpoint(&Endpoint{Name: "x"}), ErrInvalid)
	assert.ErrorIs(t, m.UpdateNamespace(&Namespace{Name: "Bad Name"}), ErrInvalid)
	assert.ErrorIs(t, m.UpdateServiceAccount(&ServiceAccount{Name: "sa"}), ErrInvalid)
	assert.ErrorIs(t, m.UpdateNetworkSet(&NetworkSet{ObjectMeta: objMeta("a", "s"), Spec: NetworkSetSpec{Nets: []string{"nope"}}}), ErrInvalid)
	assert.ErrorIs(t, m.UpdateGlobalNetworkSet(&GlobalNetworkSet{ObjectMeta: objMeta("", "s"), Spec: NetworkSetSpec{Nets: []string{"nope"}}}), ErrInvalid)
	assert.Equal(t, 0, m.global.Stats().Items)
}

func TestItemID(t *testing.T) {
	assert.Equal(t, "a/web", ItemID{ItemEndpoint, "a", "web"}.String())
	assert.Equal(t, "eth0", ItemID{ItemEndpoint, "", "eth0"}.String())
	assert.Equal(t, "NetworkSet a/s", ItemID{ItemNetworkSet, "a", "s"}.String())
	assert.Equal(t, "GlobalNetworkSet s", ItemID{ItemNetworkSet, "", "s"}.String())
	assert.Equal(t, ItemID{ItemEndpoint, "a", "web"}, EndpointID("a/web"))
	assert.Equal(t, ItemID{ItemEndpoint, "", "eth0"}, EndpointID("eth0"))
}

func TestModelNilResources(t *testing.T) {
	m := NewModel()
	assert.ErrorIs(t, m.UpdateEndpoint(nil), ErrInvalid)
	assert.ErrorIs(t, m.UpdateNamespace(nil), ErrInvalid)
	assert.ErrorIs(t, m.UpdateServiceAccount(nil), ErrInvalid)
	assert.ErrorIs(t, m.UpdateNetworkSet(nil), ErrInvalid)
	assert.ErrorIs(t, m.UpdateGlobalNetworkSet(nil), ErrInvalid)
	assert.ErrorIs(t, m.UpdatePolicy(nil), ErrInvalid)
	assert.ErrorIs(t, m.UpdatePolicy(&ResolvedPolicy{}), ErrInvalid)
	// A hand-built policy works its selectors out on demand.
	require.NoError(t, m.UpdatePolicy(&ResolvedPolicy{Key: "g", Selector: selector.MustParse("a == 'b'")}))
	require.NoError(t, m.UpdateEndpoint(hep("h", "10.0.0.1", "a", "b")))
	assert.Equal(t, []string{"g"}, m.PoliciesMatching(EndpointID("h")))
}
