package nftables

import (
	"maps"
	"slices"
)

// counts is a reference count with the pending changes of one sync kept
// apart: base holds the committed counts and is not modified until
// commit, so a sync that touches a few keys costs the same however many
// keys there are.
type counts[K comparable] struct {
	base, delta map[K]int
}

func (c counts[K]) get(k K) int { return c.base[k] + c.delta[k] }

// inc counts one more use of k and reports whether it is the first.
func (c counts[K]) inc(k K) bool {
	c.delta[k]++
	return c.get(k) == 1
}

// dec counts one use of k less and reports whether it was the last.
func (c counts[K]) dec(k K) bool {
	c.delta[k]--
	return c.get(k) == 0
}

// commit applies the changes to base and returns it.
func (c counts[K]) commit() map[K]int {
	for k, d := range c.delta {
		if n := c.base[k] + d; n == 0 {
			delete(c.base, k)
		} else {
			c.base[k] = n
		}
	}
	return c.base
}

// changed lists the dispatch chains one of whose endpoint counts went
// from unused to used or back, sorted.
func (c counts[K]) changedKeys() []K {
	var out []K
	for k, d := range c.delta {
		if d != 0 && (c.base[k] == 0) != (c.get(k) == 0) {
			out = append(out, k)
		}
	}
	return out
}

// dispatchKey is one endpoint count in use in one dispatch chain.
type dispatchKey struct {
	chain dispatchChainKey
	n     int
}

// dispatchChainKey names a dispatch chain: a protocol and a bank (0 for
// the internal endpoints, externalBank for the external ones).
type dispatchChainKey struct {
	proto string
	bank  int
}

func (c counts[K]) changed() []dispatchChainKey {
	seen := map[dispatchChainKey]bool{}
	for _, k := range c.changedKeys() {
		if dk, ok := any(k).(dispatchKey); ok {
			seen[dk.chain] = true
		}
	}
	return slices.SortedFunc(maps.Keys(seen), func(a, b dispatchChainKey) int {
		if a.proto != b.proto {
			if a.proto < b.proto {
				return -1
			}
			return 1
		}
		return a.bank - b.bank
	})
}

// inUse lists the endpoint counts in use in chain c, ascending.
func (c counts[K]) inUse(ch dispatchChainKey) []int {
	var out []int
	for _, m := range []map[K]int{c.base, c.delta} {
		for k := range m {
			if dk, ok := any(k).(dispatchKey); ok && dk.chain == ch && c.get(k) > 0 {
				out = append(out, dk.n)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
