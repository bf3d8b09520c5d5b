package index

import (
	"iter"
	"slices"
)

// matchSet is one side of the match relation: the items a selector matches,
// or the selectors an item matches. Each match is held from both sides, so
// this is most of the memory matches take. Most items match a few selectors
// and many selectors a few items, so up to smallMatches members are kept in a
// slice of entry pointers, searched by address (no hashing and no map group
// to allocate); a larger set moves to a map keyed by the entry pointer (8 B
// a slot whatever the caller's key type) and stays there.
type matchSet[T any] struct {
	small []*T            // while big is nil
	big   map[*T]struct{} // once the set outgrew small
}

// smallMatches is the most members a matchSet keeps in its slice: 16
// pointers are two cache lines to scan, and measured faster than 8 for the
// benchmark's selectors of about 10 matches (README.md).
const smallMatches = 16

func (m *matchSet[T]) len() int {
	if m.big != nil {
		return len(m.big)
	}
	return len(m.small)
}

func (m *matchSet[T]) has(e *T) bool {
	if m.big != nil {
		_, ok := m.big[e]
		return ok
	}
	return slices.Contains(m.small, e)
}

// add adds e, which must not be in m.
func (m *matchSet[T]) add(e *T) {
	switch {
	case m.big != nil:
		m.big[e] = struct{}{}
	case len(m.small) < smallMatches:
		m.small = append(m.small, e)
	default:
		m.big = make(map[*T]struct{}, 2*smallMatches)
		for _, o := range m.small {
			m.big[o] = struct{}{}
		}
		m.big[e] = struct{}{}
		m.small = nil
	}
}

// remove removes e if it is in m.
func (m *matchSet[T]) remove(e *T) {
	if m.big != nil {
		delete(m.big, e)
		return
	}
	if i := slices.Index(m.small, e); i >= 0 {
		last := len(m.small) - 1
		m.small[i] = m.small[last]
		m.small[last] = nil // let the entry go
		m.small = m.small[:last]
	}
}

// all iterates over the members in no particular order. The loop body may
// remove the member it was given (and no other) and must add none: the
// slice is walked from its end, so the swap that removal does moves only a
// member already visited.
func (m *matchSet[T]) all() iter.Seq[*T] {
	return func(yield func(*T) bool) {
		if m.big != nil {
			for e := range m.big {
				if !yield(e) {
					return
				}
			}
			return
		}
		for i := len(m.small) - 1; i >= 0; i-- {
			if !yield(m.small[i]) {
				return
			}
		}
	}
}

// ids iterates over the ids (as id reads them) of the members of m, a nil m
// having none.
func ids[T, K any](m *matchSet[T], id func(*T) K) iter.Seq[K] {
	return func(yield func(K) bool) {
		if m == nil {
			return
		}
		for e := range m.all() {
			if !yield(id(e)) {
				return
			}
		}
	}
}
