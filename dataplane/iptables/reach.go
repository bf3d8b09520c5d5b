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
// or Goto (chain set) or a NAT target (target set, allowed its hooks).
type natRef struct {
	rule    int32
	allowed uint8
	target  natTarget
	chain   string
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

// at returns natRef i (0 <= i < len).
func (n *natNode) at(i int) natRef {
	if n.many != nil {
		return n.many[i]
	}
	return n.one
}

// natRefOf returns the natRef of rule i, false for a rule that does not
// matter for reachability.
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

// natNodeOf returns the natRefs of rules, empty when there are none. It
// allocates only for two or more, once.
func natNodeOf(rules []Rule) natNode {
	var n natNode
	count := 0
	for i, r := range rules {
		if ref, ok := natRefOf(i, r); ok {
			if count == 0 {
				n.one = ref
			}
			count++
		}
	}
	if count < 2 {
		return n
	}
	n.many = make([]natRef, 0, count)
	for i, r := range rules {
		if ref, ok := natRefOf(i, r); ok {
			n.many = append(n.many, ref)
		}
	}
	n.one = natRef{}
	return n
}

// parentSet counts, for one chain, the rules of each chain jumping or
// going to it. The common single parent is held inline; a map is made
// only for a second one. Its zero value is empty.
type parentSet struct {
	one  string
	n    int32            // rules of one; 0 when the set is empty
	more map[string]int32 // the other parents, nil when none
}

// add adds d to the rules of from (removing from at 0).
func (p *parentSet) add(from string, d int32) {
	switch {
	case p.n == 0:
		p.one, p.n = from, d
	case p.one == from:
		if p.n += d; p.n == 0 {
			p.one = ""
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
			p.more = map[string]int32{}
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
func (p *parentSet) empty() bool { return p.n == 0 }

// natChain is a chain of the natGraph: its natRefs, the chains jumping
// to it, and the marks of the walks (valid when their generation is the
// graph's current one), so that a check allocates nothing.
type natChain struct {
	node    natNode
	parents parentSet
	upGen   uint64
	downGen uint64
	seen    uint8  // down: the hooks the chain was checked for
	from    string // up: the chain it was reached from ("" for the start)
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
	// chains holds every chain with natRefs or jumped to (values, so that
	// a chain costs no allocation of its own).
	chains  map[string]natChain
	upGen   uint64
	downGen uint64
	// queue, path and rules are the walks' scratch.
	queue []string
	path  []string
	rules []int
}

// set makes n the natRefs of chain (empty removes them) and returns the
// previous ones.
func (g *natGraph) set(chain string, n natNode) natNode {
	if g.chains == nil {
		g.chains = map[string]natChain{}
	}
	c := g.chains[chain]
	old := c.node
	for i := range old.len() {
		if r := old.at(i); r.chain != "" {
			g.addParent(r.chain, chain, -1)
		}
	}
	for i := range n.len() {
		if r := n.at(i); r.chain != "" {
			g.addParent(r.chain, chain, 1)
		}
	}
	c = g.chains[chain] // a rule may jump to its own chain
	c.node = n
	g.store(chain, c)
	return old
}

// addParent adds d to the rules of from jumping to chain.
func (g *natGraph) addParent(chain, from string, d int32) {
	c := g.chains[chain]
	c.parents.add(from, d)
	g.store(chain, c)
}

// store writes c, or removes it when it has neither natRefs nor parents.
func (g *natGraph) store(name string, c natChain) {
	if c.node.len() == 0 && c.parents.empty() {
		delete(g.chains, name)
		return
	}
	g.chains[name] = c
}

// up returns the hooks reaching chain through the jumps of the graph
// (chain's own bit when it is a kernel chain); for each chain visited,
// from holds the chain it was reached from (for the error's path) until
// the next up.
func (g *natGraph) up(chain string) uint8 {
	if b := natHookBit(chain); b != 0 {
		return b
	}
	start, ok := g.chains[chain]
	if !ok || start.parents.empty() {
		return 0
	}
	g.upGen++
	start.upGen, start.from = g.upGen, ""
	g.chains[chain] = start
	var m uint8
	queue := append(g.queue[:0], chain)
	for i := 0; i < len(queue); i++ {
		c := queue[i]
		p := g.chains[c].parents
		if !p.empty() {
			queue = g.upVisit(p.one, c, queue, &m)
		}
		for name := range p.more {
			queue = g.upVisit(name, c, queue, &m)
		}
	}
	g.queue = queue[:0]
	return m
}

// upVisit visits name, a parent of c, in up's walk: a kernel chain is
// added to m, another chain not yet visited to queue.
func (g *natGraph) upVisit(name, c string, queue []string, m *uint8) []string {
	pc := g.chains[name]
	if pc.upGen == g.upGen {
		return queue
	}
	pc.upGen, pc.from = g.upGen, c
	g.chains[name] = pc
	if b := natHookBit(name); b != 0 {
		*m |= b
		return queue
	}
	return append(queue, name)
}

// down checks the NAT targets chain reaches for the hooks in m, after
// the chains already checked in this check. It returns the offending NAT
// target's ref, or ok (g.path and g.rules then as before).
func (g *natGraph) down(chain string, m uint8) (natRef, bool) {
	c, ok := g.chains[chain]
	if !ok {
		return natRef{}, true // a foreign or missing chain: unknown
	}
	if c.downGen != g.downGen {
		c.downGen, c.seen = g.downGen, 0
	}
	if m &^= c.seen; m == 0 {
		return natRef{}, true
	}
	c.seen |= m
	g.chains[chain] = c
	g.path = append(g.path, chain)
	for i := range c.node.len() {
		r := c.node.at(i)
		if r.chain == "" {
			if m&^r.allowed != 0 {
				return r, false
			}
			continue
		}
		g.rules = append(g.rules, int(r.rule))
		if bad, ok := g.down(r.chain, m); !ok {
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
	g.downGen++
	for _, c := range changed {
		if n := g.chains[c].node; n.len() == 0 {
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
		for x := hook; x != c && x != ""; x = g.chains[x].from {
			path = append(path, x) // from the hook down to c
		}
		path = append(path, g.path...)
		rule := int(bad.rule)
		if len(g.rules) > 0 {
			rule = g.rules[0]
		}
		target := natTargetNames[bad.target]
		return fmt.Errorf("chain %s rule %d: %w", c, rule, invalid(
			"%s (chain %s rule %d) would be reached from kernel chain %s (%s): it is allowed only in %s and the chains they reach",
			target, g.path[len(g.path)-1], bad.rule, hook, strings.Join(path, " -> "), strings.Join(natHooks[target], ", ")))
	}
	return nil
}
