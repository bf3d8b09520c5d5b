package iptables

import (
	"fmt"
	"math/bits"
	"strings"
)

// The Fake's check of the NAT targets' hooks through jumps, as the
// kernel makes it when a nat table is committed (both backends refuse
// such a table, checked by TestFakeMatchesKernel): a DNAT, SNAT,
// MASQUERADE or REDIRECT rule reached through jumps and gotos from a
// kernel chain that is not one of its hooks fails the section.
// iptables-legacy's kernel (mark_source_chains) walks each chain only
// up to its first rule without matches whose verdict is ACCEPT, DROP or
// RETURN, so rules after it are not reached; nft's walks every rule.
// Legacy names the COMMIT line; nft, which checks the final table and
// then, when it is invalid, replays the batch checking after each rule,
// names the first rule after which the table was invalid (and only when
// no rule of the section failed otherwise).

// newRule returns the fakeRule of a rule added to the section's table.
func (x *fakeTx) newRule(spec, jump string, args []string) fakeRule {
	r := fakeRule{spec: spec, jump: jump}
	if x.table == NAT {
		r.nat = natAllowed(jumpOf(args))
	}
	r.uncond = len(args) == 2 && args[0] == "-j" && (args[1] == "ACCEPT" || args[1] == "DROP" || args[1] == "RETURN")
	return r
}

// fakeReach is one check of a nat table.
type fakeReach struct {
	x    *fakeTx
	seen map[string]uint8 // hooks each chain was walked for
	ends map[string]int   // legacy: how many rules of a chain are walked
}

func (x *fakeTx) newReach() *fakeReach {
	return &fakeReach{x: x, seen: map[string]uint8{}, ends: map[string]int{}}
}

// walked returns the rules of chain c the kernel's check walks.
func (s *fakeReach) walked(name string, c *fakeChain) []fakeRule {
	if s.x.nft {
		return c.rules
	}
	end, ok := s.ends[name]
	if !ok {
		end = len(c.rules)
		for i, r := range c.rules {
			if r.uncond {
				end = i + 1
				break
			}
		}
		s.ends[name] = end
	}
	return c.rules[:end]
}

// up returns the nat kernel chains reaching chain.
func (s *fakeReach) up(chain string) uint8 {
	if b := natHookBit(chain); b != 0 {
		return b
	}
	var m uint8
	seen := map[string]bool{chain: true}
	queue := []string{chain}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		for p := range s.x.t.parents[c] {
			if seen[p] {
				continue
			}
			pc := s.x.t.chains[p]
			if w := s.walked(p, pc); len(w) < len(pc.rules) && !containsJump(w, c) {
				continue // the jump is after the walk's end (legacy)
			}
			seen[p] = true
			if b := natHookBit(p); b != 0 {
				m |= b
			} else {
				queue = append(queue, p)
			}
		}
	}
	return m
}

func containsJump(rules []fakeRule, chain string) bool {
	for _, r := range rules {
		if r.jump == chain {
			return true
		}
	}
	return false
}

// down returns an error message for a NAT target chain reaches that the
// hooks in m may not reach, "" when there is none.
func (s *fakeReach) down(chain string, m uint8) string {
	c := s.x.t.chains[chain]
	if c == nil {
		return ""
	}
	if m &^= s.seen[chain]; m == 0 {
		return ""
	}
	s.seen[chain] |= m
	for _, r := range s.walked(chain, c) {
		if bad := m &^ r.nat; r.nat != 0 && bad != 0 {
			args, _ := splitArgs(r.spec)
			return fmt.Sprintf("%s: Invalid argument (in %s, reached from %s)", jumpOf(args), chain, natHookNames[bits.TrailingZeros8(bad)])
		}
		if r.jump != "" {
			if msg := s.down(r.jump, m); msg != "" {
				return msg
			}
		}
	}
	return ""
}

// reachError checks a nat section's table at COMMIT: a new NAT target
// reached from a wrong hook goes through a chain the section changed,
// so only those are walked (up to the hooks, down to the NAT targets).
func (x *fakeTx) reachError() string {
	if x.table != NAT {
		return ""
	}
	s := x.newReach()
	done := map[string]bool{}
	for _, u := range x.undo {
		if u.name == "" || done[u.name] {
			continue
		}
		done[u.name] = true
		if c := x.t.chains[u.name]; c == nil || c.gen != x.gen {
			continue
		}
		if m := s.up(u.name); m != 0 {
			if msg := s.down(u.name, m); msg != "" {
				return msg
			}
		}
	}
	return ""
}

// firstReachLine replays the section (its lines after the *table line,
// numbered from line+1) on the rolled back table and returns the line of
// the first rule after which the table fails the check, as
// iptables-nft-restore reports it (commit when none does). It rolls the
// replay back.
func (x *fakeTx) firstReachLine(section string, line, commit int) int {
	x.t.gen++
	x.gen, x.undo = x.t.gen, x.undo[:0]
	defer x.rollback()
	for rest := section; rest != ""; {
		var l string
		l, rest, _ = strings.Cut(rest, "\n")
		line++
		l = strings.TrimSpace(l)
		if l == "COMMIT" {
			break
		}
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if x.apply(l) != "" {
			break // not reached: every line applied before
		}
		if x.added < 0 {
			continue
		}
		r := x.t.chains[x.addedTo].rules[x.added]
		if r.nat == 0 && r.jump == "" {
			continue
		}
		s := x.newReach()
		m := s.up(x.addedTo)
		if m != 0 && (r.nat != 0 && m&^r.nat != 0 || r.jump != "" && s.down(r.jump, m) != "") {
			return line
		}
	}
	return commit
}
