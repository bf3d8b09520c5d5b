package policy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/dataplane/internal/parallel"
	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	pol "github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selector"
)

// Defaults for Config.
const (
	DefaultInterfacePrefix = "tby"
	DefaultMarkAccept      = 0x10000
	DefaultMarkPass        = 0x20000
	DefaultLogPrefix       = "calico-packet: "
)

// Sentinel errors, for errors.Is.
var (
	// ErrInvalidConfig: a Config the compiler cannot work with, or a
	// Compiler that New did not make (nil or a zero value).
	ErrInvalidConfig = errors.New("invalid policy compiler config")
	// ErrInvalidInterface: a local endpoint's interface name is empty, too
	// long (15 bytes) or has characters iptables refuses.
	ErrInvalidInterface = errors.New("invalid interface name")
	// ErrNil: a nil object was passed.
	ErrNil = errors.New("nil object")
)

// Config configures a Compiler. Zero values take the defaults.
type Config struct {
	// Family is the address family compiled: iptables.IPv4 (default) or
	// iptables.IPv6. Compile each family with its own Compiler.
	Family iptables.Family
	// InterfacePrefix is the prefix of the host-side workload interfaces
	// (DefaultInterfacePrefix "tby", Calico's "cali").
	InterfacePrefix string
	// MarkAccept and MarkPass are the packet-mark bits the chains use to
	// carry "a policy allowed" and "a policy passed" between chains
	// (Felix's accept and pass marks); distinct single bits.
	MarkAccept, MarkPass uint32
	// NFLOGGroup, when not zero, turns drop attribution on: every Deny rule
	// and end-of-tier drop first sends the packet to this NFLOG group with
	// a prefix that names tier, policy and rule (see DropReader).
	NFLOGGroup uint16
}

// Option configures New. A nil Option is ignored.
type Option func(*Compiler)

// WithLogger sets the logger (default, and when l is nil: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *Compiler) {
		if l != nil {
			c.log = l
		}
	}
}

// Compiler renders Calico policy for the endpoints local to one node into
// iptables chains and ipsets, incrementally. See the package doc. The zero
// value is not usable; make one with New (its methods that return an error
// return ErrInvalidConfig; Plan returns an empty plan, NeedsL7 nil, and the
// Delete*/Remove* methods without a result do nothing).
type Compiler struct {
	mu    sync.Mutex
	cfg   Config
	log   *slog.Logger
	model *pol.Model
	ipt   *iptables.IPTables
	sets  *ipsets.IPSets

	tiers map[string]tierInfo

	// known objects, for Replace
	endpoints  map[string]*pol.Endpoint
	namespaces map[string]bool
	netsets    map[string]bool // "ns/name"
	gnetsets   map[string]bool
	policies   map[string]*pol.ResolvedPolicy
	chainOf    map[string]string // policy chain name -> "key direction", for errors

	local map[string]string // endpoint key -> host interface

	// desired state
	selSets   map[pol.SelectorID]string // rule selector -> set name
	setState  map[string]*desiredSet
	chains    map[string][]iptables.Rule
	polRefs   map[string][]string // policy key -> nets / named-port sets it references
	npSets    map[string]npKey    // named-port set name -> what it holds
	l7        map[string][]RuleRef
	dropCause map[string]DropCause // prefix id -> cause

	// applied state (pushed to ipt and sets)
	appliedSets   map[string]*appliedSet
	appliedChains map[string][]iptables.Rule
	hooksSet      bool

	dirtySets      map[string]bool
	dirtyChains    map[string]bool
	dirtyEndpoints map[string]bool
	dirtyPolicies  map[string]bool
	dirtyNP        map[string]bool
	dispatchDirty  bool

	modelErr error

	// checkOnly: a checkRender scratch; set names are placeholders of the
	// real names' length and alphabet (no hashing).
	checkOnly bool
}

type tierInfo struct {
	order         *float64
	defaultAction pol.Action
}

type desiredSet struct {
	spec    ipsets.SetSpec
	members map[ipsets.Member]int
	refs    int // policies referencing a nets / named-port set
}

type appliedSet struct {
	spec    ipsets.SetSpec
	members map[ipsets.Member]bool
}

type npKey struct {
	sel   pol.SelectorID // "" : every endpoint
	name  string
	proto pol.Protocol
}

// RuleRef names one rule of a policy: Rule is its index in the direction's
// list.
type RuleRef struct {
	Policy    string
	Direction pol.Direction
	Rule      int
}

func (r RuleRef) String() string { return fmt.Sprintf("%s %s rule %d", r.Policy, r.Direction, r.Rule) }

// New returns a Compiler that programs through ipt (filter table chains and
// the FORWARD, INPUT and OUTPUT hooks) and sets. ipt and sets must be of the
// Config's family and network namespace; nothing is written before Apply.
// Errors wrap ErrInvalidConfig: a bad Config, a nil ipt or sets, ipt of
// another family, and sets that refuse to work (ipsets.New given a bad
// option: sets.Err() is not nil, and every Apply would fail with it).
func New(cfg Config, ipt *iptables.IPTables, sets *ipsets.IPSets, opts ...Option) (*Compiler, error) {
	if cfg.Family == 0 {
		cfg.Family = iptables.IPv4
	}
	if cfg.InterfacePrefix == "" {
		cfg.InterfacePrefix = DefaultInterfacePrefix
	}
	if cfg.MarkAccept == 0 {
		cfg.MarkAccept = DefaultMarkAccept
	}
	if cfg.MarkPass == 0 {
		cfg.MarkPass = DefaultMarkPass
	}
	switch {
	case cfg.Family != iptables.IPv4 && cfg.Family != iptables.IPv6:
		return nil, fmt.Errorf("%w: family %d", ErrInvalidConfig, cfg.Family)
	case cfg.MarkAccept&(cfg.MarkAccept-1) != 0 || cfg.MarkPass&(cfg.MarkPass-1) != 0 || cfg.MarkAccept == cfg.MarkPass:
		return nil, fmt.Errorf("%w: marks %#x and %#x must be distinct single bits", ErrInvalidConfig, cfg.MarkAccept, cfg.MarkPass)
	case len(cfg.InterfacePrefix) > 14 || !validIface(cfg.InterfacePrefix):
		return nil, fmt.Errorf("%w: interface prefix %q", ErrInvalidConfig, cfg.InterfacePrefix)
	case ipt == nil || sets == nil:
		return nil, fmt.Errorf("%w: nil iptables or ipsets", ErrInvalidConfig)
	case sets.Err() != nil:
		return nil, fmt.Errorf("%w: ipsets: %w", ErrInvalidConfig, sets.Err())
	case ipt.Family() != cfg.Family:
		return nil, fmt.Errorf("%w: compiler family %s, iptables family %s", ErrInvalidConfig, cfg.Family, ipt.Family())
	}
	c := &Compiler{
		cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), ipt: ipt, sets: sets,
		tiers:     map[string]tierInfo{},
		endpoints: map[string]*pol.Endpoint{}, namespaces: map[string]bool{}, netsets: map[string]bool{},
		gnetsets: map[string]bool{}, policies: map[string]*pol.ResolvedPolicy{}, chainOf: map[string]string{}, local: map[string]string{},
		selSets: map[pol.SelectorID]string{}, setState: map[string]*desiredSet{}, chains: map[string][]iptables.Rule{},
		polRefs: map[string][]string{}, npSets: map[string]npKey{}, l7: map[string][]RuleRef{},
		dropCause:   map[string]DropCause{},
		appliedSets: map[string]*appliedSet{}, appliedChains: map[string][]iptables.Rule{},
		dirtySets: map[string]bool{}, dirtyChains: map[string]bool{}, dirtyEndpoints: map[string]bool{},
		dirtyPolicies: map[string]bool{}, dirtyNP: map[string]bool{},
		dispatchDirty: true,
	}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	c.setTiers(nil)
	c.model = pol.NewModel(
		pol.OnSelectorAdded(c.onSelectorAdded),
		pol.OnSelectorRemoved(c.onSelectorRemoved),
		pol.OnMatchStarted(c.onMatchStarted),
		pol.OnMatchStopped(c.onMatchStopped),
		pol.OnItemNetsChanged(c.onItemNetsChanged),
		pol.OnPolicyMatch(c.onPolicyMatch),
		pol.OnPolicyMatchStopped(c.onPolicyMatch),
	)
	return c, nil
}

// validIface reports whether s can name a workload interface (or be the
// prefix of one): an exact device name, so without iptables' '+' wildcard
// or a '!'.
func validIface(s string) bool {
	return iptables.ValidInterfaceName(s) && !strings.ContainsAny(s, "+!")
}

// hash16 is the first 16 hex digits of the SHA-256 of the parts, each
// followed by a NUL byte.
func hash16(parts ...string) string {
	var buf [256]byte
	in := buf[:0]
	for _, p := range parts {
		in = append(in, p...)
		in = append(in, 0)
	}
	sum := sha256.Sum256(in)
	return hex.EncodeToString(sum[:8])
}

// made reports whether New made c: only New sets c.ipt, never changed
// afterwards, so reading it needs no lock.
func (c *Compiler) made() bool { return c != nil && c.ipt != nil }

// check returns nil when New made c, else an error of op wrapping
// ErrInvalidConfig.
func (c *Compiler) check(op string) error { return c.checkOf(op, "") }

// checkOf is check for an operation on obj ("set interface of endpoint"
// and its key): the error's text is built only when there is an error, so
// the check allocates nothing on a Compiler New made.
func (c *Compiler) checkOf(op, obj string) error {
	if !c.made() {
		if obj != "" {
			op += " " + obj
		}
		return fmt.Errorf("%s: policy.Compiler has no configuration (make it with New): %w", op, ErrInvalidConfig)
	}
	return nil
}

func (c *Compiler) famDigit() string {
	if c.cfg.Family == iptables.IPv6 {
		return "6"
	}
	return "4"
}

// setName names an owned set: prefix, kind (s selector, n nets, p named
// port), family digit, '-', 16 hex digits of SHA-256 of the key (25 bytes
// with the default prefix).
func (c *Compiler) setName(kind byte, key string) string {
	if c.checkOnly {
		return c.sets.Prefix() + string(kind) + c.famDigit() + "-0000000000000000"
	}
	return c.sets.Prefix() + string(kind) + c.famDigit() + "-" + hash16(key)
}

func (c *Compiler) inFamily(p netip.Prefix) bool {
	return p.Addr().Is4() == (c.cfg.Family == iptables.IPv4)
}

// --- model events (called with c.mu held, from inside model updates) ---

func (c *Compiler) onSelectorAdded(id pol.SelectorID, sel selector.Selector) {
	name := c.setName('s', string(id))
	c.selSets[id] = name
	typ := ipsets.HashNet
	c.setState[name] = &desiredSet{spec: ipsets.SetSpec{Name: name, Type: typ, Family: c.setFamily()}, members: map[ipsets.Member]int{}}
	c.dirtySets[name] = true
}

func (c *Compiler) onSelectorRemoved(id pol.SelectorID) {
	name := c.selSets[id]
	delete(c.selSets, id)
	delete(c.setState, name)
	c.dirtySets[name] = true
	c.dirtyNPFor(id)
}

func (c *Compiler) setFamily() ipsets.Family {
	if c.cfg.Family == iptables.IPv6 {
		return ipsets.IPv6
	}
	return ipsets.IPv4
}

func (c *Compiler) addNets(name string, nets []netip.Prefix, delta int) {
	s := c.setState[name]
	if s == nil {
		return
	}
	for _, p := range nets {
		if !c.inFamily(p) {
			continue
		}
		for _, m := range netMembers(p) {
			s.members[m] += delta
			if s.members[m] <= 0 {
				delete(s.members, m)
			}
		}
	}
	c.dirtySets[name] = true
}

func (c *Compiler) onMatchStarted(id pol.SelectorID, it pol.ItemID) {
	c.addNets(c.selSets[id], c.model.ItemNets(it), 1)
	c.dirtyNPFor(id)
}

func (c *Compiler) onMatchStopped(id pol.SelectorID, it pol.ItemID) {
	c.addNets(c.selSets[id], c.model.ItemNets(it), -1)
	c.dirtyNPFor(id)
}

func (c *Compiler) onItemNetsChanged(it pol.ItemID, old, cur []netip.Prefix) {
	for _, id := range c.model.SelectorsMatching(it) {
		c.addNets(c.selSets[id], old, -1)
		c.addNets(c.selSets[id], cur, 1)
	}
}

func (c *Compiler) onPolicyMatch(_ string, ep pol.ItemID) {
	if ep.Kind == pol.ItemEndpoint {
		c.dirtyEndpoints[endpointKey(ep)] = true
	}
}

func endpointKey(id pol.ItemID) string {
	if id.Namespace == "" {
		return id.Name
	}
	return id.Namespace + "/" + id.Name
}

func (c *Compiler) dirtyNPFor(id pol.SelectorID) {
	for name, k := range c.npSets {
		if k.sel == id {
			c.dirtyNP[name] = true
		}
	}
}

// --- inputs ---

func (c *Compiler) setTiers(ts []*pol.Tier) {
	old := c.tiers
	c.tiers = map[string]tierInfo{}
	for _, t := range append(pol.BuiltinTiers(), ts...) {
		ti := tierInfo{order: t.Spec.Order, defaultAction: pol.Deny}
		if t.Spec.DefaultAction != nil {
			ti.defaultAction = *t.Spec.DefaultAction
		}
		c.tiers[t.Name] = ti
	}
	if !maps.EqualFunc(old, c.tiers, func(a, b tierInfo) bool {
		return a.defaultAction == b.defaultAction && cmpOrder(a.order, b.order) == 0
	}) {
		for k := range c.local {
			c.dirtyEndpoints[k] = true
		}
	}
}

func cmpOrder(a, b *float64) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return cmp.Compare(*a, *b)
}

// SetTiers makes ts (validated) the tiers, beside the built-in ones
// (which ts may redefine with the same order). A change of order or default
// action re-renders the local endpoints' chains.
func (c *Compiler) SetTiers(ts []*pol.Tier) error {
	if err := c.check("set tiers"); err != nil {
		return err
	}
	var errs []error
	for _, t := range ts {
		if t == nil {
			return ErrNil
		}
		if err := t.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setTiers(ts)
	return nil
}

// UpdateEndpoint adds or changes an endpoint (local or not: every endpoint
// can be a member of rule selectors' sets). Invalid endpoints are refused
// before anything changes.
func (c *Compiler) UpdateEndpoint(ep *pol.Endpoint) error {
	if err := c.check("update endpoint"); err != nil {
		return err
	}
	return validThen(c, ep, func() error { return c.updateEndpoint(ep.DeepCopy()) })
}

// validThen refuses a nil or invalid obj, then runs f holding the lock.
func validThen[T any, P interface {
	*T
	Validate() error
}](c *Compiler, obj P, f func() error) error {
	if obj == nil {
		return ErrNil
	}
	if err := obj.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return f()
}

// checkIface refuses a workload interface the dispatch chains cannot reach.
func (c *Compiler) checkIface(ep *pol.Endpoint, iface string) error {
	if !ep.IsHost() && !strings.HasPrefix(iface, c.cfg.InterfacePrefix) {
		return fmt.Errorf("endpoint %s: %w: workload interface %q does not start with %q",
			ep.Key(), ErrInvalidInterface, iface, c.cfg.InterfacePrefix)
	}
	return nil
}

func (c *Compiler) updateEndpoint(ep *pol.Endpoint) error {
	old := c.endpoints[ep.Key()]
	if iface, local := c.local[ep.Key()]; local {
		if err := c.checkIface(ep, iface); err != nil {
			return err
		}
	}
	if err := c.model.UpdateEndpoint(ep); err != nil {
		return fmt.Errorf("endpoint %s: %w", ep.Key(), err)
	}
	c.endpoints[ep.Key()] = ep
	c.dirtyEndpoints[ep.Key()] = true
	if _, local := c.local[ep.Key()]; local && (old == nil || old.IsHost() != ep.IsHost()) {
		c.dispatchDirty = true
	}
	c.dirtyNPForEndpoint(old, ep)
	return nil
}

func (c *Compiler) dirtyNPForEndpoint(eps ...*pol.Endpoint) {
	names := map[string]bool{}
	for _, ep := range eps {
		if ep != nil {
			for _, p := range ep.Ports {
				names[p.Name] = true
			}
		}
	}
	for name, k := range c.npSets {
		if names[k.name] {
			c.dirtyNP[name] = true
		}
	}
}

// DeleteEndpoint removes an endpoint (and its chains, if local).
func (c *Compiler) DeleteEndpoint(key string) {
	if !c.made() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteEndpoint(key)
}

func (c *Compiler) deleteEndpoint(key string) {
	old := c.endpoints[key]
	c.model.DeleteEndpoint(key)
	delete(c.endpoints, key)
	c.dirtyEndpoints[key] = true
	if _, local := c.local[key]; local && old != nil {
		c.dispatchDirty = true
	}
	c.dirtyNPForEndpoint(old)
}

// SetInterface marks the endpoint key as local to this node, reached
// through the host-side interface iface (workloads: the veth's host end,
// named with Config.InterfacePrefix). Its chains are rendered from then
// on. The endpoint may arrive before or after its interface. An interface
// names one endpoint: setting it for key takes it from any other.
// ErrInvalidInterface for a bad name, and for a workload's interface
// without Config.InterfacePrefix (the dispatch chains match only that
// prefix, so its policy would never be enforced).
func (c *Compiler) SetInterface(key, iface string) error {
	if err := c.checkOf("set interface of endpoint", key); err != nil {
		return err
	}
	if !validIface(iface) {
		return fmt.Errorf("endpoint %s: %w: %q", key, ErrInvalidInterface, iface)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ep := c.endpoints[key]; ep != nil {
		if err := c.checkIface(ep, iface); err != nil {
			return err
		}
	}
	if c.local[key] != iface {
		for k, i := range c.local {
			if i == iface && k != key { // the interface moved to another endpoint
				delete(c.local, k)
			}
		}
		if old, ok := c.local[key]; ok {
			c.dropEndpointChains(old)
		}
		c.local[key] = iface
		c.dirtyEndpoints[key] = true
		c.dispatchDirty = true
	}
	return nil
}

// RemoveInterface makes the endpoint key not local any more; its chains go.
func (c *Compiler) RemoveInterface(key string) {
	if !c.made() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if iface, ok := c.local[key]; ok {
		delete(c.local, key)
		c.dropEndpointChains(iface)
		c.dispatchDirty = true
	}
}

func (c *Compiler) dropEndpointChains(iface string) {
	for _, n := range []string{c.twChain(iface), c.fwChain(iface), c.fhChain(iface), c.thChain(iface)} {
		c.deleteChain(n)
	}
}

// UpdateNamespace adds or changes a namespace (its labels feed namespace
// selectors).
func (c *Compiler) UpdateNamespace(ns *pol.Namespace) error {
	if err := c.check("update namespace"); err != nil {
		return err
	}
	return validThen(c, ns, func() error {
		c.namespaces[ns.Name] = true
		return c.model.UpdateNamespace(ns.DeepCopy())
	})
}

// UpdateServiceAccount adds or changes a service account.
func (c *Compiler) UpdateServiceAccount(sa *pol.ServiceAccount) error {
	if err := c.check("update service account"); err != nil {
		return err
	}
	return validThen(c, sa, func() error {
		cp := *sa
		cp.Labels = maps.Clone(sa.Labels)
		return c.model.UpdateServiceAccount(&cp)
	})
}

// UpdateNetworkSet adds or changes a namespaced NetworkSet.
func (c *Compiler) UpdateNetworkSet(n *pol.NetworkSet) error {
	if err := c.check("update network set"); err != nil {
		return err
	}
	return validThen(c, n, func() error {
		c.netsets[n.Namespace+"/"+n.Name] = true
		return c.model.UpdateNetworkSet(n.DeepCopy())
	})
}

// UpdateGlobalNetworkSet adds or changes a GlobalNetworkSet.
func (c *Compiler) UpdateGlobalNetworkSet(n *pol.GlobalNetworkSet) error {
	if err := c.check("update global network set"); err != nil {
		return err
	}
	return validThen(c, n, func() error {
		c.gnetsets[n.Name] = true
		return c.model.UpdateGlobalNetworkSet(n.DeepCopy())
	})
}

// UpdatePolicy adds or changes a policy, resolved (validated) by
// NetworkPolicy.Resolve or GlobalNetworkPolicy.Resolve. Its chains are
// re-rendered; endpoint chains only when its tier, order or types change
// or when the endpoints it applies to change. The policy's rules are
// rendered first: a rule iptables would refuse (possible only in a
// ResolvedPolicy not made by Resolve, e.g. notICMP without protocol ICMP)
// is an error wrapping iptables.ErrInvalidRule that names the policy,
// direction and rule index, and the compiler keeps its old state. A nil
// policy is ErrNil, one with an empty Key policy.ErrInvalid, one whose tier
// the compiler does not know policy.ErrUnknownTier.
func (c *Compiler) UpdatePolicy(rp *pol.ResolvedPolicy) error {
	if err := c.check("update policy"); err != nil {
		return err
	}
	if rp == nil {
		return ErrNil
	}
	if rp.Key == "" {
		return fmt.Errorf("%w: policy without a name (empty Key; make a ResolvedPolicy with NetworkPolicy.Resolve or GlobalNetworkPolicy.Resolve)", pol.ErrInvalid)
	}
	scratch, err := c.newScratch()
	if err != nil {
		return fmt.Errorf("policy %s: %w", rp.Key, err)
	}
	if err := c.checkRender(rp, scratch); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.updatePolicy(rp)
}

func (c *Compiler) updatePolicy(rp *pol.ResolvedPolicy) error {
	if _, ok := c.tiers[rp.Tier]; !ok {
		return fmt.Errorf("policy %s: tier %q: %w", rp.Key, rp.Tier, pol.ErrUnknownTier)
	}
	old := c.policies[rp.Key]
	if err := c.model.UpdatePolicy(rp); err != nil {
		return fmt.Errorf("policy %s: %w", rp.Key, err)
	}
	c.policies[rp.Key] = rp
	c.dirtyPolicies[rp.Key] = true
	if (rp.DoNotTrack || rp.PreDNAT) && (old == nil || old.DoNotTrack != rp.DoNotTrack || old.PreDNAT != rp.PreDNAT) {
		kind := "doNotTrack"
		if !rp.DoNotTrack {
			kind = "preDNAT"
		}
		c.log.Warn("policy not enforced: "+kind+" policies belong in the raw or mangle table, which this compiler does not program",
			"policy", rp.Key)
	}
	if old == nil || old.Tier != rp.Tier || cmpOrder(old.Order, rp.Order) != 0 || old.Ingress != rp.Ingress ||
		old.Egress != rp.Egress || old.DoNotTrack != rp.DoNotTrack || old.PreDNAT != rp.PreDNAT {
		for _, id := range c.model.EndpointsMatching(rp.Key) {
			c.dirtyEndpoints[endpointKey(id)] = true
		}
	}
	return nil
}

// checkRender renders rp's rules with a scratch compiler of the same
// config into scratch, an in-memory iptables (newScratch), so a rule that
// iptables would refuse is reported now, naming the policy and rule (an
// ErrInvalidRule), rather than failing every later Apply. Each direction
// is checked as one chain; only a refused chain is checked rule by rule.
func (c *Compiler) checkRender(rp *pol.ResolvedPolicy, scratch *iptables.IPTables) error {
	s := &Compiler{checkOnly: true, cfg: c.cfg, sets: c.sets, selSets: map[pol.SelectorID]string{}, setState: map[string]*desiredSet{},
		polRefs: map[string][]string{}, npSets: map[string]npKey{}, l7: map[string][]RuleRef{},
		dropCause: map[string]DropCause{}, dirtySets: map[string]bool{}, dirtyNP: map[string]bool{}}
	var errs []error
	for _, d := range []pol.Direction{pol.Ingress, pol.Egress} {
		rs := rp.Rules(d)
		var all []iptables.Rule
		for i := range rs {
			all = s.ruleRules(all, rp, d, &rs[i])
		}
		if scratch.SetChain(iptables.Filter, iptables.Chain{Name: checkChain, Rules: all}) == nil {
			continue
		}
		for i := range rs {
			rules := s.ruleRules(nil, rp, d, &rs[i])
			if err := scratch.SetChain(iptables.Filter, iptables.Chain{Name: checkChain, Rules: rules}); err != nil {
				errs = append(errs, fmt.Errorf("policy %s: %s rule %d: %w", rp.Key, d, rs[i].Index, err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkRenderAll runs checkRender on every non-nil policy, in parallel
// (one scratch iptables per block of policies).
func (c *Compiler) checkRenderAll(rps []*pol.ResolvedPolicy) []error {
	const block = 64
	errs := make([]error, len(rps))
	parallel.For((len(rps)+block-1)/block, 1, func(b int) {
		scratch, err := c.newScratch()
		for i := b * block; i < min(len(rps), (b+1)*block); i++ {
			switch {
			case rps[i] == nil:
			case err != nil:
				errs[i] = fmt.Errorf("policy %s: %w", rps[i].Key, err)
			default:
				errs[i] = c.checkRender(rps[i], scratch)
			}
		}
	})
	return errs
}

// checkChain is the one chain checkRender writes into its scratch iptables.
const checkChain = "tabby-check"

// newScratch returns an in-memory iptables of the compiler's family for
// checkRender.
func (c *Compiler) newScratch() (*iptables.IPTables, error) { return scratchIPTables(c.cfg.Family) }

// scratchIPTables returns an in-memory iptables of family f, for rendering
// rules without a kernel (checkRender, Plan.String, Plan.Err).
func scratchIPTables(f iptables.Family) (*iptables.IPTables, error) {
	return iptables.New(iptables.Config{Family: f, Backend: iptables.BackendNFT}, iptables.WithExecer(iptables.NewFake()))
}

// DeletePolicy removes a policy and its chains.
func (c *Compiler) DeletePolicy(key string) {
	if !c.made() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deletePolicy(key)
}

func (c *Compiler) deletePolicy(key string) {
	if _, ok := c.policies[key]; !ok {
		return
	}
	for _, id := range c.model.EndpointsMatching(key) {
		c.dirtyEndpoints[endpointKey(id)] = true
	}
	c.model.DeletePolicy(key)
	delete(c.policies, key)
	c.dirtyPolicies[key] = true
}

// Replace makes r the complete state of tiers, namespaces, network sets,
// endpoints and policies, as a diff against what the compiler holds:
// objects missing from r are deleted, the others updated. Everything is
// validated first (the policies resolved and their rules rendered, as in
// UpdatePolicy; two objects of one kind with the same key are
// policy.ErrDuplicate, as in policy.NewPolicySet); on error nothing
// changes. Interfaces (SetInterface) are kept.
func (c *Compiler) Replace(r pol.Resources) error {
	if err := c.check("replace"); err != nil {
		return err
	}
	if slices.Contains(r.Tiers, nil) || slices.Contains(r.Namespaces, nil) || slices.Contains(r.NetworkSets, nil) ||
		slices.Contains(r.GlobalNetworkSets, nil) || slices.Contains(r.Endpoints, nil) ||
		slices.Contains(r.NetworkPolicies, nil) || slices.Contains(r.GlobalNetworkPolicies, nil) {
		return ErrNil
	}
	var errs []error
	for _, t := range r.Tiers {
		errs = append(errs, t.Validate())
	}
	for _, n := range r.Namespaces {
		errs = append(errs, n.Validate())
	}
	for _, n := range r.NetworkSets {
		errs = append(errs, n.Validate())
	}
	for _, n := range r.GlobalNetworkSets {
		errs = append(errs, n.Validate())
	}
	for _, e := range r.Endpoints {
		errs = append(errs, e.Validate())
	}
	errs = append(errs, duplicates(r.Tiers, func(t *pol.Tier) string { return t.Name })...)
	errs = append(errs, duplicates(r.Namespaces, func(n *pol.Namespace) string { return n.Name })...)
	errs = append(errs, duplicates(r.NetworkSets, func(n *pol.NetworkSet) string { return n.Namespace + "/" + n.Name })...)
	errs = append(errs, duplicates(r.GlobalNetworkSets, func(n *pol.GlobalNetworkSet) string { return n.Name })...)
	errs = append(errs, duplicates(r.Endpoints, (*pol.Endpoint).Key)...)
	errs = append(errs, duplicates(r.NetworkPolicies, func(p *pol.NetworkPolicy) string { return p.Namespace + "/" + p.Name })...)
	errs = append(errs, duplicates(r.GlobalNetworkPolicies, func(p *pol.GlobalNetworkPolicy) string { return p.Name })...)
	rps, resolveErrs := resolveAll(r)
	errs = append(errs, resolveErrs...)
	errs = append(errs, c.checkRenderAll(rps)...)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	tierNames := map[string]bool{}
	for _, t := range append(pol.BuiltinTiers(), r.Tiers...) {
		tierNames[t.Name] = true
	}
	for _, rp := range rps {
		if rp != nil && !tierNames[rp.Tier] {
			return fmt.Errorf("policy %s: tier %q: %w", rp.Key, rp.Tier, pol.ErrUnknownTier)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setTiers(r.Tiers)
	keep := map[string]bool{}
	for _, n := range r.Namespaces {
		keep[n.Name] = true
		errs = append(errs, c.model.UpdateNamespace(n.DeepCopy()))
		c.namespaces[n.Name] = true
	}
	pruneStale(c.namespaces, keep, func(n string) {
		c.model.DeleteNamespace(n)
		delete(c.namespaces, n)
	})
	for _, n := range r.NetworkSets {
		k := n.Namespace + "/" + n.Name
		keep[k] = true
		errs = append(errs, c.model.UpdateNetworkSet(n.DeepCopy()))
		c.netsets[k] = true
	}
	pruneStale(c.netsets, keep, func(k string) {
		ns, name, _ := cutKey(k)
		c.model.DeleteNetworkSet(ns, name)
		delete(c.netsets, k)
	})
	for _, n := range r.GlobalNetworkSets {
		keep[n.Name] = true
		errs = append(errs, c.model.UpdateGlobalNetworkSet(n.DeepCopy()))
		c.gnetsets[n.Name] = true
	}
	pruneStale(c.gnetsets, keep, func(k string) {
		c.model.DeleteNetworkSet("", k)
		delete(c.gnetsets, k)
	})
	for _, e := range r.Endpoints {
		keep[e.Key()] = true
		errs = append(errs, c.updateEndpoint(e.DeepCopy()))
	}
	pruneStale(c.endpoints, keep, c.deleteEndpoint)
	for _, rp := range rps {
		keep[rp.Key] = true
		errs = append(errs, c.updatePolicy(rp))
	}
	pruneStale(c.policies, keep, c.deletePolicy)
	return errors.Join(errs...)
}

// pruneStale calls del for every key of have (what the compiler holds of
// one kind) that keep (what a Replace listed) lacks, then empties keep for
// the next kind.
func pruneStale[V any](have map[string]V, keep map[string]bool, del func(string)) {
	for k := range have {
		if !keep[k] {
			del(k)
		}
	}
	clear(keep)
}

// resolveAll resolves r's policies (NetworkPolicies, then
// GlobalNetworkPolicies) with one policy.Resolver, so that a selector
// many rules share is parsed and combined once, in parallel on every CPU
// when there are many: resolving (validating and canonicalizing
// selectors) was most of the cost of a full Replace before the Resolver.
// duplicates returns an error wrapping policy.ErrDuplicate for each key
// that xs hold more than once, as policy.NewPolicySet refuses them.
func duplicates[T pol.Resource](xs []T, key func(T) string) []error {
	var errs []error
	seen := make(map[string]bool, len(xs))
	for _, x := range xs {
		k := x.ResourceKind() + " " + key(x)
		if seen[k] {
			errs = append(errs, fmt.Errorf("%s: %w", k, pol.ErrDuplicate))
		}
		seen[k] = true
	}
	return errs
}

func resolveAll(r pol.Resources) ([]*pol.ResolvedPolicy, []error) {
	nnp := len(r.NetworkPolicies)
	n := nnp + len(r.GlobalNetworkPolicies)
	rps := make([]*pol.ResolvedPolicy, n)
	errs := make([]error, n)
	var res pol.Resolver
	parallel.For(n, 32, func(i int) {
		if i < nnp {
			rps[i], errs[i] = res.ResolveNetworkPolicy(r.NetworkPolicies[i])
		} else {
			rps[i], errs[i] = res.ResolveGlobalNetworkPolicy(r.GlobalNetworkPolicies[i-nnp])
		}
	})
	return rps, errs
}

// cutKey splits "namespace/name"; a key without "/" is a global name.
func cutKey(k string) (string, string, bool) {
	if ns, name, ok := strings.Cut(k, "/"); ok {
		return ns, name, true
	}
	return "", k, false
}

// NeedsL7 returns the rules that match HTTP requests, by policy key. They
// cannot be enforced in netfilter: the compiled chains treat them as never
// matching, which is what the evaluator does for flows without an HTTP
// request (every flow netfilter sees); enforcing them needs an L7 proxy.
func (c *Compiler) NeedsL7() []RuleRef {
	if !c.made() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []RuleRef
	for _, k := range slices.Sorted(maps.Keys(c.l7)) {
		out = append(out, c.l7[k]...)
	}
	return out
}
