package services

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// AnnounceConfig is the service part of Calico's BGPConfiguration: the
// ranges whose addresses a node may announce. Validate reports bad
// entries; Announce skips them.
type AnnounceConfig struct {
	// ServiceClusterIPs are spec.serviceClusterIPs CIDRs.
	ServiceClusterIPs []netip.Prefix
	// ServiceExternalIPs are spec.serviceExternalIPs CIDRs.
	ServiceExternalIPs []netip.Prefix
	// ServiceLoadBalancerIPs are spec.serviceLoadBalancerIPs CIDRs.
	ServiceLoadBalancerIPs []netip.Prefix
}

// Validate returns an error wrapping ErrInvalidConfig, naming every bad
// entry: an invalid (zero) prefix, or an IPv4-mapped IPv6 one such as
// ::ffff:10.96.0.0/108, which no service address (kept unmapped) can
// fall in. Announce skips such entries; call Validate when the
// configuration is read to refuse it.
func (c AnnounceConfig) Validate() error {
	var errs []error
	for _, f := range []struct {
		name   string
		ranges []netip.Prefix
	}{{"serviceClusterIPs", c.ServiceClusterIPs}, {"serviceExternalIPs", c.ServiceExternalIPs}, {"serviceLoadBalancerIPs", c.ServiceLoadBalancerIPs}} {
		for i, p := range f.ranges {
			if !validRange(p) {
				errs = append(errs, fmt.Errorf("%w: %s[%d] %q is not an IPv4 or IPv6 CIDR", ErrInvalidConfig, f.name, i, p))
			}
		}
	}
	return errors.Join(errs...)
}

// validRange reports whether p is a usable announce range.
func validRange(p netip.Prefix) bool { return p.IsValid() && !p.Addr().Is4In6() }

// Announce returns the prefixes this node should advertise over BGP for
// services, sorted and without duplicates, following Calico's service
// advertisement:
//
//   - every configured range (cluster-IP, external-IP and load-balancer
//     CIDRs, masked) is announced by every node;
//   - for a service port with externalTrafficPolicy Local, each of its
//     cluster, external and load-balancer IPs that falls in the matching
//     configured range is also announced as a /32 (/128), but only when
//     this node has a ready local endpoint of the address's family for
//     it (Resolved.Endpoints.Local holding an endpoint of that family
//     with Ready true: a dual-stack Service whose only local endpoint is
//     IPv4 gets its IPv4 addresses announced, not its IPv6 ones, which
//     this node could not serve); so the /32 is withdrawn when
//     the last ready local endpoint goes and routers send traffic only to
//     nodes that serve it (ECMP anycast).
//
// Addresses outside the configured ranges are never announced; entries
// Validate refuses are skipped. ports
// is the tracker's state (Tracker.All); nil entries and entries with a
// nil Port are ignored.
func Announce(ports map[ServicePortName]*Resolved, cfg AnnounceConfig) []netip.Prefix {
	var out []netip.Prefix
	for _, rs := range [][]netip.Prefix{cfg.ServiceClusterIPs, cfg.ServiceExternalIPs, cfg.ServiceLoadBalancerIPs} {
		for _, p := range rs {
			if validRange(p) {
				out = append(out, p.Masked())
			}
		}
	}
	within := func(a netip.Addr, ranges []netip.Prefix) bool {
		return slices.ContainsFunc(ranges, func(p netip.Prefix) bool { return validRange(p) && p.Contains(a) })
	}
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
	for _, r := range ports {
		if r == nil || r.Port == nil || !r.Port.ExternalPolicyLocal {
			continue
		}
		// Per family: a dual-stack port with a ready local endpoint of
		// one family only cannot serve the other family's addresses here.
		var ready4, ready6 bool
		for _, e := range r.Endpoints.Local {
			if e.Ready {
				ready4, ready6 = ready4 || e.Addr.Is4(), ready6 || e.Addr.Is6()
			}
		}
		if !ready4 && !ready6 {
			continue
		}
		for _, set := range []struct {
			addrs  []netip.Addr
			ranges []netip.Prefix
		}{
			{r.Port.ClusterIPs, cfg.ServiceClusterIPs},
			{r.Port.ExternalIPs, cfg.ServiceExternalIPs},
			{r.Port.LoadBalancerIPs, cfg.ServiceLoadBalancerIPs},
		} {
			for _, a := range set.addrs {
				if (a.Is4() && ready4 || a.Is6() && ready6) && within(a, set.ranges) {
					out = append(out, host(a))
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}
