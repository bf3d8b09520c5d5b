package netlink

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// FakeVXLAN is an in-memory VXLANManager over a FakeRouteHandle (the fake
// node namespace) and a RouteOwner on it, answering like VXLAN on the
// kernel: the desired state (configuration, peers and their validation,
// on-link routes to the peers' blocks under the route source "vxlan") is
// VXLAN's own, and only the device is faked — ErrLinkNotFound from
// Reconcile while the parent device is missing, a device that Reconcile
// creates in the fake namespace (so routes through it resolve) and Delete
// removes together with the routes through it, and the neighbour and FDB
// entries (Entries). TestFakeVXLANMatchesKernel runs the same calls on
// both.
//
// Not modelled: MTU, MAC and VNI changes of an existing device. Safe for
// concurrent use.
type FakeVXLAN struct {
	*VXLAN // desired state; its kernel handle is never used
	kernel *FakeRouteHandle
	routes *RouteOwner

	mu      sync.Mutex
	entries []string // neighbour and FDB entries as of the last Reconcile
}

// NewFakeVXLAN validates cfg like NewVXLAN; routes must be a RouteOwner on kernel.
func NewFakeVXLAN(kernel *FakeRouteHandle, routes *RouteOwner, cfg VXLANConfig) (*FakeVXLAN, error) {
	v, err := NewVXLAN(nil, routes, cfg)
	if err != nil {
		return nil, err
	}
	return &FakeVXLAN{VXLAN: v, kernel: kernel, routes: routes}, nil
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
	cfg := v.Config()
	v.mu.Lock()
	if fakeLinkIndex(v.kernel, cfg.Parent) == 0 {
		v.mu.Unlock()
		return fmt.Errorf("vxlan parent %s: %w", cfg.Parent, ErrLinkNotFound)
	}
	if fakeLinkIndex(v.kernel, cfg.Name) == 0 {
		v.kernel.AddLink(cfg.Name, netip.PrefixFrom(cfg.TunnelAddr, 32))
	}
	v.entries = v.entries[:0]
	for _, p := range v.Peers() {
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

// Delete implements VXLANManager: it forgets the peers and their routes
// and removes the device.
func (v *FakeVXLAN) Delete(ctx context.Context) error {
	if err := v.SetPeers(nil); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.entries = nil
	if name := v.Config().Name; fakeLinkIndex(v.kernel, name) != 0 {
		v.kernel.DelLink(name)
	}
	return nil
}
