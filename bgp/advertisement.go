package bgp

import (
	"fmt"
	"net/netip"
	"slices"
)

// Kind says why a prefix is advertised; service kinds are advertised only
// inside the matching Config.Service*IPs CIDRs (Calico semantics).
type Kind uint8

const (
	// KindOther is any prefix (an affine pod block, a pool CIDR, ...).
	KindOther Kind = iota
	// KindServiceClusterIP is a service cluster IP (a /32 or /128 for a
	// Local service with a local endpoint).
	KindServiceClusterIP
	// KindServiceExternalIP is a service external IP.
	KindServiceExternalIP
	// KindServiceLoadBalancerIP is a LoadBalancer ingress IP.
	KindServiceLoadBalancerIP
)

func (k Kind) String() string {
	switch k {
	case KindServiceClusterIP:
		return "serviceClusterIP"
	case KindServiceExternalIP:
		return "serviceExternalIP"
	case KindServiceLoadBalancerIP:
		return "serviceLoadBalancerIP"
	}
	return "other"
}

// Advertisement is one IPv4 or IPv6 unicast prefix to advertise, with its
// communities (standard and large, in one slice). The next hop is always
// the node's own address for the family (next hop self).
type Advertisement struct {
	Prefix      netip.Prefix
	Communities []Community
	Kind        Kind
	// Interface is the device the prefix is routed through on this node
	// ("vxlan.calico", ...), if any: BGPFilter rules with an interface
	// pattern match on it (BIRD's ifname). Empty for most prefixes.
	Interface string
}

func (a Advertisement) validate() error {
	if err := validPrefix(a.Prefix); err != nil {
		return err
	}
	if a.Kind > KindServiceLoadBalancerIP {
		return fmt.Errorf("prefix %s: unknown kind %d: %w", a.Prefix, a.Kind, ErrInvalidPrefix)
	}
	for _, c := range a.Communities {
		if err := c.validate(); err != nil {
			return fmt.Errorf("prefix %s: %w", a.Prefix, err)
		}
	}
	return nil
}

// path is what is actually sent for one prefix: the union of every source's
// communities plus prefixAdvertisements, sorted and de-duplicated.
type path struct {
	communities string // canonical, comparable form: sorted, joined
	list        []Community
	iface       string // the advertisement's Interface (for filters)
}

func newPath(cs []Community) path {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, compareCommunities)
	cs = slices.Compact(cs)
	s := ""
	for i, c := range cs {
		if i > 0 {
			s += " "
		}
		s += c.String()
	}
	return path{communities: s, list: cs}
}

func pathEqual(a, b path) bool { return a.communities == b.communities && a.iface == b.iface }
