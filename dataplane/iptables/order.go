package iptables

import "strings"

// hubTargets is how many distinct chains of the same section a chain's
// rules must jump to for appendSection to treat it as a hub and declare
// it first (a dispatch chain such as kube-proxy's KUBE-SERVICES).
const hubTargets = 64

// declareBatch is how many chains appendSection declares back to back
// before writing their rules.
const declareBatch = 128

// sectionChain is one owned chain a table section declares: its name and
// the rules written into it (none for a chain that is only flushed, or
// flushed before its -X).
type sectionChain struct {
	name string
	rc   renderedChain
}

// appendSection appends the declarations (":C - [0:0]") and appends
// ("-A C spec") of one table section to b, chains sorted by name,
// in an order chosen for what iptables-nft-restore pays per line.
//
// The cost model. iptables-nft-restore (1.8.9, iptables/nft-cache.c:
// nft_cache_level_set calling cache_chain_list_insert for every command)
// remembers each chain name a command mentions — the chain of a
// declaration or an -A, and the target of a -j/-g to a user chain — in
// one linked list kept in strcmp order, found by walking it from its
// smallest name. A line therefore costs one string comparison per name
// already in the list that sorts before the names it mentions, and a
// comparison costs a cache miss unless the list's nodes lie together in
// memory (they are allocated as the names first appear, between the
// allocations for the rules parsed meanwhile). Writing every declaration
// in ascending order and then every rule (the obvious order) makes each
// line walk half of the section's chains: quadratic. Writing the chains in
// descending name order, each followed by its own rules, keeps the name
// being mentioned at the front of the list: each line costs a few
// comparisons. Declaring declareBatch chains back to back before their
// rules keeps the list's nodes together in runs, so the lines that must
// still walk far (a hub's jumps written late, below) walk memory in
// order: at 10,000 chains this made such a walk about ten times cheaper
// (README.md).
//
// Restore's rules still hold: a chain is declared before its first -A; a
// rule jumping to a chain this section declares comes after that
// declaration (legacy refuses an unknown target, nft at COMMIT); each
// chain's rules keep their order. So a chain whose next rule jumps to a
// section chain not declared yet waits, indexed by that target, and goes
// on when the target is declared. A chain jumping to many section chains
// (at least hubTargets: a dispatch chain) is declared before all others,
// so that when its rules reach their targets in descending name order
// each is written right after its target's batch while the target is
// near the front of the list; in another order the rules behind the
// first waiting one queue up and are written as their predecessors clear
// (correct, and cheaper than the sorted order thanks to the runs, but
// not free).
//
// Legacy iptables-restore (libiptc) also keeps chains sorted; the
// benchmark in README.md shows it no slower in this order. Cost:
// O(chains + rules) after the caller's sort, one map of the section's
// chain names and a few int32 slices.
func appendSection(b []byte, chains []sectionChain) []byte {
	o := newSectionOrder(chains)
	order := make([]int32, 0, len(chains))
	for pass := range 2 {
		hub := pass == 0
		for i := len(chains) - 1; i >= 0; i-- {
			if (o.distinct[i] >= hubTargets) == hub {
				order = append(order, int32(i))
			}
		}
	}
	for len(order) > 0 {
		batch := order[:min(declareBatch, len(order))]
		order = order[len(batch):]
		for _, c := range batch {
			b = o.declare(b, c)
		}
		for _, c := range batch {
			b = o.advance(b, c)
		}
		for _, c := range batch {
			b = o.wake(b, c)
		}
	}
	// Every chain is declared now, so nothing waits; this only guards
	// against a rule being lost.
	for c := range chains {
		b = o.flush(b, int32(c))
	}
	return b
}

// sectionOrder is appendSection's state: per chain its rules' targets
// (index into chains, -1 for none in the section), the next rule to
// write, and the chains waiting for it to be declared.
type sectionOrder struct {
	chains   []sectionChain
	first    []int32 // rule i of chain c has target targets[first[c]+i]
	targets  []int32
	distinct []int32 // distinct section targets per chain
	next     []int32 // next rule to write per chain
	declared []bool
	waitHead []int32 // first chain waiting for this one to be declared, -1 for none
	waitNext []int32 // the next chain waiting for the same target, -1 for none
}

func newSectionOrder(chains []sectionChain) *sectionOrder {
	n := len(chains)
	index := make(map[string]int32, n)
	total := 0
	o := &sectionOrder{chains: chains, first: make([]int32, n), distinct: make([]int32, n),
		next: make([]int32, n), declared: make([]bool, n), waitHead: make([]int32, n), waitNext: make([]int32, n)}
	for i, c := range chains {
		index[c.name] = int32(i)
		o.first[i] = int32(total)
		total += c.rc.rules()
		o.waitHead[i], o.waitNext[i] = -1, -1
	}
	o.targets = make([]int32, total)
	seen := make([]int32, n) // chain+1 that last counted this target
	for i, c := range chains {
		for r := range c.rc.rules() {
			tg := int32(-1)
			if k, ok := index[jumpTarget(c.rc.spec(r))]; ok {
				tg = k
				if seen[k] != int32(i)+1 {
					seen[k] = int32(i) + 1
					o.distinct[i]++
				}
			}
			o.targets[int(o.first[i])+r] = tg
		}
	}
	return o
}

// declare writes chain c's declaration.
func (o *sectionOrder) declare(b []byte, c int32) []byte {
	b = append(b, ':')
	b = append(b, o.chains[c].name...)
	b = append(b, " - [0:0]\n"...)
	o.declared[c] = true
	return b
}

// wake advances the chains that waited for c's declaration.
func (o *sectionOrder) wake(b []byte, c int32) []byte {
	w := o.waitHead[c]
	o.waitHead[c] = -1
	for w >= 0 {
		nw := o.waitNext[w]
		o.waitNext[w] = -1
		b = o.advance(b, w)
		w = nw
	}
	return b
}

// advance writes chain c's rules from its cursor until one jumps to a
// section chain not declared yet; c then waits for that chain.
func (o *sectionOrder) advance(b []byte, c int32) []byte {
	rc := o.chains[c].rc
	for int(o.next[c]) < rc.rules() {
		tg := o.targets[o.first[c]+o.next[c]]
		if tg >= 0 && !o.declared[tg] {
			o.waitNext[c], o.waitHead[tg] = o.waitHead[tg], c
			return b
		}
		b = appendRule(b, o.chains[c].name, rc.spec(int(o.next[c])))
		o.next[c]++
	}
	return b
}

// flush writes whatever rules of c are left, in order.
func (o *sectionOrder) flush(b []byte, c int32) []byte {
	rc := o.chains[c].rc
	for ; int(o.next[c]) < rc.rules(); o.next[c]++ {
		b = appendRule(b, o.chains[c].name, rc.spec(int(o.next[c])))
	}
	return b
}

// appendRule appends "-A chain spec\n" to b.
func appendRule(b []byte, chain, spec string) []byte {
	b = append(b, "-A "...)
	b = append(b, chain...)
	b = append(b, ' ')
	b = append(b, spec...)
	return append(b, '\n')
}

// jumpTarget returns the chain a rendered spec jumps or goes to ("-j X"
// or "-g X" at its end, where the renderer puts Jump and Goto), or "" for
// none. Another target with a last option value after a lone "-j" or "-g"
// argument would be taken for a jump too; that costs only a later place
// in the order, never a broken one.
func jumpTarget(spec string) string {
	i := strings.LastIndexByte(spec, ' ')
	if i < 2 {
		return ""
	}
	flag := spec[i-2 : i]
	if (flag != "-j" && flag != "-g") || (i > 2 && spec[i-3] != ' ') {
		return ""
	}
	if strings.IndexByte(spec[i+1:], '"') >= 0 {
		return "" // the end of a quoted argument
	}
	return spec[i+1:]
}
