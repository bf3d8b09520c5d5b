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
// or Goto (chain set) or a NAT target (target and allowed set).
type natRef struct {
	rule    int
	chain   string
	target  string
	allowed uint8
}

// natNode holds the natRefs of one nat chain (owned, or a kernel chain's
// hook rules), in rule order.
type natNode []natRef

// natNodeOf returns the natRefs of rules, nil when there are none.
func natNodeOf(rules []Rule) natNode {
	var n natNode
	for i, r := range rules {
		switch a := r.Action.(type) {
		case Jump:
			n = append(n, natRef{rule: i, chain: a.Chain})
		case Goto:
			n = append(n, natRef{rule: i, chain: a.Chain})
		case DNAT:
			n = append(n, natRef{rule: i, target: "DNAT", allowed: natAllowed("DNAT")})
		case SNAT:
			n = append(n, natRef{rule: i, target: "SNAT", allowed: natAllowed("SNAT")})
		case Masquerade:
			n = append(n, natRef{rule: i, target: "MASQUERADE", allowed: natAllowed("MASQUERADE")})
		}
	}
	return n
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
	nodes map[string]natNode
	// parents maps a chain to the chains (owned or kernel) with a rule
	// jumping or going to it, and how many such rules each has.
	parents map[string]map[string]int32
}

// set makes n the natRefs of chain (nil removes them) and returns the
// previous ones.
func (g *natGraph) set(chain string, n natNode) natNode {
	old := g.nodes[chain]
	for _, r := range old {
		if r.chain == "" {
			continue
		}
		p := g.parents[r.chain]
		if p[chain]--; p[chain] == 0 {
			delete(p, chain)
			if len(p) == 0 {
				delete(g.parents, r.chain)
			}
		}
	}
	if n == nil {
		delete(g.nodes, chain)
		return old
	}
	if g.nodes == nil {
		g.nodes, g.parents = map[string]natNode{}, map[string]map[string]int32{}
	}
	g.nodes[chain] = n
	for _, r := range n {
		if r.chain == "" {
			continue
		}
		p := g.parents[r.chain]
		if p == nil {
			p = map[string]int32{}
			g.parents[r.chain] = p
		}
		p[chain]++
	}
	return old
}

// up returns the hooks reaching chain through the jumps of the graph
// (chain's own bit when it is a kernel chain) and, for each chain
// visited, the chain it was reached from (for the error's path).
func (g *natGraph) up(chain string) (uint8, map[string]string) {
	if b := natHookBit(chain); b != 0 {
		return b, nil
	}
	if len(g.parents[chain]) == 0 {
		return 0, nil
	}
	var m uint8
	from := map[string]string{chain: ""}
	queue := []string{chain}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		for p := range g.parents[c] {
			if _, ok := from[p]; ok {
				continue
			}
			from[p] = c
			if b := natHookBit(p); b != 0 {
				m |= b
			} else {
				queue = append(queue, p)
			}
		}
	}
	return m, from
}

// reachWalk walks down from changed chains; seen holds the hooks each
// chain was already checked for.
type reachWalk struct {
	g    *natGraph
	seen map[string]uint8
	// path holds the chains from the changed one to the current one,
	// rules the rule taken in each chain of path but the last.
	path  []string
	rules []int
}

// down checks the NAT targets chain reaches for the hooks in m. It
// returns the offending NAT target's ref, or ok (path then as before).
func (w *reachWalk) down(chain string, m uint8) (natRef, bool) {
	n, ok := w.g.nodes[chain]
	if !ok {
		return natRef{}, true // a foreign or missing chain: unknown
	}
	if m &^= w.seen[chain]; m == 0 {
		return natRef{}, true
	}
	w.seen[chain] |= m
	w.path = append(w.path, chain)
	for _, r := range n {
		if r.chain == "" {
			if m&^r.allowed != 0 {
				return r, false
			}
			continue
		}
		w.rules = append(w.rules, r.rule)
		if bad, ok := w.down(r.chain, m); !ok {
			return bad, false
		}
		w.rules = w.rules[:len(w.rules)-1]
	}
	w.path = w.path[:len(w.path)-1]
	return natRef{}, true
}

// check checks the changed chains (in order) of the graph: a NAT target
// they reach, or hold, must be reached only from its hooks. The error
// (ErrInvalidRule) names the changed chain and its rule that leads to
// the NAT target, the NAT target's chain and rule, the hook and the path
// of chains from the hook.
func (g *natGraph) check(changed []string) error {
	w := reachWalk{g: g, seen: map[string]uint8{}}
	for _, c := range changed {
		if g.nodes[c] == nil {
			continue
		}
		m, from := g.up(c)
		if m == 0 {
			continue
		}
		w.path, w.rules = w.path[:0], w.rules[:0]
		bad, ok := w.down(c, m)
		if ok {
			continue
		}
		hook := natHookNames[bits.TrailingZeros8(m&^bad.allowed)]
		var path []string
		for x := hook; x != c && x != ""; x = from[x] {
			path = append(path, x) // from the hook down to c
		}
		path = append(path, w.path...)
		rule := bad.rule
		if len(w.rules) > 0 {
			rule = w.rules[0]
		}
		return fmt.Errorf("chain %s rule %d: %w", c, rule, invalid(
			"%s (chain %s rule %d) would be reached from kernel chain %s (%s): it is allowed only in %s and the chains they reach",
			bad.target, w.path[len(w.path)-1], bad.rule, hook, strings.Join(path, " -> "), strings.Join(natHooks[bad.target], ", ")))
	}
	return nil
}
