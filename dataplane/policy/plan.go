package policy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
)

// Plan is what an Apply would change, computed without touching the kernel
// (a dry run / diff): owned chains of the filter table to write or delete
// and set members to add or remove, relative to what the compiler last
// handed to its iptables and ipsets appliers. Both slices are sorted by
// name.
type Plan struct {
	Chains []ChainChange
	Sets   []SetChange
	// Hooks is true when the FORWARD, INPUT and OUTPUT jump rules are still to be
	// set (the first Apply).
	Hooks bool

	family iptables.Family
	owners map[string]string // policy chain name -> "key direction"
}

// ChainChange is one chain to write (Rules is its complete new content) or
// delete (Deleted).
type ChainChange struct {
	Name    string
	Rules   []iptables.Rule
	Deleted bool
}

// SetChange is one set to create (Created, Added holds every member),
// edit (Added, Removed) or destroy (Deleted).
type SetChange struct {
	Spec             ipsets.SetSpec
	Created, Deleted bool
	Added, Removed   []ipsets.Member
}

// Empty reports whether applying the plan would change nothing.
func (p *Plan) Empty() bool { return len(p.Chains) == 0 && len(p.Sets) == 0 && !p.Hooks }

// Err reports whether every chain the plan writes renders as iptables
// would accept it: nil, or one error per chain that does not (each
// wrapping iptables.ErrInvalidRule and naming the chain, and its policy
// for a policy chain), joined. Apply would fail on those chains; String
// shows the error in place of their rules. UpdatePolicy and Replace
// refuse a policy whose rules do not render, so a non-nil Err means
// rules the compiler rendered wrongly. Err renders the chains each time
// it is called.
func (p *Plan) Err() error {
	var errs []error
	for _, c := range p.Chains {
		if c.Deleted {
			continue
		}
		if _, err := renderChain(p.family, c); err != nil {
			errs = append(errs, fmt.Errorf("chain %s%s: %w", c.Name, ownerSuffix(p.owners[c.Name]), err))
		}
	}
	return errors.Join(errs...)
}

// String renders the plan for logs and audits: one "set"/"chain" header
// per change, set members as "+ member" / "- member", chains in
// iptables-restore syntax (hash comments included).
func (p *Plan) String() string {
	var b strings.Builder
	for _, s := range p.Sets {
		switch {
		case s.Deleted:
			fmt.Fprintf(&b, "destroy set %s\n", s.Spec.Name)
			continue
		case s.Created:
			fmt.Fprintf(&b, "create set %s %s family %s\n", s.Spec.Name, s.Spec.Type, s.Spec.Family)
		default:
			fmt.Fprintf(&b, "update set %s\n", s.Spec.Name)
		}
		for _, m := range s.Removed {
			fmt.Fprintf(&b, "- %s\n", m)
		}
		for _, m := range s.Added {
			fmt.Fprintf(&b, "+ %s\n", m)
		}
	}
	for _, c := range p.Chains {
		if c.Deleted {
			fmt.Fprintf(&b, "delete chain %s\n", c.Name)
			continue
		}
		fmt.Fprintf(&b, "write chain %s (%d rules)\n", c.Name, len(c.Rules))
		b.WriteString(renderRules(p.family, c))
	}
	if p.Hooks {
		fmt.Fprintf(&b, "hook FORWARD -> %s, INPUT -> %s, OUTPUT -> %s\n", ChainForward, ChainInput, ChainOutput)
	}
	return b.String()
}

// renderRules renders one chain's rules with a scratch in-memory
// iptables (the -A lines only), or the error line when they do not render.
func renderRules(f iptables.Family, c ChainChange) string {
	s, err := renderChain(f, c)
	if err != nil {
		return err.Error() + "\n"
	}
	return s
}

// renderChain renders one chain's rules (the -A lines) with a scratch
// in-memory iptables.
func renderChain(f iptables.Family, c ChainChange) (string, error) {
	if f == 0 { // a Plan not made by a Compiler
		f = iptables.IPv4
	}
	ipt, err := scratchIPTables(f)
	if err != nil {
		return "", err
	}
	if err := ipt.SetChain(iptables.Filter, iptables.Chain{Name: c.Name, Rules: c.Rules}); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, l := range strings.Split(ipt.Render(), "\n") {
		if strings.HasPrefix(l, "-A ") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String(), nil
}

// Plan renders what changed since the last Apply (successful or not) and
// returns the difference, without handing anything to the appliers.
func (c *Compiler) Plan() *Plan {
	if !c.made() {
		return &Plan{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.plan()
}

func (c *Compiler) plan() *Plan {
	c.flush()
	p := &Plan{Hooks: !c.hooksSet, family: c.cfg.Family}
	for _, name := range slices.Sorted(maps.Keys(c.dirtyChains)) {
		rules, want := c.chains[name]
		old, had := c.appliedChains[name]
		switch {
		case !want && had:
			p.Chains = append(p.Chains, ChainChange{Name: name, Deleted: true})
		case want && (!had || !reflect.DeepEqual(rules, old)):
			p.Chains = append(p.Chains, ChainChange{Name: name, Rules: slices.Clone(rules)})
			if o := c.chainOf[name]; o != "" {
				if p.owners == nil {
					p.owners = map[string]string{}
				}
				p.owners[name] = o
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.dirtySets)) {
		s, want := c.setState[name]
		old, had := c.appliedSets[name]
		switch {
		case !want && had:
			p.Sets = append(p.Sets, SetChange{Spec: old.spec, Deleted: true})
		case want && (!had || old.spec != s.spec):
			p.Sets = append(p.Sets, SetChange{Spec: s.spec, Created: true, Added: sortedMembers(maps.Keys(s.members))})
		case want:
			var ch SetChange
			ch.Spec = s.spec
			for m := range s.members {
				if !old.members[m] {
					ch.Added = append(ch.Added, m)
				}
			}
			for m := range old.members {
				if _, ok := s.members[m]; !ok {
					ch.Removed = append(ch.Removed, m)
				}
			}
			if len(ch.Added)+len(ch.Removed) > 0 {
				sortMembers(ch.Added)
				sortMembers(ch.Removed)
				p.Sets = append(p.Sets, ch)
			}
		}
	}
	return p
}

func sortedMembers(seq func(func(ipsets.Member) bool)) []ipsets.Member {
	var out []ipsets.Member
	for m := range seq {
		out = append(out, m)
	}
	sortMembers(out)
	return out
}

func sortMembers(ms []ipsets.Member) {
	slices.SortFunc(ms, func(a, b ipsets.Member) int { return strings.Compare(a.String(), b.String()) })
}

// Apply renders what changed, hands the changes to the ipsets and iptables
// appliers and has them write it: sets first (creations and member
// changes), then the chains in one iptables-restore, then set
// destructions, so a rule never names a missing set. The set writes and
// the iptables-save read (when one is due) run while the chains are
// rendered. It returns the plan it rendered: the changes since the last
// Apply, also when that Apply failed. A failed Apply (a kernel error, a
// cancelled ctx) has already handed its changes to the appliers, which
// keep them as desired state; the next Apply writes them too, although its
// plan (like Plan's) does not list them again.
func (c *Compiler) Apply(ctx context.Context) (*Plan, error) {
	if err := c.check("apply"); err != nil {
		return &Plan{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.plan()
	if err := c.pushSets(p); err != nil {
		return p, errors.Join(err, c.pushChains(p))
	}
	setsDone, readDone := make(chan error, 1), make(chan error, 1)
	go func() { setsDone <- c.sets.ApplyUpdates(ctx) }()
	go func() { readDone <- c.ipt.Read(ctx) }()
	pushErr := c.pushChains(p)
	setsErr, readErr := <-setsDone, <-readDone
	if pushErr != nil {
		return p, pushErr
	}
	clear(c.dirtyChains)
	clear(c.dirtySets)
	if setsErr != nil {
		return p, fmt.Errorf("apply ipsets: %w", setsErr)
	}
	if readErr != nil {
		return p, fmt.Errorf("apply iptables: %w", readErr)
	}
	if err := c.ipt.Apply(ctx); err != nil {
		return p, fmt.Errorf("apply iptables: %w", err)
	}
	if err := c.sets.ApplyDeletions(ctx); err != nil {
		return p, fmt.Errorf("delete ipsets: %w", err)
	}
	return p, nil
}

// pushSets hands a plan's set changes to the ipsets applier's desired
// state and records them as applied.
func (c *Compiler) pushSets(p *Plan) error {
	var errs []error
	for _, s := range p.Sets {
		switch {
		case s.Deleted:
			c.sets.DeleteSet(s.Spec.Name)
			delete(c.appliedSets, s.Spec.Name)
		case s.Created:
			if err := c.sets.SetMembers(s.Spec, s.Added); err != nil {
				errs = append(errs, fmt.Errorf("set %s: %w", s.Spec.Name, err))
				continue
			}
			a := &appliedSet{spec: s.Spec, members: map[ipsets.Member]bool{}}
			for _, m := range s.Added {
				a.members[m] = true
			}
			c.appliedSets[s.Spec.Name] = a
		default:
			a := c.appliedSets[s.Spec.Name]
			if err := c.sets.RemoveMembers(s.Spec.Name, s.Removed...); err != nil {
				errs = append(errs, fmt.Errorf("set %s: %w", s.Spec.Name, err))
				continue
			}
			if err := c.sets.AddMembers(s.Spec.Name, s.Added...); err != nil {
				errs = append(errs, fmt.Errorf("set %s: %w", s.Spec.Name, err))
				continue
			}
			for _, m := range s.Removed {
				delete(a.members, m)
			}
			for _, m := range s.Added {
				a.members[m] = true
			}
		}
	}
	return errors.Join(errs...)
}

// pushChains hands a plan's chains and hooks to the iptables applier's
// desired state and records them as applied.
func (c *Compiler) pushChains(p *Plan) error {
	var errs []error
	var set []iptables.Chain
	for _, ch := range p.Chains {
		if ch.Deleted {
			c.ipt.DeleteChain(iptables.Filter, ch.Name)
			delete(c.appliedChains, ch.Name)
			continue
		}
		set = append(set, iptables.Chain{Name: ch.Name, Rules: ch.Rules})
	}
	// All chains rendered at once (in parallel); if one is refused, one
	// by one, so the others still go through.
	if err := c.ipt.SetChains(iptables.Filter, set); err == nil {
		for _, ch := range set {
			c.appliedChains[ch.Name] = ch.Rules
		}
	} else {
		for _, ch := range set {
			if err := c.ipt.SetChain(iptables.Filter, ch); err != nil {
				errs = append(errs, fmt.Errorf("chain %s%s: %w", ch.Name, c.chainOwner(ch.Name), err))
				continue
			}
			c.appliedChains[ch.Name] = ch.Rules
		}
	}
	if p.Hooks {
		if err := c.ipt.SetHook(iptables.Filter, "FORWARD", []iptables.Rule{{Action: iptables.Jump{Chain: ChainForward}}}); err != nil {
			errs = append(errs, err)
		}
		if err := c.ipt.SetHook(iptables.Filter, "INPUT", []iptables.Rule{{Action: iptables.Jump{Chain: ChainInput}}}); err != nil {
			errs = append(errs, err)
		}
		if err := c.ipt.SetHook(iptables.Filter, "OUTPUT", []iptables.Rule{{Action: iptables.Jump{Chain: ChainOutput}}}); err != nil {
			errs = append(errs, err)
		}
		c.hooksSet = true
	}
	return errors.Join(errs...)
}

// chainOwner names, for errors, the policy whose chain name is: " (policy
// ns/name ingress)", or "" for other chains.
func (c *Compiler) chainOwner(name string) string { return ownerSuffix(c.chainOf[name]) }

func ownerSuffix(owner string) string {
	if owner == "" {
		return ""
	}
	return " (policy " + owner + ")"
}

// Delete removes from the kernel everything the compiler wrote: the
// FORWARD, INPUT and OUTPUT hooks first (so no packet reaches a chain being
// removed), then its filter-table chains in the same iptables-restore,
// then its ipsets (ipsets ApplyDeletions, which also destroys any other
// owned set no longer desired in that IPSets). It is what an agent calls
// when it stops enforcing policy on the node for good (uninstall, or a
// switch to another dataplane), like natoutgoing's Delete and kube-proxy's
// cleanup: without it the hooks and the dispatch chains, which drop
// traffic of unknown workload interfaces, stay behind. Chains and sets
// that other users of the same IPTables and IPSets own are left alone,
// but their pending changes are written too.
//
// The compiler keeps its model (policies, endpoints, interfaces): the next
// Apply writes the whole state again, hooks included. Errors are the
// appliers', wrapped; on error the next Delete or Apply retries.
func (c *Compiler) Delete(ctx context.Context) error {
	if err := c.check("delete"); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, kc := range []string{"FORWARD", "INPUT", "OUTPUT"} {
		if err := c.ipt.SetHook(iptables.Filter, kc, nil); err != nil {
			errs = append(errs, err)
		}
	}
	for name := range c.appliedChains {
		c.ipt.DeleteChain(iptables.Filter, name)
	}
	for name := range c.appliedSets {
		c.sets.DeleteSet(name)
	}
	// Everything is to be written again by the next Apply.
	clear(c.appliedChains)
	clear(c.appliedSets)
	c.hooksSet = false
	for name := range c.chains {
		c.dirtyChains[name] = true
	}
	for name := range c.setState {
		c.dirtySets[name] = true
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.ipt.Apply(ctx); err != nil {
		return fmt.Errorf("delete policy chains: %w", err)
	}
	if err := c.sets.ApplyDeletions(ctx); err != nil {
		return fmt.Errorf("delete policy ipsets: %w", err)
	}
	return nil
}
