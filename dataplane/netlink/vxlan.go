package netlink

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/dataplane/deltatracker"
)

// VXLAN defaults (Calico's: VNI 4096, IANA port 4789).
const (
	DefaultVXLANName = "vxlan.tabby"
	DefaultVNI       = 4096
	DefaultVXLANPort = 4789
	// VXLANOverhead is what encapsulation adds to a packet over IPv4:
	// outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 bytes.
	VXLANOverhead = 50
	vxlanSource   = "vxlan"
)

// OverlayHandle is the slice of *netlink.Handle that VXLAN and EnsureIPIP use.
type OverlayHandle interface {
	LinkByName(name string) (nl.Link, error)                     // ip link show NAME
	LinkAdd(link nl.Link) error                                  // ip link add
	LinkDel(link nl.Link) error                                  // ip link del
	LinkSetUp(link nl.Link) error                                // ip link set up
	LinkSetMTU(link nl.Link, mtu int) error                      // ip link set mtu
	LinkSetHardwareAddr(link nl.Link, hw net.HardwareAddr) error // ip link set address
	AddrList(link nl.Link, family int) ([]nl.Addr, error)        // ip addr show dev
	AddrReplace(link nl.Link, addr *nl.Addr) error               // ip addr replace
	NeighList(linkIndex, family int) ([]nl.Neigh, error)         // ip neigh show dev / bridge fdb show dev
	NeighSet(neigh *nl.Neigh) error                              // ip neigh replace / bridge fdb replace
	NeighDel(neigh *nl.Neigh) error                              // ip neigh del / bridge fdb del
}

var _ OverlayHandle = (*nl.Handle)(nil)

// VXLANConfig describes this node's VXLAN device.
type VXLANConfig struct {
	// Name of the device; "" means DefaultVXLANName.
	Name string
	// VNI, 1..16777215; 0 means DefaultVNI.
	VNI int
	// Port is the UDP destination port; 0 means DefaultVXLANPort.
	Port int
	// Parent is the underlay device (e.g. eth0); required.
	Parent string
	// LocalIP is this node's underlay IPv4 address; required.
	LocalIP netip.Addr
	// TunnelAddr is this node's address on the overlay (Calico: the first
	// address of one of its blocks); required. Installed as /32 on the device.
	TunnelAddr netip.Addr
	// MAC of the device; nil means VTEPMAC(TunnelAddr).
	MAC net.HardwareAddr
	// MTU of the device; 0 means the parent's MTU minus VXLANOverhead.
	MTU int
}

func (c VXLANConfig) withDefaults() VXLANConfig {
	if c.Name == "" {
		c.Name = DefaultVXLANName
	}
	if c.VNI == 0 {
		c.VNI = DefaultVNI
	}
	if c.Port == 0 {
		c.Port = DefaultVXLANPort
	}
	if c.MAC == nil && c.TunnelAddr.IsValid() {
		c.MAC = VTEPMAC(c.TunnelAddr)
	}
	return c
}

// Validate checks the configuration without touching the kernel.
func (c VXLANConfig) Validate() error {
	c = c.withDefaults()
	if err := ValidateIfName(c.Name); err != nil {
		return fmt.Errorf("vxlan device: %w", err)
	}
	if err := ValidateIfName(c.Parent); err != nil {
		return fmt.Errorf("vxlan parent: %w", err)
	}
	switch {
	case c.VNI < 1 || c.VNI > 1<<24-1:
		return fmt.Errorf("%w: VNI %d out of range 1..16777215", ErrInvalidSpec, c.VNI)
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("%w: VXLAN port %d", ErrInvalidSpec, c.Port)
	case !c.LocalIP.Is4():
		return fmt.Errorf("%w: VXLAN local IP %s must be IPv4", ErrInvalidSpec, c.LocalIP)
	case !c.TunnelAddr.Is4():
		return fmt.Errorf("%w: VXLAN tunnel address %s must be IPv4", ErrInvalidSpec, c.TunnelAddr)
	case len(c.MAC) != 6 || c.MAC[0]&1 != 0:
		return fmt.Errorf("%w: VXLAN MAC %s is not a unicast Ethernet address", ErrInvalidSpec, c.MAC)
	case c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535):
		return fmt.Errorf("%w: VXLAN MTU %d", ErrInvalidSpec, c.MTU)
	}
	return nil
}

// VTEPMAC derives a node's VXLAN MAC from its IPv4 tunnel address:
// 66:cc followed by the four address bytes (locally administered, unicast),
// so peers need not exchange MACs.
func VTEPMAC(tunnelAddr netip.Addr) net.HardwareAddr {
	b := tunnelAddr.As4()
	return net.HardwareAddr{0x66, 0xcc, b[0], b[1], b[2], b[3]}
}

// VXLANPeer is a remote node reachable over the overlay.
type VXLANPeer struct {
	// Name identifies the peer (e.g. the node name); required and unique.
	Name string
	// NodeIP is the peer's underlay IPv4 address (FDB destination).
	NodeIP netip.Addr
	// TunnelAddr is the peer's overlay address (neighbour and route gateway).
	TunnelAddr netip.Addr
	// MAC is the peer's VTEP MAC; nil means VTEPMAC(TunnelAddr).
	MAC net.HardwareAddr
	// Blocks are routed to the peer over the overlay
	// (`ip route add BLOCK via TUNNELADDR dev vxlan.tabby onlink`).
	Blocks []netip.Prefix
}

func (p VXLANPeer) mac() net.HardwareAddr {
	if p.MAC != nil {
		return p.MAC
	}
	return VTEPMAC(p.TunnelAddr)
}

func (p VXLANPeer) validate() error {
	switch {
	case p.Name == "":
		return fmt.Errorf("%w: VXLAN peer without a name", ErrInvalidSpec)
	case !p.NodeIP.Is4():
		return fmt.Errorf("%w: VXLAN peer %s: node IP %s must be IPv4", ErrInvalidSpec, p.Name, p.NodeIP)
	case !p.TunnelAddr.Is4():
		return fmt.Errorf("%w: VXLAN peer %s: tunnel address %s must be IPv4", ErrInvalidSpec, p.Name, p.TunnelAddr)
	case len(p.mac()) != 6:
		return fmt.Errorf("%w: VXLAN peer %s: bad MAC %s", ErrInvalidSpec, p.Name, p.MAC)
	}
	for _, b := range p.Blocks {
		if !b.IsValid() || b.Masked() != b || !b.Addr().Is4() {
			return fmt.Errorf("VXLAN peer %s: %w", p.Name, prefixError(b, "want a masked IPv4 block"))
		}
	}
	return nil
}

// VXLAN keeps a node's VXLAN device, its per-peer neighbour (ARP) and FDB
// entries, and the on-link routes to peers' blocks (through a RouteOwner,
// under the source "vxlan") equal to the desired peers.
// Safe for concurrent use. The zero value is not usable; make one with
// NewVXLAN (its methods that return an error return ErrInvalidSpec, Config
// and Peers return zero values).
type VXLAN struct {
	h      OverlayHandle
	routes *RouteOwner
	cfg    VXLANConfig
	log    *slog.Logger

	mu    sync.Mutex
	peers map[string]VXLANPeer
	track peerTrackers
}

// NewVXLAN validates cfg and returns the manager; nothing is written until
// Reconcile. Errors wrap ErrInvalidSpec (cfg, or a nil routes) or
// ErrInvalidOption.
func NewVXLAN(h OverlayHandle, routes *RouteOwner, cfg VXLANConfig, opts ...VXLANOption) (*VXLAN, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if routes == nil {
		return nil, fmt.Errorf("%w: vxlan %s without a route owner", ErrInvalidSpec, cfg.withDefaults().Name)
	}
	o, err := vxlanOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("vxlan %s: %w", cfg.withDefaults().Name, err)
	}
	return &VXLAN{h: h, routes: routes, cfg: cfg.withDefaults(), log: o.log, peers: map[string]VXLANPeer{}, track: newPeerTrackers()}, nil
}

// made reports whether NewVXLAN made v: only it sets the route owner, never
// changed afterwards, so reading it needs no lock.
func (v *VXLAN) made() bool { return v != nil && v.routes != nil }

// Config returns the configuration with defaults filled in.
func (v *VXLAN) Config() VXLANConfig {
	if !v.made() {
		return VXLANConfig{}
	}
	return v.cfg
}

// SetPeers replaces the set of remote nodes. On a validation error nothing changes.
func (v *VXLAN) SetPeers(peers []VXLANPeer) error {
	if !v.made() {
		return errNotMade("VXLAN", "set VXLAN peers")
	}
	m := make(map[string]VXLANPeer, len(peers))
	for _, p := range peers {
		if err := p.validate(); err != nil {
			return err
		}
		if _, dup := m[p.Name]; dup {
			return fmt.Errorf("%w: duplicate VXLAN peer %s", ErrInvalidSpec, p.Name)
		}
		m[p.Name] = p
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.peers = m
	return v.routes.Set(vxlanSource, v.routesLocked())
}

// UpsertPeer adds or changes one remote node.
func (v *VXLAN) UpsertPeer(p VXLANPeer) error {
	if !v.made() {
		return errNotMade("VXLAN", "upsert VXLAN peer")
	}
	if err := p.validate(); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.peers[p.Name] = p
	return v.routes.Set(vxlanSource, v.routesLocked())
}

// RemovePeer forgets a remote node; unknown names are ignored.
func (v *VXLAN) RemovePeer(name string) error {
	if !v.made() {
		return errNotMade("VXLAN", "remove VXLAN peer")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.peers, name)
	return v.routes.Set(vxlanSource, v.routesLocked())
}

func (v *VXLAN) routesLocked() []Route {
	var rs []Route
	for _, p := range v.peers {
		for _, b := range p.Blocks {
			rs = append(rs, Route{Dst: b, NextHops: []NextHop{{Gateway: p.TunnelAddr, Dev: v.cfg.Name, OnLink: true}}})
		}
	}
	return rs
}

// Reconcile creates or repairs the device (recreating it if VNI, port,
// parent or local address changed), then the neighbour and FDB entries,
// then reconciles the route owner (which covers all its sources).
func (v *VXLAN) Reconcile(ctx context.Context) error {
	if !v.made() {
		return errNotMade("VXLAN", "reconcile VXLAN")
	}
	v.mu.Lock()
	link, err := v.ensureDevice()
	if err == nil {
		err = v.ensureEntries(link)
	}
	v.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = v.routes.Reconcile(ctx)
	return err
}

func (v *VXLAN) ensureDevice() (nl.Link, error) {
	c := v.cfg
	parent, err := v.h.LinkByName(c.Parent)
	if err != nil {
		return nil, fmt.Errorf("vxlan parent %s: %w: %w", c.Parent, ErrLinkNotFound, err)
	}
	mtu := c.MTU
	if mtu == 0 {
		mtu = parent.Attrs().MTU - VXLANOverhead
	}
	want := &nl.Vxlan{
		LinkAttrs: nl.LinkAttrs{Name: c.Name, MTU: mtu, HardwareAddr: c.MAC, TxQLen: -1},
		VxlanId:   c.VNI, VtepDevIndex: parent.Attrs().Index, SrcAddr: addrToIP(c.LocalIP), Port: c.Port,
	}
	l, err := v.h.LinkByName(c.Name)
	if err == nil {
		have, ok := l.(*nl.Vxlan)
		if !ok || have.VxlanId != c.VNI || have.Port != c.Port || have.VtepDevIndex != want.VtepDevIndex ||
			!have.SrcAddr.Equal(want.SrcAddr) || have.Learning {
			v.log.Info("recreating vxlan device", "name", c.Name)
			if err := v.h.LinkDel(l); err != nil {
				return nil, fmt.Errorf("delete vxlan %s: %w", c.Name, err)
			}
			l = nil
		}
	} else if !errors.As(err, &nl.LinkNotFoundError{}) {
		return nil, fmt.Errorf("look up vxlan %s: %w", c.Name, err)
	} else {
		l = nil
	}
	if l == nil {
		if err := v.h.LinkAdd(want); err != nil {
			return nil, fmt.Errorf("create vxlan %s: %w", c.Name, err)
		}
		if l, err = v.h.LinkByName(c.Name); err != nil {
			return nil, fmt.Errorf("look up vxlan %s: %w", c.Name, err)
		}
	}
	a := l.Attrs()
	if a.MTU != mtu {
		if err := v.h.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("vxlan %s mtu %d: %w", c.Name, mtu, err)
		}
	}
	if a.HardwareAddr.String() != c.MAC.String() {
		if err := v.h.LinkSetHardwareAddr(l, c.MAC); err != nil {
			return nil, fmt.Errorf("vxlan %s address: %w", c.Name, err)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := v.h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("vxlan %s up: %w", c.Name, err)
		}
	}
	addrs, err := v.h.AddrList(l, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("vxlan %s addresses: %w", c.Name, err)
	}
	tp := netip.PrefixFrom(c.TunnelAddr, 32)
	if !slices.ContainsFunc(addrs, func(x nl.Addr) bool { return ipNetToPrefix(x.IPNet, 0) == tp }) {
		if err := v.h.AddrReplace(l, &nl.Addr{IPNet: prefixToIPNet(tp)}); err != nil {
			return nil, fmt.Errorf("vxlan %s address %s: %w", c.Name, tp, err)
		}
	}
	return l, nil
}

// peerTrackers are the delta trackers of a VXLAN's per-peer entries:
// neighbours (tunnel IP → MAC) and FDB entries (MAC → underlay IP), each
// desired from the peers against the entries the kernel holds on the device.
type peerTrackers struct {
	neigh *deltatracker.Tracker[netip.Addr, string]
	fdb   *deltatracker.Tracker[string, netip.Addr]
}

func newPeerTrackers() peerTrackers {
	return peerTrackers{neigh: deltatracker.New[netip.Addr, string](), fdb: deltatracker.New[string, netip.Addr]()}
}

// sortedKeys collects the keys of seq sorted by cmp, so that an applier
// writes in a deterministic order.
func sortedKeys[K, V any](seq iter.Seq2[K, V], cmp func(a, b K) int) []K {
	var ks []K
	for k := range seq {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, cmp)
	return ks
}

// ensureEntries resyncs the peer trackers (desired from v.peers, dataplane
// from dumps of the device) and writes the pending deletions, then updates.
func (v *VXLAN) ensureEntries(l nl.Link) error {
	idx := l.Attrs().Index
	macs := map[string]net.HardwareAddr{}
	v.track.neigh.Desired().ReplaceAll(func(yield func(netip.Addr, string) bool) {
		for _, p := range v.peers {
			m := p.mac()
			macs[m.String()] = m
			if !yield(p.TunnelAddr, m.String()) {
				return
			}
		}
	})
	v.track.fdb.Desired().ReplaceAll(func(yield func(string, netip.Addr) bool) {
		for _, p := range v.peers {
			if !yield(p.mac().String(), p.NodeIP) {
				return
			}
		}
	})
	neighs, err := retryDump(func() ([]nl.Neigh, error) { return v.h.NeighList(idx, unix.AF_INET) })
	if err != nil {
		return fmt.Errorf("list neighbours of %s: %w", v.cfg.Name, err)
	}
	v.track.neigh.Dataplane().ReplaceAll(func(yield func(netip.Addr, string) bool) {
		for _, n := range neighs {
			ip, mac := ipToAddr(n.IP), n.HardwareAddr.String()
			if _, wanted := v.track.neigh.Desired().Get(ip); wanted && n.State&unix.NUD_PERMANENT == 0 {
				mac = "" // dynamic entry for a peer: make it permanent
			}
			if !yield(ip, mac) {
				return
			}
		}
	})
	fdbs, err := retryDump(func() ([]nl.Neigh, error) { return v.h.NeighList(idx, unix.AF_BRIDGE) })
	if err != nil {
		return fmt.Errorf("list fdb of %s: %w", v.cfg.Name, err)
	}
	v.track.fdb.Dataplane().ReplaceAll(func(yield func(string, netip.Addr) bool) {
		for _, n := range fdbs {
			if !yield(n.HardwareAddr.String(), ipToAddr(n.IP)) {
				return
			}
		}
	})

	var errs []error
	neigh, fdb := v.track.neigh, v.track.fdb
	for _, ip := range sortedKeys(neigh.PendingDeletions(), netip.Addr.Compare) {
		n := &nl.Neigh{LinkIndex: idx, Family: unix.AF_INET, IP: addrToIP(ip)}
		if err := v.h.NeighDel(n); err != nil && !IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete neighbour %s: %w", ip, err))
			continue
		}
		neigh.Dataplane().Delete(ip)
	}
	for _, ip := range sortedKeys(neigh.PendingUpdates(), netip.Addr.Compare) {
		mac, _ := neigh.Desired().Get(ip)
		n := &nl.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: unix.NUD_PERMANENT, IP: addrToIP(ip), HardwareAddr: macs[mac]}
		if err := v.h.NeighSet(n); err != nil {
			errs = append(errs, fmt.Errorf("set neighbour %s: %w", ip, err))
			continue
		}
		neigh.Dataplane().Set(ip, mac)
	}
	for _, m := range sortedKeys(fdb.PendingDeletions(), strings.Compare) {
		dst, _ := fdb.Dataplane().Get(m)
		hw, _ := net.ParseMAC(m)
		n := &nl.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF, HardwareAddr: hw, IP: addrToIP(dst)}
		if err := v.h.NeighDel(n); err != nil && !IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete fdb %s: %w", m, err))
			continue
		}
		fdb.Dataplane().Delete(m)
	}
	for _, m := range sortedKeys(fdb.PendingUpdates(), strings.Compare) {
		dst, _ := fdb.Desired().Get(m)
		n := &nl.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: unix.NTF_SELF, State: unix.NUD_PERMANENT, HardwareAddr: macs[m], IP: addrToIP(dst)}
		if err := v.h.NeighSet(n); err != nil {
			errs = append(errs, fmt.Errorf("set fdb %s dst %s: %w", m, dst, err))
			continue
		}
		fdb.Dataplane().Set(m, dst)
	}
	return errors.Join(errs...)
}

// Delete removes the device (and so its neighbours, FDB entries and routes)
// and forgets the overlay routes in the route owner.
func (v *VXLAN) Delete(ctx context.Context) error {
	if !v.made() {
		return errNotMade("VXLAN", "delete VXLAN")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.peers = map[string]VXLANPeer{}
	if err := v.routes.Set(vxlanSource, nil); err != nil {
		return err
	}
	return DeleteVXLANDevice(v.h, v.cfg.Name)
}

// DeleteVXLANDevice deletes the VXLAN device name, if there is one; with
// it go its tunnel address, neighbour and FDB entries and the routes
// through it. A link of that name that is not VXLAN is left alone, and
// a missing one is not an error. dataplane/node calls it when
// encapsulation is off, as Felix deletes vxlan.calico once VXLAN is
// disabled; a VXLAN manager's Delete also forgets its routes.
func DeleteVXLANDevice(h OverlayHandle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		if errors.As(err, &nl.LinkNotFoundError{}) {
			return nil
		}
		return fmt.Errorf("look up vxlan %s: %w", name, err)
	}
	if _, ok := l.(*nl.Vxlan); !ok {
		return nil
	}
	if err := h.LinkDel(l); err != nil && !IsNotFound(err) {
		return fmt.Errorf("delete vxlan %s: %w", name, err)
	}
	return nil
}

// Peers returns the desired peers sorted by name.
func (v *VXLAN) Peers() []VXLANPeer {
	if !v.made() {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	names := slices.Sorted(maps.Keys(v.peers))
	out := make([]VXLANPeer, 0, len(names))
	for _, n := range names {
		out = append(out, v.peers[n])
	}
	return out
}

// IPIPConfig describes an IPIP tunnel device. The model is kept for pools
// with ipipMode; the kernels tabby is tested on have no ipip support, where
// EnsureIPIP fails with ErrNotSupported.
type IPIPConfig struct {
	// Name of the device; "" means "tunl.tabby".
	Name string
	// LocalIP is the underlay source address (may be zero: any).
	LocalIP netip.Addr
	// TunnelAddr is installed as /32 on the device.
	TunnelAddr netip.Addr
	// MTU; 0 means 1480.
	MTU int
}

// EnsureIPIP creates the IPIP device if missing (`ip link add NAME type
// ipip local LOCAL`), sets it up and adds the tunnel address. On a kernel
// without ipip it returns an error wrapping ErrNotSupported.
func EnsureIPIP(h OverlayHandle, cfg IPIPConfig) error {
	if cfg.Name == "" {
		cfg.Name = "tunl.tabby"
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1480
	}
	if err := ValidateIfName(cfg.Name); err != nil {
		return fmt.Errorf("ipip device: %w", err)
	}
	if !cfg.TunnelAddr.Is4() || (cfg.LocalIP.IsValid() && !cfg.LocalIP.Is4()) {
		return fmt.Errorf("%w: ipip addresses must be IPv4", ErrInvalidSpec)
	}
	l, err := h.LinkByName(cfg.Name)
	if err != nil {
		if !errors.As(err, &nl.LinkNotFoundError{}) {
			return fmt.Errorf("look up ipip %s: %w", cfg.Name, err)
		}
		tun := &nl.Iptun{LinkAttrs: nl.LinkAttrs{Name: cfg.Name, MTU: cfg.MTU}, Local: addrToIP(cfg.LocalIP), PMtuDisc: 1}
		if err := h.LinkAdd(tun); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EAFNOSUPPORT) {
				return fmt.Errorf("create ipip %s: %w: %w", cfg.Name, ErrNotSupported, err)
			}
			return fmt.Errorf("create ipip %s: %w", cfg.Name, err)
		}
		if l, err = h.LinkByName(cfg.Name); err != nil {
			return fmt.Errorf("look up ipip %s: %w", cfg.Name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("ipip %s up: %w", cfg.Name, err)
	}
	if err := h.AddrReplace(l, &nl.Addr{IPNet: prefixToIPNet(netip.PrefixFrom(cfg.TunnelAddr, 32))}); err != nil {
		return fmt.Errorf("ipip %s address: %w", cfg.Name, err)
	}
	return nil
}
