package natoutgoing

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/ipam"
)

// Applier keeps the NAT-outgoing sets, chain and hook of one family equal to
// what Render makes of the pools it is given. See the package doc. The
// zero value is not usable; make one with New (its methods return
// ErrInvalidConfig).
type Applier struct {
	cfg  Config
	ipt  *iptables.IPTables
	sets *ipsets.IPSets
	log  *slog.Logger
	hook bool

	mu sync.Mutex
}

// Option configures New; a nil Option is ignored.
type Option func(*Applier)

// WithLogger sets the logger (default: discard); nil keeps the default.
func WithLogger(l *slog.Logger) Option {
	return func(a *Applier) {
		if l != nil {
			a.log = l
		}
	}
}

// WithoutHook leaves nat POSTROUTING alone: the caller places HookRule in
// it (for example after its own service SNAT rules) with SetHook.
func WithoutHook() Option { return func(a *Applier) { a.hook = false } }

// New returns an Applier for cfg that writes through ipt (which must be of
// cfg.Family) and sets (the node's ipsets; both families may share one).
// ErrInvalidConfig for a bad family, nil ipt or sets, or ipt of the other
// family.
func New(cfg Config, ipt *iptables.IPTables, sets *ipsets.IPSets, opts ...Option) (*Applier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if ipt == nil || sets == nil {
		return nil, fmt.Errorf("%w: nil iptables or ipsets", ErrInvalidConfig)
	}
	if ipt.Family() != cfg.Family {
		return nil, fmt.Errorf("%w: family %v, but the iptables are %v", ErrInvalidConfig, cfg.Family, ipt.Family())
	}
	a := &Applier{cfg: cfg, ipt: ipt, sets: sets, log: slog.New(slog.NewTextHandler(io.Discard, nil)), hook: true}
	for _, o := range opts {
		if o != nil { // a nil Option is ignored
			o(a)
		}
	}
	return a, nil
}

// check returns nil when New made a, else an error of op wrapping
// ErrInvalidConfig. Only New sets a.ipt, never changed afterwards, so
// reading it needs no lock.
func (a *Applier) check(op string) error {
	if a == nil || a.ipt == nil {
		return fmt.Errorf("nat outgoing %s: natoutgoing.Applier has no configuration (make it with New): %w", op, ErrInvalidConfig)
	}
	return nil
}

// Apply renders pools (the complete list, as ipam.IPAM.Pools returns it;
// call it again whenever a pool is created, updated or deleted) and
// programs the result: set members first (ipsets ApplyUpdates, so the rule
// never names a missing set), then the chain and hook (one
// iptables-restore). Only changes are written. It destroys no ipsets:
// stale sets are left to the owner of the IPSets (ApplyDeletions) or to
// Delete. Errors name the step and wrap the package's, iptables' or ipsets'
// errors; on error the next Apply retries.
func (a *Applier) Apply(ctx context.Context, pools []ipam.IPPool) error {
	if err := a.check("apply"); err != nil {
		return err
	}
	d, err := Render(a.cfg, pools)
	if err != nil {
		return fmt.Errorf("nat outgoing %s: %w", a.cfg.Family, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range d.Sets {
		if err := a.sets.SetMembers(s.Spec, s.Members); err != nil {
			return fmt.Errorf("nat outgoing: set %s: %w", s.Spec.Name, err)
		}
	}
	if err := a.sets.ApplyUpdates(ctx); err != nil {
		return fmt.Errorf("nat outgoing: apply ipsets: %w", err)
	}
	if err := a.ipt.SetChain(iptables.NAT, d.Chain); err != nil {
		return fmt.Errorf("nat outgoing: chain %s: %w", d.Chain.Name, err)
	}
	if a.hook {
		if err := a.ipt.SetHook(iptables.NAT, HookChain, d.Hook); err != nil {
			return fmt.Errorf("nat outgoing: hook %s: %w", HookChain, err)
		}
	}
	if err := a.ipt.Apply(ctx); err != nil {
		return fmt.Errorf("nat outgoing: apply iptables: %w", err)
	}
	a.log.Debug("nat outgoing applied", "family", a.cfg.Family,
		"pools", len(d.Sets[0].Members), "natPools", len(d.Sets[1].Members))
	return nil
}

// Delete removes the hook, the chain and the two sets of the family from
// the kernel (rules first, then ipsets ApplyDeletions, which also destroys
// any other owned set no longer desired in that IPSets).
func (a *Applier) Delete(ctx context.Context) error {
	if err := a.check("delete"); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.hook {
		if err := a.ipt.SetHook(iptables.NAT, HookChain, nil); err != nil {
			return fmt.Errorf("nat outgoing: hook %s: %w", HookChain, err)
		}
	}
	a.ipt.DeleteChain(iptables.NAT, ChainNATOutgoing)
	if err := a.ipt.Apply(ctx); err != nil {
		return fmt.Errorf("nat outgoing: apply iptables: %w", err)
	}
	all, masq := SetNames(a.cfg.Family)
	a.sets.DeleteSet(all)
	a.sets.DeleteSet(masq)
	if err := a.sets.ApplyDeletions(ctx); err != nil {
		return fmt.Errorf("nat outgoing: delete ipsets: %w", err)
	}
	return nil
}
