package iptables

import (
	"fmt"
	"strings"
)

// The check of jump loops at set time. Both kernels refuse a table in
// which a kernel chain reaches a loop of jumps and gotos between user
// chains (ELOOP; legacy at COMMIT, nft at the rule closing the path;
// every owned rule has its hash comment, a match, so legacy's walk does
// not stop at it), and an unreached loop is accepted. A call that would
// make a hook reach a loop is refused, naming the loop and the hook: a
// loop newly reached goes through, or lies below, a chain the call
// changes, so only those are walked down (O(the chains they reach)); the
// kernel chains are walked (O(table)) only once a loop is found.

// loopView is the desired state of one table as a call would leave it:
// set and hook override t's desired chains and hooks, drop removes
// chains.
type loopView struct {
	t     *IPTables
	table Table
	set   map[chainKey]renderedChain
	drop  map[string]bool
	name  string // an owned chain whose rules are nameC (a single SetChain)
	nameC renderedChain
	hook  string // a kernel chain whose rules are hookRC
	hookC renderedChain

	state map[string]uint8 // 1 on the path, 2 done, 3 done with a loop below
	path  []string
	loop  []string
}

// rules returns the desired rules of chain (owned or kernel).
func (v *loopView) rules(chain string) (renderedChain, bool) {
	if isBuiltin(v.table, chain) {
		if chain == v.hook {
			return v.hookC, true
		}
		rc, ok := v.t.hooks[chainKey{v.table, chain}]
		return rc, ok
	}
	if chain == v.name {
		return v.nameC, true
	}
	k := chainKey{v.table, chain}
	if rc, ok := v.set[k]; ok {
		return rc, true
	}
	if v.drop[chain] {
		return renderedChain{}, false
	}
	return v.t.chains.Desired().Get(k)
}

// below reports whether a loop is reachable from chain.
func (v *loopView) below(chain string) bool {
	switch v.state[chain] {
	case 1:
		if v.loop == nil {
			i := len(v.path) - 1
			for v.path[i] != chain {
				i--
			}
			v.loop = append(append([]string(nil), v.path[i:]...), chain)
		}
		return true
	case 2:
		return false
	case 3:
		return true
	}
	rc, ok := v.rules(chain)
	if !ok || !v.jumpsOwned(rc) {
		return false // no allocation for a chain without jumps
	}
	if v.state == nil {
		v.state = map[string]uint8{}
	}
	v.state[chain] = 1
	v.path = append(v.path, chain)
	found := false
	for i := range rc.rules() {
		if to := jumpTarget(rc.spec(i)); to != "" && v.t.owned(to) && v.below(to) {
			found = true
			break
		}
	}
	v.path = v.path[:len(v.path)-1]
	v.state[chain] = 2
	if found {
		v.state[chain] = 3
	}
	return found
}

// jumpsOwned reports whether a rule of rc jumps or goes to an owned chain.
func (v *loopView) jumpsOwned(rc renderedChain) bool {
	for i := range rc.rules() {
		if to := jumpTarget(rc.spec(i)); to != "" && v.t.owned(to) {
			return true
		}
	}
	return false
}

// hookReaching returns the kernel chain of the table whose desired hook
// reaches chain, "" when none does.
func (v *loopView) hookReaching(chain string) string {
	seen := map[string]bool{}
	var reaches func(c string) bool
	reaches = func(c string) bool {
		if c == chain {
			return true
		}
		if seen[c] {
			return false
		}
		seen[c] = true
		rc, ok := v.rules(c)
		if !ok {
			return false
		}
		for i := range rc.rules() {
			if to := jumpTarget(rc.spec(i)); to != "" && v.t.owned(to) && reaches(to) {
				return true
			}
		}
		return false
	}
	for _, k := range builtinChains[v.table] {
		if _, ok := v.rules(k); ok && reaches(k) {
			return k
		}
	}
	return ""
}

// check returns an ErrInvalidRule for a loop below one of starts that a
// hook reaches.
func (v *loopView) check(starts ...string) error {
	for _, s := range starts {
		v.loop = nil
		if !v.below(s) {
			continue
		}
		if v.loop == nil { // found by an earlier start: walk again for its path
			v.state, v.path = nil, v.path[:0]
			v.below(s)
		}
		if h := v.hookReaching(v.loop[0]); h != "" {
			return fmt.Errorf("chain %s: %w: jump loop %s would be reached from kernel chain %s: both kernels refuse the table (ELOOP)",
				s, ErrInvalidRule, strings.Join(v.loop, " -> "), h)
		}
	}
	return nil
}
