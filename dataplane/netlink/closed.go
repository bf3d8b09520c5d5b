package netlink

import (
	"errors"
	"net"
	"sync"

	nl "github.com/vishvananda/netlink"
)

// ErrClosed: a Workloads or KernelHandle was used after Close, or a
// KernelHandle that NewKernelHandle did not make (its zero value) was used.
//
// A closed *netlink.Handle of vishvananda/netlink does not fail: it forgets
// its sockets and falls back to the package-level ones, opened in the
// namespace of the calling thread, which in an agent is the root
// namespace. So every netlink read and write of this package goes through
// a guard that answers ErrClosed instead once Close has run.
var ErrClosed = errors.New("netlink handle closed")

// closeGuard lets calls through from open (set by the constructor) until
// close; close waits for the calls in flight, so none of them uses a
// closed handle. A guard never opened (the zero value of its owner, whose
// handle is nil, which vishvananda/netlink also treats as the caller's
// namespace) refuses every call as a closed one.
type closeGuard struct {
	mu     sync.RWMutex
	open   bool
	closed bool
}

// enter admits one call (leave must follow) or returns ErrClosed.
func (g *closeGuard) enter() error {
	g.mu.RLock()
	if g.closed || !g.open {
		g.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (g *closeGuard) leave() { g.mu.RUnlock() }

// close marks the guard closed and runs f (the release) once; it reports
// whether this call closed it.
func (g *closeGuard) close(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || !g.open {
		return false
	}
	g.closed = true
	f()
	return true
}

// guard1 runs f unless g is closed.
func guard1(g *closeGuard, f func() error) error {
	if err := g.enter(); err != nil {
		return err
	}
	defer g.leave()
	return f()
}

// guard2 runs f unless g is closed.
func guard2[T any](g *closeGuard, f func() (T, error)) (T, error) {
	if err := g.enter(); err != nil {
		var zero T
		return zero, err
	}
	defer g.leave()
	return f()
}

// guardedHostHandle is the host handle of a Workloads: a *netlink.Handle
// that answers ErrClosed after Close instead of reading and writing the
// caller's namespace.
type guardedHostHandle struct {
	h *nl.Handle
	g *closeGuard
}

func (x guardedHostHandle) LinkByName(name string) (nl.Link, error) {
	return guard2(x.g, func() (nl.Link, error) { return x.h.LinkByName(name) })
}

func (x guardedHostHandle) LinkByIndex(index int) (nl.Link, error) {
	return guard2(x.g, func() (nl.Link, error) { return x.h.LinkByIndex(index) })
}

func (x guardedHostHandle) LinkList() ([]nl.Link, error) { return guard2(x.g, x.h.LinkList) }

func (x guardedHostHandle) LinkDel(link nl.Link) error {
	return guard1(x.g, func() error { return x.h.LinkDel(link) })
}

func (x guardedHostHandle) RouteListFiltered(family int, filter *nl.Route, mask uint64) ([]nl.Route, error) {
	return guard2(x.g, func() ([]nl.Route, error) { return x.h.RouteListFiltered(family, filter, mask) })
}

// Close closes the handle; Workloads.Close calls it inside the guard's close.
func (x guardedHostHandle) Close() { x.h.Close() }

// The RouteHandle and OverlayHandle methods of KernelHandle, guarded: they
// shadow the embedded *netlink.Handle's, which after Close would act on
// the caller's namespace.

// LinkList implements RouteHandle (`ip link show`).
func (k *KernelHandle) LinkList() ([]nl.Link, error) { return guard2(&k.guard, k.Handle.LinkList) }

// RouteListFiltered implements RouteHandle.
func (k *KernelHandle) RouteListFiltered(family int, filter *nl.Route, mask uint64) ([]nl.Route, error) {
	return guard2(&k.guard, func() ([]nl.Route, error) { return k.Handle.RouteListFiltered(family, filter, mask) })
}

// RouteAdd implements RouteHandle (`ip route add`).
func (k *KernelHandle) RouteAdd(r *nl.Route) error {
	return guard1(&k.guard, func() error { return k.Handle.RouteAdd(r) })
}

// RouteReplace implements RouteHandle (`ip route replace`).
func (k *KernelHandle) RouteReplace(r *nl.Route) error {
	return guard1(&k.guard, func() error { return k.Handle.RouteReplace(r) })
}

// RouteDel implements RouteHandle (`ip route del`).
func (k *KernelHandle) RouteDel(r *nl.Route) error {
	return guard1(&k.guard, func() error { return k.Handle.RouteDel(r) })
}

// LinkByName implements OverlayHandle (`ip link show NAME`).
func (k *KernelHandle) LinkByName(name string) (nl.Link, error) {
	return guard2(&k.guard, func() (nl.Link, error) { return k.Handle.LinkByName(name) })
}

// LinkAdd implements OverlayHandle (`ip link add`).
func (k *KernelHandle) LinkAdd(link nl.Link) error {
	return guard1(&k.guard, func() error { return k.Handle.LinkAdd(link) })
}

// LinkDel implements OverlayHandle (`ip link del`).
func (k *KernelHandle) LinkDel(link nl.Link) error {
	return guard1(&k.guard, func() error { return k.Handle.LinkDel(link) })
}

// LinkSetUp implements OverlayHandle (`ip link set up`).
func (k *KernelHandle) LinkSetUp(link nl.Link) error {
	return guard1(&k.guard, func() error { return k.Handle.LinkSetUp(link) })
}

// LinkSetMTU implements OverlayHandle (`ip link set mtu`).
func (k *KernelHandle) LinkSetMTU(link nl.Link, mtu int) error {
	return guard1(&k.guard, func() error { return k.Handle.LinkSetMTU(link, mtu) })
}

// LinkSetHardwareAddr implements OverlayHandle (`ip link set address`).
func (k *KernelHandle) LinkSetHardwareAddr(link nl.Link, hw net.HardwareAddr) error {
	return guard1(&k.guard, func() error { return k.Handle.LinkSetHardwareAddr(link, hw) })
}

// AddrList implements OverlayHandle (`ip addr show dev`).
func (k *KernelHandle) AddrList(link nl.Link, family int) ([]nl.Addr, error) {
	return guard2(&k.guard, func() ([]nl.Addr, error) { return k.Handle.AddrList(link, family) })
}

// AddrReplace implements OverlayHandle (`ip addr replace`).
func (k *KernelHandle) AddrReplace(link nl.Link, addr *nl.Addr) error {
	return guard1(&k.guard, func() error { return k.Handle.AddrReplace(link, addr) })
}

// NeighList implements OverlayHandle (`ip neigh show dev`).
func (k *KernelHandle) NeighList(linkIndex, family int) ([]nl.Neigh, error) {
	return guard2(&k.guard, func() ([]nl.Neigh, error) { return k.Handle.NeighList(linkIndex, family) })
}

// NeighSet implements OverlayHandle (`ip neigh replace`).
func (k *KernelHandle) NeighSet(neigh *nl.Neigh) error {
	return guard1(&k.guard, func() error { return k.Handle.NeighSet(neigh) })
}

// NeighDel implements OverlayHandle (`ip neigh del`).
func (k *KernelHandle) NeighDel(neigh *nl.Neigh) error {
	return guard1(&k.guard, func() error { return k.Handle.NeighDel(neigh) })
}
