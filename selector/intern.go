package selector

import (
	"slices"
	"sync"
)

// Interner gives label keys small integer IDs, so that a selector compiled
// against it reads a label by a short integer search instead of hashing the
// key. Use it where one label set is evaluated against many selectors, or one
// selector against many label sets, and the labels change less often than
// they are read: an index, a policy evaluator. An Interner only grows; keys are
// never forgotten. It is safe for concurrent use. The zero Interner is ready
// to use; a nil *Interner is not (Compile and LabelSet panic on it, as
// methods of a nil *sync.Mutex do).
type Interner struct {
	mu  sync.RWMutex
	ids map[string]int32
}

// NewInterner returns an empty Interner.
func NewInterner() *Interner { return &Interner{ids: map[string]int32{}} }

func (in *Interner) id(key string) int32 {
	in.mu.RLock()
	id, ok := in.ids[key]
	in.mu.RUnlock()
	if ok {
		return id
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if id, ok := in.ids[key]; ok {
		return id
	}
	if in.ids == nil { // the zero Interner
		in.ids = map[string]int32{}
	}
	id = int32(len(in.ids))
	in.ids[key] = id
	return id
}

// Compiled is a selector whose label keys are resolved to an Interner's IDs.
// It evaluates only LabelSets of the same Interner (see Evaluate). The zero
// Compiled is all().
type Compiled struct {
	sel   Selector
	in    *Interner // whose IDs keyID holds
	nodes []node    // a copy of the selector's nodes with keyID set
}

// Compile resolves the selector's label keys.
func (in *Interner) Compile(s Selector) Compiled {
	p := s.prog()
	nodes := slices.Clone(p.nodes)
	for i := range nodes {
		if n := &nodes[i]; n.op > opGlobal && n.op < opAnd {
			n.keyID = in.id(n.key)
		}
	}
	return Compiled{sel: Selector{p: p}, in: in, nodes: nodes}
}

// Selector returns the selector that was compiled.
func (c Compiled) Selector() Selector { return c.sel }

// LabelSet is an immutable set of labels stored by key ID, built by an
// Interner. It also implements Labels, for plain selectors. A nil *LabelSet
// (and the zero LabelSet) has no labels.
type LabelSet struct {
	in   *Interner
	ids  []int32 // sorted
	vals []string
}

// LabelSet builds a label set from layers of labels, top first: a key in an
// earlier layer hides the same key in later ones (a pod's labels over its
// namespace's).
func (in *Interner) LabelSet(layers ...map[string]string) *LabelSet {
	n := 0
	for _, l := range layers {
		n += len(l)
	}
	type kv struct {
		id int32
		v  string
	}
	kvs := make([]kv, 0, n)
	for li, l := range layers {
		for k, v := range l {
			hidden := false
			for _, upper := range layers[:li] {
				if _, hidden = upper[k]; hidden {
					break
				}
			}
			if !hidden {
				kvs = append(kvs, kv{in.id(k), v})
			}
		}
	}
	slices.SortFunc(kvs, func(a, b kv) int { return int(a.id) - int(b.id) })
	ls := &LabelSet{in: in, ids: make([]int32, len(kvs)), vals: make([]string, len(kvs))}
	for i, e := range kvs {
		ls.ids[i], ls.vals[i] = e.id, e.v
	}
	return ls
}

// lookup finds a label by key ID: a scan for the usual handful of labels,
// a binary search beyond.
func (ls *LabelSet) lookup(id int32) (string, bool) {
	ids := ls.ids
	if len(ids) <= 8 {
		for i, x := range ids {
			if x >= id {
				if x == id {
					return ls.vals[i], true
				}
				break
			}
		}
		return "", false
	}
	lo, hi := 0, len(ids)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ids[mid] < id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(ids) && ids[lo] == id {
		return ls.vals[lo], true
	}
	return "", false
}

// Get implements Labels (by key, through the Interner; slower than
// Compiled.Evaluate).
func (ls *LabelSet) Get(key string) (string, bool) {
	if ls == nil || ls.in == nil {
		return "", false
	}
	ls.in.mu.RLock()
	id, ok := ls.in.ids[key]
	ls.in.mu.RUnlock()
	if !ok {
		return "", false
	}
	return ls.lookup(id)
}

// Len returns the number of labels (0 for a nil *LabelSet).
func (ls *LabelSet) Len() int {
	if ls == nil {
		return 0
	}
	return len(ls.ids)
}

// Evaluate reports whether the label set satisfies the selector. It does not
// allocate. A nil ls has no labels.
//
// The selector and the label set must come from the same Interner: key IDs
// mean nothing across Interners (ID 0 is "app" in one and "team" in another).
// A LabelSet built by another Interner makes Evaluate return false, whatever
// the selector, so a mix-up matches nothing rather than the wrong items; use
// Selector().Evaluate(ls) to evaluate across Interners, by key.
func (c Compiled) Evaluate(ls *LabelSet) bool {
	p := c.sel.p
	if p == nil {
		return true
	}
	if p.err != nil {
		return false
	}
	if ls == nil {
		var empty LabelSet
		return evalCompiled(c.nodes, p.kids, p.root, &empty)
	}
	if ls.in != c.in && ls.in != nil { // the zero LabelSet has no labels
		return false
	}
	return evalCompiled(c.nodes, p.kids, p.root, ls)
}

// evalCompiled is program.eval reading labels by key ID.
func evalCompiled(nodes []node, kids []int32, i int32, ls *LabelSet) bool {
	n := &nodes[i]
	if n.op < opAnd {
		if n.op <= opGlobal {
			return !n.neg
		}
		v, ok := ls.lookup(n.keyID)
		return n.test(v, ok) != n.neg
	}
	stopOn := n.op == opOr
	for _, k := range kids[n.first : n.first+n.n] {
		ch := &nodes[k]
		var r bool
		switch {
		case ch.op <= opGlobal:
			r = !ch.neg
		case ch.op < opAnd:
			v, ok := ls.lookup(ch.keyID)
			r = ch.test(v, ok) != ch.neg
		default:
			r = evalCompiled(nodes, kids, k, ls)
		}
		if r == stopOn {
			return stopOn != n.neg
		}
	}
	return stopOn == n.neg
}

var _ Labels = (*LabelSet)(nil)
