package selector

import (
	"math/bits"
	"slices"
	"strings"
)

// valueSet is the value list of an in or not in operation, sorted and free of
// duplicates. Sets such as {"value-1", "value-2", ...} tend to share a long
// prefix, so for each value the set also keeps the 8 bytes after the common
// prefix as a big-endian integer: sorting and searching compare integers and
// compare strings only on a tie.
type valueSet struct {
	prefix string   // common prefix of every value
	keys   []uint64 // keys[i] is keyAfter(vals[i], len(prefix))
	vals   []string // in byte order
}

// keyAfter packs s[skip:skip+8] into an integer that orders like the bytes,
// zero-padded when s is shorter.
func keyAfter(s string, skip int) uint64 {
	if len(s)-skip >= 8 {
		s = s[skip : skip+8]
		// The compiler merges these loads into one load and a byte swap.
		return uint64(s[0])<<56 | uint64(s[1])<<48 | uint64(s[2])<<40 | uint64(s[3])<<32 |
			uint64(s[4])<<24 | uint64(s[5])<<16 | uint64(s[6])<<8 | uint64(s[7])
	}
	var k uint64
	for i := skip; i < len(s); i++ {
		k = k<<8 | uint64(s[i])
	}
	return k << (8 * (8 - (len(s) - skip)))
}

// keyIdx is one value of a set being sorted. It holds no pointers, so the
// sort's swaps need no write barriers.
type keyIdx struct {
	key uint64
	idx uint32
}

// smallSet is the size up to which has() scans the values and needs no keys.
const smallSet = 4

// newValueSet builds a set from vals; it does not keep or reorder vals.
func newValueSet(vals []string) valueSet {
	if len(vals) == 0 {
		return valueSet{}
	}
	if len(vals) <= smallSet {
		out := slices.Clone(vals)
		for i := 1; i < len(out); i++ {
			for k := i; k > 0 && out[k] < out[k-1]; k-- {
				out[k], out[k-1] = out[k-1], out[k]
			}
		}
		return valueSet{vals: slices.Compact(out)}
	}
	prefix := vals[0]
	for _, v := range vals[1:] {
		if strings.HasPrefix(v, prefix) {
			continue
		}
		n := min(len(prefix), len(v))
		i := 0
		for i < n && prefix[i] == v[i] {
			i++
		}
		prefix = prefix[:i]
	}
	// Sort a pointer-free permutation; up to 128 values it lives on the stack.
	var buf [128]keyIdx
	order := buf[:0]
	if len(vals) <= len(buf) {
		order = buf[:len(vals)]
	} else {
		order = make([]keyIdx, len(vals))
	}
	sorted := true
	for i, v := range vals {
		order[i] = keyIdx{key: keyAfter(v, len(prefix)), idx: uint32(i)}
		if sorted && i > 0 && less(vals, &order[i], &order[i-1]) {
			sorted = false
		}
	}
	if !sorted {
		sortKeys(vals, order, 2*bits.Len(uint(len(order))))
	}
	s := valueSet{prefix: prefix, keys: make([]uint64, 0, len(vals)), vals: make([]string, 0, len(vals))}
	for i := range order {
		v := vals[order[i].idx]
		if i > 0 && v == s.vals[len(s.vals)-1] {
			continue
		}
		s.keys = append(s.keys, order[i].key)
		s.vals = append(s.vals, v)
	}
	return s
}

func less(vals []string, a, b *keyIdx) bool {
	return a.key < b.key || a.key == b.key && vals[a.idx] < vals[b.idx]
}

// sortKeys is an introsort with the comparison inlined: sets are sorted on
// every parse, and a generic sort's indirect comparison calls would cost more
// than the comparisons. Past the depth limit it hands over to the standard
// library, so hostile input cannot make it quadratic.
func sortKeys(vals []string, e []keyIdx, depth int) {
	for len(e) > 12 {
		if depth == 0 {
			slices.SortFunc(e, func(a, b keyIdx) int {
				if less(vals, &a, &b) {
					return -1
				}
				if less(vals, &b, &a) {
					return 1
				}
				return 0
			})
			return
		}
		depth--
		last, m := len(e)-1, len(e)/2
		if less(vals, &e[m], &e[0]) {
			e[m], e[0] = e[0], e[m]
		}
		if less(vals, &e[last], &e[0]) {
			e[last], e[0] = e[0], e[last]
		}
		if less(vals, &e[last], &e[m]) {
			e[last], e[m] = e[m], e[last]
		}
		pivot := e[m]
		i, j := 0, last
		for i <= j {
			for less(vals, &e[i], &pivot) {
				i++
			}
			for less(vals, &pivot, &e[j]) {
				j--
			}
			if i <= j {
				e[i], e[j] = e[j], e[i]
				i++
				j--
			}
		}
		// Recurse into the smaller side, loop on the larger.
		if j+1 < len(e)-i {
			sortKeys(vals, e[:j+1], depth)
			e = e[i:]
		} else {
			sortKeys(vals, e[i:], depth)
			e = e[:j+1]
		}
	}
	for i := 1; i < len(e); i++ {
		for k := i; k > 0 && less(vals, &e[k], &e[k-1]); k-- {
			e[k], e[k-1] = e[k-1], e[k]
		}
	}
}

func (s *valueSet) has(v string) bool {
	if len(s.keys) == 0 {
		for _, x := range s.vals {
			if x == v {
				return true
			}
		}
		return false
	}
	if len(v) < len(s.prefix) || v[:len(s.prefix)] != s.prefix {
		return false
	}
	k := keyAfter(v, len(s.prefix))
	lo, hi := 0, len(s.keys)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if s.keys[mid] < k {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	for ; lo < len(s.keys) && s.keys[lo] == k; lo++ {
		if s.vals[lo] == v {
			return true
		}
	}
	return false
}

// values returns a copy of the values in canonical (byte) order.
func (s *valueSet) values() []string { return slices.Clone(s.vals) }

func (s *valueSet) len() int { return len(s.vals) }
