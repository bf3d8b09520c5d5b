package netlink

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
)

// FakeVXLAN is an in-memory VXLANManager over a FakeRouteHandle (the fake
// node namespace) and a RouteOwner on it, answering like VXLAN on the
// kernel: the same validation of the configuration and the peers, on-link
// routes to the peers' blocks through the route owner (source "vxlan"),
// ErrLinkNotFound from Reconcile while the parent device is missing, and a
// device that Reconcile creates in the fake namespace (so routes through it
// resolve) and Delete removes together with the routes through it.
// TestFakeVXLANMatchesKernel runs the same calls on both.
//
// Not modelled: MTU, MAC and VNI changes of an existing device. Safe for
// concurrent use.
type FakeVXLAN struct {
	kernel *FakeRouteHandle
	routes *RouteOwner
	cfg    VXLANConfig

	mu      sync.Mutex
	peers   map[string]VXLANPeer
	entries []string // neighbour and FDB entries as of the last Reconcile
}

// NewFakeVXLAN validates cfg like NewVXLAN; routes must be a RouteOwner on kernel.
func NewFakeVXLAN(kernel *FakeRouteHandle, routes *RouteOwner, cfg VXLANConfig) (*FakeVXLAN, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &FakeVXLAN{kernel: kernel, routes: routes, cfg: cfg.withDefaults(), peers: map[string]VXLANPeer{}}, nil
}

// Config implements VXLANManager.
func (v *FakeVXLAN) Config() VXLANConfig { return v.cfg }

// SetPeers implements VXLANManager.
func (v *FakeVXLAN) SetPeers(peers []VXLANPeer) error {
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

// UpsertPeer implements VXLANManager.
func (v *FakeVXLAN) UpsertPeer(p VXLANPeer) error {
	if err := p.validate(); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.peers[p.Name] = p
	return v.routes.Set(vxlanSource, v.routesLocked())
}

// RemovePeer implements VXLANManager.
func (v *FakeVXLAN) RemovePeer(name string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.peers, name)
	return v.routes.Set(vxlanSource, v.routesLocked())
}

// routesLocked: `BLOCK via TUNNELADDR dev DEVICE onlink` for each peer block.
func (v *FakeVXLAN) routesLocked() []Route {
	var rs []Route
	for _, p := range v.peers {
		for _, b := range p.Blocks {
			rs = append(rs, Route{Dst: b, NextHops: []NextHop{{Gateway: p.TunnelAddr, Dev: v.cfg.Name, OnLink: true}}})
		}
	}
	return rs
}

// Peers implements VXLANManager.
func (v *FakeVXLAN) Peers() []VXLANPeer {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]VXLANPeer, 0, len(v.peers))
	for _, n := range slices.Sorted(maps.Keys(v.peers)) {
		out = append(out, v.peers[n])
	}
	return out
}

// fakeLinkIndex returns the index of a link of the fake namespace, 0 if none.
func fakeLinkIndex(h *FakeRouteHandle, name string) int {
	links, _ := h.LinkList()
	for _, l := range links {
		if l.Attrs().Name == name {
			return l.Attrs().Index
		}
	}
	return 0
}

// Reconcile implements VXLANManager.
func (v *FakeVXLAN) Reconcile(ctx context.Context) error {
	v.mu.Lock()
	if fakeLinkIndex(v.kernel, v.cfg.Parent) == 0 {
		v.mu.Unlock()
		return fmt.Errorf("vxlan parent %s: %w", v.cfg.Parent, ErrLinkNotFound)
	}
	if fakeLinkIndex(v.kernel, v.cfg.Name) == 0 {
		v.kernel.AddLink(v.cfg.Name, netip.PrefixFrom(v.cfg.TunnelAddr, 32))
	}
	v.entries = v.entries[:0]
	for _, p := range v.peers {
		m := p.mac()
		v.entries = append(v.entries,
			fmt.Sprintf("neigh %s lladdr %s", p.TunnelAddr, m),
			fmt.Sprintf("fdb %s dst %s", m, p.NodeIP))
	}
	slices.Sort(v.entries)
	v.mu.Unlock()
	_, err := v.routes.Reconcile(ctx)
	return err
}

// Entries returns the device's neighbour and FDB entries as of the last
// Reconcile, sorted: "neigh TUNNELADDR lladdr MAC" and "fdb MAC dst NODEIP"
// (`ip neigh show dev vxlan.tabby`, `bridge fdb show dev vxlan.tabby`).
func (v *FakeVXLAN) Entries() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.entries)
}

// Delete implements VXLANManager.
func (v *FakeVXLAN) Delete(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.peers = map[string]VXLANPeer{}
	v.entries = nil
	if err := v.routes.Set(vxlanSource, nil); err != nil {
		return err
	}
	if fakeLinkIndex(v.kernel, v.cfg.Name) != 0 {
		v.kernel.DelLink(v.cfg.Name)
	}
	return nil
}
