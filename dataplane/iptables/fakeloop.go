package iptables

import (
	"fmt"
	"strings"
)

// The Fake's check of jump loops, as both kernels make it: a loop of
// jumps and gotos between user chains that a kernel chain reaches fails
// the section (ELOOP, "Too many links"); an unreached loop is accepted.
// iptables-legacy's kernel (mark_source_chains) finds it at COMMIT,
// walking each chain only up to its first rule without matches whose
// verdict is ACCEPT, DROP or RETURN; nft walks every rule and refuses the
// rule after which a kernel chain reaches the loop. Checked against both
// kernels by TestFakeMatchesKernel (loopInputs).

// loopWalk is one loop check: a chain's state is 1 while it is on the
// walk's path, 2 when done without a loop below it, 3 with one.
type loopWalk struct {
	x     *fakeTx
	state map[string]uint8
	path  []string
	loop  []string // the first loop found, from and back to its first chain
}

// loopRules returns the rules of c the kernel's walk follows.
func (x *fakeTx) loopRules(c *fakeChain) []fakeRule {
	if x.nft {
		return c.rules
	}
	for i, r := range c.rules {
		if r.uncond {
			return c.rules[:i+1]
		}
	}
	return c.rules
}

// below reports whether a loop is reachable from chain.
func (w *loopWalk) below(chain string) bool {
	switch w.state[chain] {
	case 1:
		if w.loop == nil {
			i := len(w.path) - 1
			for w.path[i] != chain {
				i--
			}
			w.loop = append(append([]string(nil), w.path[i:]...), chain)
		}
		return true
	case 2:
		return false
	case 3:
		return true
	}
	c := w.x.t.chains[chain]
	if c == nil {
		return false
	}
	w.state[chain] = 1
	w.path = append(w.path, chain)
	found := false
	for _, r := range w.x.loopRules(c) {
		if r.jump != "" && w.below(r.jump) {
			found = true
			break
		}
	}
	w.path = w.path[:len(w.path)-1]
	w.state[chain] = 2
	if found {
		w.state[chain] = 3
	}
	return found
}

// kernelReaching returns a kernel chain of the table reaching chain, ""
// when none does.
func (x *fakeTx) kernelReaching(chain string) string {
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
		cc := x.t.chains[c]
		if cc == nil {
			return false
		}
		for _, r := range x.loopRules(cc) {
			if r.jump != "" && reaches(r.jump) {
				return true
			}
		}
		return false
	}
	for name, c := range x.t.chains {
		if c.policy != "-" && reaches(name) {
			return name
		}
	}
	return ""
}

// loopFrom returns an error message for a loop reachable from one of
// starts that a kernel chain reaches, "" when there is none.
func (x *fakeTx) loopFrom(starts ...string) string {
	w := loopWalk{x: x, state: map[string]uint8{}}
	for _, s := range starts {
		w.loop = nil
		if !w.below(s) || w.loop == nil {
			continue
		}
		if k := x.kernelReaching(w.loop[0]); k != "" {
			return fmt.Sprintf("Too many links (loop %s, reached from %s)", strings.Join(w.loop, " -> "), k)
		}
	}
	return ""
}

// loopError checks a section's table at COMMIT: a loop newly reached
// goes through, or lies below, a chain the section changed.
func (x *fakeTx) loopError() string {
	var starts []string
	for _, u := range x.undo {
		if u.refs != nil {
			continue
		}
		if c := x.t.chains[u.name]; c != nil && c.gen == x.gen {
			starts = append(starts, u.name)
		}
	}
	return x.loopFrom(starts...)
}
