package netlink

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Routing tables.
const (
	// TableMain is the kernel's main routing table (254). A Route with Table 0
	// means TableMain.
	TableMain  = 254
	tableLocal = 255
	// defaultV6Metric is the metric the kernel gives IPv6 routes added with 0.
	defaultV6Metric = 1024
)

// RouteType is the kind of route, as in `ip route add <type> ...`.
type RouteType uint8

const (
	// RouteUnicast forwards to one or more next hops (the default).
	RouteUnicast RouteType = iota
	// RouteBlackhole silently drops (`ip route add blackhole ...`); tabby uses
	// it for the node's own IPAM blocks.
	RouteBlackhole
	// RouteUnreachable drops and answers ICMP host unreachable.
	RouteUnreachable
	// RouteProhibit drops and answers ICMP administratively prohibited.
	RouteProhibit
)

func (t RouteType) String() string {
	switch t {
	case RouteUnicast:
		return "unicast"
	case RouteBlackhole:
		return "blackhole"
	case RouteUnreachable:
		return "unreachable"
	case RouteProhibit:
		return "prohibit"
	default:
		return fmt.Sprintf("type(%d)", uint8(t))
	}
}

// NextHop is one path of a unicast route. At least one of Gateway and Dev is set.
type NextHop struct {
	// Gateway is the next router; the zero Addr means "directly connected
	// through Dev" (`ip route add X dev D`).
	Gateway netip.Addr
	// Dev is the outgoing interface name. Empty lets the kernel pick it from
	// Gateway; an empty Dev in a desired route matches any device the kernel
	// reports.
	Dev string
	// OnLink tells the kernel the gateway is reachable on Dev even though it is
	// in no connected subnet (`onlink`); it requires Dev. VXLAN routes use it.
	OnLink bool
	// Weight is the ECMP weight, 1..256; 0 means 1.
	Weight int
}

func (n NextHop) weight() int {
	if n.Weight == 0 {
		return 1
	}
	return n.Weight
}

func (n NextHop) String() string {
	var b strings.Builder
	if n.Gateway.IsValid() {
		b.WriteString("via " + n.Gateway.String())
	}
	if n.Dev != "" {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("dev " + n.Dev)
	}
	if n.OnLink {
		b.WriteString(" onlink")
	}
	if n.Weight > 1 {
		fmt.Fprintf(&b, " weight %d", n.Weight)
	}
	return b.String()
}

// Route is one desired (or observed) kernel route. Several NextHops make one
// ECMP multipath route, as `ip route add X nexthop via A nexthop via B`.
type Route struct {
	// Table is the routing table; 0 means TableMain. The local table (255) is refused.
	Table int
	// Dst is the destination prefix; it must be masked (10.0.0.0/8, not 10.1.2.3/8).
	Dst netip.Prefix
	// Type is unicast (default), blackhole, unreachable or prohibit.
	Type RouteType
	// NextHops: one or more for unicast routes, none for the other types.
	NextHops []NextHop
	// Src is the preferred source address (`src`), optional.
	Src netip.Addr
	// Metric is the route priority (`metric`). For IPv6, 0 means the kernel's
	// default of 1024.
	Metric int
}

// RouteKey identifies a route in the kernel: two routes with the same key
// cannot coexist, whoever installed them.
type RouteKey struct {
	Table  int
	Dst    netip.Prefix
	Metric int
}

func (k RouteKey) String() string {
	return fmt.Sprintf("%s table %d metric %d", k.Dst, k.Table, k.Metric)
}

func compareKeys(a, b RouteKey) int {
	if c := cmp.Compare(a.Table, b.Table); c != 0 {
		return c
	}
	if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Dst.Bits(), b.Dst.Bits()); c != 0 {
		return c
	}
	return cmp.Compare(a.Metric, b.Metric)
}

// Key returns the route's identity with defaults filled in (table main, IPv6
// metric 1024), so a desired route and the kernel's copy have equal keys.
func (r Route) Key() RouteKey {
	t := r.Table
	if t == 0 {
		t = TableMain
	}
	m := r.Metric
	if m == 0 && r.Dst.Addr().Is6() {
		m = defaultV6Metric
	}
	return RouteKey{Table: t, Dst: r.Dst, Metric: m}
}

// String renders the route like `ip route`.
func (r Route) String() string {
	var b strings.Builder
	if r.Type != RouteUnicast {
		b.WriteString(r.Type.String() + " ")
	}
	b.WriteString(r.Dst.String())
	if len(r.NextHops) == 1 {
		b.WriteString(" " + r.NextHops[0].String())
	} else {
		for _, nh := range r.NextHops {
			b.WriteString(" nexthop " + nh.String())
		}
	}
	if r.Src.IsValid() {
		b.WriteString(" src " + r.Src.String())
	}
	k := r.Key()
	if k.Table != TableMain {
		fmt.Fprintf(&b, " table %d", k.Table)
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	return b.String()
}

// Validate checks the route without touching the kernel. Errors wrap
// ErrInvalidPrefix, ErrInvalidRoute or ErrInvalidName.
func (r Route) Validate() error {
	if !r.Dst.IsValid() {
		return fmt.Errorf("%w: route has no destination", ErrInvalidPrefix)
	}
	if r.Dst.Addr().Zone() != "" {
		return prefixError(r.Dst, "zoned destination")
	}
	if r.Dst.Addr().Is4In6() {
		return prefixError(r.Dst, "IPv4-mapped IPv6 destination")
	}
	if r.Dst.Masked() != r.Dst {
		return prefixError(r.Dst, "host bits set (want "+r.Dst.Masked().String()+")")
	}
	if r.Table < 0 || r.Table == tableLocal || r.Table > 0xffffffff {
		return fmt.Errorf("%w %s: table %d not allowed", ErrInvalidRoute, r.Dst, r.Table)
	}
	if r.Metric < 0 || r.Metric > 0xffffffff {
		return fmt.Errorf("%w %s: metric %d out of range", ErrInvalidRoute, r.Dst, r.Metric)
	}
	v6 := r.Dst.Addr().Is6()
	if r.Src.IsValid() && r.Src.Is6() != v6 {
		return fmt.Errorf("%w %s: src %s of the other family", ErrInvalidRoute, r.Dst, r.Src)
	}
	switch r.Type {
	case RouteUnicast:
		if len(r.NextHops) == 0 {
			return fmt.Errorf("%w %s: unicast route needs a next hop", ErrInvalidRoute, r.Dst)
		}
	case RouteBlackhole, RouteUnreachable, RouteProhibit:
		if len(r.NextHops) != 0 {
			return fmt.Errorf("%w %s: %s route cannot have next hops", ErrInvalidRoute, r.Dst, r.Type)
		}
	default:
		return fmt.Errorf("%w %s: unknown type %d", ErrInvalidRoute, r.Dst, r.Type)
	}
	seen := make(map[NextHop]bool, len(r.NextHops))
	for _, nh := range r.NextHops {
		if err := nh.validate(v6, len(r.NextHops) > 1); err != nil {
			return fmt.Errorf("%w %s: %w", ErrInvalidRoute, r.Dst, err)
		}
		k := nh
		k.Weight = nh.weight()
		if seen[k] {
			return fmt.Errorf("%w %s: duplicate next hop %s", ErrInvalidRoute, r.Dst, nh)
		}
		seen[k] = true
	}
	return nil
}

func (n NextHop) validate(v6, multi bool) error {
	if !n.Gateway.IsValid() && n.Dev == "" {
		return fmt.Errorf("next hop needs a gateway or a device")
	}
	if n.Dev != "" {
		if err := ValidateIfName(n.Dev); err != nil {
			return err
		}
	}
	if n.Gateway.IsValid() {
		if n.Gateway.Is6() != v6 || n.Gateway.Is4In6() {
			return fmt.Errorf("gateway %s is of the other family", n.Gateway)
		}
		if n.Gateway.IsUnspecified() || n.Gateway.IsMulticast() {
			return fmt.Errorf("gateway %s is not a unicast address", n.Gateway)
		}
		if n.Gateway.IsLinkLocalUnicast() && v6 && n.Dev == "" {
			return fmt.Errorf("link-local gateway %s needs a device", n.Gateway)
		}
	}
	if n.OnLink && n.Dev == "" {
		return fmt.Errorf("onlink next hop %s needs a device", n.Gateway)
	}
	if n.Weight < 0 || n.Weight > 256 {
		return fmt.Errorf("next hop weight %d out of range 1..256", n.Weight)
	}
	if n.Weight > 1 && !multi {
		return fmt.Errorf("weight only applies to multipath routes")
	}
	return nil
}

// ValidateIfName checks an interface name the way the kernel does
// (dev_valid_name): 1..15 bytes, not "." or "..", no '/', ':' or whitespace.
func ValidateIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > 15:
		return fmt.Errorf("%w %q: %d bytes, at most 15", ErrInvalidName, name, len(name))
	case name == "." || name == "..":
		return fmt.Errorf("%w %q", ErrInvalidName, name)
	}
	for _, c := range []byte(name) {
		if c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w %q: character %q not allowed", ErrInvalidName, name, c)
		}
	}
	return nil
}

// normalized returns a copy with the table defaulted, next hops sorted and
// weights defaulted, so equal routes compare equal.
func (r Route) normalized() Route {
	n := r
	n.Table = r.Key().Table
	n.Metric = r.Key().Metric
	n.NextHops = slices.Clone(r.NextHops)
	for i := range n.NextHops {
		n.NextHops[i].Weight = n.NextHops[i].weight()
	}
	slices.SortFunc(n.NextHops, func(a, b NextHop) int {
		if c := a.Gateway.Compare(b.Gateway); c != 0 {
			return c
		}
		return strings.Compare(a.Dev, b.Dev)
	})
	return n
}

// satisfies reports whether the observed kernel route `have` is what `want`
// asks for. An empty Dev in want matches any device.
func satisfies(want, have Route) bool {
	w, h := want.normalized(), have.normalized()
	if w.Type != h.Type || w.Src != h.Src || len(w.NextHops) != len(h.NextHops) {
		return false
	}
	for i := range w.NextHops {
		a, b := w.NextHops[i], h.NextHops[i]
		if a.Gateway != b.Gateway || a.OnLink != b.OnLink || a.Weight != b.Weight {
			return false
		}
		if a.Dev != "" && a.Dev != b.Dev {
			return false
		}
	}
	return true
}

// RouteVia returns a unicast route to dst through the gateways: one next
// hop, or an ECMP multipath route when several are given (as BGP learns
// them).
func RouteVia(dst netip.Prefix, gateways ...netip.Addr) Route {
	r := Route{Dst: dst}
	for _, g := range gateways {
		r.NextHops = append(r.NextHops, NextHop{Gateway: g})
	}
	return r
}

// Blackhole returns a blackhole route to dst (a node's own IPAM block).
func Blackhole(dst netip.Prefix) Route { return Route{Dst: dst, Type: RouteBlackhole} }
