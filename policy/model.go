package policy

import (
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/selector"
	"github.com/tabbynet/tabby/selector/index"
)

// ItemKind says what an item of a Model is.
type ItemKind uint8

// Item kinds.
const (
	// ItemEndpoint is a workload endpoint (namespaced) or a host endpoint.
	ItemEndpoint ItemKind = iota + 1
	// ItemNetworkSet is a NetworkSet (namespaced) or a GlobalNetworkSet.
	ItemNetworkSet
)

// ItemID names a labelled item selectors match: an endpoint or a network
// set. Namespace is empty for host endpoints and GlobalNetworkSets.
type ItemID struct {
	Kind      ItemKind
	Namespace string
	Name      string
}

// String is the endpoint's key ("namespace/name", or the host endpoint's
// name), or "NetworkSet namespace/name" / "GlobalNetworkSet name".
func (id ItemID) String() string {
	key := id.Name
	if id.Namespace != "" {
		key = id.Namespace + "/" + id.Name
	}
	switch {
	case id.Kind == ItemEndpoint:
		return key
	case id.Namespace == "":
		return KindGlobalNetworkSet + " " + key
	default:
		return KindNetworkSet + " " + key
	}
}

// ID returns the endpoint's ItemID.
func (e *Endpoint) ID() ItemID {
	return ItemID{Kind: ItemEndpoint, Namespace: e.Namespace, Name: e.Name}
}

// EndpointID returns the ItemID of the endpoint with this key
// ("namespace/name", or a host endpoint's name).
func EndpointID(key string) ItemID {
	if ns, name, ok := strings.Cut(key, "/"); ok {
		return ItemID{Kind: ItemEndpoint, Namespace: ns, Name: name}
	}
	return ItemID{Kind: ItemEndpoint, Name: key}
}

// SelectorID identifies a selector in a Model: its canonical form
// (selector.Selector.String). Selections that mean the same share one ID,
// however many rules use them. Name an IP set after the selector's
// UniqueID (Model.Selector returns it).
type SelectorID string

// ServiceAccount is a Kubernetes service account as selectors see it: its
// labels, inherited by the workload endpoints that run as it under the
// pcsa. prefix.
type ServiceAccount struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Validate reports every problem with the service account, or nil.
func (sa *ServiceAccount) Validate() error {
	var e errs
	if msg := checkName(sa.Name); msg != "" {
		e.add(root("name"), msg)
	}
	if msg := checkDNSLabel(sa.Namespace); msg != "" {
		e.add(root("namespace"), msg)
	}
	for k := range sa.Labels {
		if err := selector.ValidateKey(k); err != nil {
			e.add(root("labels"), fmt.Sprintf("label %q: %v", k, err))
		}
	}
	return e.result("ServiceAccount", sa.Namespace+"/"+sa.Name)
}

// parentID names a namespace (sa empty) or a service account.
type parentID struct{ namespace, sa string }

// ModelOption configures a Model.
type ModelOption func(*Model)

// OnMatchStarted sets the function called when a rule selector starts
// matching an item (an endpoint or a network set): add the item's
// addresses (Model.ItemNets) to the selector's IP set.
func OnMatchStarted(f func(sel SelectorID, item ItemID)) ModelOption {
	return func(m *Model) { m.matchStarted = f }
}

// OnMatchStopped sets the function called when a rule selector stops
// matching an item, because either changed or was deleted.
func OnMatchStopped(f func(sel SelectorID, item ItemID)) ModelOption {
	return func(m *Model) { m.matchStopped = f }
}

// OnSelectorAdded sets the function called when a selector becomes used by
// some rule: create its IP set. Its matches are reported after it.
func OnSelectorAdded(f func(id SelectorID, sel selector.Selector)) ModelOption {
	return func(m *Model) { m.selAdded = f }
}

// OnSelectorRemoved sets the function called when no rule uses a selector
// any more, after the stops of all its matches: delete its IP set.
func OnSelectorRemoved(f func(id SelectorID)) ModelOption {
	return func(m *Model) { m.selRemoved = f }
}

// OnItemNetsChanged sets the function called when an endpoint's addresses
// or a network set's nets change (old and new as ItemNets gives them),
// before any match change the same update causes: replace old by new in
// the IP sets of the selectors that match the item (SelectorsMatching,
// which this callback may call). Match starts and stops always see the
// item's current nets.
func OnItemNetsChanged(f func(item ItemID, old, new []netip.Prefix)) ModelOption {
	return func(m *Model) { m.netsChanged = f }
}

// OnPolicyMatch sets the function called when a policy starts applying to
// an endpoint (Calico's PolicyMatchListener.OnPolicyMatch); policy is the
// policy's key.
func OnPolicyMatch(f func(policy string, endpoint ItemID)) ModelOption {
	return func(m *Model) { m.policyMatch = f }
}

// OnPolicyMatchStopped sets the function called when a policy stops
// applying to an endpoint.
func OnPolicyMatchStopped(f func(policy string, endpoint ItemID)) ModelOption {
	return func(m *Model) { m.policyStopped = f }
}

// Model is the incremental selection model: which endpoints each policy
// applies to and which items (endpoints, network sets) each rule selector
// matches, kept up to date as endpoints, network sets, namespaces, service
// accounts and policies are added, changed and removed one at a time. See
// the package documentation (Design) for the label schema and events.
//
// A Model is not safe for concurrent use. Callbacks may call Endpoint and
// ItemNets (and OnItemNetsChanged's SelectorsMatching) and nothing else of
// the Model. It keeps the *Endpoint and *ResolvedPolicy values it is given: do not
// modify them afterwards.
type Model struct {
	// The indexes work on small numbers: selectors, items and parents are
	// numbered here, so their maps hash integers, not strings. A selector
	// that requires one namespace (projectcalico.org/namespace == "ns", as
	// every namespaced policy's selections do) lives in that namespace's
	// index, which holds only the namespace's items; every other selector
	// lives in the global index, which holds every item.
	global *index.Index[uint32, uint32, uint32]
	byNS   map[string]*index.Index[uint32, uint32, uint32]

	matchStarted, matchStopped func(SelectorID, ItemID)
	selAdded                   func(SelectorID, selector.Selector)
	selRemoved                 func(SelectorID)
	policyMatch, policyStopped func(string, ItemID)
	netsChanged                func(ItemID, []netip.Prefix, []netip.Prefix)

	selNums  map[SelectorID]uint32
	sels     []*selUse // by number; nil when free
	freeSels []uint32

	itemNums  map[ItemID]uint32
	items     []itemSlot // by number
	freeItems []uint32

	// Parents keep their number for the life of the model (items may name
	// a namespace or service account that is deleted and added again).
	parentNums map[parentID]uint32

	policies map[string]*policyUse
	scratch  map[string]string
	parents  []uint32
}

// selUse is a selector and who uses it: rules (counted) and policies (as
// their endpoint selector).
type selUse struct {
	idx      *index.Index[uint32, uint32, uint32] // the index holding it
	id       SelectorID
	sel      selector.Selector
	rules    int
	policies map[string]struct{}
}

// itemSlot is a numbered item: an endpoint (ep set) or a network set.
type itemSlot struct {
	id   ItemID // id.Namespace names its namespace index
	ep   *Endpoint
	nets []netip.Prefix
}

type policyUse struct {
	p        *ResolvedPolicy
	endpoint SelectorID
	rules    []SelectorID // one per use, repeats kept
}

// NewModel returns an empty Model.
func NewModel(opts ...ModelOption) *Model {
	m := &Model{
		selNums:    map[SelectorID]uint32{},
		itemNums:   map[ItemID]uint32{},
		parentNums: map[parentID]uint32{},
		policies:   map[string]*policyUse{},
		scratch:    map[string]string{},
		byNS:       map[string]*index.Index[uint32, uint32, uint32]{},
	}
	for _, o := range opts {
		o(m)
	}
	m.global = m.newIndex()
	return m
}

func (m *Model) newIndex() *index.Index[uint32, uint32, uint32] {
	return index.New[uint32, uint32, uint32](index.OnMatchStarted(m.started), index.OnMatchStopped(m.stopped))
}

// nsIndex returns a namespace's index, creating it.
func (m *Model) nsIndex(ns string) *index.Index[uint32, uint32, uint32] {
	x := m.byNS[ns]
	if x == nil {
		x = m.newIndex()
		m.byNS[ns] = x
	}
	return x
}

// indexFor returns the index a selector belongs in.
func (m *Model) indexFor(s selector.Selector) *index.Index[uint32, uint32, uint32] {
	if r := s.LabelRestrictions()[LabelNamespace]; len(r.MustHaveOneOfValues) == 1 {
		return m.nsIndex(r.MustHaveOneOfValues[0])
	}
	return m.global
}

// updateParent sets a parent's labels in the global index and in its
// namespace's.
func (m *Model) updateParent(id parentID, labels map[string]string) {
	n := m.parent(id)
	m.global.UpdateParent(n, labels)
	m.nsIndex(id.namespace).UpdateParent(n, labels)
}

func (m *Model) deleteParent(id parentID) {
	if n, ok := m.parentNums[id]; ok {
		m.global.DeleteParent(n)
		if x := m.byNS[id.namespace]; x != nil {
			x.DeleteParent(n)
		}
	}
}

// updateItem sets an item's labels in the global index and, when it is
// namespaced, in its namespace's.
func (m *Model) updateItem(n uint32, ns string, labels map[string]string, parents ...uint32) {
	m.global.UpdateItem(n, labels, parents...)
	if ns != "" {
		m.nsIndex(ns).UpdateItem(n, labels, parents...)
	}
}

// selectorsMatching iterates over the numbers of the selectors that match
// item n, in both the indexes that hold it.
func (m *Model) selectorsMatching(n uint32) iter.Seq[uint32] {
	return func(yield func(uint32) bool) {
		if int(n) >= len(m.items) {
			return
		}
		for s := range m.global.SelectorsMatching(n) {
			if !yield(s) {
				return
			}
		}
		if ns := m.items[n].id.Namespace; ns != "" {
			for s := range m.byNS[ns].SelectorsMatching(n) {
				if !yield(s) {
					return
				}
			}
		}
	}
}

// itemsMatching iterates over the numbers of the items selector n matches.
func (m *Model) itemsMatching(n uint32) iter.Seq[uint32] {
	return m.sels[n].idx.ItemsMatching(n)
}

// matches reports whether selector sel (a number in use) matches item it.
func (m *Model) matches(sel, it uint32) bool { return m.sels[sel].idx.Matches(sel, it) }

func (m *Model) started(sel, item uint32) {
	u, it := m.sels[sel], &m.items[item]
	if u.rules > 0 && m.matchStarted != nil {
		m.matchStarted(u.id, it.id)
	}
	if it.ep != nil && m.policyMatch != nil {
		for p := range u.policies {
			m.policyMatch(p, it.id)
		}
	}
}

func (m *Model) stopped(sel, item uint32) {
	u, it := m.sels[sel], &m.items[item]
	if u.rules > 0 && m.matchStopped != nil {
		m.matchStopped(u.id, it.id)
	}
	if it.ep != nil && m.policyStopped != nil {
		for p := range u.policies {
			m.policyStopped(p, it.id)
		}
	}
}

// parent returns the number of a parent.
func (m *Model) parent(id parentID) uint32 {
	n, ok := m.parentNums[id]
	if !ok {
		n = uint32(len(m.parentNums))
		m.parentNums[id] = n
	}
	return n
}

// item returns the slot of an item, numbering it when new.
func (m *Model) item(id ItemID) (uint32, *itemSlot) {
	n, ok := m.itemNums[id]
	if !ok {
		if k := len(m.freeItems); k > 0 {
			n = m.freeItems[k-1]
			m.freeItems = m.freeItems[:k-1]
		} else {
			n = uint32(len(m.items))
			m.items = append(m.items, itemSlot{})
		}
		m.itemNums[id] = n
		m.items[n] = itemSlot{id: id}
	}
	return n, &m.items[n]
}

func (m *Model) deleteItem(id ItemID) {
	n, ok := m.itemNums[id]
	if !ok {
		return
	}
	m.global.DeleteItem(n)
	if id.Namespace != "" {
		m.byNS[id.Namespace].DeleteItem(n)
	}
	delete(m.itemNums, id)
	m.items[n] = itemSlot{}
	m.freeItems = append(m.freeItems, n)
}

// newSelector numbers a selector and adds it to its index, with u's uses.
func (m *Model) newSelector(u *selUse) {
	u.idx = m.indexFor(u.sel)
	var n uint32
	if k := len(m.freeSels); k > 0 {
		n = m.freeSels[k-1]
		m.freeSels = m.freeSels[:k-1]
		m.sels[n] = u
	} else {
		n = uint32(len(m.sels))
		m.sels = append(m.sels, u)
	}
	m.selNums[u.id] = n
	u.idx.UpdateSelector(n, u.sel)
}

// deleteSelector removes a selector from the index (its stops are reported
// with its uses as they are) and frees its number.
func (m *Model) deleteSelector(id SelectorID) {
	n := m.selNums[id]
	m.sels[n].idx.DeleteSelector(n)
	delete(m.selNums, id)
	m.sels[n] = nil
	m.freeSels = append(m.freeSels, n)
}

// use returns a selector in use, or nil.
func (m *Model) use(id SelectorID) (uint32, *selUse) {
	n, ok := m.selNums[id]
	if !ok {
		return 0, nil
	}
	return n, m.sels[n]
}

// UpdateNamespace adds or replaces a namespace; its labels reach the items
// in it as pcns.<key>. An item may name a namespace before it is added.
func (m *Model) UpdateNamespace(n *Namespace) error {
	if n == nil {
		return nilResource("Namespace")
	}
	if err := n.Validate(); err != nil {
		return err
	}
	m.updateNamespace(n)
	return nil
}

func (m *Model) updateNamespace(n *Namespace) {
	m.updateParent(parentID{namespace: n.Name}, prefixLabels(m.scratch, LabelPrefixNamespace, namespaceLabels(n.Name, n.Labels)))
}

// DeleteNamespace removes a namespace's labels; items in it keep their
// namespace and see no labels from it until it is added again.
func (m *Model) DeleteNamespace(name string) { m.deleteParent(parentID{namespace: name}) }

// UpdateServiceAccount adds or replaces a service account; its labels reach
// the workload endpoints that run as it (and carry no
// ServiceAccountLabels of their own) as pcsa.<key>.
func (m *Model) UpdateServiceAccount(sa *ServiceAccount) error {
	if sa == nil {
		return nilResource("ServiceAccount")
	}
	if err := sa.Validate(); err != nil {
		return err
	}
	m.updateParent(parentID{sa.Namespace, sa.Name}, prefixLabels(m.scratch, LabelPrefixServiceAccount, serviceAccountLabels(sa.Name, sa.Labels)))
	return nil
}

// DeleteServiceAccount removes a service account's labels.
func (m *Model) DeleteServiceAccount(namespace, name string) {
	m.deleteParent(parentID{namespace, name})
}

// UpdateEndpoint adds or replaces an endpoint (by ID). A workload endpoint
// inherits its namespace's labels and, unless it carries
// ServiceAccountLabels itself, its service account's (UpdateServiceAccount).
func (m *Model) UpdateEndpoint(ep *Endpoint) error {
	if ep == nil {
		return nilResource("Endpoint")
	}
	if err := ep.Validate(); err != nil {
		return err
	}
	m.updateEndpoint(ep)
	return nil
}

func (m *Model) updateEndpoint(ep *Endpoint) {
	n, slot := m.item(ep.ID())
	m.setNets(slot, func() { slot.ep = ep })
	l := m.scratch
	clear(l)
	copyOwnLabels(l, ep.Labels)
	parents := m.parents[:0]
	if !ep.IsHost() {
		l[LabelNamespace] = ep.Namespace
		l[LabelOrchestrator] = OrchestratorK8s
		addImplicitNamespace(l, ep.Namespace)
		parents = append(parents, m.parent(parentID{namespace: ep.Namespace}))
		if ep.ServiceAccount != "" {
			l[LabelServiceAccount] = ep.ServiceAccount
			if ep.ServiceAccountLabels == nil {
				l[LabelPrefixServiceAccount+LabelName] = ep.ServiceAccount
				parents = append(parents, m.parent(parentID{ep.Namespace, ep.ServiceAccount}))
			} else {
				for k, v := range serviceAccountLabels(ep.ServiceAccount, ep.ServiceAccountLabels) {
					l[LabelPrefixServiceAccount+k] = v
				}
			}
		}
	}
	m.parents = parents
	m.updateItem(n, ep.Namespace, l, parents...)
}

// DeleteEndpoint removes an endpoint by key ("namespace/name" or a host
// endpoint's name). Deleting an unknown endpoint does nothing.
func (m *Model) DeleteEndpoint(key string) {
	m.deleteItem(EndpointID(key))
}

// UpdateNetworkSet adds or replaces a NetworkSet; it inherits its
// namespace's labels.
func (m *Model) UpdateNetworkSet(n *NetworkSet) error {
	nets, err := n.resolve()
	if err != nil {
		return err
	}
	m.updateNetworkSet(n.Namespace, n.Name, n.Labels, nets)
	return nil
}

// UpdateGlobalNetworkSet adds or replaces a GlobalNetworkSet.
func (m *Model) UpdateGlobalNetworkSet(n *GlobalNetworkSet) error {
	nets, err := n.resolve()
	if err != nil {
		return err
	}
	m.updateNetworkSet("", n.Name, n.Labels, nets)
	return nil
}

func (n *NetworkSet) resolve() ([]netip.Prefix, error) {
	if n == nil {
		return nil, nilResource(KindNetworkSet)
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return parseNets(n.Spec.Nets), nil
}

func (n *GlobalNetworkSet) resolve() ([]netip.Prefix, error) {
	if n == nil {
		return nil, nilResource(KindGlobalNetworkSet)
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	return parseNets(n.Spec.Nets), nil
}

func parseNets(nets []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(nets))
	for _, s := range nets {
		if pfx, err := parseNet(s); err == nil { // validated
			out = append(out, pfx)
		}
	}
	return out
}

func (m *Model) updateNetworkSet(ns, name string, labels map[string]string, nets []netip.Prefix) {
	n, slot := m.item(ItemID{Kind: ItemNetworkSet, Namespace: ns, Name: name})
	m.setNets(slot, func() { slot.nets = nets })
	l := m.scratch
	clear(l)
	copyOwnLabels(l, labels)
	if ns == "" {
		m.updateItem(n, "", l)
		return
	}
	l[LabelNamespace] = ns
	addImplicitNamespace(l, ns)
	m.updateItem(n, ns, l, m.parent(parentID{namespace: ns}))
}

// DeleteNetworkSet removes a NetworkSet, or a GlobalNetworkSet when
// namespace is empty.
func (m *Model) DeleteNetworkSet(namespace, name string) {
	m.deleteItem(ItemID{Kind: ItemNetworkSet, Namespace: namespace, Name: name})
}

// UpdatePolicy adds or replaces a policy (by Key): its endpoint selector
// and the selectors of its rules' sides. Rule selectors it shares with the
// version it replaces are not reported again. When its endpoint selector
// changes, the old matches stop before the new ones start, so an endpoint
// both select is reported stopped and started again. A nil policy or one
// without a key is an error wrapping ErrInvalid; resolve policies with
// NetworkPolicy.Resolve or GlobalNetworkPolicy.Resolve, which validate.
func (m *Model) UpdatePolicy(p *ResolvedPolicy) error {
	if p == nil || p.Key == "" {
		return nilResource("policy (or one without a key)")
	}
	old := m.policies[p.Key]
	pu := &policyUse{p: p, endpoint: SelectorID(p.EndpointSelector().String())}
	for _, d := range []Direction{Ingress, Egress} {
		rules := p.Rules(d)
		for i := range rules {
			for _, em := range []*EntityMatch{&rules[i].Src, &rules[i].Dst} {
				if s, ok := em.MatchSelector(); ok {
					pu.rules = append(pu.rules, m.addRuleUse(s))
				}
				if s, ok := em.NotMatchSelector(); ok {
					pu.rules = append(pu.rules, m.addRuleUse(s))
				}
			}
		}
	}
	if old != nil {
		for _, id := range old.rules {
			m.dropRuleUse(id)
		}
		if old.endpoint != pu.endpoint {
			m.dropPolicyUse(old.endpoint, p.Key)
		}
	}
	m.policies[p.Key] = pu
	if old == nil || old.endpoint != pu.endpoint {
		m.addPolicyUse(p.EndpointSelector(), pu.endpoint, p.Key)
	}
	return nil
}

func nilResource(kind string) error { return fmt.Errorf("nil %s: %w", kind, ErrInvalid) }

// DeletePolicy removes a policy by key, stopping its matches and releasing
// its rule selectors. Deleting an unknown policy does nothing.
func (m *Model) DeletePolicy(key string) {
	pu := m.policies[key]
	if pu == nil {
		return
	}
	delete(m.policies, key)
	for _, id := range pu.rules {
		m.dropRuleUse(id)
	}
	m.dropPolicyUse(pu.endpoint, key)
}

func (m *Model) addRuleUse(s selector.Selector) SelectorID {
	id := SelectorID(s.String())
	n, u := m.use(id)
	switch {
	case u == nil:
		u = &selUse{id: id, sel: s, rules: 1, policies: map[string]struct{}{}}
		if m.selAdded != nil {
			m.selAdded(id, s)
		}
		m.newSelector(u)
	case u.rules == 0:
		u.rules = 1
		if m.selAdded != nil {
			m.selAdded(id, u.sel)
		}
		if m.matchStarted != nil {
			for it := range m.itemsMatching(n) {
				m.matchStarted(id, m.items[it].id)
			}
		}
	default:
		u.rules++
	}
	return id
}

func (m *Model) dropRuleUse(id SelectorID) {
	n, u := m.use(id)
	if u.rules > 1 {
		u.rules--
		return
	}
	if len(u.policies) == 0 {
		m.deleteSelector(id) // reports the stops while u.rules is 1
	} else if m.matchStopped != nil {
		for it := range m.itemsMatching(n) {
			m.matchStopped(id, m.items[it].id)
		}
	}
	u.rules = 0
	if m.selRemoved != nil {
		m.selRemoved(id)
	}
}

func (m *Model) addPolicyUse(s selector.Selector, id SelectorID, key string) {
	n, u := m.use(id)
	if u == nil {
		m.newSelector(&selUse{id: id, sel: s, policies: map[string]struct{}{key: {}}})
		return
	}
	u.policies[key] = struct{}{}
	if m.policyMatch != nil {
		for it := range m.itemsMatching(n) {
			if slot := &m.items[it]; slot.ep != nil {
				m.policyMatch(key, slot.id)
			}
		}
	}
}

func (m *Model) dropPolicyUse(id SelectorID, key string) {
	n, u := m.use(id)
	if u.rules == 0 && len(u.policies) == 1 {
		m.deleteSelector(id) // reports the stops while key is still a user
		return
	}
	if m.policyStopped != nil {
		for it := range m.itemsMatching(n) {
			if slot := &m.items[it]; slot.ep != nil {
				m.policyStopped(key, slot.id)
			}
		}
	}
	delete(u.policies, key)
}

// Selector returns the selector with this ID, while some rule or policy
// uses it.
func (m *Model) Selector(id SelectorID) (selector.Selector, bool) {
	if _, u := m.use(id); u != nil {
		return u.sel, true
	}
	return selector.Selector{}, false
}

// RuleSelectors iterates over the selectors rules use (the IP sets a
// dataplane keeps), in no particular order.
func (m *Model) RuleSelectors() iter.Seq[SelectorID] {
	return func(yield func(SelectorID) bool) {
		for _, u := range m.sels {
			if u != nil && u.rules > 0 && !yield(u.id) {
				return
			}
		}
	}
}

// ItemsMatching iterates over the items a selector (used by a rule or a
// policy) matches, in no particular order. The model must not change
// during the iteration.
func (m *Model) ItemsMatching(id SelectorID) iter.Seq[ItemID] {
	return func(yield func(ItemID) bool) {
		n, u := m.use(id)
		if u == nil {
			return
		}
		for it := range m.itemsMatching(n) {
			if !yield(m.items[it].id) {
				return
			}
		}
	}
}

// Matches reports whether a selector the model holds matches an item.
func (m *Model) Matches(sel SelectorID, item ItemID) bool {
	n, u := m.use(sel)
	it, ok := m.itemNums[item]
	return u != nil && ok && m.matches(n, it)
}

// SelectorsMatching returns the rule selectors that match an item, sorted.
func (m *Model) SelectorsMatching(item ItemID) []SelectorID {
	n, ok := m.itemNums[item]
	if !ok {
		return nil
	}
	var out []SelectorID
	for s := range m.selectorsMatching(n) {
		if u := m.sels[s]; u.rules > 0 {
			out = append(out, u.id)
		}
	}
	slices.Sort(out)
	return out
}

// PoliciesMatching returns the keys of the policies that apply to an
// endpoint, sorted.
func (m *Model) PoliciesMatching(endpoint ItemID) []string {
	n, ok := m.itemNums[endpoint]
	if !ok || endpoint.Kind != ItemEndpoint {
		return nil
	}
	var out []string
	for s := range m.selectorsMatching(n) {
		for p := range m.sels[s].policies {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// EndpointsMatching returns the endpoints a policy applies to, sorted by
// key; nil for an unknown policy.
func (m *Model) EndpointsMatching(policy string) []ItemID {
	pu := m.policies[policy]
	if pu == nil {
		return nil
	}
	var out []ItemID
	for it := range m.ItemsMatching(pu.endpoint) {
		if it.Kind == ItemEndpoint {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, compareItems)
	return out
}

func compareItems(a, b ItemID) int {
	return strings.Compare(a.String(), b.String())
}

// Policy returns a policy the model holds, by key.
func (m *Model) Policy(key string) (*ResolvedPolicy, bool) {
	if pu := m.policies[key]; pu != nil {
		return pu.p, true
	}
	return nil, false
}

// Endpoint returns an endpoint the model holds.
func (m *Model) Endpoint(id ItemID) (*Endpoint, bool) {
	if n, ok := m.itemNums[id]; ok && m.items[n].ep != nil {
		return m.items[n].ep, true
	}
	return nil, false
}

// ItemNets returns what an item puts in the IP set of a selector matching
// it: an endpoint's addresses as full-length prefixes, or a network set's
// nets. The slice is fresh; nil for an unknown item.
func (m *Model) ItemNets(id ItemID) []netip.Prefix {
	n, ok := m.itemNums[id]
	if !ok {
		return nil
	}
	return m.items[n].netsOf()
}

// setNets applies set to an item's slot and reports a change of its nets
// to OnItemNetsChanged (not for a new item: it has no matches yet).
func (m *Model) setNets(slot *itemSlot, set func()) {
	if m.netsChanged == nil || (slot.ep == nil && slot.nets == nil) {
		set()
		return
	}
	old := slot.netsOf()
	set()
	if cur := slot.netsOf(); !slices.Equal(old, cur) {
		m.netsChanged(slot.id, old, cur)
	}
}

func (slot *itemSlot) netsOf() []netip.Prefix {
	if slot.ep == nil {
		return slices.Clone(slot.nets)
	}
	out := make([]netip.Prefix, 0, len(slot.ep.Addresses))
	for _, a := range slot.ep.Addresses {
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// copyOwnLabels copies an item's own labels into l, leaving out the
// reserved ones (see the label schema).
func copyOwnLabels(l, labels map[string]string) {
	for k, v := range labels {
		if k == LabelNamespace || k == LabelServiceAccount ||
			strings.HasPrefix(k, LabelPrefixNamespace) || strings.HasPrefix(k, LabelPrefixServiceAccount) {
			continue
		}
		l[k] = v
	}
}

// addImplicitNamespace gives a namespaced item the labels its namespace
// has even when the namespace is unknown (its name), under pcns.
func addImplicitNamespace(l map[string]string, ns string) {
	for k, v := range namespaceLabels(ns, nil) {
		l[LabelPrefixNamespace+k] = v
	}
}

// serviceAccountLabels is a service account's labels plus its name.
func serviceAccountLabels(name string, labels map[string]string) map[string]string {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	if name != "" {
		out[LabelName] = name
	}
	return out
}

// prefixLabels fills l with labels, keys prefixed.
func prefixLabels(l map[string]string, prefix string, labels map[string]string) map[string]string {
	clear(l)
	for k, v := range labels {
		l[prefix+k] = v
	}
	return l
}
