package iptables

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/tabbynet/tabby/dataplane/deltatracker"
	"github.com/tabbynet/tabby/dataplane/internal/parallel"
	"github.com/tabbynet/tabby/dataplane/syncrunner"
)

// Defaults for Config.
const (
	DefaultChainPrefix     = "tabby-"
	DefaultHashPrefix      = "tabby:"
	DefaultRefreshInterval = 90 * time.Second
	DefaultLockWait        = 5 * time.Second
	DefaultLockRetries     = 4
)

// Config configures an IPTables. Zero values take the defaults.
type Config struct {
	// Family selects iptables (IPv4, the default) or ip6tables (IPv6).
	Family Family
	// Backend forces legacy or nft; BackendAuto detects it on the first
	// Apply with DetectBackend.
	Backend Backend
	// ChainPrefix starts the name of every owned chain (DefaultChainPrefix).
	// Every chain whose name starts with it is treated as owned: Apply
	// deletes those it was not given. So New refuses (ErrInvalidConfig) a
	// prefix that overlaps, in either direction, one of the prefixes
	// other programs own (wellKnownPrefixes: kube-proxy's and kubelet's
	// "KUBE-", Calico's "cali-", Cilium's "CILIUM_", Docker's "DOCKER",
	// ...): "KUBE-" or "K" would delete kube-proxy's chains, and
	// "cali-x-" chains would be deleted by Felix. Other programs' prefixes
	// are not known: choose one no other writer on the node uses.
	ChainPrefix string
	// HashPrefix starts the hash comment of every owned rule, including
	// the jump rules in kernel chains (DefaultHashPrefix).
	HashPrefix string
	// RefreshInterval is how old the last iptables-save may be before
	// Apply reads it again to find drift (DefaultRefreshInterval); a
	// negative value disables the periodic re-read (QueueResync still works).
	RefreshInterval time.Duration
	// LockWait is passed to iptables-restore -w, rounded up to seconds
	// (DefaultLockWait).
	LockWait time.Duration
	// LockRetries is how often a restore that could not take the xtables
	// lock is retried, with backoff from 100 ms doubling (DefaultLockRetries).
	LockRetries int
}

// Option configures New. A nil Option is ignored.
type Option func(*IPTables)

// WithExecer sets how commands run (default OSExecer{} in the caller's
// netns); tests pass a Fake or an OSExecer with Netns set. nil keeps the
// default.
func WithExecer(e Execer) Option {
	return func(t *IPTables) {
		if e != nil {
			t.exec = e
		}
	}
}

// WithNetns runs every command inside the named netns (`ip netns exec`).
func WithNetns(name string) Option { return func(t *IPTables) { t.exec = OSExecer{Netns: name} } }

// Netns returns the name of the network namespace the IPTables' commands
// run in when it was given WithNetns (or an OSExecer with Netns set), ""
// for the caller's namespace or another Execer.
func (t *IPTables) Netns() string {
	if !t.made() {
		return ""
	}
	if e, ok := t.exec.(OSExecer); ok {
		return e.Netns
	}
	return ""
}

// Execer returns what the IPTables runs its commands through: an
// OSExecer (the default, or WithNetns), a Fake, or the WithExecer value.
// Packages that add kernel state beside the rules (services/iptables'
// hairpin ipset) use it to tell the kernel from a fake.
func (t *IPTables) Execer() Execer {
	if !t.made() {
		return nil
	}
	return t.exec
}

// WithLogger sets the logger (default, and when l is nil: discard).
func WithLogger(l *slog.Logger) Option {
	return func(t *IPTables) {
		if l != nil {
			t.log = l
		}
	}
}

// WithClock sets the clock for refresh ages and lock backoff (nil keeps
// the real clock).
func WithClock(c clock.Clock) Option {
	return func(t *IPTables) {
		if c != nil {
			t.clock = c
		}
	}
}

type chainKey struct {
	Table Table
	Chain string
}

func compareKeys(a, b chainKey) int {
	return cmp.Or(cmp.Compare(a.Table, b.Table), cmp.Compare(a.Chain, b.Chain))
}

// IPTables keeps the owned chains of one family (and the jump rules into
// them) equal to a desired state. See the package doc. The zero value is
// not usable; make one with New (its methods that return an error return
// ErrInvalidConfig, the others do nothing and return zero values).
type IPTables struct {
	cfg   Config
	exec  Execer
	log   *slog.Logger
	clock clock.Clock

	mu      sync.Mutex
	backend Backend
	chains  *deltatracker.Tracker[chainKey, renderedChain]
	hooks   map[chainKey]renderedChain // desired jump rules per kernel chain
	kernel  map[chainKey][]SavedRule   // kernel chains' rules as last read or written
	// foreignRefs holds owned chains that a rule of another program jumps
	// to, as of the last read: they are flushed but not deleted.
	foreignRefs map[chainKey]bool
	// nat holds the jumps and NAT targets of the desired nat chains and
	// hooks, for the check of the NAT targets' hooks (reach.go).
	nat    natGraph
	read   bool
	lastRd time.Time
	// scratch holds *renderScratch buffers for rendering, so that
	// SetChain allocates only the rendered chain.
	scratch sync.Pool
	// sortedInput makes buildInput write every declaration, sorted, and
	// then every rule: the order before appendSection, kept for its
	// benchmark.
	sortedInput bool
}

// New returns an IPTables for cfg. Nothing runs until the first Apply.
// An invalid Config returns an error wrapping ErrInvalidConfig.
func New(cfg Config, opts ...Option) (*IPTables, error) {
	cfg.Family = cmp.Or(cfg.Family, IPv4)
	if cfg.Family != IPv4 && cfg.Family != IPv6 {
		return nil, fmt.Errorf("%w: family %d", ErrInvalidConfig, cfg.Family)
	}
	switch cfg.Backend {
	case BackendAuto, BackendLegacy, BackendNFT:
	default:
		return nil, fmt.Errorf("%w: backend %q", ErrInvalidConfig, cfg.Backend)
	}
	cfg.ChainPrefix = cmp.Or(cfg.ChainPrefix, DefaultChainPrefix)
	cfg.HashPrefix = cmp.Or(cfg.HashPrefix, DefaultHashPrefix)
	if !validToken(cfg.ChainPrefix) || len(cfg.ChainPrefix) >= MaxChainNameLen || !validToken(cfg.HashPrefix) {
		return nil, fmt.Errorf("%w: prefix %q or hash prefix %q", ErrInvalidConfig, cfg.ChainPrefix, cfg.HashPrefix)
	}
	for _, w := range wellKnownPrefixes {
		if strings.HasPrefix(w.prefix, cfg.ChainPrefix) || strings.HasPrefix(cfg.ChainPrefix, w.prefix) {
			return nil, fmt.Errorf("%w: chain prefix %q overlaps %q, which %s owns", ErrInvalidConfig, cfg.ChainPrefix, w.prefix, w.owner)
		}
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.LockWait <= 0 {
		cfg.LockWait = DefaultLockWait
	}
	if cfg.LockRetries == 0 {
		cfg.LockRetries = DefaultLockRetries
	}
	t := &IPTables{
		cfg:     cfg,
		exec:    OSExecer{},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock:   clock.RealClock{},
		backend: cfg.Backend,
		chains:  deltatracker.NewFunc[chainKey, renderedChain](sameRules),
		hooks:   map[chainKey]renderedChain{},
		kernel:  map[chainKey][]SavedRule{},
	}
	for _, o := range opts {
		if o != nil {
			o(t)
		}
	}
	return t, nil
}

// made reports whether New made t: only New sets the chain tracker, which
// is never changed afterwards, so reading it needs no lock.
func (t *IPTables) made() bool { return t != nil && t.chains != nil }

// errNotMade is the error of op on an IPTables that New did not make.
func errNotMade(op string) error {
	return fmt.Errorf("%s: iptables.IPTables has no configuration (make it with New): %w", op, ErrInvalidConfig)
}

func (t *IPTables) owned(chain string) bool { return strings.HasPrefix(chain, t.cfg.ChainPrefix) }

func (t *IPTables) checkOwned(table Table, name string) error {
	if builtinChains[table] == nil {
		return fmt.Errorf("chain %q: %w %q", name, ErrUnknownTable, table)
	}
	if err := checkChainName(name); err != nil {
		return fmt.Errorf("chain %s/%q: %w", table, name, err)
	}
	if !t.owned(name) || name == t.cfg.ChainPrefix {
		return fmt.Errorf("chain %s/%s: %w (its name must start with %q and go on)", table, name, ErrNotOwned, t.cfg.ChainPrefix)
	}
	return nil
}

// SetChain makes chain a desired owned chain of table, replacing any
// previous rules. It validates and renders the rules now: ErrUnknownTable
// for a table other than filter, nat, mangle and raw, ErrInvalidRule for
// a name that is no valid chain name (the error names the bad byte or the
// length) or a rule the kernel would refuse, ErrNotOwned for a valid name
// without the prefix (nothing changes then). In the nat table a DNAT,
// SNAT or MASQUERADE that the chain holds or reaches through its jumps
// and gotos must not be reached, through the desired hooks and owned
// chains, from a kernel chain other than its hooks (see SetHook):
// ErrInvalidRule naming the rule, the NAT target and the hook. In any
// table, ErrInvalidRule for a chain closing a loop of jumps and gotos
// that a desired hook reaches (the kernel refuses it: ELOOP), naming the
// loop and the hook.
func (t *IPTables) SetChain(table Table, chain Chain) error {
	if !t.made() {
		return errNotMade("set chain " + chain.Name)
	}
	if err := t.checkOwned(table, chain.Name); err != nil {
		return err
	}
	rc, err := t.render(table, chain.Name, "", chain.Rules)
	if err != nil {
		return fmt.Errorf("table %s: %w", table, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	lv := loopView{t: t, table: table, name: chain.Name, nameC: rc}
	if err := lv.check(chain.Name); err != nil {
		return fmt.Errorf("table %s: %w", table, err)
	}
	if err := t.setNATChain(table, chain.Name, chain.Rules); err != nil {
		return err
	}
	t.chains.Desired().Set(chainKey{table, chain.Name}, rc)
	return nil
}

// render checks rules against table (and hook, the kernel chain they go
// in, "" for an owned chain), then is renderChain with t's family, hash
// prefix and scratch buffers.
func (t *IPTables) render(table Table, chain, hook string, rules []Rule) (renderedChain, error) {
	if err := validateRulesIn(table, chain, hook, rules); err != nil {
		return renderedChain{}, err
	}
	sc, _ := t.scratch.Get().(*renderScratch)
	if sc == nil {
		sc = &renderScratch{}
	}
	rc, err := renderChain(chain, rules, t.cfg.Family, t.cfg.HashPrefix, sc)
	t.scratch.Put(sc)
	return rc, err
}

// DeleteChain removes an owned chain from the desired state; the next
// Apply flushes and deletes it. Unknown names are ignored.
func (t *IPTables) DeleteChain(table Table, name string) {
	if !t.made() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if table == NAT {
		t.nat.set(name, natNode{})
	}
	t.chains.Desired().Delete(chainKey{table, name})
}

// SetChains is SetChain for several chains of table, rendered on every
// CPU (runtime.GOMAXPROCS). It validates everything first and changes
// nothing on error; the error names the first chain in chains' order
// that failed.
func (t *IPTables) SetChains(table Table, chains []Chain) error {
	if !t.made() {
		return errNotMade("set chains")
	}
	rendered, err := t.renderAll(table, chains)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.checkLoops(table, chains, rendered, nil); err != nil {
		return err
	}
	if err := t.setNAT(table, chains, nil); err != nil {
		return err
	}
	for k, rc := range rendered {
		t.chains.Desired().Set(k, rc)
	}
	return nil
}

// renderAll validates and renders chains of table in parallel.
func (t *IPTables) renderAll(table Table, chains []Chain) (map[chainKey]renderedChain, error) {
	for _, c := range chains {
		if err := t.checkOwned(table, c.Name); err != nil {
			return nil, err
		}
	}
	out := make([]renderedChain, len(chains))
	errs := make([]error, len(chains))
	parallel.For(len(chains), 16, func(i int) {
		out[i], errs[i] = t.render(table, chains[i].Name, "", chains[i].Rules)
	})
	rendered := make(map[chainKey]renderedChain, len(chains))
	for i, c := range chains {
		if errs[i] != nil {
			return nil, fmt.Errorf("table %s: %w", table, errs[i])
		}
		rendered[chainKey{table, c.Name}] = out[i]
	}
	return rendered, nil
}

// ReplaceChains makes chains the complete desired set of owned chains of
// table: others in that table are deleted by the next Apply. It validates
// everything first and changes nothing on error.
func (t *IPTables) ReplaceChains(table Table, chains []Chain) error {
	if !t.made() {
		return errNotMade("replace chains")
	}
	rendered, err := t.renderAll(table, chains)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var drop []string
	for k := range t.chains.Desired().All() {
		if _, keep := rendered[k]; k.Table == table && !keep {
			drop = append(drop, k.Chain)
		}
	}
	if err := t.checkLoops(table, chains, rendered, drop); err != nil {
		return err
	}
	if err := t.setNAT(table, chains, drop); err != nil {
		return err
	}
	for _, c := range drop {
		t.chains.Desired().Delete(chainKey{table, c})
	}
	for k, rc := range rendered {
		t.chains.Desired().Set(k, rc)
	}
	return nil
}

// checkLoops refuses a batch of chains (rendered, with drop deleted)
// after which a hook would reach a jump loop (loop.go). t.mu is held.
func (t *IPTables) checkLoops(table Table, chains []Chain, rendered map[chainKey]renderedChain, drop []string) error {
	lv := loopView{t: t, table: table, set: rendered}
	if len(drop) > 0 {
		lv.drop = make(map[string]bool, len(drop))
		for _, c := range drop {
			lv.drop[c] = true
		}
	}
	starts := make([]string, len(chains))
	for i, c := range chains {
		starts[i] = c.Name
	}
	if err := lv.check(starts...); err != nil {
		return fmt.Errorf("table %s: %w", table, err)
	}
	return nil
}

// setNATChain is setNAT for the one owned chain or hook SetChain or
// SetHook changes, without setNAT's batch bookkeeping: its natRefs are
// set and checked, and the old ones put back when refused.
func (t *IPTables) setNATChain(table Table, name string, rules []Rule) error {
	if table != NAT {
		return nil
	}
	old := t.nat.set(name, natNodeOf(rules))
	if err := t.nat.check(name); err != nil {
		t.nat.set(name, old)
		return fmt.Errorf("table %s: %w", table, err)
	}
	return nil
}

// setNAT sets chains (and removes drop) in t.nat when table is nat and
// checks the changed chains' NAT targets' hooks; on error it restores
// t.nat as it was. t.mu is held.
func (t *IPTables) setNAT(table Table, chains []Chain, drop []string) error {
	if table != NAT {
		return nil
	}
	// olds holds the natRefs replaced that were not empty, in order:
	// setting every changed chain empty and then olds back in reverse
	// order restores t.nat.
	type undo struct {
		name string
		old  natNode
	}
	var olds []undo
	t.nat.grow(len(chains))
	for _, c := range drop {
		if old := t.nat.set(c, natNode{}); old.len() > 0 {
			olds = append(olds, undo{c, old})
		}
	}
	total := 0
	for _, c := range chains {
		if k := natRefCount(c.Rules); k > 1 {
			total += k
		}
	}
	arena := make([]natRef, 0, total)
	changed := make([]string, 0, len(chains))
	for _, c := range chains {
		n := natNodeIn(c.Rules, &arena)
		if old := t.nat.set(c.Name, n); old.len() > 0 {
			olds = append(olds, undo{c.Name, old})
		}
		if n.len() > 0 {
			changed = append(changed, c.Name)
		}
	}
	if err := t.nat.check(changed...); err != nil {
		for _, c := range chains {
			t.nat.set(c.Name, natNode{})
		}
		for i := len(olds) - 1; i >= 0; i-- {
			t.nat.set(olds[i].name, olds[i].old)
		}
		return fmt.Errorf("table %s: %w", table, err)
	}
	return nil
}

// SetHook sets the owned rules at the top of a kernel chain of table
// (INPUT, FORWARD, OUTPUT, PREROUTING, POSTROUTING): rules 1..n of that
// chain, in order, before any rule of another program. They usually jump
// to owned chains (Jump{Chain: "tabby-..."}). Empty rules remove the
// hook. ErrUnknownTable for a table other than filter, nat, mangle and
// raw; ErrNotOwned if kernelChain is not a kernel chain of table.
// ErrInvalidRule (naming the rule) for a rule the kernel would refuse,
// among them, in nat, a DNAT, SNAT or MASQUERADE in the hook or reached
// from it through jumps and gotos into the desired owned chains when
// kernelChain is not one of its hooks: DNAT only from PREROUTING and
// OUTPUT, SNAT from POSTROUTING and INPUT, MASQUERADE from POSTROUTING
// (the kernel's target hook masks). Jumps of other programs' rules, and
// chains reached through a chain tabby does not own, are not known and
// not followed. ErrInvalidRule too for hook rules that would reach a
// loop of jumps and gotos between owned chains (ELOOP).
func (t *IPTables) SetHook(table Table, kernelChain string, rules []Rule) error {
	if !t.made() {
		return errNotMade("set hook " + kernelChain)
	}
	if builtinChains[table] == nil {
		return fmt.Errorf("hook %s: %w %q", kernelChain, ErrUnknownTable, table)
	}
	if !isBuiltin(table, kernelChain) {
		return fmt.Errorf("hook %s/%s: %w: not a kernel chain of the table", table, kernelChain, ErrNotOwned)
	}
	rc, err := t.render(table, kernelChain, kernelChain, rules)
	if err != nil {
		return fmt.Errorf("table %s: %w", table, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	lv := loopView{t: t, table: table, hook: kernelChain, hookC: rc}
	if err := lv.check(kernelChain); err != nil {
		return fmt.Errorf("table %s: %w", table, err)
	}
	if err := t.setNATChain(table, kernelChain, rules); err != nil {
		return err
	}
	if len(rules) == 0 {
		delete(t.hooks, chainKey{table, kernelChain})
	} else {
		t.hooks[chainKey{table, kernelChain}] = rc
	}
	return nil
}

// QueueResync makes the next Apply read iptables-save first, so drift made
// by other programs is found and repaired.
func (t *IPTables) QueueResync() {
	if !t.made() {
		return
	}
	t.mu.Lock()
	t.read = false
	t.mu.Unlock()
}

// Refresh reads iptables-save and repairs any drift now.
func (t *IPTables) Refresh(ctx context.Context) error {
	if !t.made() {
		return errNotMade("refresh")
	}
	t.QueueResync()
	return t.Apply(ctx)
}

// Family is the address family t programs (Config.Family).
func (t *IPTables) Family() Family {
	if !t.made() {
		return 0
	}
	return t.cfg.Family
}

// Backend returns the backend in use (BackendAuto before the first Apply
// when detecting).
func (t *IPTables) Backend() Backend {
	if !t.made() {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.backend
}

// NewRunner returns a syncrunner.Runner that runs Apply at most every
// minInterval and at least every RefreshInterval (each periodic run
// re-reads iptables-save, repairing drift), retrying failures with
// backoff from one second to 30 seconds. Call Trigger after desired-state
// changes and Run in a goroutine.
func (t *IPTables) NewRunner(minInterval time.Duration, opts ...syncrunner.Option) (*syncrunner.Runner, error) {
	if !t.made() {
		return nil, errNotMade("new runner")
	}
	maxInterval := t.cfg.RefreshInterval
	if maxInterval < 0 {
		maxInterval = 0
	}
	opts = append([]syncrunner.Option{syncrunner.WithClock(t.clock), syncrunner.WithLogger(t.log),
		syncrunner.WithName("iptables-" + t.cfg.Family.String())}, opts...)
	return syncrunner.New(t.Apply, syncrunner.Config{
		MinInterval: minInterval, MaxInterval: maxInterval, RetryMin: time.Second, RetryMax: 30 * time.Second,
	}, opts...)
}

// InSync reports whether the last known kernel state equals the desired
// one (owned chains and hooks).
//
// A stale owned chain that another program's rule still jumps to (package
// doc, Design point 4, Ownership) is kept, flushed, because its `-X` would fail
// the transaction; it stays pending deletion, so InSync stays false for as
// long as that reference exists, however often Apply runs. Apply cannot
// fix this: only the other program (or an operator) can remove its jump.
// Apply returns no error for it; it logs a warning, "stale chain referenced
// by a foreign rule; flushing, not deleting", with the table and chain,
// when it flushes the chain (once, not on every Apply). Once the reference
// is gone, the next read of iptables-save (RefreshInterval, QueueResync or
// Refresh) lets Apply delete the chain and InSync becomes true.
func (t *IPTables) InSync() bool {
	if !t.made() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.read || !t.chains.InSync() {
		return false
	}
	for _, k := range t.hookKeys() {
		if t.hookNeedsRepair(k) {
			return false
		}
	}
	return true
}

// Apply writes the pending changes in one iptables-restore --noflush
// transaction: changed owned chains are rewritten, stale owned chains
// deleted, kernel-chain hooks repaired. It reads iptables-save first on
// the first call, after QueueResync, after a failure, and when the last
// read is older than RefreshInterval. With nothing pending it runs no
// restore. A rejected transaction returns a *RestoreError naming the
// failing line; the kernel keeps its previous rules. When the failing
// line is the `-X` of a stale owned chain (another program's rule jumps
// to it since the last read), Apply reads iptables-save again and writes
// what is still pending once more, flushing that chain instead of
// deleting it: one failed restore, no error.
func (t *IPTables) Apply(ctx context.Context) error {
	if !t.made() {
		return errNotMade("apply")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.readIfNeeded(ctx); err != nil {
		return err
	}
	input, done := t.buildInput()
	if len(input) == 0 {
		return nil
	}
	err := t.restore(ctx, input)
	var re *RestoreError
	if errors.As(err, &re) && strings.HasPrefix(re.Text, "-X ") && ctx.Err() == nil {
		// Deleting a stale chain failed: another program's rule jumps to
		// it since the last read. Read again (the reference is seen now,
		// so the chain is only flushed) and write what is still pending,
		// once.
		t.log.Warn("deleting a stale chain failed; re-reading and retrying", "line", re.Text, "err", err)
		if rerr := t.readKernel(ctx); rerr != nil {
			t.read = false
			return errors.Join(err, rerr)
		}
		if input, done = t.buildInput(); len(input) == 0 {
			return nil
		}
		err = t.restore(ctx, input)
	}
	if err != nil {
		t.read = false
		return err
	}
	done()
	return nil
}

// Read does now what the next Apply would do first: detect the backend
// (BackendAuto) and read iptables-save when Apply would (the first call,
// after QueueResync or a failure, when the last read is older than
// RefreshInterval); then that Apply writes without reading again, unless
// QueueResync or RefreshInterval intervene. It lets a caller overlap the
// read (a process run) with other work, such as rendering chains: SetChain
// and SetChains may run meanwhile. Errors are Apply's.
func (t *IPTables) Read(ctx context.Context) error {
	if !t.made() {
		return errNotMade("read")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.readIfNeeded(ctx)
}

func (t *IPTables) readIfNeeded(ctx context.Context) error {
	if t.backend == BackendAuto {
		b, err := DetectBackend(ctx, t.exec)
		if err != nil {
			return fmt.Errorf("detect iptables backend: %w", err)
		}
		t.log.Info("detected iptables backend", "backend", b, "family", t.cfg.Family)
		t.backend = b
	}
	if !t.read || (t.cfg.RefreshInterval > 0 && t.clock.Since(t.lastRd) >= t.cfg.RefreshInterval) {
		return t.readKernel(ctx)
	}
	return nil
}

func (t *IPTables) readKernel(ctx context.Context) error {
	cmd := Command{Name: binary(t.cfg.Family, t.backend, "save")}
	out, err := t.exec.Run(ctx, cmd)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	save, err := ParseSave(string(out))
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	owned := map[chainKey]renderedChain{}
	kernel := map[chainKey][]SavedRule{}
	foreign := map[chainKey]bool{}
	for _, tb := range save.Tables {
		for _, c := range tb.Chains {
			k := chainKey{tb.Name, c.Name}
			if !t.owned(c.Name) {
				for _, r := range c.Rules {
					if hashOf(r, t.cfg.HashPrefix) != "" {
						continue
					}
					if args, err := splitArgs(r.Spec); err == nil {
						if j := jumpOf(args); t.owned(j) {
							foreign[chainKey{tb.Name, j}] = true
						}
					}
				}
			}
			switch {
			case t.owned(c.Name):
				owned[k] = savedChain(c.Rules, t.cfg.HashPrefix)
			case isBuiltin(tb.Name, c.Name):
				kernel[k] = c.Rules
			}
		}
	}
	t.chains.Dataplane().ReplaceAll(func(yield func(chainKey, renderedChain) bool) {
		for k, v := range owned {
			if !yield(k, v) {
				return
			}
		}
	})
	t.kernel, t.foreignRefs = kernel, foreign
	t.read, t.lastRd = true, t.clock.Now()
	return nil
}

// hookKeys returns the kernel chains with desired hooks or owned rules, sorted.
func (t *IPTables) hookKeys() []chainKey {
	set := map[chainKey]bool{}
	for k := range t.hooks {
		set[k] = true
	}
	for k, rules := range t.kernel {
		for _, r := range rules {
			if hashOf(r, t.cfg.HashPrefix) != "" {
				set[k] = true
			}
		}
	}
	keys := make([]chainKey, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

// hookNeedsRepair reports whether the kernel chain k does not start with
// exactly the desired hook rules, or holds owned rules elsewhere.
func (t *IPTables) hookNeedsRepair(k chainKey) bool {
	want := t.hooks[k]
	rules := t.kernel[k]
	if len(rules) < want.rules() {
		return true
	}
	for i, r := range rules {
		h := hashOf(r, t.cfg.HashPrefix)
		if i < want.rules() {
			if h != want.hash(i) {
				return true
			}
		} else if h != "" {
			return true
		}
	}
	return false
}

// pendingChain is an owned chain to write: its key and desired value.
type pendingChain struct {
	key chainKey
	rc  renderedChain
}

// buildInput renders the restore input for everything pending, and a
// function recording it as written. It costs O(pending chains and rules)
// plus a sort of the pending keys: each desired value is looked up once
// and the text is written in one pass into a buffer sized up front.
// Within each table section the owned chains' declarations and rules
// come in appendSection's order (cheap for iptables-nft-restore's chain
// list), then the hook repairs (-D, -I), then the -X of stale chains.
func (t *IPTables) buildInput() ([]byte, func()) {
	updates := make([]pendingChain, 0, t.chains.NumPendingUpdates())
	for k, rc := range t.chains.PendingUpdates() {
		updates = append(updates, pendingChain{k, rc})
	}
	var deletions, flushOnly []chainKey
	for k, v := range t.chains.PendingDeletions() {
		switch {
		case !t.foreignRefs[k]:
			deletions = append(deletions, k)
		case v.rules() > 0:
			// Referenced by another program's rule: -X would fail the
			// whole transaction, so only flush it until the reference goes.
			t.log.Warn("stale chain referenced by a foreign rule; flushing, not deleting", "table", k.Table, "chain", k.Chain)
			flushOnly = append(flushOnly, k)
		}
	}
	var hooks []chainKey
	for _, k := range t.hookKeys() {
		if t.hookNeedsRepair(k) {
			hooks = append(hooks, k)
		}
	}
	if len(updates)+len(deletions)+len(flushOnly)+len(hooks) == 0 {
		return nil, nil
	}
	slices.SortFunc(updates, func(a, b pendingChain) int { return compareKeys(a.key, b.key) })
	slices.SortFunc(deletions, compareKeys)
	slices.SortFunc(flushOnly, compareKeys)
	tables := map[Table]bool{}
	size := 4096
	for _, u := range updates {
		tables[u.key.Table] = true
		size += 2*len(u.key.Chain) + 16                            // ":C - [0:0]"
		size += len(u.rc.text) + u.rc.rules()*(len(u.key.Chain)+5) // "-A C spec"
	}
	for _, ks := range [][]chainKey{deletions, flushOnly, hooks} {
		for _, k := range ks {
			tables[k.Table] = true
			size += 2*len(k.Chain) + 16 // ":C - [0:0]", "-X C"
		}
	}
	// Each slice is sorted by table first: a table's keys are a run.
	run := func(ks []chainKey, tb Table) []chainKey {
		i := slices.IndexFunc(ks, func(k chainKey) bool { return k.Table == tb })
		if i < 0 {
			return nil
		}
		j := i + 1
		for j < len(ks) && ks[j].Table == tb {
			j++
		}
		return ks[i:j]
	}
	b := make([]byte, 0, size)
	var section []sectionChain
	declare := func(chain string) {
		b = append(b, ':')
		b = append(b, chain...)
		b = append(b, " - [0:0]\n"...)
	}
	for _, tb := range slices.Sorted(maps.Keys(tables)) {
		lo, _ := slices.BinarySearchFunc(updates, tb, func(u pendingChain, tb Table) int { return cmp.Compare(u.key.Table, tb) })
		hi := lo
		for hi < len(updates) && updates[hi].key.Table == tb {
			hi++
		}
		up, del, fl := updates[lo:hi], run(deletions, tb), run(flushOnly, tb)
		b = append(b, '*')
		b = append(b, tb...)
		b = append(b, '\n')
		if t.sortedInput {
			for _, u := range up {
				declare(u.key.Chain)
			}
			for _, k := range slices.Concat(del, fl) {
				declare(k.Chain)
			}
			for _, u := range up {
				b = appendAppends(b, u.key.Chain, u.rc)
			}
		} else {
			section = section[:0]
			for _, u := range up {
				section = append(section, sectionChain{u.key.Chain, u.rc})
			}
			for _, k := range slices.Concat(del, fl) {
				section = append(section, sectionChain{name: k.Chain})
			}
			slices.SortFunc(section, func(a, b sectionChain) int { return strings.Compare(a.name, b.name) })
			b = appendSection(b, section)
		}
		for _, k := range hooks {
			if k.Table != tb {
				continue
			}
			for _, r := range t.kernel[k] {
				if hashOf(r, t.cfg.HashPrefix) != "" {
					b = fmt.Appendf(b, "-D %s %s\n", k.Chain, r.Spec)
				}
			}
			for i, spec := range t.hooks[k].specList() {
				b = fmt.Appendf(b, "-I %s %d %s\n", k.Chain, i+1, spec)
			}
		}
		for _, k := range del {
			b = append(b, "-X "...)
			b = append(b, k.Chain...)
			b = append(b, '\n')
		}
		b = append(b, "COMMIT\n"...)
	}
	done := func() {
		for _, u := range updates {
			t.chains.UpdateApplied(u.key)
		}
		for _, k := range deletions {
			t.chains.DeletionApplied(k)
		}
		for _, k := range flushOnly {
			t.chains.Dataplane().Set(k, renderedChain{})
		}
		for _, k := range hooks {
			var rules []SavedRule
			for _, spec := range t.hooks[k].specList() {
				r, _ := parseRule(spec) // rendered by us: always parses
				rules = append(rules, r)
			}
			for _, r := range t.kernel[k] {
				if hashOf(r, t.cfg.HashPrefix) == "" {
					rules = append(rules, r)
				}
			}
			t.kernel[k] = rules
		}
	}
	return b, done
}

// appendAppends appends one "-A chain spec" line per spec to b.
func appendAppends(b []byte, chain string, rc renderedChain) []byte {
	for i := range rc.rules() {
		b = appendRule(b, chain, rc.spec(i))
	}
	return b
}

// writeAppends writes one "-A chain spec" line per spec.
func writeAppends(b interface{ WriteString(string) (int, error) }, chain string, specs []string) {
	for _, spec := range specs {
		_, _ = b.WriteString("-A ")
		_, _ = b.WriteString(chain)
		_, _ = b.WriteString(" ")
		_, _ = b.WriteString(spec)
		_, _ = b.WriteString("\n")
	}
}

var (
	lineRE         = regexp.MustCompile(`line:? (\d+)`)
	missingChainRE = regexp.MustCompile(`Chain '([^']+)' does not exist`)
)

// restore runs the restore binary with input, retrying on xtables lock
// contention with backoff.
func (t *IPTables) restore(ctx context.Context, input []byte) error {
	wait := int((t.cfg.LockWait + time.Second - 1) / time.Second)
	cmd := Command{
		Name:  binary(t.cfg.Family, t.backend, "restore"),
		Args:  []string{"--noflush", "-w", strconv.Itoa(wait)},
		Stdin: input,
	}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		_, err := t.exec.Run(ctx, cmd)
		if err == nil {
			t.log.Debug("iptables-restore", "family", t.cfg.Family, "backend", t.backend, "bytes", len(input))
			return nil
		}
		var ee *ExitError
		if errors.As(err, &ee) && isLockError(ee) && attempt < t.cfg.LockRetries && ctx.Err() == nil {
			t.log.Info("xtables lock busy, retrying", "attempt", attempt+1, "backoff", backoff)
			timer := t.clock.NewTimer(backoff)
			select {
			case <-timer.C():
			case <-ctx.Done():
				// Cancelled while waiting out the lock: the last
				// attempt's error, wrapped with the context's.
				timer.Stop()
				return &RestoreError{Command: cmd.String(), Err: errors.Join(ctx.Err(), err), Stderr: strings.TrimSpace(ee.Stderr)}
			}
			backoff *= 2
			continue
		}
		re := &RestoreError{Command: cmd.String(), Err: err}
		if ee != nil {
			re.Stderr = strings.TrimSpace(ee.Stderr)
			if m := lineRE.FindStringSubmatch(ee.Stderr); m != nil {
				n, _ := strconv.Atoi(m[1])
				lines := strings.Split(string(input), "\n")
				if n >= 1 && n <= len(lines) {
					re.Line, re.Text = n, lines[n-1]
				}
				// The nft backend checks jumps at COMMIT and names that
				// line: point at the rule that jumps to the missing chain.
				if c := missingChainRE.FindStringSubmatch(ee.Stderr); c != nil && re.Text == "COMMIT" {
					for i := n - 2; i >= 0 && !strings.HasPrefix(lines[i], "*"); i-- {
						if strings.HasSuffix(lines[i], " -j "+c[1]) || strings.HasSuffix(lines[i], " -g "+c[1]) {
							re.Line, re.Text = i+1, lines[i]
						}
					}
				}
			}
		}
		return re
	}
}

// isLockError reports whether a restore failed only because another
// process held the xtables lock (exit status 4, "xtables lock").
func isLockError(e *ExitError) bool {
	return e.Code == 4 && strings.Contains(e.Stderr, "xtables lock")
}

// Render returns the whole desired state as iptables-restore --noflush
// input: the lines Apply would write to an empty dataplane (a dry run for
// audits and golden tests), but with tables, chains and hooks sorted and
// every declaration before the rules, where Apply interleaves them in
// the order iptables-nft-restore handles fastest (see the package doc).
func (t *IPTables) Render() string {
	if !t.made() {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	byTable := map[Table][]chainKey{}
	for k := range t.chains.Desired().All() {
		byTable[k.Table] = append(byTable[k.Table], k)
	}
	for k := range t.hooks {
		byTable[k.Table] = append(byTable[k.Table], k)
	}
	var b strings.Builder
	for _, tb := range slices.Sorted(func(yield func(Table) bool) {
		for tb := range byTable {
			if !yield(tb) {
				return
			}
		}
	}) {
		keys := byTable[tb]
		slices.SortFunc(keys, compareKeys)
		fmt.Fprintf(&b, "*%s\n", tb)
		for _, k := range keys {
			if !isBuiltin(tb, k.Chain) {
				fmt.Fprintf(&b, ":%s - [0:0]\n", k.Chain)
			}
		}
		for _, k := range keys {
			if rc, ok := t.chains.Desired().Get(k); ok {
				writeAppends(&b, k.Chain, rc.specList())
			}
		}
		for _, k := range keys {
			if rc, ok := t.hooks[k]; ok {
				for i, spec := range rc.specList() {
					fmt.Fprintf(&b, "-I %s %d %s\n", k.Chain, i+1, spec)
				}
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}
