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
// a policy and a table without COMMIT; it applies each table section
// atomically and reports `line N failed` on stderr with exit status 1, as
// iptables-legacy-restore does. Match and target arguments are stored as
// given, not interpreted. The nft dataplanes accept a policy on a user
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
}

type fakeChain struct {
	policy string // "-" for user chains
	rules  []fakeRule
}

type fakeRule struct {
	spec string
	args []string
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
	valid := map[string]bool{"iptables-legacy": true, "iptables-nft": true, "ip6tables-legacy": true, "ip6tables-nft": true}
	if !valid[plane] || op == "" {
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

func (t *fakeTable) clone() *fakeTable {
	out := &fakeTable{chains: make(map[string]*fakeChain, len(t.chains))}
	for n, c := range t.chains {
		out.chains[n] = &fakeChain{policy: c.policy, rules: slices.Clone(c.rules)}
	}
	return out
}

var fakeTargets = map[string]bool{"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true, "MARK": true,
	"MASQUERADE": true, "DNAT": true, "SNAT": true, "LOG": true, "NFLOG": true}

func jumpOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-j" || args[i] == "-g" {
			return args[i+1]
		}
	}
	return ""
}

func (t *fakeTable) referenced(chain string) bool {
	for _, c := range t.chains {
		for _, r := range c.rules {
			if jumpOf(r.args) == chain {
				return true
			}
		}
	}
	return false
}

// restore applies input; it returns the failing line number and message,
// or 0 on success.
func (f *Fake) restore(plane, input string, noflush bool) (int, string) {
	tables := f.planes[plane]
	var (
		name Table
		cur  *fakeTable
	)
	lines := strings.Split(input, "\n")
	for i, line := range lines {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur == nil {
			if !strings.HasPrefix(line, "*") {
				return n, "expected *table"
			}
			name = Table(line[1:])
			if builtinChains[name] == nil {
				return n, fmt.Sprintf("can't initialize table %q", name)
			}
			if old := tables[name]; old != nil && noflush {
				cur = old.clone()
			} else {
				cur = newFakeTable(name)
			}
			continue
		}
		if line == "COMMIT" {
			tables[name] = cur
			cur = nil
			continue
		}
		if err := cur.apply(name, line, strings.HasSuffix(plane, "-nft")); err != "" {
			return n, err
		}
	}
	if cur != nil {
		return len(lines), "COMMIT expected"
	}
	return 0, ""
}

// apply runs one restore line against t.
// nft is true for the nft backend, which ignores a policy given for a
// user chain where legacy rejects it.
func (t *fakeTable) apply(table Table, line string, nft bool) string {
	if strings.HasPrefix(line, ":") {
		f := strings.Fields(line[1:])
		if len(f) < 2 || !validChainName(f[0]) {
			return fmt.Sprintf("bad chain %q", line)
		}
		builtin := isBuiltin(table, f[0])
		if nft && !builtin {
			f[1] = "-"
		}
		if builtin != (f[1] != "-") || (builtin && f[1] != "ACCEPT" && f[1] != "DROP") {
			return fmt.Sprintf("bad policy %q for chain %s", f[1], f[0])
		}
		if c := t.chains[f[0]]; c != nil {
			c.rules, c.policy = nil, f[1]
		} else {
			t.chains[f[0]] = &fakeChain{policy: f[1]}
		}
		return ""
	}
	args, err := splitArgs(line)
	if err != nil || len(args) < 2 {
		return fmt.Sprintf("bad line %q", line)
	}
	op, chain, rest := args[0], args[1], args[2:]
	c := t.chains[chain]
	if c == nil {
		return fmt.Sprintf("chain %s does not exist", chain)
	}
	spec := ""
	if _, s, ok := strings.Cut(line, " "+chain+" "); ok {
		spec = s
	}
	checkRule := func(args []string) string {
		if len(args) == 0 {
			return "empty rule"
		}
		if j := jumpOf(args); j != "" && !fakeTargets[j] && (t.chains[j] == nil || isBuiltin(table, j)) {
			return fmt.Sprintf("Couldn't load target `%s'", j)
		}
		return ""
	}
	switch op {
	case "-A":
		if e := checkRule(rest); e != "" {
			return e
		}
		c.rules = append(c.rules, fakeRule{spec, rest})
	case "-I":
		pos := 1
		if len(rest) > 0 {
			if p, err := strconv.Atoi(rest[0]); err == nil {
				pos, rest = p, rest[1:]
				_, spec, _ = strings.Cut(spec, " ")
			}
		}
		if pos < 1 || pos > len(c.rules)+1 {
			return "Index of insertion too big"
		}
		if e := checkRule(rest); e != "" {
			return e
		}
		c.rules = slices.Insert(c.rules, pos-1, fakeRule{spec, rest})
	case "-D":
		if len(rest) == 1 {
			if p, err := strconv.Atoi(rest[0]); err == nil {
				if p < 1 || p > len(c.rules) {
					return "Index of deletion too big"
				}
				c.rules = slices.Delete(c.rules, p-1, p)
				return ""
			}
		}
		i := slices.IndexFunc(c.rules, func(r fakeRule) bool { return slices.Equal(r.args, rest) })
		if i < 0 {
			return "Bad rule (does a matching rule exist in that chain?)"
		}
		c.rules = slices.Delete(c.rules, i, i+1)
	case "-X":
		if isBuiltin(table, chain) || len(rest) > 0 {
			return "Invalid argument"
		}
		if len(c.rules) > 0 || t.referenced(chain) {
			return "Device or resource busy"
		}
		delete(t.chains, chain)
	case "-F":
		c.rules = nil
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
			fmt.Fprintf(&b, ":%s %s [0:0]\n", c, t.chains[c].policy)
		}
		for _, c := range order {
			for _, r := range t.chains[c].rules {
				fmt.Fprintf(&b, "-A %s %s\n", c, r.spec)
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
