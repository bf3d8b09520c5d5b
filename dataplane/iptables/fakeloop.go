package iptables

import (
	"fmt"
	"iter"
	"slices"
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

// kernelJumps yields the chains c's rules jump or go to, up to where the
// kernel's walk stops (loopRules); nil for a missing chain.
func (x *fakeTx) kernelJumps(chain string) iter.Seq[string] {
	c := x.t.chains[chain]
	if c == nil {
		return nil
	}
	return func(yield func(string) bool) {
		for _, r := range x.loopRules(c) {
			if r.jump != "" && !yield(r.jump) {
				return
			}
		}
	}
}

// kernelReaching returns a kernel chain of the table reaching chain (the
// first by name), "" when none does.
func (x *fakeTx) kernelReaching(chain string) string {
	var kernel []string
	for name, c := range x.t.chains {
		if c.policy != "-" {
			kernel = append(kernel, name)
		}
	}
	slices.Sort(kernel)
	return reaching(chain, kernel, x.kernelJumps)
}

// loopFrom returns an error message for a loop reachable from one of
// starts that a kernel chain reaches, "" when there is none.
func (x *fakeTx) loopFrom(starts ...string) string {
	w := loopSearch{next: x.kernelJumps}
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
