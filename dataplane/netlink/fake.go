package netlink

import (
	"cmp"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"

	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FakeRouteHandle is an in-memory RouteHandle that behaves like the kernel
// for what a RouteOwner does: routes are keyed by (family, table,
// destination, metric); adding a taken key fails with EEXIST, deleting a
// missing route with ESRCH, a next hop on an unknown link with ENODEV, and a
// gateway outside every connected prefix (unless onlink) with ENETUNREACH.
// Deleting a link removes the routes through it. It counts writes so tests
// can assert that a reconcile did not rewrite routes that were already right.
type FakeRouteHandle struct {
	mu     sync.Mutex
	links  map[int]*fakeLink
	next   int
	routes map[fakeKey]nl.Route
	// Writes counts successful RouteAdd, RouteReplace and RouteDel calls.
	adds, replaces, dels int
}

type fakeLink struct {
	name  string
	addrs []netip.Prefix
}

type fakeKey struct {
	family, table, metric int
	dst                   netip.Prefix
}

var _ RouteHandle = (*FakeRouteHandle)(nil)

// NewFakeRouteHandle returns a fake namespace holding only "lo" (index 1).
func NewFakeRouteHandle() *FakeRouteHandle {
	f := &FakeRouteHandle{links: map[int]*fakeLink{}, next: 1, routes: map[fakeKey]nl.Route{}}
	f.AddLink("lo", netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128"))
	return f
}

// AddLink adds a link with connected prefixes (its addresses, e.g.
// 10.99.0.11/24) and returns its index.
func (f *FakeRouteHandle) AddLink(name string, addrs ...netip.Prefix) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.next
	f.next++
	f.links[i] = &fakeLink{name: name, addrs: addrs}
	return i
}

// DelLink removes a link and every route through it, as the kernel does.
func (f *FakeRouteHandle) DelLink(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range f.links {
		if l.name != name {
			continue
		}
		delete(f.links, i)
		for k, r := range f.routes {
			if r.LinkIndex == i || slices.ContainsFunc(r.MultiPath, func(nh *nl.NexthopInfo) bool { return nh.LinkIndex == i }) {
				delete(f.routes, k)
			}
		}
	}
}

// Counts returns the number of successful adds, replaces and deletes.
func (f *FakeRouteHandle) Counts() (adds, replaces, dels int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.adds, f.replaces, f.dels
}

// LinkList implements RouteHandle.
func (f *FakeRouteHandle) LinkList() ([]nl.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]nl.Link, 0, len(f.links))
	for i, l := range f.links {
		out = append(out, &nl.Device{LinkAttrs: nl.LinkAttrs{Index: i, Name: l.name}})
	}
	slices.SortFunc(out, func(a, b nl.Link) int { return cmp.Compare(a.Attrs().Index, b.Attrs().Index) })
	return out, nil
}

func cloneRoute(r nl.Route) nl.Route {
	c := r
	if r.Dst != nil {
		c.Dst = &net.IPNet{IP: slices.Clone(r.Dst.IP), Mask: slices.Clone(r.Dst.Mask)}
	}
	c.Gw, c.Src = slices.Clone(r.Gw), slices.Clone(r.Src)
	c.MultiPath = nil
	for _, nh := range r.MultiPath {
		n := *nh
		n.Gw = slices.Clone(nh.Gw)
		c.MultiPath = append(c.MultiPath, &n)
	}
	return c
}

// RouteListFiltered implements RouteHandle. Like the netlink package it
// returns only the main table unless RT_FILTER_TABLE is set, and honours the
// table and protocol filters; other filter bits are ignored.
func (f *FakeRouteHandle) RouteListFiltered(family int, filter *nl.Route, mask uint64) ([]nl.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []nl.Route
	for k, r := range f.routes {
		switch {
		case family != nl.FAMILY_ALL && k.family != family:
		case mask&nl.RT_FILTER_TABLE == 0 && k.table != unix.RT_TABLE_MAIN:
		case mask&nl.RT_FILTER_TABLE != 0 && filter.Table != unix.RT_TABLE_UNSPEC && k.table != filter.Table:
		case mask&nl.RT_FILTER_PROTOCOL != 0 && r.Protocol != filter.Protocol:
		default:
			out = append(out, cloneRoute(r))
		}
	}
	slices.SortFunc(out, func(a, b nl.Route) int { return compareKeys(fakeRouteKey(a), fakeRouteKey(b)) })
	return out, nil
}

func fakeRouteKey(r nl.Route) RouteKey {
	k := fakeKeyOf(r)
	return RouteKey{Table: k.table, Dst: k.dst, Metric: k.metric}
}

func fakeKeyOf(r nl.Route) fakeKey {
	dst := ipNetToPrefix(r.Dst, r.Family)
	fam := unix.AF_INET
	if dst.Addr().Is6() {
		fam = unix.AF_INET6
	}
	t := r.Table
	if t == 0 {
		t = unix.RT_TABLE_MAIN
	}
	m := r.Priority
	if m == 0 && fam == unix.AF_INET6 {
		m = defaultV6Metric
	}
	return fakeKey{family: fam, table: t, metric: m, dst: dst}
}

// resolve validates next hops like the kernel's fib_check_nh and returns
// the route as the kernel would store it: a copy whose gateway next hops
// carry the link they resolve through.
func (f *FakeRouteHandle) resolve(r *nl.Route) (nl.Route, error) {
	c := cloneRoute(*r)
	if c.Dst == nil {
		return c, unix.EINVAL
	}
	single := len(c.MultiPath) == 0 && (c.LinkIndex != 0 || c.Gw != nil)
	hops := c.MultiPath
	if single {
		hops = []*nl.NexthopInfo{{LinkIndex: c.LinkIndex, Gw: c.Gw, Flags: c.Flags}}
	}
	if (c.Type == unix.RTN_UNICAST || c.Type == unix.RTN_UNSPEC) && len(hops) == 0 {
		return c, unix.EINVAL
	}
	indexes := slices.Sorted(maps.Keys(f.links))
	for _, nh := range hops {
		if nh.LinkIndex != 0 && f.links[nh.LinkIndex] == nil {
			return c, unix.ENODEV
		}
		if nh.Gw == nil || nh.Flags&int(nl.FLAG_ONLINK) != 0 {
			continue
		}
		gw := ipToAddr(nh.Gw)
		via := 0
		for _, i := range indexes {
			if nh.LinkIndex != 0 && i != nh.LinkIndex {
				continue
			}
			for _, p := range f.links[i].addrs {
				if via == 0 && (p.Contains(gw) || (gw.Is6() && gw.IsLinkLocalUnicast())) {
					via = i
				}
			}
		}
		if via == 0 {
			return c, unix.ENETUNREACH
		}
		nh.LinkIndex = via
	}
	if single {
		c.LinkIndex = hops[0].LinkIndex
	}
	return c, nil
}

// RouteAdd implements RouteHandle.
func (f *FakeRouteHandle) RouteAdd(r *nl.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.resolve(r)
	if err != nil {
		return err
	}
	k := fakeKeyOf(c)
	if _, ok := f.routes[k]; ok {
		return unix.EEXIST
	}
	f.routes[k] = c
	f.adds++
	return nil
}

// RouteReplace implements RouteHandle.
func (f *FakeRouteHandle) RouteReplace(r *nl.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.resolve(r)
	if err != nil {
		return err
	}
	f.routes[fakeKeyOf(c)] = c
	f.replaces++
	return nil
}

// RouteDel implements RouteHandle.
func (f *FakeRouteHandle) RouteDel(r *nl.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fakeKeyOf(*r)
	if _, ok := f.routes[k]; !ok {
		return unix.ESRCH
	}
	delete(f.routes, k)
	f.dels++
	return nil
}
