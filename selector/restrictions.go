package selector

import (
	"slices"
	"strings"
)

// Restriction is what a selector demands of one label for it to match.
type Restriction struct {
	// MustBePresent: the label must be present (has(k), k == "v", k in {...}).
	MustBePresent bool
	// MustBeAbsent: the label must be absent (!has(k)).
	MustBeAbsent bool
	// MustHaveOneOfValues, when non-nil, lists the only values that can
	// match. Non-nil and empty means no value can (a == "x" && a == "y").
	MustHaveOneOfValues []string
}

// restr is the restriction set of a subtree; never marks a subtree that can
// match nothing, which is the identity for ||.
type restr struct {
	m     map[string]Restriction
	never bool
}

// LabelRestrictions returns, per label, what every matching label set must
// satisfy. It is what an index keys selectors on: a selector that requires
// app == "web" need only be evaluated against items that have that label
// value. Labels the selector places no firm demand on are omitted. The result
// is a fresh map the caller may keep.
func (s Selector) LabelRestrictions() map[string]Restriction {
	r := s.prog().restrictions(s.prog().root, false)
	if r.m == nil {
		return map[string]Restriction{}
	}
	return r.m
}

func (p *program) restrictions(i int32, neg bool) restr {
	n := &p.nodes[i]
	neg = neg != n.neg
	one := func(r Restriction) restr { return restr{m: map[string]Restriction{n.key: r}} }
	switch n.op {
	case opAll, opGlobal:
		return restr{never: neg}
	case opHas:
		if neg {
			return one(Restriction{MustBeAbsent: true})
		}
		return one(Restriction{MustBePresent: true})
	case opEq:
		if !neg {
			return one(Restriction{MustBePresent: true, MustHaveOneOfValues: []string{n.val}})
		}
	case opNe:
		if neg {
			return one(Restriction{MustBePresent: true, MustHaveOneOfValues: []string{n.val}})
		}
	case opIn:
		if !neg {
			return one(Restriction{MustBePresent: true, MustHaveOneOfValues: n.set.values()})
		}
	case opNotIn:
		if neg {
			return one(Restriction{MustBePresent: true, MustHaveOneOfValues: n.set.values()})
		}
	case opContains, opStartsWith, opEndsWith:
		if !neg {
			return one(Restriction{MustBePresent: true})
		}
	case opAnd, opOr:
		// De Morgan: a negated && is an || of negations, and vice versa.
		if (n.op == opAnd) != neg {
			return p.restrictAll(p.kidsOf(n), neg)
		}
		return p.restrictAny(p.kidsOf(n), neg)
	}
	return restr{}
}

// restrictAll combines operands that must all hold.
func (p *program) restrictAll(kids []int32, neg bool) restr {
	out := restr{m: map[string]Restriction{}}
	for _, k := range kids {
		r := p.restrictions(k, neg)
		out.never = out.never || r.never
		for key, kr := range r.m {
			base, seen := out.m[key]
			base.MustBePresent = base.MustBePresent || kr.MustBePresent
			base.MustBeAbsent = base.MustBeAbsent || kr.MustBeAbsent
			switch {
			case !seen || base.MustHaveOneOfValues == nil:
				base.MustHaveOneOfValues = kr.MustHaveOneOfValues
			case kr.MustHaveOneOfValues != nil:
				base.MustHaveOneOfValues = intersect(base.MustHaveOneOfValues, kr.MustHaveOneOfValues)
			}
			if base.MustBePresent && base.MustBeAbsent ||
				base.MustHaveOneOfValues != nil && len(base.MustHaveOneOfValues) == 0 {
				out.never = true
			}
			out.m[key] = base
		}
	}
	return out
}

// restrictAny combines operands of which one must hold: only demands every
// satisfiable operand makes survive.
func (p *program) restrictAny(kids []int32, neg bool) restr {
	var out restr
	started := false
	for _, k := range kids {
		r := p.restrictions(k, neg)
		if r.never {
			continue
		}
		if !started {
			out, started = r, true
			continue
		}
		for key, base := range out.m {
			kr, ok := r.m[key]
			if !ok {
				delete(out.m, key)
				continue
			}
			base.MustBePresent = base.MustBePresent && kr.MustBePresent
			base.MustBeAbsent = base.MustBeAbsent && kr.MustBeAbsent
			if !base.MustBePresent || base.MustHaveOneOfValues == nil || kr.MustHaveOneOfValues == nil {
				base.MustHaveOneOfValues = nil
			} else {
				base.MustHaveOneOfValues = union(base.MustHaveOneOfValues, kr.MustHaveOneOfValues)
			}
			if base.MustBePresent || base.MustBeAbsent {
				out.m[key] = base
			} else {
				delete(out.m, key)
			}
		}
	}
	if !started {
		return restr{never: true}
	}
	return out
}

func intersect(a, b []string) []string {
	out := []string{}
	for _, v := range a {
		if slices.Contains(b, v) {
			out = append(out, v)
		}
	}
	return out
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, v := range b {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// maxSatisfiableSearch bounds the exhaustive search of Satisfiable.
const maxSatisfiableSearch = 1 << 14

// Satisfiable reports whether any label set can match the selector. It returns
// false only when that is certain: for contradictions the label restrictions
// show (a == "x" && a == "y", has(a) && !has(a), !all()), and, for selectors
// over a handful of labels, after trying every value that can make a
// difference. Use it to warn about selectors that can never match.
func (s Selector) Satisfiable() bool {
	p := s.prog()
	if p.err != nil {
		return false
	}
	top := p.restrictions(p.root, false)
	if top.never {
		return false
	}
	// Values that can change the outcome for each key: absent, each literal
	// the selector compares the key with, and one value equal to none.
	cands := map[string][]string{}
	fuzzy := map[string]bool{} // keys with substring tests
	longest := ""
	for i := range p.nodes {
		n := &p.nodes[i]
		switch n.op {
		case opEq, opNe:
			cands[n.key] = append(cands[n.key], n.val)
		case opIn, opNotIn:
			for _, v := range n.set.vals {
				cands[n.key] = append(cands[n.key], v)
				if len(v) > len(longest) {
					longest = v
				}
			}
		case opHas:
			cands[n.key] = append(cands[n.key], "")
		case opContains, opStartsWith, opEndsWith:
			// Substring tests can need values built from several literals;
			// the search then only proves satisfiability, never the opposite.
			fuzzy[n.key] = true
			cands[n.key] = append(cands[n.key], n.val)
		}
		if len(n.val) > len(longest) {
			longest = n.val
		}
	}
	fresh := strings.Repeat("x", len(longest)+1)
	keys := make([]string, 0, len(cands))
	absent := map[string]bool{}
	exact := true
	combos := 1
	for k, vs := range cands {
		if forced := top.m[k].MustHaveOneOfValues; forced != nil {
			// Only these values can match, and the label must be present:
			// trying them is exhaustive even for substring tests.
			vs = forced
		} else {
			vs = append(normaliseSet(vs), fresh)
			absent[k] = true
			exact = exact && !fuzzy[k]
		}
		cands[k] = vs
		keys = append(keys, k)
		combos *= len(vs) + 1
		if combos > maxSatisfiableSearch {
			return true
		}
	}
	labels := Map{}
	var try func(int) bool
	try = func(ki int) bool {
		if ki == len(keys) {
			return p.eval(p.root, labels)
		}
		k := keys[ki]
		delete(labels, k)
		if absent[k] && try(ki+1) {
			return true
		}
		for _, v := range cands[k] {
			labels[k] = v
			if try(ki + 1) {
				return true
			}
		}
		delete(labels, k)
		return false
	}
	if try(0) {
		return true
	}
	return !exact
}

// Keys returns the label keys the selector reads, sorted and without
// repeats (none for all() and global()). A selector's verdict on a label
// set can change only when the value (or presence) of one of these keys
// does, which is what lets an index skip re-evaluating it. The result is a
// fresh slice the caller may keep.
func (s Selector) Keys() []string {
	p := s.prog()
	var keys []string
	for i := range p.nodes {
		if n := &p.nodes[i]; n.op != opAll && n.op != opGlobal && n.op != opAnd && n.op != opOr {
			keys = append(keys, n.key)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}
