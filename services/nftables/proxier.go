package nftables

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/services"
)

// DefaultTable is the table tabby owns; nothing outside it is touched.
const DefaultTable = "tabby-services"

// DefaultMasqueradeMark is the packet-mark bit that asks for masquerade in
// postrouting (kube-proxy's 0x4000).
const DefaultMasqueradeMark = 0x4000

// ErrInvalidConfig is wrapped by New for a bad Config, and by the methods
// of a Proxier that New did not make (nil or a zero value).
var ErrInvalidConfig = errors.New("invalid nftables services config")

// Config configures a Proxier.
type Config struct {
	// Family is knftables.IPv4Family or knftables.IPv6Family (one Proxier
	// per family, as kube-proxy runs one proxier per family).
	Family knftables.Family
	// Table is the table name (default DefaultTable). It and Family
	// must be those the knftables.Interface was created for: New
	// returns ErrInvalidConfig otherwise.
	Table string
	// ClusterCIDRs are the pod CIDRs. When set, traffic to a cluster IP
	// from outside them is masqueraded (kube-proxy's --cluster-cidr), and
	// pod traffic to an externalTrafficPolicy Local address is sent to
	// the whole cluster. Those of the other family are ignored, as
	// kube-proxy takes its family's from a dual-stack --cluster-cidr; an
	// invalid (zero) prefix is ErrInvalidConfig.
	ClusterCIDRs []netip.Prefix
	// MasqueradeMark is the mark bit for masquerade: 0 (the default,
	// 0x4000) or exactly one bit, else ErrInvalidConfig.
	MasqueradeMark uint32
	// NodeIPs are the node's addresses (kube-proxy's node IP; either
	// family, those of Family are used; IPv4-mapped IPv6 addresses are
	// taken as IPv4). A loadBalancerSourceRanges entry that contains one
	// of them also lets in sources equal to the Service's load-balancer
	// IPs (services.ServicePort.FirewallSources), so the node's own
	// connections to a load-balancer IP routed back to it get through.
	// With none, that never applies. kube-proxy checks its one node IP;
	// several addresses here let in as much as any one of them would.
	NodeIPs []netip.Addr
	// ServiceCIDRs are the ranges cluster IPs are allocated from
	// (kube-proxy's ServiceCIDR objects, formerly
	// --service-cluster-ip-range), all of Family; a prefix with host
	// bits set is taken as its masked form, and nested ones as the
	// outer one. When set, a new connection (forwarded, or from the
	// node itself) to an address inside them that NAT left alone and
	// that is no cluster IP in use is dropped, rather than routed toward
	// the default gateway (kube-proxy's nftables mode, "Drop traffic to
	// unallocated ClusterIPs"). Empty (the default): no such drop, the
	// table has neither the service-cidrs set nor its rule.
	// Proxier.SetServiceCIDRs changes them later.
	ServiceCIDRs []netip.Prefix
}

// Validate reports a Config New refuses, wrapping ErrInvalidConfig: a
// Family other than knftables.IPv4Family or knftables.IPv6Family, or a
// ServiceCIDRs entry that is not a valid prefix of Family (the zero
// netip.Prefix, or an IPv4 or IPv4-mapped one in an ip6 Config, an IPv6
// one in an ip one).
func (c Config) Validate() error {
	if c.Family != knftables.IPv4Family && c.Family != knftables.IPv6Family {
		return fmt.Errorf("%w: family %q", ErrInvalidConfig, c.Family)
	}
	for i, cidr := range c.ClusterCIDRs {
		if !cidr.IsValid() {
			return fmt.Errorf("%w: ClusterCIDRs[%d] %q is not a valid prefix", ErrInvalidConfig, i, cidr)
		}
	}
	if c.MasqueradeMark != 0 && bits.OnesCount32(c.MasqueradeMark) != 1 {
		return fmt.Errorf("%w: MasqueradeMark %#x is not a single bit (kube-proxy's --iptables-masquerade-bit N is 1<<N)",
			ErrInvalidConfig, c.MasqueradeMark)
	}
	return validServiceCIDRs(c.Family, c.ServiceCIDRs)
}

func validServiceCIDRs(fam knftables.Family, cidrs []netip.Prefix) error {
	v6 := fam == knftables.IPv6Family
	for i, c := range cidrs {
		switch {
		case !c.IsValid():
			return fmt.Errorf("%w: ServiceCIDRs[%d] %q is not a valid prefix", ErrInvalidConfig, i, c)
		case c.Addr().Is4In6() || c.Addr().Is6() != v6:
			return fmt.Errorf("%w: ServiceCIDRs[%d] %s is not a family %s prefix", ErrInvalidConfig, i, c, fam)
		}
	}
	return nil
}

// Option configures a Proxier.
type Option func(*Proxier)

// WithLogger sets the logger (default, and for nil: slog.Default()).
// Sync logs, as kube-proxy's nftables proxier does at its verbosity 2 and
// 4: at Info each full rewrite of the table (the first Sync, after a
// failure, after QueueResync) with the number of service ports and
// operations; at Debug each incremental sync that wrote something, and a
// failed transaction (with "the next Sync rewrites the whole table").
// A failure is returned, not logged at Warn or Error: the caller, or the
// dataplane/syncrunner.Runner running Sync, logs it once. Services the
// Tracker skips and destinations it drops are logged by the Tracker, not
// here.
func WithLogger(l *slog.Logger) Option { return func(p *Proxier) { p.log = l } }

// WithStaleFlows sets a function Sync calls, after a successful
// transaction, with the UDP/SCTP flows the change made stale
// (services.StaleFlows), so a conntrack cleaner (services/conntrack)
// deletes them before they blackhole traffic. It runs on Sync's
// goroutine; its failure is logged by the cleaner, not retried.
func WithStaleFlows(f func(ctx context.Context, stale []services.StaleFlow)) Option {
	return func(p *Proxier) { p.onStale = f }
}

// WithHealthServer makes every successful Sync hand the service ports it
// applied to h (HealthServer.Update) and report the sync
// (HealthServer.Updated), so h serves the healthCheckNodePorts and
// /healthz from what is in the kernel, as services/iptables does.
func WithHealthServer(h *services.HealthServer) Option { return func(p *Proxier) { p.health = h } }

// Proxier renders a services.Tracker into one nftables table through a
// knftables.Interface. The zero value is not usable; make one with New
// (Sync and SetServiceCIDRs return ErrInvalidConfig, QueueResync does
// nothing).
type Proxier struct {
	nft     knftables.Interface
	tracker *services.Tracker
	cfg     Config
	log     *slog.Logger
	onStale func(context.Context, []services.StaleFlow)
	health  *services.HealthServer

	mu       sync.Mutex
	state    map[services.ServicePortName]*rendered
	resolved map[services.ServicePortName]*services.Resolved
	hairpin  map[string]int      // endpoint address -> number of ports using it
	cips     map[string]int      // cluster IP -> number of ports using it
	kUse     map[dispatchKey]int // endpoint counts in use -> number of ports
	// serviceCIDRs are the service-cidrs set's elements as the last
	// successful Sync wrote them (none: no set, no drop rule).
	serviceCIDRs []string
	needFull     bool
}

// New returns a Proxier that renders tracker into nft. Nothing is written
// until Sync. A nil nft or tracker is an error wrapping ErrInvalidConfig
// (as services/iptables.New), as is a Config Validate refuses.
func New(nft knftables.Interface, tracker *services.Tracker, cfg Config, opts ...Option) (*Proxier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.ServiceCIDRs = slices.Clone(cfg.ServiceCIDRs)
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if nft == nil {
		return nil, fmt.Errorf("%w: nil knftables.Interface", ErrInvalidConfig)
	}
	if n, ok := nft.(*Netlink); ok && (n == nil || n.Interface == nil) {
		return nil, fmt.Errorf("%w: a Netlink not made by NewNetlink (make it with NewNetlink)", ErrInvalidConfig)
	}
	if tracker == nil {
		return nil, fmt.Errorf("%w: nil services.Tracker", ErrInvalidConfig)
	}
	if fam, table, ok := interfaceTable(nft); ok && (fam != cfg.Family || table != cfg.Table) {
		return nil, fmt.Errorf("%w: Config is family %s table %q but the knftables.Interface writes family %s table %q",
			ErrInvalidConfig, cfg.Family, cfg.Table, fam, table)
	}
	if cfg.MasqueradeMark == 0 {
		cfg.MasqueradeMark = DefaultMasqueradeMark
	}
	p := &Proxier{nft: nft, tracker: tracker, cfg: cfg, log: slog.Default(), needFull: true,
		state: map[services.ServicePortName]*rendered{}, resolved: map[services.ServicePortName]*services.Resolved{},
		hairpin: map[string]int{}, cips: map[string]int{}, kUse: map[dispatchKey]int{}}
	for _, o := range opts {
		o(p)
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	return p, nil
}

// interfaceTable returns the family and table nft writes to: a Netlink's
// own, else those a knftables transaction names when it adds the table
// ("add table ip tabby-services", as knftables.New, NewInNetns and
// knftables.NewFake write it). ok is false when neither tells.
func interfaceTable(nft knftables.Interface) (knftables.Family, string, bool) {
	if n, ok := nft.(*Netlink); ok {
		return n.family, n.table, true
	}
	tx := nft.NewTransaction()
	if tx == nil {
		return "", "", false
	}
	tx.Add(&knftables.Table{})
	f := strings.Fields(tx.String())
	if len(f) < 4 || f[0] != "add" || f[1] != "table" {
		return "", "", false
	}
	return knftables.Family(f[2]), f[3], true
}

// made reports whether New made p: only New sets p.tracker, never changed
// afterwards, so reading it needs no lock.
func (p *Proxier) made() bool { return p != nil && p.tracker != nil }

// QueueResync makes the next Sync rewrite the whole table.
func (p *Proxier) QueueResync() {
	if !p.made() {
		return
	}
	p.mu.Lock()
	p.needFull = true
	p.mu.Unlock()
}

// SetServiceCIDRs replaces Config.ServiceCIDRs (kube-proxy's
// OnServiceCIDRsChanged, with the complete list): the next Sync applies
// them. A change between two non-empty lists is only element changes
// of the service-cidrs set; from or to an empty list, the set and the
// drop rule of cluster-ips-check are added or removed. It returns an
// error wrapping ErrInvalidConfig, and changes nothing, for a prefix
// Config.Validate refuses.
func (p *Proxier) SetServiceCIDRs(cidrs []netip.Prefix) error {
	if !p.made() {
		return fmt.Errorf("nftables services set service CIDRs: nftables.Proxier has no configuration (make it with New): %w", ErrInvalidConfig)
	}
	if err := validServiceCIDRs(p.cfg.Family, cidrs); err != nil {
		return err
	}
	p.mu.Lock()
	p.cfg.ServiceCIDRs = slices.Clone(cidrs)
	p.mu.Unlock()
	return nil
}

// Sync writes the tracker's changes since the last Sync in one
// transaction: only the chains, sets and map elements of service ports
// that changed. The first Sync, and the first after a failure or
// QueueResync, recreates the whole table. It is the function to hand to
// a dataplane/syncrunner.Runner. A ctx already done when the transaction
// is to be sent writes nothing: Sync returns an error wrapping ctx.Err()
// (with either executor) and the next Sync recreates the table.
func (p *Proxier) Sync(ctx context.Context) error {
	if !p.made() {
		return fmt.Errorf("nftables services sync: nftables.Proxier has no configuration (make it with New): %w", ErrInvalidConfig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	changes := p.tracker.Changes()
	full := p.needFull
	tx := &ops{}
	// What the sync changes is kept apart (upd, d's counts) and applied
	// to the Proxier's state only after the transaction succeeded, so
	// that a one-endpoint sync costs the same at any number of services.
	upd := map[services.ServicePortName]*rendered{}
	old := p.state
	d := diff{hairpin: newSharedSet(setHairpin, p.hairpin, func(a string) string { return a + keySep + a }),
		clusterIPs: newSharedSet(setClusterIPs, p.cips, func(a string) string { return a }),
		kUse:       counts[dispatchKey]{base: p.kUse, delta: map[dispatchKey]int{}}}
	if full {
		changes = p.tracker.All()
		// Stale entries in the old state are simply dropped: the table
		// is recreated.
		for n := range p.resolved {
			if _, ok := changes[n]; !ok {
				changes[n] = nil
			}
		}
		p.baseObjects(tx)
		old = nil
		d.hairpin.counts.base, d.clusterIPs.counts.base, d.kUse.base = map[string]int{}, map[string]int{}, map[dispatchKey]int{}
	}
	names := services.SortedNames(changes)
	rs := make([]*rendered, len(names))
	adds, hairpins := 0, 0
	for i, n := range names {
		rs[i] = p.render(changes[n])
		if rs[i] != nil {
			adds, hairpins = adds+len(rs[i].elements), hairpins+len(rs[i].hairpin)
		}
	}
	// (At most every element and hairpin address of the changed ports
	// is new: sized once rather than grown through a full sync.)
	d.addElems, d.hairpin.add = make([]element, 0, adds), make([]string, 0, hairpins)
	for i, n := range names {
		d.add(old[n], rs[i])
		upd[n] = rs[i]
	}
	retired := d.retireSlots()
	d.write(tx, p, full)
	cidrs := p.serviceCIDRElems()
	if !full {
		p.writeServiceCIDRs(tx, p.serviceCIDRs, cidrs)
	}
	if len(tx.list) > 0 {
		if err := p.run(ctx, tx); err != nil {
			p.needFull = true
			p.log.Debug("nftables transaction failed; the next Sync rewrites the whole table", "table", p.cfg.Table,
				"full", full, "operations", len(tx.list), "err", err)
			return fmt.Errorf("nftables table %s: %w", p.cfg.Table, err)
		}
	}
	var retireErr error
	if len(retired) > 0 {
		// The slots the first transaction stopped using, in a second one
		// (see retireSlots). On failure they stay, unused; the next Sync
		// recreates the table.
		tx2 := &ops{}
		for _, e := range retired {
			addElement(tx2, verbDelete, e)
		}
		if err := p.run(ctx, tx2); err != nil {
			retireErr = fmt.Errorf("nftables table %s: retire endpoint slots: %w", p.cfg.Table, err)
			p.log.Debug("nftables transaction failed; the next Sync rewrites the whole table", "table", p.cfg.Table,
				"full", full, "operations", len(tx2.list), "err", err)
		}
	}
	stale := p.stale(changes)
	if full {
		p.state = map[services.ServicePortName]*rendered{}
	}
	for n, r := range upd {
		if r == nil {
			delete(p.state, n)
		} else {
			p.state[n] = r
		}
	}
	p.hairpin, p.cips, p.kUse = d.hairpin.counts.commit(), d.clusterIPs.counts.commit(), d.kUse.commit()
	p.serviceCIDRs = cidrs
	p.needFull = false
	switch {
	case full:
		p.log.Info("rewrote the whole nftables table", "table", p.cfg.Table, "servicePorts", len(p.state), "operations", len(tx.list))
	case len(tx.list) > 0:
		p.log.Debug("synced nftables table", "table", p.cfg.Table, "changedServicePorts", len(changes), "operations", len(tx.list))
	}
	for n, r := range changes {
		if r == nil {
			delete(p.resolved, n)
		} else {
			p.resolved[n] = r
		}
	}
	if p.health != nil {
		p.health.Update(changes)
		p.health.Updated()
	}
	if p.onStale != nil && len(stale) > 0 {
		p.onStale(ctx, stale)
	}
	if retireErr != nil {
		p.needFull = true
		return retireErr
	}
	return nil
}

// stale lists the UDP/SCTP flows made stale by changes (compared with
// the previously applied resolved state).
func (p *Proxier) stale(changes map[services.ServicePortName]*services.Resolved) []services.StaleFlow {
	var out []services.StaleFlow
	for n, r := range changes {
		out = append(out, services.StaleFlows(p.resolved[n], r, p.cfg.Family == knftables.IPv6Family)...)
	}
	return out
}

func (p *Proxier) setType() string {
	if p.cfg.Family == knftables.IPv6Family {
		return "ipv6_addr"
	}
	return "ipv4_addr"
}

func ptr[T any](v T) *T { return &v }

// baseObjects recreates the table with its base chains, dispatch chains
// and maps (kube-proxy's layout; hook priorities in doc.go).
func (p *Proxier) baseObjects(tx sink) {
	ip, addrType := p.ipX(), "ipv4_addr"
	loopback := "127.0.0.0/8"
	if p.cfg.Family == knftables.IPv6Family {
		addrType, loopback = "ipv6_addr", "::1"
	}
	// No table comment: comments are netlink user data that the netlink
	// executor does not write, and the two executors must produce the
	// same table.
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{})
	base := func(name string, typ knftables.BaseChainType, hook knftables.BaseChainHook, prio knftables.BaseChainPriority, rules ...string) {
		tx.Add(&knftables.Chain{Name: name, Type: &typ, Hook: &hook, Priority: &prio})
		for _, r := range rules {
			tx.Add(&knftables.Rule{Chain: name, Rule: r})
		}
	}
	chain := func(name string, rules ...string) {
		tx.Add(&knftables.Chain{Name: name})
		for _, r := range rules {
			tx.Add(&knftables.Rule{Chain: name, Rule: r})
		}
	}
	vmap := func(name, key string) {
		tx.Add(&knftables.Map{Name: name, Type: key + " : verdict"})
	}
	vmap(mapServiceIPs, addrType+" . inet_proto . inet_service")
	vmap(mapNoEndpointSvcs, addrType+" . inet_proto . inet_service")
	vmap(mapServiceNodePorts, "inet_proto . inet_service")
	vmap(mapNoEndpointNPs, "inet_proto . inet_service")
	vmap(mapFirewallIPs, addrType+" . inet_proto . inet_service")
	for _, proto := range endpointProtocols {
		svcMap, npMap := endpointMaps(proto)
		svcType, npType := p.endpointMapTypeOfs(proto)
		tx.Add(&knftables.Map{Name: svcMap, TypeOf: svcType})
		tx.Add(&knftables.Map{Name: npMap, TypeOf: npType})
	}
	if cidrs := p.clusterCIDRs(); len(cidrs) > 0 {
		tx.Add(&knftables.Set{Name: setClusterCIDRs, Type: addrType, Flags: []knftables.SetFlag{knftables.IntervalFlag}})
		for _, c := range cidrs {
			tx.Add(&knftables.Element{Set: setClusterCIDRs, Key: []string{c}})
		}
	}
	mark := fmt.Sprintf("%#x", p.cfg.MasqueradeMark)
	chain(chainMarkMasq, "meta mark set meta mark or "+mark)
	tx.Add(&knftables.Set{Name: setHairpin, Type: addrType + " . " + addrType})
	chain(chainMasquerading,
		fmt.Sprintf("ct status dnat %s saddr . %s daddr @%s masquerade fully-random", ip, ip, setHairpin),
		fmt.Sprintf("meta mark & %s == 0 return", mark),
		"meta mark set meta mark xor "+mark,
		"masquerade fully-random")
	tx.Add(&knftables.Set{Name: setRejectSvcs, Type: addrType + " . inet_proto . inet_service"})
	tx.Add(&knftables.Set{Name: setClusterIPs, Type: addrType})
	cidrs := p.serviceCIDRElems()
	if len(cidrs) > 0 {
		tx.Add(&knftables.Set{Name: setServiceCIDRs, Type: addrType, Flags: []knftables.SetFlag{knftables.IntervalFlag}})
		for _, c := range cidrs {
			addElement(tx, verbAdd, element{Map: setServiceCIDRs, Key: c})
		}
	}
	tx.Add(&knftables.Set{Name: setRejectNPs, Type: "inet_proto . inet_service"})
	for _, proto := range endpointProtocols {
		for _, bank := range []int{0, externalBank} {
			chain(p.dispatchChain(dispatchChainKey{proto, bank}))
		}
	}
	chain(chainServices,
		fmt.Sprintf("%s daddr . meta l4proto . th dport vmap @%s", ip, mapServiceIPs),
		fmt.Sprintf("fib daddr type local %s daddr != %s meta l4proto . th dport vmap @%s", ip, loopback, mapServiceNodePorts))
	// Rejecting through a set rather than `goto reject-chain` elements:
	// adding a jump or goto element makes the kernel re-validate the
	// whole table, a plain set element does not.
	chain(chainSvcCheck,
		fmt.Sprintf("%s daddr . meta l4proto . th dport vmap @%s", ip, mapNoEndpointSvcs),
		fmt.Sprintf("%s daddr . meta l4proto . th dport @%s reject", ip, setRejectSvcs))
	chain(chainNodePortCheck,
		fmt.Sprintf("fib daddr type local %s daddr != %s meta l4proto . th dport vmap @%s", ip, loopback, mapNoEndpointNPs),
		fmt.Sprintf("fib daddr type local %s daddr != %s meta l4proto . th dport @%s reject", ip, loopback, setRejectNPs))
	// A packet to a cluster IP that NAT left alone (a port no Service
	// serves) is rejected rather than routed on (kube-proxy's
	// cluster-ips-check, after DNAT).
	// With ServiceCIDRs, a packet to any other address inside them is
	// dropped (kube-proxy's "Drop traffic to unallocated ClusterIPs").
	chain(chainClusterIPsCheck, p.clusterIPsCheckRules(len(cidrs) > 0)...)
	// loadBalancerSourceRanges, before DNAT (kube-proxy's firewall-check).
	chain(chainFirewallCheck, fmt.Sprintf("%s daddr . meta l4proto . th dport vmap @%s", ip, mapFirewallIPs))
	filterPrio := knftables.BaseChainPriority("-110")
	base("filter-prerouting", knftables.FilterType, knftables.PreroutingHook, filterPrio, "ct state new jump "+chainFirewallCheck)
	base("filter-output-pre-dnat", knftables.FilterType, knftables.OutputHook, filterPrio, "ct state new jump "+chainFirewallCheck)
	base("filter-input", knftables.FilterType, knftables.InputHook, filterPrio,
		"ct state new jump "+chainNodePortCheck, "ct state new jump "+chainSvcCheck)
	base("filter-forward", knftables.FilterType, knftables.ForwardHook, filterPrio,
		"ct state new jump "+chainSvcCheck, "ct state new jump "+chainClusterIPsCheck)
	// The node's own traffic is checked after DNAT (kube-proxy checks it
	// before, at -110): a packet its external chain short-circuited to
	// the cluster-wide endpoints (externalTrafficPolicy Local) no longer
	// has the address or node port that the drop elements name.
	base("filter-output-post-dnat", knftables.FilterType, knftables.OutputHook, knftables.BaseChainPriority("-90"),
		"ct state new jump "+chainSvcCheck, "ct state new jump "+chainNodePortCheck, "ct state new jump "+chainClusterIPsCheck)
	base("nat-prerouting", knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority, "jump "+chainServices)
	base("nat-output", knftables.NATType, knftables.OutputHook, knftables.DNATPriority, "jump "+chainServices)
	base("nat-postrouting", knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority, "jump "+chainMasquerading)
}

// clusterIPsCheckRules are the rules of cluster-ips-check: reject a
// cluster IP in use (an unserved port), then, withCIDRs, drop any other
// address of the service CIDRs (an unallocated one), as kube-proxy's
// nftables mode orders them.
func (p *Proxier) clusterIPsCheckRules(withCIDRs bool) []string {
	ip := p.ipX()
	rules := []string{fmt.Sprintf("%s daddr @%s reject", ip, setClusterIPs)}
	if withCIDRs {
		rules = append(rules, fmt.Sprintf("%s daddr @%s drop", ip, setServiceCIDRs))
	}
	return rules
}

// serviceCIDRElems are the service-cidrs set's elements for
// Config.ServiceCIDRs: the family's prefixes, masked, nested ones folded
// into the outer (an interval set refuses overlaps), sorted.
func (p *Proxier) serviceCIDRElems() []string {
	var out []string
	for _, c := range outermost(p.familyPrefixes(p.cfg.ServiceCIDRs)) {
		out = append(out, c.String())
	}
	return out
}

// writeServiceCIDRs adds to tx the change of the service-cidrs set from
// the elements old (as last written) to cur: element changes only while
// both are non-empty; the set and the drop rule appear with the first
// element and go with the last (cluster-ips-check rewritten then).
func (p *Proxier) writeServiceCIDRs(tx sink, old, cur []string) {
	switch {
	case slices.Equal(old, cur):
		return
	case len(cur) == 0:
		tx.Flush(&knftables.Chain{Name: chainClusterIPsCheck})
		for _, r := range p.clusterIPsCheckRules(false) {
			tx.Add(&knftables.Rule{Chain: chainClusterIPsCheck, Rule: r})
		}
		tx.Delete(&knftables.Set{Name: setServiceCIDRs})
		return
	case len(old) == 0:
		tx.Add(&knftables.Set{Name: setServiceCIDRs, Type: p.setType(), Flags: []knftables.SetFlag{knftables.IntervalFlag}})
	}
	for _, c := range old {
		if !slices.Contains(cur, c) {
			addElement(tx, verbDelete, element{Map: setServiceCIDRs, Key: c})
		}
	}
	for _, c := range cur {
		if !slices.Contains(old, c) {
			addElement(tx, verbAdd, element{Map: setServiceCIDRs, Key: c})
		}
	}
	if len(old) == 0 {
		rules := p.clusterIPsCheckRules(true)
		tx.Add(&knftables.Rule{Chain: chainClusterIPsCheck, Rule: rules[len(rules)-1]})
	}
}

// diff collects, over all changed service ports, the operations of one
// transaction, grouped so that nothing is referenced before it exists or
// deleted while referenced.
type diff struct {
	delElems, addElems     []element
	addSets                map[string]int
	writeChains            []string
	rules                  map[string][]string
	staleChains, staleSets []string
	// hairpin and clusterIPs are the sets several ports may own an
	// element of: the hairpin addresses and the cluster IPs.
	hairpin, clusterIPs sharedSet
	// kUse counts the service ports using each endpoint count per
	// dispatch chain; the chains whose set of counts changed are
	// rewritten.
	kUse counts[dispatchKey]
}

// retireSlots takes out of delElems the endpoint-map elements whose key
// no element of this sync adds back (the slots a port stops using when
// its endpoint count changes, or when it goes) and returns them, to be
// deleted in a transaction of their own after this one. In one
// transaction, a packet that the kernel was already running through the
// old dispatch rule (`numgen random mod 3 offset 3 …`) when the
// transaction committed looks that rule's slot up in the new generation
// of the map, where the slot is gone: the lookup misses, the connection
// is not DNATed, and since NAT is decided once per connection its
// retransmissions are lost too (measured: 13-23 such packets per ~400-900
// commits at ~120,000 new flows/s, none with the slots retired
// afterwards; README.md). A key added back (one endpoint replaced by
// another in the same slot) is a delete and an add in the same
// transaction, which lookups never miss.
func (d *diff) retireSlots() []element {
	if len(d.delElems) == 0 {
		return nil // a full sync, or only additions
	}
	readd := make(map[[2]string]bool, len(d.addElems))
	for _, e := range d.addElems {
		readd[[2]string{e.Map, e.Key}] = true
	}
	var later []element
	keep := d.delElems[:0]
	for _, e := range d.delElems {
		if isEndpointMap(e.Map) && !readd[[2]string{e.Map, e.Key}] {
			later = append(later, e)
		} else {
			keep = append(keep, e)
		}
	}
	d.delElems = keep
	slices.SortFunc(later, func(a, b element) int {
		return cmp.Or(strings.Compare(a.Map, b.Map), strings.Compare(a.Key, b.Key))
	})
	return later
}

func (d *diff) add(old, cur *rendered) {
	if old == nil {
		old = &rendered{}
	}
	if cur == nil {
		cur = &rendered{}
	}
	if d.addSets == nil {
		d.addSets, d.rules = map[string]int{}, map[string][]string{}
	}
	d.hairpin.update(old.hairpin, cur.hairpin)
	d.clusterIPs.update(old.clusterIPs, cur.clusterIPs)
	for _, k := range old.ks {
		d.kUse.dec(k)
	}
	for _, k := range cur.ks {
		d.kUse.inc(k)
	}
	for e := range old.elements {
		if !cur.elements[e] {
			d.delElems = append(d.delElems, e)
		}
	}
	for e := range cur.elements {
		if !old.elements[e] {
			d.addElems = append(d.addElems, e)
		}
	}
	for s, to := range cur.sets {
		if _, ok := old.sets[s]; !ok || old.sets[s] != to {
			d.addSets[s] = to
		}
	}
	for _, c := range cur.order {
		if o, ok := old.chains[c]; !ok || !slices.Equal(o, cur.chains[c]) {
			d.writeChains = append(d.writeChains, c)
			d.rules[c] = cur.chains[c]
		}
	}
	for _, c := range slices.Sorted(maps.Keys(old.chains)) {
		if _, ok := cur.chains[c]; !ok {
			d.staleChains = append(d.staleChains, c)
		}
	}
	for _, s := range slices.Sorted(maps.Keys(old.sets)) {
		if _, ok := cur.sets[s]; !ok {
			d.staleSets = append(d.staleSets, s)
		}
	}
}

func splitKey(k string) []string { return strings.Split(k, keySep) }

// write adds the operations to tx; fresh means the table was just
// recreated, so chains need no flush.
func (d *diff) write(tx sink, p *Proxier, fresh bool) {
	setType := p.setType()
	// Elements in map order, then key order: deterministic, and each
	// map's elements are consecutive, so the netlink executor sends
	// them in full messages.
	for _, l := range [][]element{d.delElems, d.addElems} {
		slices.SortFunc(l, func(a, b element) int {
			return cmp.Or(strings.Compare(a.Map, b.Map), strings.Compare(a.Key, b.Key))
		})
	}
	if o, ok := tx.(*ops); ok {
		n := len(d.delElems) + len(d.addElems) + len(d.hairpin.add) + len(d.hairpin.del) +
			len(d.clusterIPs.add) + len(d.clusterIPs.del) + 2*len(d.writeChains)
		for _, c := range d.writeChains {
			n += len(d.rules[c])
		}
		o.list = slices.Grow(o.list, n)
	}
	for _, e := range d.delElems {
		addElement(tx, verbDelete, e)
	}
	d.hairpin.write(tx)
	d.clusterIPs.write(tx)
	for _, s := range slices.Sorted(maps.Keys(d.addSets)) {
		if d.addSets[s] == 0 {
			tx.Add(&knftables.Set{Name: s, Type: setType, Flags: []knftables.SetFlag{knftables.IntervalFlag}})
			continue
		}
		tx.Add(&knftables.Set{Name: s, Type: setType, Flags: []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag}, Timeout: ptr(timeoutOf(d.addSets[s]))})
	}
	for _, c := range d.writeChains {
		tx.Add(&knftables.Chain{Name: c})
		if !fresh {
			tx.Flush(&knftables.Chain{Name: c})
		}
	}
	for _, c := range d.writeChains {
		for _, r := range d.rules[c] {
			tx.Add(&knftables.Rule{Chain: c, Rule: r})
		}
	}
	// Dispatch chains whose endpoint counts changed: elements are added
	// after them, so every slot an element names has its rule.
	for _, c := range d.kUse.changed() {
		rules := p.dispatchRules(c, d.kUse.inUse(c))
		if !fresh {
			tx.Flush(&knftables.Chain{Name: p.dispatchChain(c)})
		}
		for _, r := range rules {
			tx.Add(&knftables.Rule{Chain: p.dispatchChain(c), Rule: r})
		}
	}
	for _, e := range d.addElems {
		addElement(tx, verbAdd, e)
	}
	for _, c := range d.staleChains {
		tx.Flush(&knftables.Chain{Name: c})
	}
	for _, c := range d.staleChains {
		tx.Delete(&knftables.Chain{Name: c})
	}
	for _, s := range d.staleSets {
		tx.Delete(&knftables.Set{Name: s})
	}
}

// sharedSet is a set several service ports may own the same element of
// (an address): its elements are reference-counted, added when the
// first port uses one and deleted when the last one stops.
type sharedSet struct {
	name     string
	key      func(addr string) string // the element's key
	counts   counts[string]
	add, del []string // addresses that gained their first or lost their last user
}

func newSharedSet(name string, base map[string]int, key func(string) string) sharedSet {
	return sharedSet{name: name, key: key, counts: counts[string]{base: base, delta: map[string]int{}}}
}

// update counts the addresses a port used (old) and uses (cur).
func (s *sharedSet) update(old, cur []string) {
	for _, a := range old {
		if s.counts.dec(a) {
			s.del = append(s.del, a)
		}
	}
	for _, a := range cur {
		if s.counts.inc(a) {
			s.add = append(s.add, a)
		}
	}
}

// write adds the element changes to tx, sorted.
func (s *sharedSet) write(tx sink) {
	// An address dropped by one port and added by another in the same
	// diff appears in both lists: net it out.
	add, del := map[string]bool{}, map[string]bool{}
	for _, a := range s.add {
		add[a] = true
	}
	for _, a := range s.del {
		if add[a] {
			delete(add, a)
		} else {
			del[a] = true
		}
	}
	for _, a := range slices.Sorted(maps.Keys(del)) {
		if s.counts.get(a) == 0 {
			addElement(tx, verbDelete, element{Map: s.name, Key: s.key(a)})
		}
	}
	for _, a := range slices.Sorted(maps.Keys(add)) {
		if s.counts.get(a) > 0 {
			addElement(tx, verbAdd, element{Map: s.name, Key: s.key(a)})
		}
	}
}

// object is e as a knftables element (of a set when e has no value).
func (e element) object(withValue bool) *knftables.Element {
	if e.Value == "" {
		return &knftables.Element{Set: e.Map, Key: splitKey(e.Key)}
	}
	o := &knftables.Element{Map: e.Map, Key: splitKey(e.Key)}
	if withValue {
		o.Value = []string{e.Value}
	}
	return o
}
