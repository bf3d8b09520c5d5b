package selector

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
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
	neg   bool // a leading "!" (after collapsing repeated "!" by parity)
	first int32
	n     int32 // children: kids[first : first+n] (opAnd, opOr)
	key   string
	val   string
	set   []string // sorted and de-duplicated (opIn, opNotIn)
}

// program is the immutable compiled form behind a Selector.
type program struct {
	nodes []node
	kids  []int32
	root  int32
	err   error // set only on selectors built from unrepresentable parts

	canon atomic.Pointer[string] // String(), computed once on first use
	id    atomic.Pointer[string] // UniqueID(), likewise
}

func (p *program) kidsOf(n *node) []int32 { return p.kids[n.first : n.first+n.n] }

func (p *program) eval(i int32, l Labels) bool {
	n := &p.nodes[i]
	var r bool
	switch n.op {
	case opAll, opGlobal:
		r = true
	case opHas:
		_, r = l.Get(n.key)
	case opEq:
		v, ok := l.Get(n.key)
		r = ok && v == n.val
	case opNe:
		v, ok := l.Get(n.key)
		r = !ok || v != n.val
	case opIn:
		v, ok := l.Get(n.key)
		r = ok && setContains(n.set, v)
	case opNotIn:
		v, ok := l.Get(n.key)
		r = !ok || !setContains(n.set, v)
	case opContains:
		v, ok := l.Get(n.key)
		r = ok && strings.Contains(v, n.val)
	case opStartsWith:
		v, ok := l.Get(n.key)
		r = ok && strings.HasPrefix(v, n.val)
	case opEndsWith:
		v, ok := l.Get(n.key)
		r = ok && strings.HasSuffix(v, n.val)
	case opAnd:
		r = true
		for _, k := range p.kidsOf(n) {
			if !p.eval(k, l) {
				r = false
				break
			}
		}
	case opOr:
		for _, k := range p.kidsOf(n) {
			if p.eval(k, l) {
				r = true
				break
			}
		}
	}
	return r != n.neg
}

// setContains reports whether sorted set holds v. Small sets are scanned, which
// beats a binary search's unpredictable branches.
func setContains(set []string, v string) bool {
	if len(set) <= 8 {
		for _, s := range set {
			if s == v {
				return true
			}
		}
		return false
	}
	_, found := slices.BinarySearch(set, v)
	return found
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
		for j, v := range n.set {
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

// grow appends the nodes and kids of q to p, shifting q's indexes, and returns
// the index q's root now has in p. Builders use it to combine selectors.
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
