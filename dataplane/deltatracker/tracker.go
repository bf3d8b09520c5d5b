package deltatracker

import (
	"iter"
	"maps"
)

// Tracker holds desired and dataplane state keyed by K and the pending
// updates and deletions between them. The zero value is not usable; build
// one with New or NewFunc.
type Tracker[K comparable, V any] struct {
	equal func(desired, dataplane V) bool

	desired   map[K]V
	dataplane map[K]V
	// updates holds keys whose desired value is missing from, or differs
	// from, the dataplane; deletions holds dataplane keys not desired.
	updates   map[K]struct{}
	deletions map[K]struct{}
	// spare is an empty map that ReplaceAll fills and swaps in, so that a
	// periodic resync allocates nothing once the sizes settle.
	spare map[K]V
}

// New returns an empty tracker comparing values with ==.
func New[K, V comparable]() *Tracker[K, V] {
	return NewFunc[K](func(a, b V) bool { return a == b })
}

// NewFunc returns an empty tracker comparing values with equal, which is
// called as equal(desired, dataplane).
func NewFunc[K comparable, V any](equal func(desired, dataplane V) bool) *Tracker[K, V] {
	return &Tracker[K, V]{
		equal:     equal,
		desired:   map[K]V{},
		dataplane: map[K]V{},
		updates:   map[K]struct{}{},
		deletions: map[K]struct{}{},
	}
}

// refresh recomputes the pending state of key k from the two maps. It
// keeps the invariant that updates holds only desired keys and deletions
// only dataplane keys.
func (t *Tracker[K, V]) refresh(k K) {
	d, wanted := t.desired[k]
	have, present := t.dataplane[k]
	switch {
	case wanted:
		if present && t.equal(d, have) {
			unpend(&t.updates, k)
		} else {
			t.updates[k] = struct{}{}
		}
		if present {
			unpend(&t.deletions, k)
		}
	case present:
		unpend(&t.updates, k)
		t.deletions[k] = struct{}{}
	default:
		unpend(&t.updates, k)
		unpend(&t.deletions, k)
	}
}

// unpend removes k from the pending set *m. A set that empties gets a
// fresh map: Go never shrinks a map, so after a full sync of many keys
// ranging over the emptied map would still walk all its buckets on every
// later sync; a fresh one keeps PendingUpdates/PendingDeletions
// O(pending).
func unpend[K comparable](m *map[K]struct{}, k K) {
	if _, ok := (*m)[k]; !ok {
		return
	}
	delete(*m, k)
	if len(*m) == 0 {
		*m = map[K]struct{}{}
	}
}

// UpdateApplied records that the pending update of k was written: the
// dataplane now holds the desired value (Felix's IterActionUpdateDataplane).
// It is Dataplane().Set(k, desired value) without the comparison, for
// appliers that mark thousands of writes per sync. A k without a pending
// update is ignored.
func (t *Tracker[K, V]) UpdateApplied(k K) {
	if _, ok := t.updates[k]; !ok {
		return
	}
	t.dataplane[k] = t.desired[k]
	unpend(&t.updates, k)
}

// DeletionApplied records that the pending deletion of k was carried out:
// Dataplane().Delete(k) for a key known to be pending deletion. A k
// without a pending deletion is ignored.
func (t *Tracker[K, V]) DeletionApplied(k K) {
	if _, ok := t.deletions[k]; !ok {
		return
	}
	delete(t.dataplane, k)
	unpend(&t.deletions, k)
}

// Desired returns the view of the desired state.
func (t *Tracker[K, V]) Desired() Desired[K, V] { return Desired[K, V]{t} }

// Dataplane returns the view of the dataplane state.
func (t *Tracker[K, V]) Dataplane() Dataplane[K, V] { return Dataplane[K, V]{t} }

// PendingUpdates yields each key whose desired value is not (equal to what
// is) in the dataplane, with the desired value. Order is unspecified.
func (t *Tracker[K, V]) PendingUpdates() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for k := range t.updates {
			if !yield(k, t.desired[k]) {
				return
			}
		}
	}
}

// PendingDeletions yields each key in the dataplane that is not desired,
// with its dataplane value (what to delete). Order is unspecified.
func (t *Tracker[K, V]) PendingDeletions() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for k := range t.deletions {
			if !yield(k, t.dataplane[k]) {
				return
			}
		}
	}
}

// NumPendingUpdates returns the number of pending updates.
func (t *Tracker[K, V]) NumPendingUpdates() int { return len(t.updates) }

// NumPendingDeletions returns the number of pending deletions.
func (t *Tracker[K, V]) NumPendingDeletions() int { return len(t.deletions) }

// InSync reports whether nothing is pending.
func (t *Tracker[K, V]) InSync() bool { return len(t.updates)+len(t.deletions) == 0 }

// Desired is the desired-state view of a Tracker.
type Desired[K comparable, V any] struct{ t *Tracker[K, V] }

// Set records that k should have value v.
func (d Desired[K, V]) Set(k K, v V) {
	d.t.desired[k] = v
	d.t.refresh(k)
}

// Get returns the desired value of k.
func (d Desired[K, V]) Get(k K) (V, bool) {
	v, ok := d.t.desired[k]
	return v, ok
}

// Delete records that k should not exist; unknown keys are ignored.
func (d Desired[K, V]) Delete(k K) {
	if _, ok := d.t.desired[k]; !ok {
		return
	}
	delete(d.t.desired, k)
	d.t.refresh(k)
}

// DeleteAll forgets every desired key: everything in the dataplane view
// becomes a pending deletion.
func (d Desired[K, V]) DeleteAll() {
	for k := range d.t.desired {
		delete(d.t.desired, k)
		d.t.refresh(k)
	}
}

// ReplaceAll makes the desired state exactly the pairs of all (a full
// render); for a repeated key the last pair wins.
func (d Desired[K, V]) ReplaceAll(all iter.Seq2[K, V]) {
	d.t.swap(&d.t.desired, all)
}

// All yields the desired pairs. Order is unspecified.
func (d Desired[K, V]) All() iter.Seq2[K, V] { return maps.All(d.t.desired) }

// Len returns the number of desired keys.
func (d Desired[K, V]) Len() int { return len(d.t.desired) }

// Dataplane is the dataplane-state view of a Tracker.
type Dataplane[K comparable, V any] struct{ t *Tracker[K, V] }

// Set records that the dataplane holds v at k: after a successful write
// of a pending update, or when a dump or an event shows it.
func (d Dataplane[K, V]) Set(k K, v V) {
	d.t.dataplane[k] = v
	d.t.refresh(k)
}

// Get returns the dataplane value of k.
func (d Dataplane[K, V]) Get(k K) (V, bool) {
	v, ok := d.t.dataplane[k]
	return v, ok
}

// Delete records that the dataplane no longer holds k: after a successful
// deletion, or when an event shows it gone. Unknown keys are ignored.
func (d Dataplane[K, V]) Delete(k K) {
	if _, ok := d.t.dataplane[k]; !ok {
		return
	}
	delete(d.t.dataplane, k)
	d.t.refresh(k)
}

// ReplaceAll makes the dataplane view exactly the pairs of all (a resync
// from a full dump); for a repeated key the last pair wins.
func (d Dataplane[K, V]) ReplaceAll(all iter.Seq2[K, V]) {
	d.t.swap(&d.t.dataplane, all)
}

// All yields the dataplane pairs. Order is unspecified.
func (d Dataplane[K, V]) All() iter.Seq2[K, V] { return maps.All(d.t.dataplane) }

// Len returns the number of keys in the dataplane view.
func (d Dataplane[K, V]) Len() int { return len(d.t.dataplane) }

// swap replaces *field by the pairs of all and refreshes every key that
// the old or the new map holds. The old map becomes the spare.
func (t *Tracker[K, V]) swap(field *map[K]V, all iter.Seq2[K, V]) {
	next := t.spare
	if next == nil {
		next = make(map[K]V, len(*field))
	}
	t.spare = nil
	for k, v := range all {
		next[k] = v
	}
	old := *field
	*field = next
	for k := range old {
		t.refresh(k)
	}
	for k := range next {
		if _, seen := old[k]; !seen {
			t.refresh(k)
		}
	}
	clear(old)
	t.spare = old
}
