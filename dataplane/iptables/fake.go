package iptables

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Fake is a strict in-memory iptables, an Execer that understands
// `{ip,ip6}tables-{legacy,nft}-save` and `-restore [--noflush]`, keeping
// one dataplane per binary family and backend. Like the kernel it rejects
// a rule for a missing chain, a jump to a missing chain, a chain name
// longer than 28 bytes, deleting a missing rule, deleting a chain that has
// rules or is referenced, an -I position past the end, a user chain with
// a policy and a table without COMMIT; as iptables' parser, a builtin
// flag (-s, -d, -i, -o, -p) given twice, an unknown REJECT type for the
// family and a NAT port without -p tcp, udp, sctp, dccp or icmp; and, as
// the kernel does when the table commits (after the section's other
// lines parsed: legacy names the COMMIT line, nft the rule's), REJECT
// outside the filter table or with tcp-reset without -p tcp, and DNAT,
// SNAT, MASQUERADE and REDIRECT outside the nat table, in a nat kernel
// chain that is not their hook, or reached from one through jumps and
// gotos (fakereach.go: legacy's walk stops at a rule without matches
// whose verdict is ACCEPT, DROP or RETURN, nft's does not; nft names the
// first rule after which the table was invalid); and, in any table, a
// loop of jumps and gotos between user chains that a kernel chain
// reaches (fakeloop.go, ELOOP "Too many links", with the same walks and
// lines; a loop no kernel chain reaches is accepted). It applies each table section atomically
// and reports `line N failed` on stderr with exit status 1, as
// iptables-legacy-restore does. Other match and target arguments are
// stored as given, not interpreted; a REJECT type is stored as
// iptables-save prints it (canonical name, the default added). The nft dataplanes accept a policy on a user
// chain (and ignore it), as iptables-nft-restore does. TestFakeMatchesKernel runs the same transactions
// on the kernel and the fake.
//
// Fake is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	planes  map[string]map[Table]*fakeTable // by "iptables-nft" etc.
	failing []error
	// Commands records every command run, in order.
	commands []Command
}

type fakeTable struct {
	chains map[string]*fakeChain
	gen    uint64 // the last section applied to the table
	// walk numbers the walks of the check of the NAT targets' hooks
	// (fakereach.go), for the marks of fakeChain; queue is its scratch.
	walk  uint64
	queue []string
}

type fakeChain struct {
	policy string // "-" for user chains
	rules  []fakeRule
	// refs counts the rules of the table that jump or go to the chain,
	// so that -X checks references in O(1).
	refs int
	// parents (nat tables only) counts the rules of each chain jumping or
	// going to the chain, for the check of the NAT targets' hooks
	// (fakereach.go). Like refs, it is changed in place.
	parents parentSet[string]
	gen     uint64 // the section that made this copy
	// The marks of the check of the NAT targets' hooks (fakereach.go),
	// each valid when its walk number is the current walk's.
	upWalk, downWalk, doneWalk, endWalk uint64
	seen                                uint8 // the hooks walked down for
	end                                 int   // how many rules are walked
}

type fakeRule struct {
	spec string // the arguments after "-A CHAIN ", as given
	jump string // the -j / -g target, "" when none
	// nat is the hook mask a NAT target may be reached from (natAllowed),
	// 0 for other targets.
	nat uint8
	// uncond: a rule without matches ending its chain's walk (ACCEPT,
	// DROP, RETURN), after which iptables-legacy's kernel check sees no
	// rule of the chain.
	uncond bool
}

var _ Execer = (*Fake)(nil)

// NewFake returns a Fake with empty dataplanes.
func NewFake() *Fake { return &Fake{planes: map[string]map[Table]*fakeTable{}} }

// FailNext makes the next n restore commands fail with err (for example
// an *ExitError{Code: 4, Stderr: "Another app is currently holding the
// xtables lock"}), without changing anything.
func (f *Fake) FailNext(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.failing = append(f.failing, err)
	}
}

// Commands returns the commands run so far.
func (f *Fake) Commands() []Command {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.commands)
}

// fakePlanes are the binary prefixes a Fake answers to.
var fakePlanes = map[string]bool{"iptables-legacy": true, "iptables-nft": true, "ip6tables-legacy": true, "ip6tables-nft": true}

// Run implements Execer.
func (f *Fake) Run(_ context.Context, cmd Command) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, cmd)
	base := cmd.Name[strings.LastIndex(cmd.Name, "/")+1:]
	plane, op := base, ""
	for _, o := range []string{"save", "restore"} {
		if p, ok := strings.CutSuffix(base, "-"+o); ok {
			plane, op = p, o
		}
	}
	if !fakePlanes[plane] || op == "" {
		return nil, fmt.Errorf("fake iptables: %s: executable file not found", cmd.Name)
	}
	if f.planes[plane] == nil {
		f.planes[plane] = map[Table]*fakeTable{}
	}
	if op == "save" {
		return []byte(f.save(plane)), nil
	}
	if len(f.failing) > 0 {
		err := f.failing[0]
		f.failing = f.failing[1:]
		return nil, err
	}
	noflush := slices.Contains(cmd.Args, "--noflush") || slices.Contains(cmd.Args, "-n")
	if n, msg := f.restore(plane, string(cmd.Stdin), noflush); n != 0 {
		return nil, &ExitError{Code: 1, Stderr: fmt.Sprintf("%s-restore: line %d failed: %s\n", plane, n, msg)}
	}
	return nil, nil
}

func newFakeTable(name Table) *fakeTable {
	t := &fakeTable{chains: map[string]*fakeChain{}}
	for _, c := range builtinChains[name] {
		t.chains[c] = &fakeChain{policy: "ACCEPT"}
	}
	return t
}

var fakeTargets = map[string]bool{"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true, "MARK": true,
	"MASQUERADE": true, "DNAT": true, "SNAT": true, "REDIRECT": true, "LOG": true, "NFLOG": true}

func jumpOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-j" || args[i] == "-g" {
			return args[i+1]
		}
	}
	return ""
}

// fakeTx is one table section of a restore applied in place to its
// table, undone if a later line fails. A chain is copied on its first
// change of rules in the section (its gen is then the section's), and
// undo lists, in order, each chain replaced, created (nil) or deleted,
// and each reference count changed on a chain not made in the section. A
// section costs O(its lines and the rules of the chains it changes), not
// O(table).
type fakeTx struct {
	table Table
	t     *fakeTable
	nft   bool
	gen   uint64
	undo  []fakeUndo
	args  []string // the current line's arguments (reused)
	v6    bool     // an ip6tables plane
	// deferred is the first error the kernel would find only when the
	// table is committed, after every line parsed; deferredLine is its
	// rule's line, which iptables-nft-restore names (legacy names COMMIT).
	deferred     string
	deferredLine int
	// added is the index of the rule the last line added (-A, -I) in
	// chain addedTo, -1 when it added none.
	added   int
	addedTo string
}

type fakeUndo struct {
	name string
	old  *fakeChain // nil: the chain did not exist
	// refs, when set, had d added to its reference count and, in a nat
	// table when name is set, to its parents' rules of chain name (old is
	// unset then).
	refs *fakeChain
	d    int
}

// chain returns the named chain for changing, copying it on its first
// change in the section (without its rules unless keepRules); nil when it
// does not exist.
func (x *fakeTx) chain(name string, keepRules bool) *fakeChain {
	c := x.t.chains[name]
	if c == nil || c.gen == x.gen {
		return c
	}
	cp := &fakeChain{policy: c.policy, refs: c.refs, parents: c.parents, gen: x.gen}
	if c.parents.more != nil { // not shared: cp's changes are not undone
		cp.parents.more = maps.Clone(c.parents.more)
	}
	x.undo = append(x.undo, fakeUndo{name: name, old: c})
	x.t.chains[name] = cp
	if keepRules {
		cp.rules = slices.Clone(c.rules)
	} else {
		x.flushRefs(name, c.rules) // after cp is in place: a rule may jump to its own chain
	}
	return cp
}

// create adds a new chain.
func (x *fakeTx) create(name, policy string) {
	x.undo = append(x.undo, fakeUndo{name: name})
	x.t.chains[name] = &fakeChain{policy: policy, gen: x.gen}
}

// remove deletes a chain.
func (x *fakeTx) remove(name string) {
	x.undo = append(x.undo, fakeUndo{name: name, old: x.t.chains[name]})
	delete(x.t.chains, name)
}

// ref adds d to the reference count of target ("" for none; it exists)
// by a rule of chain from.
func (x *fakeTx) ref(from, target string, d int) {
	if target == "" {
		return
	}
	c := x.t.chains[target]
	c.refs += d
	if x.table == NAT {
		c.parents.add(from, int32(d))
	} else {
		from = ""
	}
	if c.gen != x.gen {
		x.undo = append(x.undo, fakeUndo{refs: c, d: d, name: from})
	}
}

// flushRefs drops the references of rules of chain being removed.
func (x *fakeTx) flushRefs(chain string, rules []fakeRule) {
	for _, r := range rules {
		x.ref(chain, r.jump, -1)
	}
}

// flush removes every rule of the named chain (which exists).
func (x *fakeTx) flush(name string) *fakeChain {
	c := x.t.chains[name]
	if c.gen == x.gen {
		x.flushRefs(name, c.rules)
		c.rules = nil
		return c
	}
	return x.chain(name, false)
}

// rollback restores the table as it was before the section.
func (x *fakeTx) rollback() {
	for i := len(x.undo) - 1; i >= 0; i-- {
		if u := x.undo[i]; u.refs != nil {
			u.refs.refs -= u.d
			if u.name != "" {
				u.refs.parents.add(u.name, int32(-u.d))
			}
		} else if u.old == nil {
			delete(x.t.chains, u.name)
		} else {
			x.t.chains[u.name] = u.old
		}
	}
}

// restore applies input; it returns the failing line number and message,
// or 0 on success. Each table section is applied on its own (COMMIT),
// as iptables-legacy-restore does: a failing section changes nothing,
// sections committed before it stay.
func (f *Fake) restore(plane, input string, noflush bool) (int, string) {
	tables := f.planes[plane]
	nft := strings.HasSuffix(plane, "-nft")
	var cur *fakeTx
	n := 0
	section, sectionLine := "", 0 // the current section's lines after its *table line
	for rest := input; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		n++
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur == nil {
			if !strings.HasPrefix(line, "*") {
				return n, "expected *table"
			}
			name := Table(line[1:])
			if builtinChains[name] == nil {
				return n, fmt.Sprintf("can't initialize table %q", name)
			}
			cur = &fakeTx{table: name, nft: nft, v6: strings.HasPrefix(plane, "ip6")}
			if old := tables[name]; old != nil && noflush {
				cur.t = old
			} else {
				cur.t = newFakeTable(name) // swapped in at COMMIT
			}
			cur.t.gen++
			cur.gen = cur.t.gen
			section, sectionLine = rest, n
			continue
		}
		if line == "COMMIT" {
			if cur.deferred != "" {
				cur.rollback()
				if nft {
					return cur.deferredLine, cur.deferred
				}
				return n, cur.deferred
			}
			if msg := cur.reachError(); msg != "" {
				cur.rollback()
				if nft {
					return cur.firstReachLine(section, sectionLine, n, false), msg
				}
				return n, msg
			}
			if msg := cur.loopError(); msg != "" {
				cur.rollback()
				if nft {
					return cur.firstReachLine(section, sectionLine, n, true), msg
				}
				return n, msg
			}
			tables[cur.table] = cur.t
			cur = nil
			continue
		}
		if err := cur.apply(line); err != "" {
			cur.rollback()
			return n, err
		}
		if cur.deferred != "" && cur.deferredLine == 0 {
			cur.deferredLine = n
		}
	}
	if cur != nil {
		cur.rollback()
		if strings.HasSuffix(input, "\n") {
			n++ // strings.Split's count: the empty line after the last newline
		}
		return max(n, 1), "COMMIT expected"
	}
	return 0, ""
}

// apply runs one restore line of the section.
// nft is true for the nft backend, which ignores a policy given for a
// user chain where legacy rejects it.
func (x *fakeTx) apply(line string) string {
	t, table := x.t, x.table
	x.added = -1
	if strings.HasPrefix(line, ":") {
		f := strings.Fields(line[1:])
		if len(f) < 2 || !validChainName(f[0]) {
			return fmt.Sprintf("bad chain %q", line)
		}
		builtin := isBuiltin(table, f[0])
		if x.nft && !builtin {
			f[1] = "-"
		}
		if builtin != (f[1] != "-") || (builtin && f[1] != "ACCEPT" && f[1] != "DROP") {
			return fmt.Sprintf("bad policy %q for chain %s", f[1], f[0])
		}
		if t.chains[f[0]] != nil {
			x.flush(f[0]).policy = f[1]
		} else {
			x.create(f[0], f[1])
		}
		return ""
	}
	args, err := appendArgs(x.args[:0], line)
	if err != nil || len(args) < 2 {
		return fmt.Sprintf("bad line %q", line)
	}
	x.args = args
	op, chain, rest := args[0], args[1], args[2:]
	x.addedTo = chain
	if t.chains[chain] == nil {
		return fmt.Sprintf("chain %s does not exist", chain)
	}
	spec := skipArgs(line, 2) // splitArgs(spec) is rest
	checkRule := func(args []string) (string, string) {
		if len(args) == 0 {
			return "", "empty rule"
		}
		j := jumpOf(args)
		if j != "" && !fakeTargets[j] && (t.chains[j] == nil || isBuiltin(table, j)) {
			return "", fmt.Sprintf("Couldn't load target `%s'", j)
		}
		if fakeTargets[j] {
			j = ""
		}
		msg, atCommit := x.checkTarget(args, chain)
		if msg != "" && !atCommit {
			return "", msg
		}
		if msg != "" && x.deferred == "" {
			x.deferred = msg
		}
		return j, ""
	}
	switch op {
	case "-A":
		j, e := checkRule(rest)
		if e != "" {
			return e
		}
		spec = x.canonicalReject(spec, rest)
		c := x.chain(chain, true)
		c.rules = append(c.rules, x.newRule(spec, j, rest))
		x.ref(chain, j, 1)
		x.added = len(c.rules) - 1
	case "-I":
		pos := 1
		if len(rest) > 0 {
			if p, err := strconv.Atoi(rest[0]); err == nil {
				pos, rest, spec = p, rest[1:], skipArgs(spec, 1)
			}
		}
		if pos < 1 || pos > len(t.chains[chain].rules)+1 {
			return "Index of insertion too big"
		}
		j, e := checkRule(rest)
		if e != "" {
			return e
		}
		spec = x.canonicalReject(spec, rest)
		c := x.chain(chain, true)
		c.rules = slices.Insert(c.rules, pos-1, x.newRule(spec, j, rest))
		x.ref(chain, j, 1)
		x.added = pos - 1
	case "-D":
		i := -1
		if len(rest) == 1 {
			if p, err := strconv.Atoi(rest[0]); err == nil {
				if p < 1 || p > len(t.chains[chain].rules) {
					return "Index of deletion too big"
				}
				i = p - 1
			}
		}
		if i < 0 {
			i = slices.IndexFunc(t.chains[chain].rules, func(r fakeRule) bool {
				args, _ := splitArgs(r.spec) // it split when added
				return slices.Equal(args, rest)
			})
		}
		if i < 0 {
			return "Bad rule (does a matching rule exist in that chain?)"
		}
		c := x.chain(chain, true)
		x.ref(chain, c.rules[i].jump, -1)
		c.rules = slices.Delete(c.rules, i, i+1)
	case "-X":
		if isBuiltin(table, chain) || len(rest) > 0 {
			return "Invalid argument"
		}
		if c := t.chains[chain]; len(c.rules) > 0 || c.refs > 0 {
			return "Device or resource busy"
		}
		x.remove(chain)
	case "-F":
		x.flush(chain)
	default:
		return fmt.Sprintf("unknown command %q", op)
	}
	return ""
}

// save renders a plane as iptables-save does (without comment lines):
// tables sorted, kernel chains first, then user chains sorted.
func (f *Fake) save(plane string) string {
	var b strings.Builder
	tables := f.planes[plane]
	for _, name := range slices.Sorted(maps.Keys(tables)) {
		t := tables[name]
		order := slices.Clone(builtinChains[name])
		for _, c := range slices.Sorted(maps.Keys(t.chains)) {
			if !isBuiltin(name, c) {
				order = append(order, c)
			}
		}
		fmt.Fprintf(&b, "*%s\n", name)
		for _, c := range order {
			b.WriteString(":" + c + " " + t.chains[c].policy + " [0:0]\n")
		}
		for _, c := range order {
			for _, r := range t.chains[c].rules {
				b.WriteString("-A ")
				b.WriteString(c)
				b.WriteByte(' ')
				b.WriteString(r.spec)
				b.WriteByte('\n')
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// Dump returns every non-empty dataplane in iptables-save form, each
// headed by "# <binary prefix>" (for example "# iptables-nft"), sorted;
// tables whose chains are all empty kernel chains are left out.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, plane := range slices.Sorted(maps.Keys(f.planes)) {
		cp := map[Table]*fakeTable{}
		for name, t := range f.planes[plane] {
			empty := true
			for cn, c := range t.chains {
				if len(c.rules) > 0 || !isBuiltin(name, cn) || c.policy != "ACCEPT" {
					empty = false
				}
			}
			if !empty {
				cp[name] = t
			}
		}
		if len(cp) == 0 {
			continue
		}
		saved := f.planes[plane]
		f.planes[plane] = cp
		fmt.Fprintf(&b, "# %s\n%s", plane, f.save(plane))
		f.planes[plane] = saved
	}
	return b.String()
}

// fakeRejectTypes maps every --reject-with name iptables' REJECT
// extension parses, aliases included, to the name iptables-save prints.
var fakeRejectTypes = map[bool]map[string]string{
	false: {
		"icmp-net-unreachable": "icmp-net-unreachable", "net-unreach": "icmp-net-unreachable",
		"icmp-host-unreachable": "icmp-host-unreachable", "host-unreach": "icmp-host-unreachable",
		"icmp-proto-unreachable": "icmp-proto-unreachable", "proto-unreach": "icmp-proto-unreachable",
		"icmp-port-unreachable": "icmp-port-unreachable", "port-unreach": "icmp-port-unreachable",
		"icmp-net-prohibited": "icmp-net-prohibited", "net-prohib": "icmp-net-prohibited",
		"icmp-host-prohibited": "icmp-host-prohibited", "host-prohib": "icmp-host-prohibited",
		"icmp-admin-prohibited": "icmp-admin-prohibited", "admin-prohib": "icmp-admin-prohibited",
		"tcp-reset": "tcp-reset", "tcp-rst": "tcp-reset",
	},
	true: {
		"icmp6-no-route": "icmp6-no-route", "no-route": "icmp6-no-route",
		"icmp6-adm-prohibited": "icmp6-adm-prohibited", "adm-prohibited": "icmp6-adm-prohibited",
		"icmp6-addr-unreachable": "icmp6-addr-unreachable", "addr-unreach": "icmp6-addr-unreachable",
		"icmp6-port-unreachable": "icmp6-port-unreachable", "port-unreach": "icmp6-port-unreachable",
		"icmp6-policy-fail": "icmp6-policy-fail", "policy-fail": "icmp6-policy-fail",
		"icmp6-reject-route": "icmp6-reject-route", "reject-route": "icmp6-reject-route",
		"tcp-reset": "tcp-reset",
	},
}

// fakeBaseFlags maps the builtin match flags to their baseRank.
var fakeBaseFlags = map[string]int{"-s": 0, "--source": 0, "-d": 1, "--destination": 1,
	"-i": 2, "--in-interface": 2, "-o": 3, "--out-interface": 3, "-p": 4, "--protocol": 4}

// optionValue returns the argument after flag in args, "" when absent.
func optionValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// checkTarget checks a rule's builtin flags, target options and target
// restrictions as iptables does. It returns "" for a valid rule; atCommit
// reports an error the kernel finds only when the table is committed,
// after every line of the section parsed (iptables-legacy-restore reports
// it at COMMIT, iptables-nft-restore at the rule's line), otherwise iptables' parser refuses the line itself:
// a builtin flag given twice, an unknown --reject-with type for the
// family, a NAT port without -p tcp, udp, sctp or dccp. The kernel checks
// are REJECT outside the filter table or with tcp-reset on a rule not
// matching -p tcp, a NAT target outside the nat table or, in a kernel
// chain, outside its hooks. A NAT target in a user chain reached from a
// wrong hook is found by reachError at COMMIT (both kernels refuse it;
// an earlier claim here that they do not was wrong).
func (x *fakeTx) checkTarget(args []string, chain string) (msg string, atCommit bool) {
	var seen [5]bool
	proto, notProto := "", false
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "--comment", "--log-prefix", "--nflog-prefix":
			i++ // a free-text value
		default:
			k, ok := fakeBaseFlags[a]
			if !ok {
				continue
			}
			if seen[k] {
				return fmt.Sprintf("multiple %s flags not allowed", baseFlags[k]), false
			}
			seen[k] = true
			if k == 4 && i+1 < len(args) {
				proto, notProto = args[i+1], i > 0 && args[i-1] == "!"
			}
		}
	}
	target := jumpOf(args)
	switch target {
	case "REJECT":
		with := fakeRejectTypes[x.v6][optionValue(args, "--reject-with")]
		if with == "" && optionValue(args, "--reject-with") != "" {
			return fmt.Sprintf("unknown reject type %q", optionValue(args, "--reject-with")), false
		}
		if x.table != Filter {
			return "REJECT: Invalid argument (filter table only)", true
		}
		if with == "tcp-reset" && (notProto || (proto != "tcp" && proto != "6")) {
			return "REJECT --reject-with tcp-reset: Invalid argument (needs -p tcp)", true
		}
	case "DNAT", "SNAT", "MASQUERADE", "REDIRECT":
		to := optionValue(args, "--to-destination") + optionValue(args, "--to-source") + optionValue(args, "--to-ports")
		if target == "REDIRECT" && to != "" || x.v6 && strings.Contains(to, "]:") || !x.v6 && strings.Contains(to, ":") {
			switch proto {
			case "tcp", "udp", "sctp", "dccp", "icmp", "6", "17", "132", "33", "1":
			default:
				return "Need TCP, UDP, SCTP or DCCP with port specification", false
			}
		}
		if x.table != NAT {
			return target + ": Invalid argument (nat table only)", true
		}
		hooks := natHooks[target]
		if target == "REDIRECT" {
			hooks = natHooks["DNAT"] // the same hooks; tabby has no Redirect action
		}
		if isBuiltin(x.table, chain) && !slices.Contains(hooks, chain) {
			return fmt.Sprintf("%s: Invalid argument (not in %s)", target, chain), true
		}
	}
	return "", false
}

// canonicalReject returns spec with a REJECT target's type as
// iptables-save prints it: an alias replaced by its canonical name, the
// family's default appended when none is given.
func (x *fakeTx) canonicalReject(spec string, args []string) string {
	if jumpOf(args) != "REJECT" {
		return spec
	}
	with := optionValue(args, "--reject-with")
	if with == "" {
		return spec + " --reject-with " + map[bool]string{false: "icmp-port-unreachable", true: "icmp6-port-unreachable"}[x.v6]
	}
	if canon := fakeRejectTypes[x.v6][with]; canon != with {
		return strings.Replace(spec, "--reject-with "+with, "--reject-with "+canon, 1)
	}
	return spec
}
