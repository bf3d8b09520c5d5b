package netlink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route protocol numbers that mark tabby's routes in the kernel (the
// `proto` column of `ip route`). They are unused by the kernel (0-4), by
// gated/ra/mrt (8-10), zebra (11), BIRD (12), dnrouted..dhcp (13-16),
// mrouted (17), keepalived (18), babel (42), openr (99) and FRR's
// bgp/isis/ospf/rip/eigrp (186-192), so `ip route show proto 116` lists
// exactly what a RouteOwner manages.
const (
	// ProtocolRoutes (116, 0x74 't') marks routes managed by a RouteOwner.
	ProtocolRoutes = 116
	// ProtocolWorkload (117, 0x75 'u') marks the host routes to workload
	// addresses that Workloads installs; a RouteOwner never touches them.
	ProtocolWorkload = 117
)

// RouteHandle is the slice of *netlink.Handle (github.com/vishvananda/netlink)
// that a RouteOwner uses. The real implementation is a handle bound to a
// network namespace with netlink.NewHandleAt; FakeRouteHandle is the in-memory one.
type RouteHandle interface {
	// LinkList lists the links of the namespace (`ip link show`).
	LinkList() ([]nl.Link, error)
	// RouteListFiltered dumps routes (`ip route show table all proto N`).
	RouteListFiltered(family int, filter *nl.Route, filterMask uint64) ([]nl.Route, error)
	// RouteAdd adds a route; EEXIST when its key is taken (`ip route add`).
	RouteAdd(route *nl.Route) error
	// RouteReplace adds or replaces a route (`ip route replace`).
	RouteReplace(route *nl.Route) error
	// RouteDel deletes a route; ESRCH when absent (`ip route del`).
	RouteDel(route *nl.Route) error
}

var _ RouteHandle = (*nl.Handle)(nil)

// linkNames maps link names to indexes and back.
type linkNames struct {
	byName  map[string]int
	byIndex map[int]string
}

func listLinkNames(h interface{ LinkList() ([]nl.Link, error) }) (linkNames, error) {
	links, err := retryDump(h.LinkList)
	if err != nil {
		return linkNames{}, fmt.Errorf("list links: %w", err)
	}
	ln := linkNames{byName: make(map[string]int, len(links)), byIndex: make(map[int]string, len(links))}
	for _, l := range links {
		a := l.Attrs()
		ln.byName[a.Name] = a.Index
		ln.byIndex[a.Index] = a.Name
	}
	return ln, nil
}

// retryDump retries a netlink dump that the kernel interrupted (the table
// changed during the dump), as the netlink package asks callers to.
func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var out []T
		out, err = f()
		if !errors.Is(err, nl.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, err
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

func ipToAddr(ip net.IP) netip.Addr {
	if ip == nil {
		return netip.Addr{}
	}
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFrom4([4]byte(v4))
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

func ipNetToPrefix(n *net.IPNet, family int) netip.Prefix {
	if n == nil {
		if family == unix.AF_INET6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(ipToAddr(n.IP), bits)
}

func addrToIP(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return net.IP(a.AsSlice())
}

var routeTypes = map[RouteType]int{
	RouteUnicast:     unix.RTN_UNICAST,
	RouteBlackhole:   unix.RTN_BLACKHOLE,
	RouteUnreachable: unix.RTN_UNREACHABLE,
	RouteProhibit:    unix.RTN_PROHIBIT,
}

// toKernel converts a validated route to a netlink route with protocol proto.
func toKernel(r Route, proto int, ln linkNames) (*nl.Route, error) {
	k := r.Key()
	family := unix.AF_INET
	if r.Dst.Addr().Is6() {
		family = unix.AF_INET6
	}
	kr := &nl.Route{
		Family:   family,
		Dst:      prefixToIPNet(r.Dst),
		Type:     routeTypes[r.Type],
		Protocol: nl.RouteProtocol(proto),
		Table:    k.Table,
		Priority: r.Metric,
		Src:      addrToIP(r.Src),
	}
	index := func(nh NextHop) (int, error) {
		if nh.Dev == "" {
			return 0, nil
		}
		i, ok := ln.byName[nh.Dev]
		if !ok {
			return 0, fmt.Errorf("route %s: %w: %s", r, ErrLinkNotFound, nh.Dev)
		}
		return i, nil
	}
	flags := func(nh NextHop) int {
		if nh.OnLink {
			return int(nl.FLAG_ONLINK)
		}
		return 0
	}
	switch len(r.NextHops) {
	case 0:
	case 1:
		nh := r.NextHops[0]
		i, err := index(nh)
		if err != nil {
			return nil, err
		}
		kr.LinkIndex, kr.Gw, kr.Flags = i, addrToIP(nh.Gateway), flags(nh)
		if !nh.Gateway.IsValid() && family == unix.AF_INET {
			kr.Scope = nl.SCOPE_LINK
		}
	default:
		for _, nh := range r.NextHops {
			i, err := index(nh)
			if err != nil {
				return nil, err
			}
			kr.MultiPath = append(kr.MultiPath, &nl.NexthopInfo{
				LinkIndex: i, Gw: addrToIP(nh.Gateway), Flags: flags(nh), Hops: nh.weight() - 1,
			})
		}
	}
	return kr, nil
}

// fromKernel converts a kernel route to the model. ok is false for route
// types the model does not describe (local, broadcast, ...).
func fromKernel(kr nl.Route, ln linkNames) (r Route, ok bool) {
	var t RouteType
	found := false
	for mt, kt := range routeTypes {
		if kt == kr.Type {
			t, found = mt, true
		}
	}
	if !found {
		return Route{}, false
	}
	name := func(i int) string {
		if i == 0 {
			return ""
		}
		if n, ok := ln.byIndex[i]; ok {
			return n
		}
		return "#" + strconv.Itoa(i)
	}
	r = Route{
		Table:  kr.Table,
		Dst:    ipNetToPrefix(kr.Dst, kr.Family),
		Type:   t,
		Src:    ipToAddr(kr.Src),
		Metric: kr.Priority,
	}
	if t != RouteUnicast {
		return r, true
	}
	if len(kr.MultiPath) > 0 {
		for _, nh := range kr.MultiPath {
			r.NextHops = append(r.NextHops, NextHop{
				Gateway: ipToAddr(nh.Gw), Dev: name(nh.LinkIndex),
				OnLink: nh.Flags&int(nl.FLAG_ONLINK) != 0, Weight: nh.Hops + 1,
			})
		}
		return r, true
	}
	r.NextHops = []NextHop{{Gateway: ipToAddr(kr.Gw), Dev: name(kr.LinkIndex), OnLink: kr.Flags&int(nl.FLAG_ONLINK) != 0}}
	return r, true
}
