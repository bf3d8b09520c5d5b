package bgp

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"
)

// Defaults, as Calico's.
const (
	// DefaultASNumber is Calico's default BGPConfiguration.asNumber.
	DefaultASNumber = 64512
	// DefaultListenPort is the BGP port.
	DefaultListenPort = 179
	// DefaultRestartTime is the graceful-restart time advertised to peers
	// (Calico's default maxRestartTime, 120 s).
	DefaultRestartTime = 120 * time.Second
	// DefaultStartupSyncTimeout bounds how long learned routes already in the
	// kernel are kept untouched after Start while peers reconnect.
	DefaultStartupSyncTimeout = 30 * time.Second
)

// Config is the speaker's global configuration, in the shape of Calico's
// BGPConfiguration plus the node's own BGP fields (Node.spec.bgp). Each field
// names the Calico field it follows.
type Config struct {
	// NodeName names this node among Topology.Nodes (Node.metadata.name).
	NodeName string
	// ASNumber is the local AS (BGPConfiguration.asNumber, or the node's
	// Node.spec.bgp.asNumber); 0 means DefaultASNumber. 4-byte ASNs are fine;
	// AS 23456 (AS_TRANS) is refused.
	ASNumber uint32
	// NodeIP and NodeIPv6 are the node's addresses (Node.spec.bgp.ipv4Address
	// and ipv6Address, without the mask). They are the next hop of what the
	// node advertises and the source of its sessions. At least one is needed.
	NodeIP, NodeIPv6 netip.Addr
	// RouterID is the BGP identifier (Node.spec.bgp.routerID); unset means
	// NodeIP. It must be an IPv4 address other than 0.0.0.0.
	RouterID netip.Addr
	// RouteReflectorClusterID (Node.spec.bgp.routeReflectorClusterID) makes
	// the node a route reflector: ResolvePeers makes every node peer
	// without the same ID a route-reflector client, and it is the cluster
	// ID of client sessions. It must be an IPv4 address. Empty: the local
	// node's ID in the topology given to SetTopology (Node), else none;
	// hand-written client peers then use the router ID as cluster ID.
	RouteReflectorClusterID string
	// ListenAddresses are the addresses the speaker accepts sessions on
	// (bindMode NodeIP = the node's addresses); empty means all addresses.
	ListenAddresses []netip.Addr
	// ListenPort is the TCP port to listen on (BGPConfiguration.listenPort);
	// 0 means 179, -1 means "do not listen" (outgoing sessions only).
	ListenPort int
	// NodeToNodeMeshEnabled turns the iBGP full mesh between all nodes on
	// (BGPConfiguration.nodeToNodeMeshEnabled); nil means true, as in Calico.
	NodeToNodeMeshEnabled *bool
	// NodeMeshPassword is the TCP MD5 password of mesh sessions
	// (nodeMeshPassword, already resolved from its Secret).
	NodeMeshPassword string
	// NodeMeshMaxRestartTime is the graceful-restart time the node
	// announces on mesh sessions (nodeMeshMaxRestartTime), as RestartTime
	// does on the others: how long mesh peers keep this node's routes
	// after its session drops; 0 means RestartTime. Whole seconds.
	NodeMeshMaxRestartTime time.Duration
	// ServiceClusterIPs, ServiceExternalIPs and ServiceLoadBalancerIPs are the
	// CIDRs every node advertises whole (serviceClusterIPs[].cidr, ...).
	// An Advertisement of kind KindServiceClusterIP (...) is advertised only
	// when it lies inside one of them.
	ServiceClusterIPs, ServiceExternalIPs, ServiceLoadBalancerIPs []netip.Prefix
	// Communities names communities (communities[]{name, value}).
	Communities []NamedCommunity
	// PrefixAdvertisements adds communities to every advertised prefix
	// inside CIDR (prefixAdvertisements[]{cidr, communities}); each entry of
	// Communities is a name from Communities or a literal aa:nn[:mm].
	PrefixAdvertisements []PrefixAdvertisement
	// LogLevel is the speaker's log level (logSeverityScreen); the zero
	// value is slog.LevelInfo.
	LogLevel slog.Level
	// RestartTime is the graceful-restart time this node asks its peers to
	// keep its routes for after the session drops; 0 means
	// DefaultRestartTime, negative disables graceful restart. Whole seconds,
	// at most 4095 s.
	RestartTime time.Duration
	// StartupSyncTimeout bounds how long, after Start, learned routes already
	// in the kernel are left as they are while peers reconnect and send
	// End-of-RIB; 0 means DefaultStartupSyncTimeout.
	StartupSyncTimeout time.Duration
	// Export and Import filter what the node advertises and what it
	// programs from what it learns (BGPFilter exportV4/V6, importV4/V6).
	Export, Import Filter
}

// NamedCommunity is one BGPConfiguration.communities entry.
type NamedCommunity struct {
	Name  string
	Value string // aa:nn or aa:nn:mm
}

// PrefixAdvertisement is one BGPConfiguration.prefixAdvertisements entry.
type PrefixAdvertisement struct {
	CIDR        netip.Prefix
	Communities []string // names from Config.Communities or literal aa:nn[:mm]
}

// resolved is a validated Config with defaults filled in.
type resolved struct {
	Config
	asn        uint32
	routerID   netip.Addr
	port       int32
	mesh       bool
	restart    time.Duration
	startup    time.Duration
	prefixComm []prefixCommunities
}

type prefixCommunities struct {
	cidr netip.Prefix
	comm []Community
}

func (c Config) resolve() (*resolved, error) {
	r := &resolved{Config: c, asn: c.ASNumber, routerID: c.RouterID, mesh: true}
	if r.asn == 0 {
		r.asn = DefaultASNumber
	}
	if r.asn == 23456 {
		return nil, fmt.Errorf("AS number %d is AS_TRANS: %w", r.asn, ErrInvalidConfig)
	}
	if c.NodeIP.IsValid() && (!c.NodeIP.Is4() || !usableAddr(c.NodeIP)) {
		return nil, fmt.Errorf("node IPv4 address %s: %w", c.NodeIP, ErrInvalidConfig)
	}
	if c.NodeIPv6.IsValid() && (!c.NodeIPv6.Is6() || c.NodeIPv6.Is4In6() || !usableAddr(c.NodeIPv6)) {
		return nil, fmt.Errorf("node IPv6 address %s: %w", c.NodeIPv6, ErrInvalidConfig)
	}
	if !c.NodeIP.IsValid() && !c.NodeIPv6.IsValid() {
		return nil, fmt.Errorf("node has neither an IPv4 nor an IPv6 address: %w", ErrInvalidConfig)
	}
	if !r.routerID.IsValid() {
		r.routerID = c.NodeIP
	}
	if !r.routerID.IsValid() || !r.routerID.Is4() || r.routerID.IsUnspecified() {
		return nil, fmt.Errorf("router ID %q must be a non-zero IPv4 address (set RouterID or NodeIP): %w", c.RouterID, ErrInvalidConfig)
	}
	if c.RouteReflectorClusterID != "" {
		if a, err := netip.ParseAddr(c.RouteReflectorClusterID); err != nil || !a.Is4() {
			return nil, fmt.Errorf("route reflector cluster ID %q must be an IPv4 address: %w", c.RouteReflectorClusterID, ErrInvalidConfig)
		}
	}
	switch {
	case c.ListenPort == 0:
		r.port = DefaultListenPort
	case c.ListenPort == -1 || (c.ListenPort > 0 && c.ListenPort <= 65535):
		r.port = int32(c.ListenPort)
	default:
		return nil, fmt.Errorf("listen port %d: want 1..65535, 0 (179) or -1 (none): %w", c.ListenPort, ErrInvalidConfig)
	}
	for _, a := range c.ListenAddresses {
		if !a.IsValid() || a.Zone() != "" {
			return nil, fmt.Errorf("listen address %q: %w", a, ErrInvalidConfig)
		}
	}
	if c.NodeToNodeMeshEnabled != nil {
		r.mesh = *c.NodeToNodeMeshEnabled
	}
	var err error
	if r.restart, err = restartTime("restart time", c.RestartTime, DefaultRestartTime); err != nil {
		return nil, err
	}
	if _, err = restartTime("node mesh max restart time", c.NodeMeshMaxRestartTime, r.restart); err != nil {
		return nil, err
	}
	r.startup = c.StartupSyncTimeout
	if r.startup == 0 {
		r.startup = DefaultStartupSyncTimeout
	}
	if r.startup < 0 {
		return nil, fmt.Errorf("startup sync timeout %s is negative: %w", r.startup, ErrInvalidConfig)
	}
	for _, set := range [][]netip.Prefix{c.ServiceClusterIPs, c.ServiceExternalIPs, c.ServiceLoadBalancerIPs} {
		for _, p := range set {
			if err := validPrefix(p); err != nil {
				return nil, fmt.Errorf("service CIDR: %w", err)
			}
		}
	}
	names := map[string]Community{}
	for _, nc := range c.Communities {
		if nc.Name == "" {
			return nil, fmt.Errorf("community %q has no name: %w", nc.Value, ErrInvalidCommunity)
		}
		if _, dup := names[nc.Name]; dup {
			return nil, fmt.Errorf("community name %q used twice: %w", nc.Name, ErrInvalidCommunity)
		}
		cm, err := ParseCommunity(nc.Value)
		if err != nil {
			return nil, fmt.Errorf("community %q: %w", nc.Name, err)
		}
		names[nc.Name] = cm
	}
	for _, pa := range c.PrefixAdvertisements {
		if err := validPrefix(pa.CIDR); err != nil {
			return nil, fmt.Errorf("prefix advertisement: %w", err)
		}
		pc := prefixCommunities{cidr: pa.CIDR}
		for _, s := range pa.Communities {
			cm, ok := names[s]
			if !ok {
				if cm, err = ParseCommunity(s); err != nil {
					return nil, fmt.Errorf("prefix advertisement %s: %q is neither a community name nor a value: %w", pa.CIDR, s, ErrInvalidCommunity)
				}
			}
			pc.comm = append(pc.comm, cm)
		}
		r.prefixComm = append(r.prefixComm, pc)
	}
	if err := c.Export.validate(); err != nil {
		return nil, fmt.Errorf("export filter: %w", err)
	}
	if err := c.Import.validate(); err != nil {
		return nil, fmt.Errorf("import filter: %w", err)
	}
	return r, nil
}

func restartTime(what string, d, def time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return def, nil
	case d < 0:
		return -1, nil
	case d%time.Second != 0 || d > 4095*time.Second:
		return 0, fmt.Errorf("%s %s: want whole seconds up to 4095s: %w", what, d, ErrInvalidConfig)
	}
	return d, nil
}

func usableAddr(a netip.Addr) bool {
	return !a.IsUnspecified() && !a.IsMulticast() && !(a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}))
}

// validPrefix checks that p is a masked unicast prefix.
func validPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("prefix %q: %w", p, ErrInvalidPrefix)
	case p.Addr().Zone() != "" || p.Addr().Is4In6():
		return fmt.Errorf("prefix %s: zones and IPv4-mapped IPv6 are not allowed: %w", p, ErrInvalidPrefix)
	case p.Masked() != p:
		return fmt.Errorf("prefix %s has host bits set (want %s): %w", p, p.Masked(), ErrInvalidPrefix)
	case p.Addr().IsMulticast():
		return fmt.Errorf("prefix %s is multicast: %w", p, ErrInvalidPrefix)
	}
	return nil
}

// communitiesFor returns the prefixAdvertisements communities that apply to p.
func (r *resolved) communitiesFor(p netip.Prefix) []Community {
	var out []Community
	for _, pc := range r.prefixComm {
		if pc.cidr.Bits() <= p.Bits() && pc.cidr.Contains(p.Addr()) {
			out = append(out, pc.comm...)
		}
	}
	return out
}

// serviceRange returns the configured CIDRs for a service kind.
func (r *resolved) serviceRange(k Kind) []netip.Prefix {
	switch k {
	case KindServiceClusterIP:
		return r.ServiceClusterIPs
	case KindServiceExternalIP:
		return r.ServiceExternalIPs
	case KindServiceLoadBalancerIP:
		return r.ServiceLoadBalancerIPs
	}
	return nil
}

func prefixWithin(p netip.Prefix, ranges []netip.Prefix) bool {
	return slices.ContainsFunc(ranges, func(c netip.Prefix) bool {
		return c.Addr().Is4() == p.Addr().Is4() && c.Bits() <= p.Bits() && c.Contains(p.Addr())
	})
}
