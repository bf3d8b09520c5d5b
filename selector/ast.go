package selector

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"sync/atomic"
)

// op is the kind of a node in the selector's syntax tree.
type op uint8

const (
	opAll        op = iota // all()
	opGlobal               // global()
	opHas                  // has(key)
	opEq                   // key == "val"
	opNe                   // key != "val"
	opIn                   // key in {set}
	opNotIn                // key not in {set}
	opContains             // key contains "val"
	opStartsWith           // key starts with "val"
	opEndsWith             // key ends with "val"
	opAnd                  // kids joined by &&
	opOr                   // kids joined by ||
)

// node is one operation. The tree is stored flat: a program holds every node in
// one slice and every node's children as a run of indexes in another, so a
// parse allocates a handful of slices rather than one object per node and
// evaluation walks contiguous memory.
type node struct {
	op    op
	neg   bool  // a leading "!" (after collapsing repeated "!" by parity)
	depth uint8 // groups on the deepest path from here, itself included (0 for a leaf)
	first int32
	n     int32 // children: kids[first : first+n] (opAnd, opOr)
	keyID int32 // the key's Interner ID, in a Compiled selector's copy
	key   string
	val   string
	set   valueSet // opIn, opNotIn
}

// program is the immutable compiled form behind a Selector.
type program struct {
	nodes []node
	kids  []int32
	root  int32
	err   error // set only on selectors built from unrepresentable parts

	// extended is set by the one builder call that appended to nodes and
	// kids in place (see extend); later ones copy.
	extended atomic.Bool

	canon atomic.Pointer[string] // String(), computed once on first use
	id    atomic.Pointer[string] // UniqueID(), likewise
}

func (p *program) kidsOf(n *node) []int32 { return p.kids[n.first : n.first+n.n] }

// test applies a leaf operation to the label's value (v, present). Equality,
// by far the most common operation, is checked before the switch.
func (n *node) test(v string, ok bool) bool {
	if n.op == opEq {
		return ok && v == n.val
	}
	switch n.op {
	case opHas:
		return ok
	case opNe:
		return !ok || v != n.val
	case opIn:
		return ok && n.set.has(v)
	case opNotIn:
		return !ok || !n.set.has(v)
	case opContains:
		return ok && strings.Contains(v, n.val)
	case opStartsWith:
		return ok && strings.HasPrefix(v, n.val)
	case opEndsWith:
		return ok && strings.HasSuffix(v, n.val)
	}
	return true // opAll, opGlobal
}

// The evaluators below are one algorithm: eval reads labels through the
// Labels interface; evaluate, testMap and evalMap read a Map directly, which
// saves an indirect call per label on the most common input. Leaf children
// of a group are tested in the group's loop rather than by a recursive call.
// The Map path repeats test's cases in line because a plain-map evaluation
// is mostly its map lookups, so each call saved per term shows: measured
// with callgrind, the Map path runs fewer instructions than Calico's
// evaluator on single terms, sets and mixed expressions (see README.md).

// eval evaluates node i against any Labels.
func (p *program) eval(i int32, l Labels) bool {
	n := &p.nodes[i]
	if n.op < opAnd {
		if n.op <= opGlobal {
			return !n.neg
		}
		v, ok := l.Get(n.key)
		return n.test(v, ok) != n.neg
	}
	stopOn := n.op == opOr // && stops at the first false, || at the first true
	for _, k := range p.kids[n.first : n.first+n.n] {
		c := &p.nodes[k]
		var r bool
		switch {
		case c.op <= opGlobal:
			r = !c.neg
		case c.op < opAnd:
			v, ok := l.Get(c.key)
			r = c.test(v, ok) != c.neg
		default:
			r = p.eval(k, l)
		}
		if r == stopOn {
			return stopOn != n.neg
		}
	}
	return stopOn == n.neg
}

// evaluate is Selector.Evaluate for a non-nil program. It is kept apart so
// that Selector.Evaluate is small enough to be inlined into its caller. A nil
// Labels takes the Map path as an empty (nil) Map.
func (p *program) evaluate(labels Labels) bool {
	if p.err != nil {
		return false
	}
	m, ok := labels.(Map)
	if !ok && labels != nil {
		return p.eval(p.root, labels)
	}
	n := &p.nodes[p.root]
	switch n.op {
	case opEq:
		// The commonest selectors of all, one term, with no further call.
		v, ok := m[n.key]
		return (ok && v == n.val) != n.neg
	case opHas:
		_, ok := m[n.key]
		return ok != n.neg
	}
	if n.op < opAnd {
		return n.testMap(m)
	}
	return p.evalMap(n, m)
}

// testMap evaluates a leaf node against a Map. It repeats test's cases
// rather than calling it: a plain-map evaluation is mostly the map lookup,
// and one call less per term is measurable.
func (n *node) testMap(m Map) bool {
	var r bool
	switch n.op {
	case opAll, opGlobal:
		r = true
	case opEq:
		v, ok := m[n.key]
		r = ok && v == n.val
	case opHas:
		_, r = m[n.key]
	case opNe:
		v, ok := m[n.key]
		r = !ok || v != n.val
	case opIn:
		v, ok := m[n.key]
		r = ok && n.set.has(v)
	case opNotIn:
		v, ok := m[n.key]
		r = !ok || !n.set.has(v)
	case opContains:
		v, ok := m[n.key]
		r = ok && strings.Contains(v, n.val)
	case opStartsWith:
		v, ok := m[n.key]
		r = ok && strings.HasPrefix(v, n.val)
	case opEndsWith:
		v, ok := m[n.key]
		r = ok && strings.HasSuffix(v, n.val)
	}
	return r != n.neg
}

// evalMap is eval for a Map, from the group node n.
func (p *program) evalMap(n *node, m Map) bool {
	stopOn, neg := n.op == opOr, n.neg
	nodes := p.nodes
	for _, k := range p.kids[n.first : n.first+n.n] {
		c := &nodes[k]
		var r bool
		switch {
		case c.op == opEq:
			v, ok := m[c.key]
			r = (ok && v == c.val) != c.neg
		case c.op < opAnd:
			r = c.testMap(m)
		default:
			r = p.evalMap(c, m)
		}
		if r == stopOn {
			return stopOn != neg
		}
	}
	return stopOn == neg
}

// writeCanonical appends node i in canonical form: every && and || group
// bracketed, sets sorted, values double-quoted unless they hold a double quote,
// "!" written without a space.
func (p *program) writeCanonical(b *strings.Builder, i int32) {
	n := &p.nodes[i]
	if n.neg {
		b.WriteByte('!')
	}
	switch n.op {
	case opAll:
		b.WriteString("all()")
	case opGlobal:
		b.WriteString("global()")
	case opHas:
		b.WriteString("has(")
		b.WriteString(n.key)
		b.WriteByte(')')
	case opEq:
		writeBinary(b, n.key, " == ", n.val)
	case opNe:
		writeBinary(b, n.key, " != ", n.val)
	case opContains:
		writeBinary(b, n.key, " contains ", n.val)
	case opStartsWith:
		writeBinary(b, n.key, " starts with ", n.val)
	case opEndsWith:
		writeBinary(b, n.key, " ends with ", n.val)
	case opIn, opNotIn:
		b.WriteString(n.key)
		if n.op == opIn {
			b.WriteString(" in {")
		} else {
			b.WriteString(" not in {")
		}
		for j, v := range n.set.vals {
			if j > 0 {
				b.WriteString(", ")
			}
			writeQuoted(b, v)
		}
		b.WriteByte('}')
	case opAnd, opOr:
		sep := " && "
		if n.op == opOr {
			sep = " || "
		}
		b.WriteByte('(')
		for j, k := range p.kidsOf(n) {
			if j > 0 {
				b.WriteString(sep)
			}
			p.writeCanonical(b, k)
		}
		b.WriteByte(')')
	}
}

func writeBinary(b *strings.Builder, key, opText, val string) {
	b.WriteString(key)
	b.WriteString(opText)
	writeQuoted(b, val)
}

func writeQuoted(b *strings.Builder, v string) {
	q := byte('"')
	if strings.IndexByte(v, '"') >= 0 {
		q = '\''
	}
	b.WriteByte(q)
	b.WriteString(v)
	b.WriteByte(q)
}

func (p *program) String() string {
	if s := p.canon.Load(); s != nil {
		return *s
	}
	var b strings.Builder
	p.writeCanonical(&b, p.root)
	s := b.String()
	p.canon.Store(&s)
	return s
}

func (p *program) UniqueID() string {
	if s := p.id.Load(); s != nil {
		return *s
	}
	sum := sha256.Sum256([]byte(p.String()))
	s := "s:" + base64.RawURLEncoding.EncodeToString(sum[:])
	p.id.Store(&s)
	return s
}

// extend returns p's nodes and kids, with room for nodes and kids elements
// in all, for a builder to append a tree that contains p's. The first
// caller whose counts fit p's capacity gets p's own arrays: it appends past
// p's elements, which no reader of p sees, and p's elements are never
// written. Every other caller gets copies: exactly the room asked for while
// p is small (the common shallow selector keeps no spare capacity), twice
// p's length once p has growMin nodes, so that a chain of builder calls,
// each extending the last result, copies each node O(1) times on average.
func (p *program) extend(nodes, kids int) ([]node, []int32) {
	if cap(p.nodes) >= nodes && cap(p.kids) >= kids && p.extended.CompareAndSwap(false, true) {
		return p.nodes, p.kids
	}
	if len(p.nodes) >= growMin {
		nodes, kids = max(nodes, 2*len(p.nodes)), max(kids, 2*len(p.kids))
	}
	n := make([]node, len(p.nodes), nodes)
	copy(n, p.nodes)
	var k []int32
	if kids > 0 {
		k = make([]int32, len(p.kids), kids)
		copy(k, p.kids)
	}
	return n, k
}

// growMin is the size (nodes) from which extend leaves room to grow.
const growMin = 8

// graft appends the nodes and kids of q to p, shifting q's indexes, and
// returns the index q's root now has in p. Builders use it to combine
// selectors.
func (p *program) graft(q *program) int32 {
	nodeOff := int32(len(p.nodes))
	kidOff := int32(len(p.kids))
	for _, n := range q.nodes {
		if n.op == opAnd || n.op == opOr {
			n.first += kidOff
		}
		p.nodes = append(p.nodes, n)
	}
	for _, k := range q.kids {
		p.kids = append(p.kids, k+nodeOff)
	}
	return q.root + nodeOff
}
