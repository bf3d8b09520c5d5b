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

// fakeReach is one check of a nat table. Its marks are on the chains
// (fakeChain's), numbered by the table's walk, and up's queue is the
// table's, so that it allocates nothing.
type fakeReach struct {
	x    *fakeTx
	walk uint64 // the number of down's and walked's marks
}

func (x *fakeTx) newReach() fakeReach {
	x.t.walk++
	return fakeReach{x: x, walk: x.t.walk}
}

// walked returns the rules of chain c the kernel's check walks.
func (s *fakeReach) walked(c *fakeChain) []fakeRule {
	if s.x.nft {
		return c.rules
	}
	if c.endWalk != s.walk {
		c.endWalk, c.end = s.walk, len(c.rules)
		for i, r := range c.rules {
			if r.uncond {
				c.end = i + 1
				break
			}
		}
	}
	return c.rules[:c.end]
}

// up returns the nat kernel chains reaching chain.
func (s *fakeReach) up(chain string) uint8 {
	if b := natHookBit(chain); b != 0 {
		return b
	}
	t := s.x.t
	t.walk++
	walk := t.walk
	if c := t.chains[chain]; c != nil {
		c.upWalk = walk
	}
	var m uint8
	queue := append(t.queue[:0], chain)
	for i := 0; i < len(queue); i++ {
		c := queue[i]
		cc := t.chains[c]
		if cc == nil {
			continue
		}
		ps := &cc.parents
		if !ps.empty() {
			queue = s.upVisit(ps.one, c, walk, queue, &m)
		}
		for p := range ps.more {
			queue = s.upVisit(p, c, walk, queue, &m)
		}
	}
	t.queue = queue[:0]
	return m
}

// upVisit visits p, a parent of c, in up's walk: a kernel chain is added
// to m, another chain not yet visited to queue.
func (s *fakeReach) upVisit(p, c string, walk uint64, queue []string, m *uint8) []string {
	pc := s.x.t.chains[p]
	if pc.upWalk == walk {
		return queue
	}
	if w := s.walked(pc); len(w) < len(pc.rules) && !containsJump(w, c) {
		return queue // the jump is after the walk's end (legacy)
	}
	pc.upWalk = walk
	if b := natHookBit(p); b != 0 {
		*m |= b
		return queue
	}
	return append(queue, p)
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
	if c.downWalk != s.walk {
		c.downWalk, c.seen = s.walk, 0
	}
	if m &^= c.seen; m == 0 {
		return ""
	}
	c.seen |= m
	for _, r := range s.walked(c) {
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
	if x.changedMost() && x.fromHooks() {
		return ""
	}
	s := x.newReach()
	for _, u := range x.undo {
		if u.refs != nil {
			continue // a reference's undo
		}
		c := x.t.chains[u.name]
		if c == nil || c.gen != x.gen || c.doneWalk == s.walk {
			continue
		}
		c.doneWalk = s.walk
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
// With loop set it looks for the first rule after which a kernel chain
// reaches a jump loop (fakeloop.go) instead.
func (x *fakeTx) firstReachLine(section string, line, commit int, loop bool) int {
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
		if loop {
			if r.jump != "" && x.loopFrom(x.addedTo) != "" {
				return line
			}
			continue
		}
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

// changedMost reports whether the section changed half of the table's
// chains or more (counting an undo a chain).
func (x *fakeTx) changedMost() bool {
	n := 0
	for _, u := range x.undo {
		if u.refs == nil {
			n++
		}
	}
	return 2*n >= len(x.t.chains)
}

// fromHooks reports whether every NAT target reached from the nat kernel
// chains is reached only from its hooks: a walk of the whole table, that
// reachError makes first for a section changing most chains (it costs
// about one visit a chain, where the walks from each changed chain cost
// a few). Every path the walks from the changed chains would find starts
// at a kernel chain, so when it finds none they find none either; when
// it finds one, they name it.
func (x *fakeTx) fromHooks() bool {
	s := x.newReach()
	for _, hook := range natHookNames {
		if x.t.chains[hook] != nil && s.down(hook, natHookBit(hook)) != "" {
			return false
		}
	}
	return true
}
