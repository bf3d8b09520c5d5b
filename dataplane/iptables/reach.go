package iptables

import (
	"fmt"
	"math/bits"
	"strings"
)

// natHookBit returns the bit of a nat kernel chain in a hook mask (0 for
// any other chain): PREROUTING 1, INPUT 2, OUTPUT 4, POSTROUTING 8.
func natHookBit(chain string) uint8 {
	switch chain {
	case "PREROUTING":
		return 1
	case "INPUT":
		return 2
	case "OUTPUT":
		return 4
	case "POSTROUTING":
		return 8
	}
	return 0
}

// natHookNames are the nat kernel chains by bit position.
var natHookNames = [4]string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}

// natAllowed returns the hook mask a NAT target may be reached from (the
// kernel's target hook masks: natHooks; REDIRECT has DNAT's), 0 for any
// other target.
func natAllowed(target string) uint8 {
	if target == "REDIRECT" {
		target = "DNAT"
	}
	var m uint8
	for _, h := range natHooks[target] {
		m |= natHookBit(h)
	}
	return m
}

// natRef is a rule of a nat chain that matters for reachability: a Jump
// or Goto (chain set; to is that chain's node while the ref is in the
// graph) or a NAT target (target set, allowed its hooks).
type natRef struct {
	rule    int32
	allowed uint8
	target  natTarget
	chain   string
	to      *natChain
}

// natTarget is the NAT target of a natRef, natNone for a jump.
type natTarget uint8

const (
	natNone natTarget = iota
	natDNAT
	natSNAT
	natMasquerade
)

// natTargetNames are the targets' names by natTarget.
var natTargetNames = [...]string{natNone: "", natDNAT: "DNAT", natSNAT: "SNAT", natMasquerade: "MASQUERADE"}

// natNode holds the natRefs of one nat chain (owned, or a kernel chain's
// hook rules), in rule order. A single natRef, the common case (an
// endpoint's DNAT, a hook's jump), is held inline without allocating.
type natNode struct {
	one  natRef
	many []natRef // when there are two or more
}

// len returns the number of natRefs.
func (n *natNode) len() int {
	if n.many != nil {
		return len(n.many)
	}
	if n.one.chain != "" || n.one.target != natNone {
		return 1
	}
	return 0
}

// ref returns natRef i (0 <= i < len) for changing.
func (n *natNode) ref(i int) *natRef {
	if n.many != nil {
		return &n.many[i]
	}
	return &n.one
}

// natRefOf returns the natRef of rule i, false for a rule that does not
// matter for reachability (natRefCount counts the others).
func natRefOf(i int, r Rule) (natRef, bool) {
	switch a := r.Action.(type) {
	case Jump:
		return natRef{rule: int32(i), chain: a.Chain}, true
	case Goto:
		return natRef{rule: int32(i), chain: a.Chain}, true
	case DNAT:
		return natRef{rule: int32(i), target: natDNAT, allowed: natAllowed("DNAT")}, true
	case SNAT:
		return natRef{rule: int32(i), target: natSNAT, allowed: natAllowed("SNAT")}, true
	case Masquerade:
		return natRef{rule: int32(i), target: natMasquerade, allowed: natAllowed("MASQUERADE")}, true
	}
	return natRef{}, false
}

// natRefCount returns how many natRefs rules have.
func natRefCount(rules []Rule) int {
	count := 0
	for _, r := range rules {
		switch r.Action.(type) {
		case Jump, Goto, DNAT, SNAT, Masquerade:
			count++
		}
	}
	return count
}

// natNodeOf returns the natRefs of rules, empty when there are none. It
// allocates only for two or more, once.
func natNodeOf(rules []Rule) natNode { return natNodeIn(rules, nil) }

// natNodeIn is natNodeOf taking two or more natRefs from the room left
// in arena (when there is enough), so that a batch allocates them once.
func natNodeIn(rules []Rule, arena *[]natRef) natNode {
	var n natNode
	count := natRefCount(rules)
	if count < 2 {
		for i, r := range rules {
			if ref, ok := natRefOf(i, r); ok {
				n.one = ref
				break
			}
		}
		return n
	}
	var many []natRef
	if arena != nil && cap(*arena)-len(*arena) >= count {
		a := *arena
		many = a[len(a) : len(a) : len(a)+count]
		*arena = a[:len(a)+count]
	} else {
		many = make([]natRef, 0, count)
	}
	for i, r := range rules {
		if ref, ok := natRefOf(i, r); ok {
			many = append(many, ref)
		}
	}
	n.many = many
	return n
}

// parentSet counts, for one chain, the rules of each chain (K: its name
// or node) jumping or going to it. The common single parent is held
// inline; a map is made only for a second one. Its zero value is empty.
type parentSet[K comparable] struct {
	one  K
	n    int32       // rules of one; 0 when the set is empty
	more map[K]int32 // the other parents, nil when none
}

// add adds d to the rules of from (removing from at 0).
func (p *parentSet[K]) add(from K, d int32) {
	switch {
	case p.n == 0:
		p.one, p.n = from, d
	case p.one == from:
		if p.n += d; p.n == 0 {
			var zero K
			p.one = zero
			for k, v := range p.more { // promote another parent
				p.one, p.n = k, v
				delete(p.more, k)
				break
			}
			if len(p.more) == 0 {
				p.more = nil
			}
		}
	default:
		if p.more == nil {
			p.more = map[K]int32{}
		}
		if p.more[from] += d; p.more[from] == 0 {
			delete(p.more, from)
			if len(p.more) == 0 {
				p.more = nil
			}
		}
	}
}

// empty reports whether no chain jumps to the chain.
func (p *parentSet[K]) empty() bool { return p.n == 0 }

// natChain is a chain of the natGraph: its natRefs, the chains jumping
// to it, and the marks of the walks (valid when their generation is the
// graph's current one), so that a check allocates nothing and follows
// pointers instead of looking names up.
type natChain struct {
	name    string
	hook    uint8 // natHookBit(name)
	seen    uint8 // down: the hooks the chain was checked for
	node    natNode
	parents parentSet[*natChain]
	upGen   uint64
	downGen uint64
	from    *natChain // up: the chain it was reached from (nil: the start)
}

// natGraph is the desired nat table as far as the kernel's hook check
// goes: the jumps and NAT targets of each owned chain and hook, and for
// each chain the chains jumping to it. A NAT target may only be reached
// (through any jumps and gotos) from the kernel chains of its hooks; the
// kernel checks that when the table is committed, so SetChain, SetChains,
// ReplaceChains and SetHook check it here, from the changed chains only:
// up through the jumping chains to the hooks that reach a changed chain,
// down through its jumps to the NAT targets it reaches. Its zero value is
// empty.
type natGraph struct {
	// chains holds every chain with natRefs or jumped to.
	chains map[string]*natChain
	// free holds released natChains for reuse; slab the rest of the last
	// block allocated, so that a chain costs no allocation of its own.
	free    []*natChain
	slab    []natChain
	upGen   uint64
	downGen uint64
	// queue, path and rules are the walks' scratch.
	queue []*natChain
	path  []*natChain
	rules []int
}

// intern returns the natChain of name, made if needed.
func (g *natGraph) intern(name string) *natChain {
	if c := g.chains[name]; c != nil {
		return c
	}
	return g.add(name)
}

// grow makes room for n more chains.
func (g *natGraph) grow(n int) {
	if g.chains == nil {
		g.chains = make(map[string]*natChain, n)
	}
}

// add makes the natChain of name, which is not in the graph.
func (g *natGraph) add(name string) *natChain {
	if g.chains == nil {
		g.chains = map[string]*natChain{}
	}
	var c *natChain
	if n := len(g.free); n > 0 {
		c, g.free = g.free[n-1], g.free[:n-1]
	} else {
		if len(g.slab) == 0 {
			g.slab = make([]natChain, 256)
		}
		c, g.slab = &g.slab[0], g.slab[1:]
	}
	*c = natChain{name: name, hook: natHookBit(name)}
	g.chains[name] = c
	return c
}

// release removes c from the graph when it has neither natRefs nor
// parents.
func (g *natGraph) release(c *natChain) {
	if c.node.len() == 0 && c.parents.empty() {
		delete(g.chains, c.name)
		*c = natChain{}
		g.free = append(g.free, c)
	}
}

// set makes n the natRefs of chain (empty removes them) and returns the
// previous ones (their nodes are looked up again when they are set
// back).
func (g *natGraph) set(chain string, n natNode) natNode {
	c := g.chains[chain]
	if c == nil {
		if n.len() == 0 {
			return natNode{}
		}
		c = g.add(chain)
	}
	old := c.node
	for i := range old.len() {
		if r := old.ref(i); r.to != nil {
			r.to.parents.add(c, -1)
			if r.to != c { // c itself is released last
				g.release(r.to)
			}
			r.to = nil
		}
	}
	for i := range n.len() {
		if r := n.ref(i); r.chain != "" {
			r.to = g.intern(r.chain)
			r.to.parents.add(c, 1)
		}
	}
	c.node = n
	g.release(c)
	return old
}

// up returns the hooks reaching c through the jumps of the graph (c's
// own bit when it is a kernel chain); for each chain visited, from holds
// the chain it was reached from (for the error's path) until the next
// up.
func (g *natGraph) up(c *natChain) uint8 {
	if c.hook != 0 {
		return c.hook
	}
	if c.parents.empty() {
		return 0
	}
	g.upGen++
	c.upGen, c.from = g.upGen, nil
	var m uint8
	queue := append(g.queue[:0], c)
	for i := 0; i < len(queue); i++ {
		x := queue[i]
		if !x.parents.empty() {
			queue = g.upVisit(x.parents.one, x, queue, &m)
		}
		for p := range x.parents.more {
			queue = g.upVisit(p, x, queue, &m)
		}
	}
	clear(queue)
	g.queue = queue[:0]
	return m
}

// upVisit visits p, a parent of c, in up's walk: a kernel chain is added
// to m, another chain not yet visited to queue.
func (g *natGraph) upVisit(p, c *natChain, queue []*natChain, m *uint8) []*natChain {
	if p.upGen == g.upGen {
		return queue
	}
	p.upGen, p.from = g.upGen, c
	if p.hook != 0 {
		*m |= p.hook
		return queue
	}
	return append(queue, p)
}

// down checks the NAT targets c reaches for the hooks in m, after the
// chains already checked in this check. It returns the offending NAT
// target's ref, or ok (g.path and g.rules then as before).
func (g *natGraph) down(c *natChain, m uint8) (natRef, bool) {
	if c.downGen != g.downGen {
		c.downGen, c.seen = g.downGen, 0
	}
	if m &^= c.seen; m == 0 {
		return natRef{}, true
	}
	c.seen |= m
	g.path = append(g.path, c)
	for i := range c.node.len() {
		r := c.node.ref(i)
		if r.to == nil {
			if m&^r.allowed != 0 {
				return *r, false
			}
			continue
		}
		g.rules = append(g.rules, int(r.rule))
		if bad, ok := g.down(r.to, m); !ok {
			return bad, false
		}
		g.rules = g.rules[:len(g.rules)-1]
	}
	g.path = g.path[:len(g.path)-1]
	return natRef{}, true
}

// check checks the changed chains (in order) of the graph: a NAT target
// they reach, or hold, must be reached only from its hooks. The error
// (ErrInvalidRule) names the changed chain and its rule that leads to
// the NAT target, the NAT target's chain and rule, the hook and the path
// of chains from the hook. It allocates only for the error.
func (g *natGraph) check(changed ...string) error {
	if len(changed) > 1 && 2*len(changed) >= len(g.chains) && g.fromHooks() {
		return nil
	}
	g.downGen++
	for _, name := range changed {
		c := g.chains[name]
		if c == nil || c.node.len() == 0 {
			continue
		}
		m := g.up(c)
		if m == 0 {
			continue
		}
		g.path, g.rules = g.path[:0], g.rules[:0]
		bad, ok := g.down(c, m)
		if ok {
			continue
		}
		hook := natHookNames[bits.TrailingZeros8(m&^bad.allowed)]
		var path []string
		for x := g.chains[hook]; x != c && x != nil; x = x.from {
			path = append(path, x.name) // from the hook down to c
		}
		for _, x := range g.path {
			path = append(path, x.name)
		}
		rule := int(bad.rule)
		if len(g.rules) > 0 {
			rule = g.rules[0]
		}
		target := natTargetNames[bad.target]
		err := fmt.Errorf("chain %s rule %d: %w", name, rule, invalid(
			"%s (chain %s rule %d) would be reached from kernel chain %s (%s): it is allowed only in %s and the chains they reach",
			target, g.path[len(g.path)-1].name, bad.rule, hook, strings.Join(path, " -> "), strings.Join(natHooks[target], ", ")))
		clear(g.path)
		return err
	}
	return nil
}

// fromHooks reports whether every NAT target reached from the nat kernel
// chains is reached only from its hooks: a walk of the whole graph, that
// check makes first for a batch changing most chains (it costs about one
// visit a chain, where the walks from each changed chain cost a few).
// Every path that the walks from the changed chains would find starts
// at a hook, so when it finds none they find none either; when it finds
// one, they name it.
func (g *natGraph) fromHooks() bool {
	g.downGen++
	for _, hook := range natHookNames {
		if c := g.chains[hook]; c != nil {
			g.path, g.rules = g.path[:0], g.rules[:0]
			if _, ok := g.down(c, c.hook); !ok {
				clear(g.path)
				return false
			}
		}
	}
	return true
}
