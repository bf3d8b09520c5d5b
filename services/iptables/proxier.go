package iptables

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/services"
	"github.com/vishvananda/netns"
)

// ChainPrefix starts every chain the Proxier owns, HashPrefix every
// rule's hash comment. They differ from dataplane/iptables' defaults
// ("tabby-", "tabby:") so the services IPTables and the policy one can
// share a node without treating each other's chains as stale.
const (
	ChainPrefix = "TABBY-"
	HashPrefix  = "tabby-svc:"
)

// Fixed chains (kube-proxy's names with TABBY- for KUBE-).
const (
	ChainServices         = "TABBY-SERVICES"          // nat and filter
	ChainNodePorts        = "TABBY-NODEPORTS"         // nat
	ChainExternalServices = "TABBY-EXTERNAL-SERVICES" // filter
	ChainPostrouting      = "TABBY-POSTROUTING"       // nat
	ChainMarkMasq         = "TABBY-MARK-MASQ"         // nat
	ChainMasqNonPod       = "TABBY-MASQ-NONPOD"       // nat, with ClusterCIDRs
	ChainFirewall         = "TABBY-FIREWALL"          // filter, IPv4: CVE-2020-8558 guard
	ChainProxyFirewall    = "TABBY-PROXY-FIREWALL"    // filter: loadBalancerSourceRanges drops
)

// DefaultMasqueradeMark is the packet-mark bit that asks for masquerade
// in postrouting (kube-proxy's 0x4000).
const DefaultMasqueradeMark = 0x4000

// ErrInvalidConfig is wrapped by New for a bad Config, and by the methods
// of a Proxier that New did not make (nil or a zero value).
var ErrInvalidConfig = errors.New("invalid iptables services config")

// ErrClosed is returned by Sync after Close.
var ErrClosed = errors.New("iptables services proxier closed")

// Config configures a Proxier.
type Config struct {
	// Family is ipt.IPv4 or ipt.IPv6; it must be the IPTables' family.
	Family ipt.Family
	// ClusterCIDRs are the pod CIDRs. When set, traffic to a cluster IP
	// from outside them is masqueraded (kube-proxy's --cluster-cidr), and
	// pod traffic to an externalTrafficPolicy Local address is sent to
	// the whole cluster.
	ClusterCIDRs []netip.Prefix
	// MasqueradeMark is the mark bit for masquerade (default 0x4000),
	// a value with exactly one bit set: kube-proxy's
	// --iptables-masquerade-bit N (0..31) is 1<<N. New returns
	// ErrInvalidConfig for any other non-zero value, which would set and
	// clear other programs' mark bits.
	MasqueradeMark uint32
	// LocalhostNodePorts makes node ports answer on 127.0.0.0/8 from the
	// node itself (kube-proxy's --iptables-localhost-nodeports, IPv4
	// only). The first Sync sets net.ipv4.conf.all.route_localnet=1
	// through the sysctl function (WithSysctl). The default function
	// writes the caller's namespace, so with an IPTables in another one
	// (ipt.WithNetns) New returns ErrInvalidConfig unless WithSysctl is
	// given. Packets to 127.0.0.0/8 from another host are dropped
	// whatever this says (TABBY-FIREWALL).
	LocalhostNodePorts bool
	// NodeIPs are the node's addresses (kube-proxy's node IP; either
	// family, those of Family are used; IPv4-mapped IPv6 addresses are
	// taken as IPv4). A loadBalancerSourceRanges entry that contains one
	// of them also lets in sources equal to the Service's load-balancer
	// IPs (services.ServicePort.FirewallSources), so the node's own
	// connections to a load-balancer IP routed back to it get through.
	// With none, that never applies. kube-proxy checks its one node IP;
	// several addresses here let in as much as any one of them would.
	NodeIPs []netip.Addr
}

// Option configures a Proxier.
type Option func(*Proxier)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(p *Proxier) { p.log = l } }

// WithStaleFlows sets a function Sync calls, after a successful Apply,
// with the UDP/SCTP flows the change made stale (services.StaleFlows), so
// a conntrack cleaner (services/conntrack) deletes them.
func WithStaleFlows(f func(ctx context.Context, stale []services.StaleFlow)) Option {
	return func(p *Proxier) { p.onStale = f }
}

// WithHealthServer makes every successful Sync hand the service ports
// it applied to h (HealthServer.Update) and report the sync
// (HealthServer.Updated), so h serves the healthCheckNodePorts and
// /healthz from the same model.
func WithHealthServer(h *services.HealthServer) Option { return func(p *Proxier) { p.health = h } }

// WithSysctl sets how the Proxier writes a sysctl (key like
// "net/ipv4/conf/all/route_localnet"); default: write
// /proc/sys/<key> in the caller's network namespace. Tests pass
// nettest's Netns.Sysctl.
func WithSysctl(f func(key, value string) error) Option {
	return func(p *Proxier) { p.sysctl, p.sysctlSet = f, true }
}

// Proxier renders a services.Tracker into iptables NAT and filter chains
// through a dataplane/iptables IPTables (see the package doc). The zero
// value is not usable; make one with New (Sync returns ErrInvalidConfig,
// Close returns nil, QueueResync does nothing, HairpinSet returns "").
type Proxier struct {
	ipt     *ipt.IPTables
	tracker *services.Tracker
	cfg     Config
	log     *slog.Logger
	onStale func(context.Context, []services.StaleFlow)
	sysctl  func(key, value string) error
	// sysctlSet: WithSysctl was given.
	sysctlSet bool
	health    *services.HealthServer
	// sets and hairpinSet: WithHairpinSet. hairpinRefs counts, per
	// member, the ports whose endpoints put it in the set; hairpinDirty
	// holds the members whose count went to or from 0 since the last
	// render.
	sets      *ipsets.IPSets
	noSet     bool         // WithHairpinChains
	closeSets func() error // the kernel handle New opened, or nil
	// leftoverSet: with WithHairpinChains on the kernel, the default
	// layout's set, which the first successful Sync destroys.
	leftoverSet string
	hairpinSet  string
	// hairpinDeclared: the hairpin set is desired in sets (declareHairpinSet).
	hairpinDeclared bool
	hairpinRefs     map[ipsets.Member]int
	hairpinDirty    map[ipsets.Member]struct{}

	mu       sync.Mutex
	state    map[services.ServicePortName]*rendered
	resolved map[services.ServicePortName]*services.Resolved
	stale    []services.StaleFlow // flows to clean once an Apply succeeds
	// applied holds the ports rendered since the last successful Apply,
	// for the health server.
	applied  map[services.ServicePortName]*services.Resolved
	needFull bool
	closed   bool // Close was called: Sync returns ErrClosed
}

// NewIPTables returns a dataplane/iptables IPTables for family with this
// package's ChainPrefix and HashPrefix (opts: WithNetns, WithExecer, ...).
func NewIPTables(family ipt.Family, backend ipt.Backend, opts ...ipt.Option) (*ipt.IPTables, error) {
	return ipt.New(ipt.Config{Family: family, Backend: backend, ChainPrefix: ChainPrefix, HashPrefix: HashPrefix}, opts...)
}

// New returns a Proxier that renders tracker into t, an IPTables made by
// NewIPTables. Nothing is written until Sync. A nil t or tracker is an
// ErrInvalidConfig.
func New(t *ipt.IPTables, tracker *services.Tracker, cfg Config, opts ...Option) (*Proxier, error) {
	if t == nil || tracker == nil {
		return nil, fmt.Errorf("%w: New needs an IPTables and a Tracker (got IPTables %v, Tracker %v)",
			ErrInvalidConfig, t != nil, tracker != nil)
	}
	if cfg.Family != ipt.IPv4 && cfg.Family != ipt.IPv6 {
		return nil, fmt.Errorf("%w: family %d", ErrInvalidConfig, cfg.Family)
	}
	if t.Family() != cfg.Family {
		return nil, fmt.Errorf("%w: Config.Family is %s but the IPTables is %s", ErrInvalidConfig, cfg.Family, t.Family())
	}
	if cfg.LocalhostNodePorts && cfg.Family == ipt.IPv6 {
		return nil, fmt.Errorf("%w: localhost node ports are IPv4 only", ErrInvalidConfig)
	}
	for i, c := range cfg.ClusterCIDRs {
		if !c.IsValid() {
			return nil, fmt.Errorf("%w: ClusterCIDRs[%d] is not a valid prefix (the zero netip.Prefix)", ErrInvalidConfig, i)
		}
		if c.Addr().Is4() != (cfg.Family == ipt.IPv4) {
			return nil, fmt.Errorf("%w: cluster CIDR %v is not %s", ErrInvalidConfig, c, cfg.Family)
		}
	}
	if cfg.MasqueradeMark == 0 {
		cfg.MasqueradeMark = DefaultMasqueradeMark
	}
	if bits.OnesCount32(cfg.MasqueradeMark) != 1 {
		return nil, fmt.Errorf("%w: MasqueradeMark %#x is not a single bit (kube-proxy's --iptables-masquerade-bit N is 1<<N)",
			ErrInvalidConfig, cfg.MasqueradeMark)
	}
	p := &Proxier{ipt: t, tracker: tracker, cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		sysctl: procSysctl, needFull: true,
		state: map[services.ServicePortName]*rendered{}, resolved: map[services.ServicePortName]*services.Resolved{}}
	for _, o := range opts {
		o(p)
	}
	if cfg.LocalhostNodePorts && !p.sysctlSet && t.Netns() != "" {
		return nil, fmt.Errorf("%w: LocalhostNodePorts with an IPTables in netns %q needs WithSysctl (the default writes route_localnet in the caller's namespace)",
			ErrInvalidConfig, t.Netns())
	}
	if p.noSet && p.sets != nil {
		return nil, fmt.Errorf("%w: WithHairpinSet and WithHairpinChains both given", ErrInvalidConfig)
	}
	if !p.noSet && p.sets == nil {
		sets, closeSets, err := openHairpinSets(t, cfg.Family)
		if err != nil {
			return nil, err
		}
		p.sets, p.closeSets = sets, closeSets
	}
	if _, ok := t.Execer().(ipt.OSExecer); ok && p.noSet {
		p.leftoverSet = hairpinSetName(DefaultHairpinSetPrefix(cfg.Family), cfg.Family)
	}
	if p.sets != nil {
		p.hairpinSet = hairpinSetName(p.sets.Prefix(), cfg.Family)
		if err := checkHairpinSets(p.sets, p.hairpinSet); err != nil {
			_ = p.Close()
			return nil, err
		}
		p.hairpinRefs = map[ipsets.Member]int{}
		p.hairpinDirty = map[ipsets.Member]struct{}{}
	}
	return p, nil
}

// openHairpinSets opens the kernel ipsets of t's network namespace for
// the default hairpin set, with DefaultHairpinSetPrefix(family). An
// IPTables that does not run the iptables binaries (ipt.Fake, another
// Execer) has no kernel to open: the caller must choose.
func openHairpinSets(t *ipt.IPTables, family ipt.Family) (*ipsets.IPSets, func() error, error) {
	if _, ok := t.Execer().(ipt.OSExecer); !ok {
		return nil, nil, fmt.Errorf("%w: the IPTables runs through %T, not the kernel: give WithHairpinSet (e.g. over ipsets.NewFake) or WithHairpinChains",
			ErrInvalidConfig, t.Execer())
	}
	h, err := openKernelSets(t)
	if err != nil {
		return nil, nil, fmt.Errorf("iptables services: hairpin set: %w", err)
	}
	return ipsets.New(h, ipsets.WithPrefix(DefaultHairpinSetPrefix(family))), func() error { h.Close(); return nil }, nil
}

// openKernelSets opens a netlink handle on the ipsets of t's network
// namespace (the caller's when t has none).
func openKernelSets(t *ipt.IPTables) (*ipsets.KernelHandle, error) {
	ns := netns.None() // the caller's namespace
	if name := t.Netns(); name != "" {
		h, err := netns.GetFromName(name)
		if err != nil {
			return nil, fmt.Errorf("open netns %q: %w", name, err)
		}
		defer h.Close()
		ns = h
	}
	return ipsets.NewHandle(ns)
}

// hairpinSetName is the hairpin set's name in an IPSets with prefix.
func hairpinSetName(prefix string, family ipt.Family) string {
	if family == ipt.IPv6 {
		return prefix + HairpinSetSuffix + "6"
	}
	return prefix + HairpinSetSuffix
}

// destroyLeftoverSet destroys, once, the set a Proxier of the default
// layout left in the IPTables' network namespace (DefaultHairpinSetPrefix
// + HairpinSetSuffix) before this one was made WithHairpinChains: the
// restore just written no longer names it. It never fails the Sync: with
// no ipset support there is no set to destroy, and a set that another
// rule still names stays, with a log line.
func (p *Proxier) destroyLeftoverSet() {
	name := p.leftoverSet
	p.leftoverSet = ""
	h, err := openKernelSets(p.ipt)
	if err != nil {
		p.log.Debug("no ipset handle: not looking for a leftover hairpin set", "set", name, "err", err)
		return
	}
	defer h.Close()
	switch err := h.IpsetDestroy(name); {
	case err == nil:
		p.log.Info("destroyed the default layout's hairpin set, unused with WithHairpinChains", "set", name)
	case errors.Is(err, syscall.ENOENT):
	default:
		p.log.Info("the default layout's hairpin set is left in place", "set", name, "err", err)
	}
}

// DefaultHairpinSetPrefix is the prefix of the IPSets New opens for the
// hairpin set when given neither WithHairpinSet nor WithHairpinChains:
// "TABBY-4-" for IPv4 and "TABBY-6-" for IPv6, so the two Proxiers of a
// dual-stack node (one per family) each own their set ("TABBY-4-HAIRPIN",
// "TABBY-6-HAIRPIN6") and neither destroys the other's, as kube-proxy's
// IPVS mode names its IPv6 sets KUBE-6-….
func DefaultHairpinSetPrefix(family ipt.Family) string {
	if family == ipt.IPv6 {
		return "TABBY-6-"
	}
	return "TABBY-4-"
}

// Close releases the netlink handle New opened for the default hairpin
// set (neither WithHairpinSet nor WithHairpinChains given; an IPSets
// given WithHairpinSet is the caller's to close). It leaves the rules
// and the set in the kernel. It waits for a Sync in progress; every
// Sync after it returns ErrClosed and writes nothing, in either layout.
// Closing twice is a no-op.
func (p *Proxier) Close() error {
	if !p.made() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.closeSets == nil {
		return nil
	}
	err := p.closeSets()
	p.closeSets = nil
	return err
}

func procSysctl(key, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
}

// QueueResync makes the next Sync re-render every service port and
// re-read iptables-save, repairing drift.
func (p *Proxier) QueueResync() {
	if !p.made() {
		return
	}
	p.mu.Lock()
	p.needFull = true
	p.mu.Unlock()
}

// Sync renders the tracker's changes since the last Sync and applies
// them in one iptables-restore: only the chains of changed service ports
// (and the dispatch chains, when a port's dispatch rules changed) are
// rewritten. The first Sync and the first after QueueResync render
// everything. It is the function to hand to a dataplane/syncrunner.Runner.
// After Close it returns ErrClosed.
func (p *Proxier) Sync(ctx context.Context) error {
	if !p.made() {
		return fmt.Errorf("iptables services sync: iptables.Proxier has no configuration (make it with New): %w", ErrInvalidConfig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		// Before render, so the tracker's changes are not consumed.
		return ErrClosed
	}
	full := p.needFull
	if err := p.render(); err != nil {
		// The tracker's changes are consumed: render everything next time.
		p.needFull = true
		return err
	}
	waitSets, err := p.applySetUpdates(ctx, full)
	if err != nil {
		return err
	}
	err = p.ipt.Apply(ctx)
	setErr := waitSets()
	if err != nil || setErr != nil {
		// The desired state stays in p.ipt and p.sets; the next Sync
		// writes what is pending.
		if err != nil {
			err = fmt.Errorf("iptables services: %w", err)
		}
		return errors.Join(err, setErr)
	}
	if p.sets != nil {
		if err := p.sets.ApplyDeletions(ctx); err != nil {
			return fmt.Errorf("iptables services: hairpin set %s: %w", p.hairpinSet, err)
		}
	}
	if p.leftoverSet != "" {
		p.destroyLeftoverSet()
	}
	if p.health != nil {
		p.health.Update(p.applied)
		p.health.Updated()
	}
	p.applied = nil
	if len(p.stale) > 0 {
		stale := p.stale
		p.stale = nil
		if p.onStale != nil {
			p.onStale(ctx, stale)
		}
	}
	return nil
}

// applySetUpdates writes the hairpin set's updates (ApplyUpdates). On an
// incremental sync it does so before returning, so the restore that
// follows finds every member its rules need. On a full sync (up to
// 100,000 members at 10,000 services × 10 endpoints) it creates a missing
// set before returning, since the restore's rule names it, then counts,
// declares and fills the members while the caller builds and runs the
// restore: the counting and declaring are this process's work on one
// core, the fill netlink writes, the restore mostly another process, so
// on two cores they overlap (0.1 s of a 1.3–1.6 s full sync at 10,000
// services on iptables-legacy; README, Benchmarks). A set
// ApplyCreates makes is swapped in whole (ipsets.IPSets.ApplyCreates)
// from 64 members on, so the new rules may briefly see it empty, but not
// half-filled (below 64 it is one batched netlink message). An error
// returned means the restore must not run; wait returns the members'
// error once they are done and must be called before the Proxier's
// state is touched again.
func (p *Proxier) applySetUpdates(ctx context.Context, full bool) (wait func() error, err error) {
	wrap := func(err error) error {
		if err != nil {
			return fmt.Errorf("iptables services: hairpin set %s: %w", p.hairpinSet, err)
		}
		return nil
	}
	done := func() error { return nil }
	switch {
	case p.sets == nil:
		return done, nil
	case !full:
		return done, wrap(p.sets.ApplyUpdates(ctx))
	}
	if err := p.sets.ApplyCreates(ctx); err != nil {
		p.needFull = true // the members were not counted: count them next time
		if ctx.Err() == nil {
			err = fmt.Errorf("%w (without ipset support in the kernel, WithHairpinChains writes the rules-only layout)", err)
		}
		return done, wrap(err)
	}
	var declErr, fillErr error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		p.recountHairpin()
		if declErr = p.writeHairpinSet(true); declErr == nil {
			fillErr = wrap(p.sets.ApplyUpdates(ctx))
		}
	}()
	return func() error {
		<-finished
		if declErr != nil {
			p.needFull = true // the members were not declared: count them again
		}
		return errors.Join(declErr, fillErr)
	}, nil
}

// render sets the desired chains of the tracker's changes (all ports on
// a full resync) in p.ipt.
func (p *Proxier) render() error {
	changes := p.tracker.Changes()
	full := p.needFull
	if full {
		if p.cfg.LocalhostNodePorts {
			if err := p.sysctl("net/ipv4/conf/all/route_localnet", "1"); err != nil {
				return fmt.Errorf("iptables services: set route_localnet: %w", err)
			}
		}
		if err := p.baseChains(); err != nil {
			return err
		}
		changes = p.tracker.All()
		for n := range p.resolved {
			if _, ok := changes[n]; !ok {
				changes[n] = nil
			}
		}
		p.ipt.QueueResync()
		if p.sets != nil {
			p.sets.QueueResync()
		}
	}
	dispatchChanged := full
	names := services.SortedNames(changes)
	var nat []ipt.Chain // to set, rendered by SetChains in parallel
	for i, cur := range p.renderPorts(names, changes) {
		n := names[i]
		old := p.state[n]
		nat = p.writePort(nat, old, cur)
		if !full {
			p.countHairpin(old, cur)
		}
		if !dispatchChanged && !sameDispatch(old, cur) {
			dispatchChanged = true
		}
		if cur == nil {
			delete(p.state, n)
		} else {
			p.state[n] = cur
		}
		p.stale = append(p.stale, services.StaleFlows(p.resolved[n], changes[n], p.cfg.Family == ipt.IPv6)...)
		if p.health != nil {
			if p.applied == nil {
				p.applied = map[services.ServicePortName]*services.Resolved{}
			}
			p.applied[n] = changes[n]
		}
		if changes[n] == nil {
			delete(p.resolved, n)
		} else {
			p.resolved[n] = changes[n]
		}
	}
	if err := p.ipt.SetChains(ipt.NAT, nat); err != nil {
		return fmt.Errorf("iptables services: %w", err)
	}
	if dispatchChanged {
		if err := p.writeDispatch(); err != nil {
			return err
		}
	}
	if full {
		// Sync counts and declares the members beside the restore
		// (applySetUpdates); the set only needs to be desired now, so
		// that it is created before the restore names it.
		if err := p.declareHairpinSet(); err != nil {
			return err
		}
	} else if err := p.writeHairpinSet(false); err != nil {
		return err
	}
	p.needFull = false
	return nil
}

// hairpinSpec is the hairpin set's name, type and family.
func (p *Proxier) hairpinSpec() ipsets.SetSpec {
	fam := ipsets.IPv4
	if p.cfg.Family == ipt.IPv6 {
		fam = ipsets.IPv6
	}
	return ipsets.SetSpec{Name: p.hairpinSet, Type: ipsets.HashIPPortIP, Family: fam}
}

// declareHairpinSet makes the hairpin set desired, with no members yet,
// the first time; later its members are the last sync's until
// writeHairpinSet declares the new ones.
func (p *Proxier) declareHairpinSet() error {
	if p.sets == nil || p.hairpinDeclared {
		return nil
	}
	if err := p.sets.SetMembers(p.hairpinSpec(), nil); err != nil {
		return fmt.Errorf("iptables services: hairpin set: %w", err)
	}
	p.hairpinDeclared = true
	return nil
}

// countHairpin moves a port's hairpin set members from old to cur.
func (p *Proxier) countHairpin(old, cur *rendered) {
	if p.sets == nil {
		return
	}
	if old != nil {
		for _, m := range old.hairpin {
			if p.hairpinRefs[m]--; p.hairpinRefs[m] <= 0 {
				delete(p.hairpinRefs, m)
				p.hairpinDirty[m] = struct{}{}
			}
		}
	}
	if cur != nil {
		for _, m := range cur.hairpin {
			if p.hairpinRefs[m]++; p.hairpinRefs[m] == 1 {
				p.hairpinDirty[m] = struct{}{}
			}
		}
	}
}

// recountHairpin rebuilds the hairpin set's member counts from every
// rendered port (a full sync: all of them were just rendered), in a map
// sized once: at 10,000 services × 10 endpoints, growing it member by
// member was a fifth of the rendering.
func (p *Proxier) recountHairpin() {
	if p.sets == nil {
		return
	}
	total := 0
	for _, r := range p.state {
		total += len(r.hairpin)
	}
	p.hairpinRefs = make(map[ipsets.Member]int, total)
	p.hairpinDirty = map[ipsets.Member]struct{}{}
	for _, r := range p.state {
		for _, m := range r.hairpin {
			p.hairpinRefs[m]++
		}
	}
}

// writeHairpinSet declares the whole hairpin set (full) or the members
// whose count went to or from 0.
func (p *Proxier) writeHairpinSet(full bool) error {
	if p.sets == nil {
		return nil
	}
	dirty := p.hairpinDirty
	p.hairpinDirty = map[ipsets.Member]struct{}{}
	if full {
		members := make([]ipsets.Member, 0, len(p.hairpinRefs))
		for m := range p.hairpinRefs {
			members = append(members, m)
		}
		if err := p.sets.SetMembers(p.hairpinSpec(), members); err != nil {
			return fmt.Errorf("iptables services: hairpin set: %w", err)
		}
		return nil
	}
	var add, del []ipsets.Member
	for m := range dirty {
		if p.hairpinRefs[m] > 0 {
			add = append(add, m)
		} else {
			del = append(del, m)
		}
	}
	if err := p.sets.RemoveMembers(p.hairpinSet, del...); err != nil {
		return fmt.Errorf("iptables services: hairpin set: %w", err)
	}
	if err := p.sets.AddMembers(p.hairpinSet, add...); err != nil {
		return fmt.Errorf("iptables services: hairpin set: %w", err)
	}
	return nil
}

// writePort appends to nat the chains of cur that old does not have as
// they are, and deletes those only old had.
func (p *Proxier) writePort(nat []ipt.Chain, old, cur *rendered) []ipt.Chain {
	if cur != nil {
		for _, c := range cur.chains {
			if o, ok := old.chain(c.Name); ok && reflect.DeepEqual(o.Rules, c.Rules) {
				continue
			}
			nat = append(nat, c)
		}
	}
	if old != nil {
		for _, c := range old.chains {
			if _, ok := cur.chain(c.Name); !ok {
				p.ipt.DeleteChain(ipt.NAT, c.Name)
			}
		}
	}
	return nat
}

// renderPorts renders the ports of names (nil for a port that is gone)
// on every CPU: renderPort reads only the Proxier's configuration, and a
// full sync at 10,000 services spends a third of its rendering there
// (README, Benchmarks).
func (p *Proxier) renderPorts(names []services.ServicePortName, changes map[services.ServicePortName]*services.Resolved) []*rendered {
	out := make([]*rendered, len(names))
	const minChunk = 256
	chunk := max(minChunk, (len(names)+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for lo := 0; lo < len(names); lo += chunk {
		render := func() {
			for i := lo; i < min(lo+chunk, len(names)); i++ {
				out[i] = p.renderPort(changes[names[i]])
			}
		}
		if lo+chunk >= len(names) {
			render() // the last chunk on this goroutine: a small sync starts none
			break
		}
		wg.Go(render)
	}
	wg.Wait()
	return out
}

// writeDispatch rebuilds the dispatch chains from every port's parts.
func (p *Proxier) writeDispatch() error {
	names := services.SortedNames(p.state)
	var natSvc, nodePorts, filterSvc, filterExt, filterFW []ipt.Rule
	for _, n := range names {
		r := p.state[n]
		natSvc = append(natSvc, r.natServices...)
		nodePorts = append(nodePorts, r.nodePorts...)
		filterSvc = append(filterSvc, r.filterServices...)
		filterExt = append(filterExt, r.filterExternal...)
		filterFW = append(filterFW, r.filterFirewall...)
	}
	natSvc, nodePorts = byTargetDescending(natSvc), byTargetDescending(nodePorts)
	loop := p.loopback()
	natSvc = append(natSvc, ipt.Rule{Match: ipt.Match().NotDestNet(loop).DestAddrTypeLocal(), Action: ipt.Jump{Chain: ChainNodePorts}})
	for _, w := range []struct {
		table ipt.Table
		c     ipt.Chain
	}{
		{ipt.NAT, ipt.Chain{Name: ChainServices, Rules: natSvc}},
		{ipt.NAT, ipt.Chain{Name: ChainNodePorts, Rules: nodePorts}},
		{ipt.Filter, ipt.Chain{Name: ChainServices, Rules: filterSvc}},
		{ipt.Filter, ipt.Chain{Name: ChainExternalServices, Rules: filterExt}},
		{ipt.Filter, ipt.Chain{Name: ChainProxyFirewall, Rules: filterFW}},
	} {
		if err := p.ipt.SetChain(w.table, w.c); err != nil {
			return fmt.Errorf("iptables services: %w", err)
		}
	}
	return nil
}

// byTargetDescending orders the rules of a dispatch chain (nat
// TABBY-SERVICES or TABBY-NODEPORTS) by the per-port chain each group
// jumps to, in descending name order. A group is the rules up to and
// including one that jumps to a per-port chain (TABBY-SVC-, SVL-, EXT-,
// FW-), so a cluster IP's TABBY-MASQ-NONPOD rule stays before its SVC
// jump. The order does not change what a packet meets: every group
// matches its own destination (address, protocol, port; the services
// model gives each destination one owner) or node port. It makes a
// full sync through iptables-nft-restore cheaper: dataplane/iptables
// writes each of these jumps right after its target chain's
// declaration when the jumps come in descending target order, and
// iptables-nft-restore's cost per line grows with the chain names
// already named that sort before the line's.
func byTargetDescending(rules []ipt.Rule) []ipt.Rule {
	type group struct {
		target string
		rules  []ipt.Rule
	}
	var groups []group
	start := 0
	for i, r := range rules {
		j, ok := r.Action.(ipt.Jump)
		if !ok || !perPortChain(j.Chain) {
			continue
		}
		groups = append(groups, group{j.Chain, rules[start : i+1]})
		start = i + 1
	}
	if start < len(rules) {
		groups = append(groups, group{"", rules[start:]}) // none yet; kept last
	}
	slices.SortStableFunc(groups, func(a, b group) int { return strings.Compare(b.target, a.target) })
	out := make([]ipt.Rule, 0, len(rules))
	for _, g := range groups {
		out = append(out, g.rules...)
	}
	return out
}

// perPortChain reports whether name is a chain of one service port.
func perPortChain(name string) bool {
	for _, prefix := range []string{prefixSVC, prefixSVL, prefixEXT, prefixFW} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

func (p *Proxier) loopback() netip.Prefix {
	if p.cfg.Family == ipt.IPv6 {
		return netip.MustParsePrefix("::1/128")
	}
	return netip.MustParsePrefix("127.0.0.0/8")
}

// baseChains sets the fixed chains and the hooks (doc.go lists them).
func (p *Proxier) baseChains() error {
	mark := p.cfg.MasqueradeMark
	nat := []ipt.Chain{
		{Name: ChainMarkMasq, Rules: []ipt.Rule{{Action: ipt.SetMark{Value: mark, Mask: mark}}}},
		{Name: ChainPostrouting, Rules: append(p.hairpinRules(), []ipt.Rule{
			{Match: ipt.Match().MarkClear(mark), Action: ipt.Return{}},
			{Action: ipt.SetMark{Value: 0, Mask: mark}},
			{Action: ipt.Masquerade{RandomFully: true}},
		}...)},
		{Name: ChainServices}, {Name: ChainNodePorts},
	}
	if len(p.cfg.ClusterCIDRs) > 0 {
		var rs []ipt.Rule
		for _, c := range p.cfg.ClusterCIDRs {
			rs = append(rs, ipt.Rule{Match: ipt.Match().SourceNet(c), Action: ipt.Return{}})
		}
		nat = append(nat, ipt.Chain{Name: ChainMasqNonPod, Rules: append(rs, ipt.Rule{Action: ipt.Jump{Chain: ChainMarkMasq}})})
	}
	filter := []ipt.Chain{{Name: ChainServices}, {Name: ChainExternalServices}, {Name: ChainProxyFirewall}}
	isNew := ipt.Match().ConntrackState(ipt.StateNew)
	jump := func(m ipt.MatchCriteria, c string) ipt.Rule { return ipt.Rule{Match: m, Action: ipt.Jump{Chain: c}} }
	// TABBY-PROXY-FIREWALL first, as kube-proxy hooks KUBE-PROXY-FIREWALL.
	fw := jump(isNew, ChainProxyFirewall)
	input := []ipt.Rule{fw, jump(isNew, ChainServices), jump(isNew, ChainExternalServices)}
	output := []ipt.Rule{fw, jump(isNew, ChainServices)}
	if p.cfg.Family == ipt.IPv4 {
		loop := p.loopback()
		filter = append(filter, ipt.Chain{Name: ChainFirewall, Rules: []ipt.Rule{{
			Match:   ipt.Match().NotSourceNet(loop).DestNet(loop).NotConntrackState(ipt.StateRelated, ipt.StateEstablished, ipt.StateDNAT),
			Action:  ipt.Drop{},
			Comment: "block incoming localnet connections",
		}}})
		input = append(input, jump(ipt.Match(), ChainFirewall))
		output = append(output, jump(ipt.Match(), ChainFirewall))
	}
	natOutput := []ipt.Rule{jump(ipt.Match(), ChainServices)}
	if p.cfg.LocalhostNodePorts {
		natOutput = append(natOutput, jump(ipt.Match().DestNet(p.loopback()).DestAddrTypeLocal(), ChainNodePorts))
	}
	for _, s := range []struct {
		table ipt.Table
		chain string
		rules []ipt.Rule
	}{
		{ipt.NAT, "PREROUTING", []ipt.Rule{jump(ipt.Match(), ChainServices)}},
		{ipt.NAT, "OUTPUT", natOutput},
		{ipt.NAT, "POSTROUTING", []ipt.Rule{jump(ipt.Match(), ChainPostrouting)}},
		{ipt.Filter, "INPUT", input},
		{ipt.Filter, "FORWARD", []ipt.Rule{fw, jump(isNew, ChainServices), jump(isNew, ChainExternalServices)}},
		{ipt.Filter, "OUTPUT", output},
	} {
		if err := p.ipt.SetHook(s.table, s.chain, s.rules); err != nil {
			return fmt.Errorf("iptables services: %w", err)
		}
	}
	for _, c := range nat {
		if err := p.ipt.SetChain(ipt.NAT, c); err != nil {
			return fmt.Errorf("iptables services: %w", err)
		}
	}
	for _, c := range filter {
		if err := p.ipt.SetChain(ipt.Filter, c); err != nil {
			return fmt.Errorf("iptables services: %w", err)
		}
	}
	return nil
}

// chainName is prefix + the first 16 characters of base32(sha256(parts)),
// kube-proxy's servicePortChainName scheme (prefix ≤ 10 bytes keeps the
// name within iptables' 28).
func chainName(prefix string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return prefix + base32.StdEncoding.EncodeToString(h[:10]) // 10 bytes = the 16 characters
}

// hairpinRules are the first rules of TABBY-POSTROUTING with a hairpin
// set: a connection whose destination (after DNAT) and source are the
// same endpoint is marked for masquerade.
func (p *Proxier) hairpinRules() []ipt.Rule {
	if p.sets == nil {
		return nil
	}
	return []ipt.Rule{{Match: ipt.Match().HairpinIPPortIPSet(p.hairpinSet), Action: ipt.Jump{Chain: ChainMarkMasq}, Comment: "hairpin"}}
}

// checkHairpinSets refuses a hairpin IPSets whose prefix overlaps
// ipsets.DefaultPrefix (it would own, and destroy, the policy compiler's
// sets), that the IPSets itself refuses (ipsets.IPSets.Err: empty, bad
// characters, longer than ipsets.MaxPrefixLen) or that makes the set's name
// longer than the kernel allows.
func checkHairpinSets(sets *ipsets.IPSets, name string) error {
	prefix := sets.Prefix()
	if err := sets.Err(); err != nil {
		return fmt.Errorf("%w: hairpin ipsets: %w", ErrInvalidConfig, err)
	}
	if strings.HasPrefix(prefix, ipsets.DefaultPrefix) || strings.HasPrefix(ipsets.DefaultPrefix, prefix) {
		return fmt.Errorf("%w: hairpin ipsets prefix %q overlaps %q, the prefix of dataplane/policy's sets, which an IPSets with it would destroy as its own (use e.g. %q)",
			ErrInvalidConfig, prefix, ipsets.DefaultPrefix, "TABBY-")
	}
	if len(name) > ipsets.MaxNameLen {
		return fmt.Errorf("%w: hairpin set name %q is longer than %d bytes (the ipsets prefix may have at most %d)",
			ErrInvalidConfig, name, ipsets.MaxNameLen, ipsets.MaxNameLen-(len(name)-len(prefix)))
	}
	return nil
}

// HairpinSetSuffix ends the name of the hairpin set (WithHairpinSet):
// the IPSets' prefix + "HAIRPIN", + "6" for IPv6 ("TABBY-HAIRPIN" with
// the prefix "TABBY-": not the policy compiler's "tabby-", since an
// IPSets owns every set its prefix starts).
const HairpinSetSuffix = "HAIRPIN"

// WithHairpinSet gives the Proxier the IPSets for its hairpin set,
// instead of the kernel handle New opens by default (see the package
// doc, Hairpin set): a Proxier over ipt.Fake needs one over an
// ipsets.Fake. The Proxier decides hairpin masquerade with one
// hash:ip,port,ip set in sets, as kube-proxy's IPVS mode does with
// KUBE-LOOP-BACK, instead of per-endpoint rules: each endpoint of a port
// without ClientIP affinity is one `-m statistic … -j DNAT` rule in its
// SVC/SVL chain (no TABBY-HP- chain), the set holds (EP, proto:port, EP)
// for every such endpoint, and TABBY-POSTROUTING starts with `-m set
// --match-set <set> dst,dst,src -j TABBY-MARK-MASQ`. Ports with affinity
// and ports in the SEP layout keep their rules. sets must be in the
// IPTables' network namespace and own a prefix no other IPSets uses (an
// IPSets destroys every set its prefix starts that it was not given):
// New returns ErrInvalidConfig when the prefix overlaps
// ipsets.DefaultPrefix, the policy compiler's, or when the IPSets refuses
// its prefix (sets.Err: e.g. longer than ipsets.MaxPrefixLen, 22 bytes).
// Sync applies its deletions after the
// iptables-restore and its updates before it, except on a full sync,
// which creates a missing set first (the rule needs it) and fills it
// while the restore runs, swapping the members in whole
// (ipsets.IPSets.ApplyCreates; the rules may see the set empty until
// then). sets should be opened with
// ipsets.NewHandle, which writes many members per netlink message.
// The set is named sets.Prefix() + HairpinSetSuffix (+ "6" for IPv6).
func WithHairpinSet(sets *ipsets.IPSets) Option { return func(p *Proxier) { p.sets = sets } }

// WithHairpinChains makes the Proxier decide hairpin masquerade with
// rules only, in kube-proxy's iptables-mode shapes: one `-s EP -j
// TABBY-MARK-MASQ` per endpoint in a TABBY-HP- chain per service port
// (see the package doc), so it needs no ipset support in the kernel
// (ip_set, ip_set_hash_ipportip). Over the kernel, the first successful
// Sync destroys the set a Proxier of the default layout left in the
// IPTables' network namespace (DefaultHairpinSetPrefix +
// HairpinSetSuffix, + "6" for IPv6), if the kernel has it and no other
// rule names it; a kernel without ipset support is left alone. It writes
// about three times the rules of the default layout: at 10,000 services
// × 10 endpoints a full sync takes about twice as long (README). It
// cannot be combined with WithHairpinSet.
func WithHairpinChains() Option { return func(p *Proxier) { p.noSet = true } }

// HairpinSet returns the name of the hairpin set, "" with WithHairpinChains.
func (p *Proxier) HairpinSet() string {
	if !p.made() {
		return ""
	}
	return p.hairpinSet
}

// made reports whether New made p: only New sets p.ipt, never changed
// afterwards, so reading it needs no lock.
func (p *Proxier) made() bool { return p != nil && p.ipt != nil }
