package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
)

// Route sources a Dataplane uses in its RouteOwner (the VXLAN manager adds
// "vxlan"). Other producers (BGP, tests) must pick other names. When two
// sources want the same route key the name that sorts first wins, so a
// local block's blackhole beats a stale peer route to the same block.
const (
	// SourceBlocks holds the blackhole routes of the node's own blocks.
	SourceBlocks = "blocks"
	// SourcePeers holds the direct (unencapsulated) routes to peers' blocks.
	SourcePeers = "peers"
)

// Config describes one node. Only Name is always required.
type Config struct {
	// Name of the node, as in IPAM affinities and peers' Peer.Name.
	Name string
	// Netns is the node's network namespace path (/var/run/netns/NAME or
	// /proc/PID/ns/net); "" means the namespace of the calling thread, as
	// for a node agent in the host namespace. Used by New only.
	Netns string
	// Address and Address6 are the node's underlay addresses with their
	// subnet length (Calico's Node spec.bgp.ipv4Address / ipv6Address,
	// e.g. 10.99.0.11/24). Address is required when Encap is not Never:
	// it is the VXLAN source and decides CrossSubnet.
	Address, Address6 netip.Prefix
	// Encap is the IPv4 pools' vxlanMode: Never (default: direct routes to
	// peers' blocks), Always, or CrossSubnet (VXLAN only to peers outside
	// Address's subnet).
	Encap tnl.EncapMode
	// VXLAN configures the VXLAN device when Encap is not Never: Parent
	// (e.g. eth0) and TunnelAddr (Calico assigns it from IPAM with use
	// Tunnel) are required; LocalIP defaults to Address's address.
	VXLAN tnl.VXLANConfig
}

func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		return c, fmt.Errorf("%w: node without a name", tnl.ErrInvalidSpec)
	}
	m, err := tnl.ParseEncapMode(string(c.Encap))
	if err != nil {
		return c, fmt.Errorf("node %s: %w", c.Name, err)
	}
	c.Encap = m
	if c.Address.IsValid() && !c.Address.Addr().Is4() || c.Address6.IsValid() && !c.Address6.Addr().Is6() {
		return c, fmt.Errorf("%w: node %s: Address must be IPv4 and Address6 IPv6", tnl.ErrInvalidSpec, c.Name)
	}
	if c.Encap == tnl.EncapNever {
		return c, nil
	}
	if !c.Address.IsValid() {
		return c, fmt.Errorf("%w: node %s: VXLAN (%s) needs the node's IPv4 Address", tnl.ErrInvalidSpec, c.Name, c.Encap)
	}
	if !c.VXLAN.LocalIP.IsValid() {
		c.VXLAN.LocalIP = c.Address.Addr()
	}
	if err := c.VXLAN.Validate(); err != nil {
		return c, fmt.Errorf("node %s: %w", c.Name, err)
	}
	return c, nil
}

// Option configures New, NewWith and NewFake; a nil Option is ignored.
type Option func(*options)

type options struct{ log *slog.Logger }

// WithLogger sets the logger of the Dataplane and of the managers New
// makes (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

func buildOptions(opts []Option) options {
	o := options{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, f := range opts {
		if f != nil { // a nil Option is ignored
			f(&o)
		}
	}
	return o
}

// Parts are the managers a Dataplane drives.
type Parts struct {
	// Workloads sets pods up (required).
	Workloads tnl.WorkloadManager
	// Routes owns the node's routes (required).
	Routes *tnl.RouteOwner
	// VXLAN is the overlay; required when Config.Encap is not Never, and
	// it must share Routes.
	VXLAN tnl.VXLANManager
}

// Dataplane is one node's pod networking: the workloads (pod veths), a
// blackhole route per local block, and routes to the peers' blocks —
// direct, or through the VXLAN device. Blocks and peers come from the
// caller (ipam.AffineBlocks, the datastore); nothing here allocates.
// Safe for concurrent use. The zero value is not usable; make one with New,
// NewWith or NewFake (its methods that change or write return an error
// wrapping tnl.ErrInvalidSpec; Close returns nil and the getters zero
// values).
type Dataplane struct {
	cfg       Config
	log       *slog.Logger
	workloads tnl.WorkloadManager
	routes    *tnl.RouteOwner
	vxlan     tnl.VXLANManager
	closers   []func() error
	// dropTunnel, set by New when Encap is Never, deletes a VXLAN device
	// an earlier, encapsulating Dataplane left in the namespace.
	dropTunnel func() error

	mu     sync.Mutex
	blocks []netip.Prefix
	peers  map[string]Peer
}

// New opens the node's namespace (Config.Netns) and builds the kernel
// managers: Workloads, a RouteOwner on a batching KernelHandle and, unless
// Encap is Never, VXLAN. It turns IP forwarding on (net.ipv4.ip_forward,
// net.ipv6.conf.all.forwarding). Nothing else is written until SetBlocks,
// SetPeers and Reconcile. Close releases the handles (the kernel state
// stays, as for a restarting agent).
func New(cfg Config, opts ...Option) (_ *Dataplane, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()
	w, err := tnl.NewWorkloads(cfg.Netns, tnl.WithLogger(o.log))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	closers = append(closers, w.Close)
	if err := w.EnableForwarding(); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	kh, err := tnl.NewKernelHandle(cfg.Netns)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	closers = append(closers, func() error { kh.Close(); return nil })
	routes, err := tnl.NewRouteOwner(kh, tnl.WithLogger(o.log))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	parts := Parts{Workloads: w, Routes: routes}
	var drop func() error
	if cfg.Encap == tnl.EncapNever {
		drop = func() error { return tnl.DeleteVXLANDevice(kh, cmp.Or(cfg.VXLAN.Name, tnl.DefaultVXLANName)) }
	} else {
		if parts.VXLAN, err = tnl.NewVXLAN(kh, parts.Routes, cfg.VXLAN, tnl.WithLogger(o.log)); err != nil {
			return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
		}
	}
	d, err := NewWith(cfg, parts, opts...)
	if err != nil {
		return nil, err
	}
	d.closers = closers
	d.dropTunnel = drop
	return d, nil
}

// NewWith builds a Dataplane on managers the caller made (fakes in tests,
// or kernel managers with other options).
func NewWith(cfg Config, parts Parts, opts ...Option) (*Dataplane, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	switch {
	case parts.Workloads == nil || parts.Routes == nil:
		return nil, fmt.Errorf("%w: node %s: Parts needs Workloads and Routes", tnl.ErrInvalidSpec, cfg.Name)
	case cfg.Encap != tnl.EncapNever && parts.VXLAN == nil:
		return nil, fmt.Errorf("%w: node %s: encapsulation %s needs Parts.VXLAN", tnl.ErrInvalidSpec, cfg.Name, cfg.Encap)
	}
	o := buildOptions(opts)
	return &Dataplane{cfg: cfg, log: o.log.With("node", cfg.Name), workloads: parts.Workloads, routes: parts.Routes,
		vxlan: parts.VXLAN, peers: map[string]Peer{}}, nil
}

// Fakes are the in-memory managers under a Dataplane made by NewFake.
type Fakes struct {
	// Kernel is the fake node namespace: lo, the underlay device (named
	// Config.VXLAN.Parent, default eth0, with Address and Address6) and,
	// after a Reconcile with VXLAN, the VXLAN device.
	Kernel    *tnl.FakeRouteHandle
	Workloads *tnl.FakeWorkloads
	// VXLAN is nil when Encap is Never.
	VXLAN *tnl.FakeVXLAN
}

// NewFake builds a Dataplane on strict in-memory fakes (no root needed):
// pods need their netns registered with Fakes.Workloads.AddNetns first.
func NewFake(cfg Config, opts ...Option) (*Dataplane, *Fakes, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	fw, err := tnl.NewFakeWorkloads()
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	f := &Fakes{Kernel: tnl.NewFakeRouteHandle(), Workloads: fw}
	parent := cmp.Or(cfg.VXLAN.Parent, "eth0")
	var addrs []netip.Prefix
	for _, a := range []netip.Prefix{cfg.Address, cfg.Address6} {
		if a.IsValid() {
			addrs = append(addrs, a)
		}
	}
	f.Kernel.AddLink(parent, addrs...)
	routes, err := tnl.NewRouteOwner(f.Kernel)
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	parts := Parts{Workloads: f.Workloads, Routes: routes}
	if cfg.Encap != tnl.EncapNever {
		if f.VXLAN, err = tnl.NewFakeVXLAN(f.Kernel, parts.Routes, cfg.VXLAN); err != nil {
			return nil, nil, fmt.Errorf("node %s: %w", cfg.Name, err)
		}
		parts.VXLAN = f.VXLAN
	}
	d, err := NewWith(cfg, parts, opts...)
	if err != nil {
		return nil, nil, err
	}
	return d, f, nil
}

// made reports whether New, NewWith or NewFake made d: only they set the
// route owner, never changed afterwards, so reading it needs no lock.
func (d *Dataplane) made() bool { return d != nil && d.routes != nil }

// check returns nil when d was made by a constructor, else an error of op
// wrapping tnl.ErrInvalidSpec.
func (d *Dataplane) check(op string) error {
	if !d.made() {
		return fmt.Errorf("node %s: node.Dataplane has no configuration (make it with New, NewWith or NewFake): %w", op, tnl.ErrInvalidSpec)
	}
	return nil
}

// Close releases what New opened. The kernel state (routes, devices, pod
// interfaces) stays.
func (d *Dataplane) Close() error {
	if !d.made() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.closers = nil
	return errors.Join(errs...)
}

// Name returns the node name.
func (d *Dataplane) Name() string {
	if !d.made() {
		return ""
	}
	return d.cfg.Name
}

// Config returns the configuration with defaults filled in.
func (d *Dataplane) Config() Config {
	if !d.made() {
		return Config{}
	}
	return d.cfg
}

// Workloads returns the pod interface manager (the CNI plugin's part).
func (d *Dataplane) Workloads() tnl.WorkloadManager {
	if !d.made() {
		return nil
	}
	return d.workloads
}

// Routes returns the node's route owner; other producers add their own
// sources to it. Reconcile writes all of them, so a producer whose routes
// must outlive an agent restart (BGP learned routes) needs an owner of its
// own (see the package doc).
func (d *Dataplane) Routes() *tnl.RouteOwner {
	if !d.made() {
		return nil
	}
	return d.routes
}

// VXLAN returns the overlay manager, nil when Encap is Never.
func (d *Dataplane) VXLAN() tnl.VXLANManager {
	if !d.made() {
		return nil
	}
	return d.vxlan
}

// SetBlocks replaces the node's own blocks (each gets a blackhole route).
// Errors wrap tnl.ErrInvalidPrefix; then nothing changes.
func (d *Dataplane) SetBlocks(blocks []netip.Prefix) error {
	if err := d.check("set blocks"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applyLocked(blocks, d.peers)
}

// SetPeers replaces the set of peers. Errors wrap tnl.ErrInvalidSpec or
// tnl.ErrInvalidPrefix (see Render; also a peer named like this node or
// with this node's address or tunnel address); then nothing changes.
func (d *Dataplane) SetPeers(peers []Peer) error {
	if err := d.check("set peers"); err != nil {
		return err
	}
	m := make(map[string]Peer, len(peers))
	for _, p := range peers {
		if _, dup := m[p.Name]; dup {
			return fmt.Errorf("%w: node %s: duplicate peer %s", tnl.ErrInvalidSpec, d.cfg.Name, p.Name)
		}
		m[p.Name] = p
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applyLocked(d.blocks, m)
}

// UpsertPeer adds or changes one peer (by name).
func (d *Dataplane) UpsertPeer(p Peer) error {
	if err := d.check("upsert peer"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m := maps.Clone(d.peers)
	m[p.Name] = p
	return d.applyLocked(d.blocks, m)
}

// RemovePeer forgets a peer; unknown names are ignored.
func (d *Dataplane) RemovePeer(name string) error {
	if err := d.check("remove peer"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m := maps.Clone(d.peers)
	delete(m, name)
	return d.applyLocked(d.blocks, m)
}

// applyLocked renders blocks and peers and hands the result to the route
// owner and the VXLAN manager; on a render error nothing changes.
func (d *Dataplane) applyLocked(blocks []netip.Prefix, peers map[string]Peer) error {
	for name, p := range peers {
		switch {
		case name == d.cfg.Name:
			return fmt.Errorf("%w: node %s listed as its own peer", tnl.ErrInvalidSpec, name)
		case p.IP.IsValid() && d.cfg.Address.IsValid() && p.IP == d.cfg.Address.Addr(),
			p.IP6.IsValid() && d.cfg.Address6.IsValid() && p.IP6 == d.cfg.Address6.Addr():
			return fmt.Errorf("%w: node %s: peer %s has this node's address", tnl.ErrInvalidSpec, d.cfg.Name, name)
		case d.vxlan != nil && p.TunnelAddr.IsValid() && p.TunnelAddr == d.vxlan.Config().TunnelAddr:
			return fmt.Errorf("%w: node %s: peer %s has this node's tunnel address %s", tnl.ErrInvalidSpec, d.cfg.Name, name, p.TunnelAddr)
		}
	}
	for _, a := range []netip.Prefix{d.cfg.Address, d.cfg.Address6} {
		for _, b := range blocks {
			if a.IsValid() && b.Contains(a.Addr()) {
				return fmt.Errorf("%w: node %s: its address %s is inside its block %s", tnl.ErrInvalidSpec, d.cfg.Name, a.Addr(), b)
			}
		}
	}
	want, err := Render(d.cfg.Encap, d.cfg.Address.Masked(), blocks, slices.Collect(maps.Values(peers)))
	if err != nil {
		return fmt.Errorf("node %s: %w", d.cfg.Name, err)
	}
	if len(want.VXLAN) > 0 && d.vxlan == nil {
		return fmt.Errorf("%w: node %s has no VXLAN manager", tnl.ErrInvalidSpec, d.cfg.Name)
	}
	if err := d.routes.Set(SourceBlocks, want.Blackholes); err != nil {
		return fmt.Errorf("node %s: %w", d.cfg.Name, err)
	}
	if err := d.routes.Set(SourcePeers, want.Direct); err != nil {
		return fmt.Errorf("node %s: %w", d.cfg.Name, err)
	}
	if d.vxlan != nil {
		if err := d.vxlan.SetPeers(want.VXLAN); err != nil {
			return fmt.Errorf("node %s: %w", d.cfg.Name, err)
		}
	}
	d.blocks = slices.Clone(blocks)
	d.peers = peers
	return nil
}

// Blocks returns the node's blocks, sorted.
func (d *Dataplane) Blocks() []netip.Prefix {
	if !d.made() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return sortedBlocks(d.blocks)
}

// Peers returns the peers, sorted by name.
func (d *Dataplane) Peers() []Peer {
	if !d.made() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Peer, 0, len(d.peers))
	for _, n := range slices.Sorted(maps.Keys(d.peers)) {
		out = append(out, d.peers[n])
	}
	return out
}

// AsPeer describes this node as its peers see it: name, underlay
// addresses, tunnel address and blocks.
func (d *Dataplane) AsPeer() Peer {
	if !d.made() {
		return Peer{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p := Peer{Name: d.cfg.Name, Blocks: sortedBlocks(d.blocks)}
	if d.cfg.Address.IsValid() {
		p.IP = d.cfg.Address.Addr()
	}
	if d.cfg.Address6.IsValid() {
		p.IP6 = d.cfg.Address6.Addr()
	}
	if d.vxlan != nil {
		p.TunnelAddr = d.vxlan.Config().TunnelAddr
	}
	return p
}

// Reconcile makes the kernel match: the VXLAN device and its entries
// (when encapsulating), then every route of the route owner (all sources,
// including other producers'). A Dataplane made by New with Encap Never
// first deletes a VXLAN device named Config.VXLAN.Name (default
// vxlan.tabby) that an earlier, encapsulating agent left, with its tunnel
// address, FDB and neighbour entries and routes (Felix deletes
// vxlan.calico when VXLAN is disabled), so switching vxlanMode to Never
// is a restart with the new Config. Errors are those of RouteOwner.Reconcile
// and VXLANManager.Reconcile (e.g. tnl.ErrNextHopUnreachable for a peer
// outside every connected network, tnl.ErrLinkNotFound for a missing VXLAN
// parent), joined.
func (d *Dataplane) Reconcile(ctx context.Context) error {
	if err := d.check("reconcile"); err != nil {
		return err
	}
	if d.vxlan != nil {
		if err := d.vxlan.Reconcile(ctx); err != nil {
			return fmt.Errorf("node %s: %w", d.cfg.Name, err)
		}
		return nil
	}
	if d.dropTunnel != nil {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("node %s: %w", d.cfg.Name, err)
		}
		if err := d.dropTunnel(); err != nil {
			return fmt.Errorf("node %s: %w", d.cfg.Name, err)
		}
	}
	if _, err := d.routes.Reconcile(ctx); err != nil {
		return fmt.Errorf("node %s: %w", d.cfg.Name, err)
	}
	return nil
}
