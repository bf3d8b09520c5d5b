package selector

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrUnrepresentable is wrapped by Selector.Err for builder input the selector
// language cannot express: an invalid key, a value holding both kinds of
// quote, or && and || groups nested deeper than the 100 levels Parse
// accepts.
var ErrUnrepresentable = errors.New("cannot be written as a selector")

// All matches everything.
func All() Selector { return leaf(node{op: opAll}) }

// Nothing matches nothing (written !all()).
func Nothing() Selector { return leaf(node{op: opAll, neg: true}) }

// Global is global(): in a namespace selector it selects non-namespaced
// resources (global network sets, host endpoints); on its own it matches
// everything.
func Global() Selector { return leaf(node{op: opGlobal}) }

// Has matches when the label is present, whatever its value.
func Has(key string) Selector { return leaf(node{op: opHas, key: key}) }

// Eq matches when the label is present with exactly this value.
func Eq(key, value string) Selector { return leaf(node{op: opEq, key: key, val: value}) }

// Ne matches when the label is absent or has another value.
func Ne(key, value string) Selector { return leaf(node{op: opNe, key: key, val: value}) }

// In matches when the label is present with one of the values.
func In(key string, values ...string) Selector {
	return leaf(node{op: opIn, key: key, set: newValueSet(append([]string(nil), values...))})
}

// NotIn matches when the label is absent or has none of the values.
func NotIn(key string, values ...string) Selector {
	return leaf(node{op: opNotIn, key: key, set: newValueSet(append([]string(nil), values...))})
}

// Contains matches when the label is present and its value contains s.
func Contains(key, s string) Selector { return leaf(node{op: opContains, key: key, val: s}) }

// StartsWith matches when the label is present and its value starts with s.
func StartsWith(key, s string) Selector { return leaf(node{op: opStartsWith, key: key, val: s}) }

// EndsWith matches when the label is present and its value ends with s.
func EndsWith(key, s string) Selector { return leaf(node{op: opEndsWith, key: key, val: s}) }

// And matches when every selector matches; And() is all(). An operand that is
// itself an un-negated And is spliced in, so And(And(a, b), c) is
// And(a, b, c) and nests no deeper. Each other And or Or group on the path
// to a leaf is one level of brackets in the canonical form; past 100 levels
// (Parse's limit) the result's Err wraps ErrUnrepresentable and names the
// limit. The first operand's error, if any, comes first.
func And(sels ...Selector) Selector { return join(opAnd, sels) }

// Or matches when any selector matches; Or() is nothing. Operands that are
// un-negated Ors are spliced in, and nesting is bounded, as for And.
func Or(sels ...Selector) Selector { return join(opOr, sels) }

// Not inverts a selector. It adds no nesting: the canonical form writes
// "!" before the group's bracket.
func Not(s Selector) Selector {
	q := s.prog()
	root := q.nodes[q.root]
	root.neg = !root.neg
	if root.op < opAnd {
		return Selector{p: &program{nodes: []node{root}, err: q.err}}
	}
	// A copy of the group's root, negated, over the same children: the
	// old root stays behind, unreachable.
	p := &program{err: q.err}
	p.nodes, p.kids = q.extend(len(q.nodes)+1, len(q.kids))
	p.nodes = append(p.nodes, root)
	p.root = int32(len(p.nodes) - 1)
	return Selector{p: p}
}

// And is s && others.
func (s Selector) And(others ...Selector) Selector {
	return And(append([]Selector{s}, others...)...)
}

// Or is s || others.
func (s Selector) Or(others ...Selector) Selector {
	return Or(append([]Selector{s}, others...)...)
}

// Not is !s.
func (s Selector) Not() Selector { return Not(s) }

func (s Selector) prog() *program {
	if s.p == nil {
		return All().p
	}
	return s.p
}

func leaf(n node) Selector {
	p := &program{nodes: []node{n}}
	p.err = checkNode(&n)
	return Selector{p: p}
}

// checkNode reports a key or value that would not survive a round trip
// through the selector language.
func checkNode(n *node) error {
	if n.op == opAll || n.op == opGlobal {
		return nil
	}
	if err := ValidateKey(n.key); err != nil {
		return err
	}
	vals := n.set.values()
	if n.op != opIn && n.op != opNotIn && n.op != opHas {
		vals = []string{n.val}
	}
	for _, v := range vals {
		if strings.ContainsRune(v, '"') && strings.ContainsRune(v, '\'') {
			return fmt.Errorf("label %q value %q holds both kinds of quote: %w", n.key, v, ErrUnrepresentable)
		}
	}
	return nil
}

// ValidateKey checks a label key against the selector language:
// 1 to 512 characters from [a-zA-Z0-9_./-]. An error wraps
// ErrUnrepresentable and names the first character not allowed and its
// 1-based column, counted in characters (runes) as in a *ParseError; a byte
// that is not UTF-8 is shown as an escape ('\xff').
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("empty label key: %w", ErrUnrepresentable)
	}
	col := 0
	for i, r := range key {
		col++
		if r >= utf8.RuneSelf || !isKeyChar(key[i]) {
			bad := fmt.Sprintf("%q", r)
			if r == utf8.RuneError {
				if _, size := utf8.DecodeRuneInString(key[i:]); size == 1 {
					bad = fmt.Sprintf("'\\x%02x'", key[i])
				}
			}
			return fmt.Errorf("label key %q has %s at column %d (allowed: a-z A-Z 0-9 _ . / -): %w",
				key, bad, col, ErrUnrepresentable)
		}
	}
	if len(key) > MaxKeyLength { // all ASCII by now: bytes are characters
		return fmt.Errorf("label key longer than %d characters: %w", MaxKeyLength, ErrUnrepresentable)
	}
	return nil
}

// join builds o(sels...). The operand with the most nodes is the base: the
// result extends its arrays in place when it can (see extend) and grafts
// the others after it, so a selector built one level at a time, each level
// an operand of the next, costs time linear in its size rather than
// quadratic. The result's arrays are sized for everything up front.
func join(o op, sels []Selector) Selector {
	switch len(sels) {
	case 0:
		if o == opAnd {
			return All()
		}
		return Nothing()
	case 1:
		return sels[0]
	}
	var err error
	bi, nodes, kids := 0, 1, 0 // the base operand; the result's node and kid counts
	for i, s := range sels {
		q := s.prog()
		if err == nil {
			err = q.err
		}
		if len(q.nodes) > len(sels[bi].prog().nodes) {
			bi = i
		}
		nodes += len(q.nodes)
		kids += len(q.kids) + 1
		if r := &q.nodes[q.root]; r.op == o && !r.neg {
			kids += int(r.n) - 1 // spliced in: its children are the root's
		}
	}
	base := sels[bi].prog()
	p := &program{err: err}
	p.nodes, p.kids = base.extend(nodes, kids)
	roots := make([]int32, 0, 8)
	for i, s := range sels {
		if i == bi {
			roots = append(roots, base.root)
		} else {
			roots = append(roots, p.graft(s.prog()))
		}
	}
	first := int32(len(p.kids))
	for _, r := range roots {
		if n := &p.nodes[r]; n.op == o && !n.neg {
			p.kids = append(p.kids, p.kidsOf(n)...)
		} else {
			p.kids = append(p.kids, r)
		}
	}
	ops := p.kids[first:]
	// A tree deeper than Parse allows carries an error, so that every
	// builder result without one parses again from its String. The stored
	// depth saturates; past maxDepth only "too deep" matters.
	depth := groupDepth(p.nodes, ops)
	if depth > maxDepth && p.err == nil {
		p.err = fmt.Errorf("%s: %w", canonicalTooDeep(), ErrUnrepresentable)
	}
	p.nodes = append(p.nodes, node{op: o, first: first, n: int32(len(ops)), depth: uint8(min(depth, 255))})
	p.root = int32(len(p.nodes) - 1)
	return Selector{p: p}
}
