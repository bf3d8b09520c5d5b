package index

import (
	"iter"
	"maps"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/selector"
)

// Option configures an Index at construction.
type Option[S, I comparable] func(*config[S, I])

type config[S, I comparable] struct {
	started, stopped func(sel S, item I)
}

// OnMatchStarted sets the function called, once, when a selector starts
// matching an item.
func OnMatchStarted[S, I comparable](f func(sel S, item I)) Option[S, I] {
	return func(c *config[S, I]) { c.started = f }
}

// OnMatchStopped sets the function called, once, when a selector stops
// matching an item (because either changed or was deleted).
func OnMatchStopped[S, I comparable](f func(sel S, item I)) Option[S, I] {
	return func(c *config[S, I]) { c.stopped = f }
}

// Index keeps the matches between selectors (keyed by S), labelled items
// (keyed by I) and the parents items inherit labels from (keyed by P) up to
// date as any of them change. See the package documentation.
//
// An Index is not safe for concurrent use, and the match callbacks must not
// call back into the Index that invoked them.
type Index[S, I, P comparable] struct {
	started, stopped func(S, I)

	sels    map[S]*selEntry[S, I, P]
	items   map[I]*itemEntry[S, I, P]
	parents map[P]*parentEntry[S, I, P]

	// Selectors, by the label they are indexed on.
	selsByValue   valueIndex[S, *selEntry[S, I, P]] // label → value → selectors requiring one of a few values
	selsByLabel   map[string]map[S]*selEntry[S, I, P]
	selsUnindexed map[S]*selEntry[S, I, P] // satisfiable, but no positive restriction
	numNever      int                      // unsatisfiable selectors (in sels only)

	// Items by own label value, parents by label value: the candidates
	// for a selector that changes.
	itemsByValue   valueIndex[I, *itemEntry[S, I, P]]
	parentsByValue valueIndex[P, *parentEntry[S, I, P]]

	evals uint64 // selector evaluations so far, for tests
}

// New returns an empty Index. S identifies selectors, I items and P parents.
func New[S, I, P comparable](opts ...Option[S, I]) *Index[S, I, P] {
	var c config[S, I]
	for _, o := range opts {
		o(&c)
	}
	return &Index[S, I, P]{
		started:        c.started,
		stopped:        c.stopped,
		sels:           map[S]*selEntry[S, I, P]{},
		items:          map[I]*itemEntry[S, I, P]{},
		parents:        map[P]*parentEntry[S, I, P]{},
		selsByValue:    valueIndex[S, *selEntry[S, I, P]]{},
		selsByLabel:    map[string]map[S]*selEntry[S, I, P]{},
		selsUnindexed:  map[S]*selEntry[S, I, P]{},
		itemsByValue:   valueIndex[I, *itemEntry[S, I, P]]{},
		parentsByValue: valueIndex[P, *parentEntry[S, I, P]]{},
	}
}

// selKind is how a selector is found when an item changes.
type selKind uint8

const (
	kindNever     selKind = iota // unsatisfiable: never evaluated
	kindUnindexed                // evaluated against every changed item
	kindLabel                    // in selsByLabel[label]
	kindValue                    // in selsByValue[label][v] for v in values
)

type selEntry[S, I, P comparable] struct {
	id      S
	sel     selector.Selector
	kind    selKind
	label   string
	values  []string
	keys    []string // sel.Keys(): the labels whose change can change its verdict
	matches matchSet[itemEntry[S, I, P]]
}

// reads reports whether the selector reads one of keys (nil: any key).
func (s *selEntry[S, I, P]) reads(keys []string) bool {
	if keys == nil {
		return true
	}
	for _, k := range s.keys {
		if slices.Contains(keys, k) {
			return true
		}
	}
	return false
}

type itemEntry[S, I, P comparable] struct {
	id        I
	parentIDs []P
	labels    view[S, I, P]
	matches   matchSet[selEntry[S, I, P]]
}

type parentEntry[S, I, P comparable] struct {
	id       P
	exists   bool
	labels   map[string]string // nil unless exists
	children map[I]*itemEntry[S, I, P]
}

// view is an item's effective labels: its own over its parents', earlier
// parents over later ones. It is evaluated in place, never flattened.
type view[S, I, P comparable] struct {
	own     labelList
	parents []*parentEntry[S, I, P]
}

// Get implements selector.Labels.
func (v *view[S, I, P]) Get(key string) (string, bool) {
	if val, ok := v.own.get(key); ok {
		return val, true
	}
	for _, p := range v.parents {
		if val, ok := p.labels[key]; ok {
			return val, true
		}
	}
	return "", false
}

// shadowed reports whether key is hidden, for parent i, by the item's own
// labels or an earlier parent's.
func (v *view[S, I, P]) shadowed(key string, i int) bool {
	if _, ok := v.own.get(key); ok {
		return true
	}
	for _, p := range v.parents[:i] {
		if _, ok := p.labels[key]; ok {
			return true
		}
	}
	return false
}

var _ selector.Labels = (*view[int, int, int])(nil)

// labelList is an item's own labels sorted by key: less than half the memory of
// a map of a few labels (4 labels: 128 B against 320 B), and as fast to
// search at the sizes labels have.
type labelList []label

type label struct{ key, value string }

// linearMax is the longest list get scans rather than bisects.
const linearMax = 8

func (l labelList) get(key string) (string, bool) {
	if len(l) <= linearMax {
		for i := range l {
			if l[i].key == key {
				return l[i].value, true
			}
		}
		return "", false
	}
	i, ok := slices.BinarySearchFunc(l, key, func(e label, k string) int { return strings.Compare(e.key, k) })
	if !ok {
		return "", false
	}
	return l[i].value, true
}

// equal reports whether l holds exactly the labels of m.
func (l labelList) equal(m map[string]string) bool {
	if len(l) != len(m) {
		return false
	}
	for _, e := range l {
		if v, ok := m[e.key]; !ok || v != e.value {
			return false
		}
	}
	return true
}

// setFrom makes l a sorted copy of m, reusing l's storage when it has room,
// so that relabelling an item with as many labels does not allocate.
func (l labelList) setFrom(m map[string]string) labelList {
	if cap(l) < len(m) {
		l = make(labelList, 0, len(m))
	}
	l = l[:0]
	for k, v := range m {
		l = append(l, label{k, v})
	}
	slices.SortFunc(l, func(a, b label) int { return strings.Compare(a.key, b.key) })
	return l
}

// valueIndex maps label → value → set of T keyed by K.
type valueIndex[K comparable, T any] map[string]map[string]map[K]T

func (x valueIndex[K, T]) add(label, value string, k K, t T) {
	byVal := x[label]
	if byVal == nil {
		byVal = map[string]map[K]T{}
		x[label] = byVal
	}
	set := byVal[value]
	if set == nil {
		set = map[K]T{}
		byVal[value] = set
	}
	set[k] = t
}

func (x valueIndex[K, T]) remove(label, value string, k K) {
	byVal := x[label]
	set := byVal[value]
	delete(set, k)
	if len(set) == 0 {
		delete(byVal, value)
		if len(byVal) == 0 {
			delete(x, label)
		}
	}
}

// UpdateSelector adds a selector or replaces the one with this id, and
// reports the matches that start and stop. Replacing a selector with an
// equal one (same canonical form) does nothing.
func (x *Index[S, I, P]) UpdateSelector(id S, sel selector.Selector) {
	s, ok := x.sels[id]
	if ok {
		if s.sel.Equal(sel) {
			return
		}
		x.unindexSelector(s)
	} else {
		s = &selEntry[S, I, P]{id: id}
		x.sels[id] = s
	}
	s.sel = sel
	s.keys = sel.Keys()
	x.indexSelector(s)
	for it := range s.matches.all() {
		if !x.eval(s, it) {
			x.unlink(s, it)
		}
	}
	x.startCandidateItems(s)
}

// DeleteSelector removes a selector, stopping all its matches. Deleting an
// unknown selector does nothing.
func (x *Index[S, I, P]) DeleteSelector(id S) {
	s, ok := x.sels[id]
	if !ok {
		return
	}
	for it := range s.matches.all() {
		x.unlink(s, it)
	}
	x.unindexSelector(s)
	delete(x.sels, id)
}

// UpdateItem adds an item or replaces the one with this id: its own labels
// and the parents it inherits labels from, in order of precedence (its own
// labels hide its parents', and an earlier parent's hide a later one's).
// A parent not yet known counts as having no labels until UpdateParent
// gives it some. The index copies labels and parents; the caller may reuse
// them. Updating an item to what it already is does nothing.
func (x *Index[S, I, P]) UpdateItem(id I, labels map[string]string, parents ...P) {
	it, ok := x.items[id]
	if !ok {
		it = &itemEntry[S, I, P]{id: id}
		x.items[id] = it
	} else if it.labels.own.equal(labels) && slices.Equal(it.parentIDs, parents) {
		return
	}
	var changed []string // own labels added, removed or given another value
	for _, e := range it.labels.own {
		if nv, ok := labels[e.key]; !ok || nv != e.value {
			x.itemsByValue.remove(e.key, e.value, id)
			changed = append(changed, e.key)
		}
	}
	for k, v := range labels {
		if ov, ok := it.labels.own.get(k); !ok || ov != v {
			x.itemsByValue.add(k, v, id, it)
			if ok {
				continue // counted above
			}
			changed = append(changed, k)
		}
	}
	it.labels.own = it.labels.own.setFrom(labels)
	if ok && slices.Equal(it.parentIDs, parents) {
		// Only own labels changed, so only selectors that read one of them
		// can change their verdict: the others' matches stand, and every
		// other selector already evaluated false on this item.
		x.reevaluate(it, changed)
		return
	}
	x.unlinkParents(it)
	it.parentIDs = slices.Clone(parents)
	for _, pid := range parents {
		p := x.parent(pid)
		p.children[id] = it
		it.labels.parents = append(it.labels.parents, p)
	}
	x.reevaluate(it, nil)
}

// DeleteItem removes an item, stopping all its matches. Deleting an unknown
// item does nothing.
func (x *Index[S, I, P]) DeleteItem(id I) {
	it, ok := x.items[id]
	if !ok {
		return
	}
	for s := range it.matches.all() {
		x.unlink(s, it)
	}
	for _, e := range it.labels.own {
		x.itemsByValue.remove(e.key, e.value, id)
	}
	x.unlinkParents(it)
	delete(x.items, id)
}

// UpdateParent sets the labels of a parent (a namespace, a service account)
// and re-evaluates only the items that name it. A parent may be updated
// before or after the items that name it. The index copies labels.
func (x *Index[S, I, P]) UpdateParent(id P, labels map[string]string) {
	p := x.parent(id)
	if p.exists && maps.Equal(p.labels, labels) {
		return
	}
	x.setParentLabels(p, true, labels)
}

// parent returns the entry of parent id, creating an empty one.
func (x *Index[S, I, P]) parent(id P) *parentEntry[S, I, P] {
	p := x.parents[id]
	if p == nil {
		p = &parentEntry[S, I, P]{id: id, children: map[I]*itemEntry[S, I, P]{}}
		x.parents[id] = p
	}
	return p
}

// DeleteParent removes a parent's labels; items that name it keep naming it
// and see no labels from it until it is updated again. Deleting an unknown
// parent does nothing.
func (x *Index[S, I, P]) DeleteParent(id P) {
	p := x.parents[id]
	if p == nil || !p.exists {
		return
	}
	x.setParentLabels(p, false, nil)
	if len(p.children) == 0 {
		delete(x.parents, id)
	}
}

// setParentLabels gives p a copy of labels (nil when it no longer exists)
// and re-evaluates its children.
func (x *Index[S, I, P]) setParentLabels(p *parentEntry[S, I, P], exists bool, labels map[string]string) {
	for k, v := range p.labels {
		x.parentsByValue.remove(k, v, p.id)
	}
	p.exists = exists
	if exists {
		p.labels = copyInto(p.labels, labels)
	} else {
		p.labels = nil
	}
	for k, v := range labels {
		x.parentsByValue.add(k, v, p.id, p)
	}
	for _, it := range p.children {
		x.reevaluate(it, nil)
	}
}

// ItemsMatching iterates over the items sel matches, in no particular order,
// without copying. The index must not change during the iteration.
func (x *Index[S, I, P]) ItemsMatching(sel S) iter.Seq[I] {
	var m *matchSet[itemEntry[S, I, P]]
	if s, ok := x.sels[sel]; ok {
		m = &s.matches
	}
	return ids(m, func(it *itemEntry[S, I, P]) I { return it.id })
}

// SelectorsMatching iterates over the selectors that match item, in no
// particular order, without copying. The index must not change during the
// iteration.
func (x *Index[S, I, P]) SelectorsMatching(item I) iter.Seq[S] {
	var m *matchSet[selEntry[S, I, P]]
	if it, ok := x.items[item]; ok {
		m = &it.matches
	}
	return ids(m, func(s *selEntry[S, I, P]) S { return s.id })
}

// Matches reports whether selector sel currently matches item.
func (x *Index[S, I, P]) Matches(sel S, item I) bool {
	s, ok := x.sels[sel]
	if !ok {
		return false
	}
	it, ok := x.items[item]
	return ok && s.matches.has(it)
}

// NumItemsMatching is the number of items sel matches (0 if unknown).
func (x *Index[S, I, P]) NumItemsMatching(sel S) int {
	if s, ok := x.sels[sel]; ok {
		return s.matches.len()
	}
	return 0
}

// NumSelectorsMatching is the number of selectors that match item (0 if
// unknown).
func (x *Index[S, I, P]) NumSelectorsMatching(item I) int {
	if it, ok := x.items[item]; ok {
		return it.matches.len()
	}
	return 0
}

// Stats counts what an Index holds.
type Stats struct {
	Selectors int
	// Unindexed selectors require no label value or label presence and are
	// evaluated against every item that changes; keep them few.
	Unindexed int
	// Unsatisfiable selectors can never match and are never evaluated.
	Unsatisfiable int
	Items         int
	// Parents counts parents that exist or are named by an item.
	Parents int
}

// Stats returns the current counts.
func (x *Index[S, I, P]) Stats() Stats {
	return Stats{
		Selectors:     len(x.sels),
		Unindexed:     len(x.selsUnindexed),
		Unsatisfiable: x.numNever,
		Items:         len(x.items),
		Parents:       len(x.parents),
	}
}

// indexSelector files s under the most selective label its restrictions
// require: a label with the fewest allowed values, else a label that must be
// present, else nowhere (unindexed). Ties go to the smaller label name so the
// choice is deterministic.
func (x *Index[S, I, P]) indexSelector(s *selEntry[S, I, P]) {
	s.kind, s.label, s.values = kindNever, "", nil
	if !s.sel.Satisfiable() {
		x.numNever++
		return
	}
	s.kind = kindUnindexed
	for label, r := range s.sel.LabelRestrictions() {
		switch {
		case r.MustHaveOneOfValues != nil:
			if len(r.MustHaveOneOfValues) == 0 {
				s.kind, s.label, s.values = kindNever, "", nil
				x.numNever++
				return
			}
			if s.kind != kindValue || len(r.MustHaveOneOfValues) < len(s.values) ||
				len(r.MustHaveOneOfValues) == len(s.values) && label < s.label {
				s.kind, s.label, s.values = kindValue, label, r.MustHaveOneOfValues
			}
		case r.MustBePresent:
			if s.kind == kindUnindexed || s.kind == kindLabel && label < s.label {
				s.kind, s.label = kindLabel, label
			}
		}
	}
	switch s.kind {
	case kindUnindexed:
		x.selsUnindexed[s.id] = s
	case kindLabel:
		set := x.selsByLabel[s.label]
		if set == nil {
			set = map[S]*selEntry[S, I, P]{}
			x.selsByLabel[s.label] = set
		}
		set[s.id] = s
	case kindValue:
		for _, v := range s.values {
			x.selsByValue.add(s.label, v, s.id, s)
		}
	}
}

func (x *Index[S, I, P]) unindexSelector(s *selEntry[S, I, P]) {
	switch s.kind {
	case kindNever:
		x.numNever--
	case kindUnindexed:
		delete(x.selsUnindexed, s.id)
	case kindLabel:
		delete(x.selsByLabel[s.label], s.id)
		if len(x.selsByLabel[s.label]) == 0 {
			delete(x.selsByLabel, s.label)
		}
	case kindValue:
		for _, v := range s.values {
			x.selsByValue.remove(s.label, v, s.id)
		}
	}
}

// startCandidateItems starts the matches of s with every item that could
// match it and does not yet: items with (or inheriting) the label or value
// s is indexed on, or all items when s is unindexed.
func (x *Index[S, I, P]) startCandidateItems(s *selEntry[S, I, P]) {
	switch s.kind {
	case kindUnindexed:
		for _, it := range x.items {
			x.tryStart(s, it)
		}
	case kindLabel:
		for _, items := range x.itemsByValue[s.label] {
			x.tryStartAll(s, items)
		}
		for _, parents := range x.parentsByValue[s.label] {
			x.tryStartChildren(s, parents)
		}
	case kindValue:
		for _, v := range s.values {
			x.tryStartAll(s, x.itemsByValue[s.label][v])
			x.tryStartChildren(s, x.parentsByValue[s.label][v])
		}
	}
}

func (x *Index[S, I, P]) tryStartAll(s *selEntry[S, I, P], items map[I]*itemEntry[S, I, P]) {
	for _, it := range items {
		x.tryStart(s, it)
	}
}

func (x *Index[S, I, P]) tryStartChildren(s *selEntry[S, I, P], parents map[P]*parentEntry[S, I, P]) {
	for _, p := range parents {
		x.tryStartAll(s, p.children)
	}
}

// reevaluate brings an item's matches up to date after its labels (own or
// inherited) changed: current matches are re-checked, and only candidate
// selectors (those indexed on one of its effective label values or labels,
// and the unindexed ones) are tried for new matches. When keys is not nil,
// the item's parents are unchanged and its own labels changed only at keys:
// an effective label can only have changed there, so only selectors that
// read one of keys are evaluated.
func (x *Index[S, I, P]) reevaluate(it *itemEntry[S, I, P], keys []string) {
	for s := range it.matches.all() {
		if s.reads(keys) && !x.eval(s, it) {
			x.unlink(s, it)
		}
	}
	try := func(s *selEntry[S, I, P]) {
		if s.reads(keys) {
			x.tryStart(s, it)
		}
	}
	for _, e := range it.labels.own {
		x.eachCandidate(e.key, e.value, try)
	}
	for i, p := range it.labels.parents {
		for k, v := range p.labels {
			if !it.labels.shadowed(k, i) {
				x.eachCandidate(k, v, try)
			}
		}
	}
	for _, s := range x.selsUnindexed {
		try(s)
	}
}

// eachCandidate calls f for the selectors indexed on label k or on k == v.
func (x *Index[S, I, P]) eachCandidate(k, v string, f func(*selEntry[S, I, P])) {
	if byVal := x.selsByValue[k]; byVal != nil {
		for _, s := range byVal[v] {
			f(s)
		}
	}
	for _, s := range x.selsByLabel[k] {
		f(s)
	}
}

func (x *Index[S, I, P]) tryStart(s *selEntry[S, I, P], it *itemEntry[S, I, P]) {
	if it.matches.has(s) {
		return
	}
	if x.eval(s, it) {
		s.matches.add(it)
		it.matches.add(s)
		if x.started != nil {
			x.started(s.id, it.id)
		}
	}
}

func (x *Index[S, I, P]) eval(s *selEntry[S, I, P], it *itemEntry[S, I, P]) bool {
	if s.kind == kindNever {
		return false
	}
	x.evals++
	return s.sel.Evaluate(&it.labels)
}

func (x *Index[S, I, P]) unlink(s *selEntry[S, I, P], it *itemEntry[S, I, P]) {
	s.matches.remove(it)
	it.matches.remove(s)
	if x.stopped != nil {
		x.stopped(s.id, it.id)
	}
}

// unlinkParents detaches an item from its parents, forgetting parents that
// no longer exist and are no longer named.
func (x *Index[S, I, P]) unlinkParents(it *itemEntry[S, I, P]) {
	for _, p := range it.labels.parents {
		delete(p.children, it.id)
		if !p.exists && len(p.children) == 0 {
			delete(x.parents, p.id)
		}
	}
	it.labels.parents = it.labels.parents[:0]
}

// copyInto makes dst a copy of src, reusing dst's storage so that relabelling
// an item or parent does not allocate.
func copyInto(dst, src map[string]string) map[string]string {
	if dst == nil {
		return maps.Clone(src)
	}
	clear(dst)
	maps.Copy(dst, src)
	return dst
}
