package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SourceAddress is Calico's BGPPeer.sourceAddress: whether the speaker
// binds the session to the node's address.
type SourceAddress string

const (
	// SourceAddressUseNodeIP binds the session to the node's address of
	// the peer's family (Config.NodeIP / NodeIPv6), or Peer.SourceAddress
	// when set: Calico's default, also what the empty value means.
	SourceAddressUseNodeIP SourceAddress = "UseNodeIP"
	// SourceAddressNone binds no local address: the kernel picks the
	// source address of the connection by its routes (Calico renders no
	// BIRD "source address"). The session's local address is then the
	// next hop the node sends.
	SourceAddressNone SourceAddress = "None"
)

func (a SourceAddress) valid() bool {
	return a == "" || a == SourceAddressUseNodeIP || a == SourceAddressNone
}

// maxAllowedLocalAS is the largest NumAllowedLocalASNumbers: GoBGP keeps
// the count in 8 bits (its allow-own-as).
const maxAllowedLocalAS = 255

// Peer is one BGP session as the speaker runs it: an explicit peer, or one
// derived by ResolvePeers from the node list and Calico-style BGPPeers.
// The peer's address family decides what the session carries (IPv4
// unicast over IPv4 peers, IPv6 unicast over IPv6 peers), as in Calico.
type Peer struct {
	// Name says where the peer comes from ("bgppeer/rack1-tor",
	// "mesh/node-2", ...); it shows up in status and logs.
	Name string
	// Address is the neighbour's address (BGPPeer.peerIP).
	Address netip.Addr
	// Port is the neighbour's TCP port (the port part of peerIP); 0 means 179.
	Port int
	// ASNumber is the neighbour's AS (BGPPeer.asNumber); equal to the local
	// AS for iBGP.
	ASNumber uint32
	// Password is the TCP MD5 password (BGPPeer.password, resolved).
	Password string
	// KeepOriginalNextHop keeps the next hop of routes this node passes on
	// instead of setting itself (BGPPeer.keepOriginalNextHop).
	KeepOriginalNextHop bool
	// MaxRestartTime is the graceful-restart time this node announces on
	// this session (BGPPeer.maxRestartTime, which Calico renders as BIRD's
	// "graceful restart time"): how long the peer keeps this node's routes
	// after the session drops, while the node restarts. 0 means
	// Config.RestartTime (Config.NodeMeshMaxRestartTime for mesh sessions).
	// How long this node keeps the peer's routes is the time the peer
	// announces, not this one (RFC 4724 section 4.2). Whole seconds.
	MaxRestartTime time.Duration
	// EBGPMultihopTTL is the TTL of packets to an eBGP peer more than one hop
	// away (kube-router's --peer-router-multihop-ttl, MetalLB's
	// ebgpMultiHop); 0 means the default (1 for eBGP).
	EBGPMultihopTTL int
	// TTLSecurity is Calico's BGPPeer.ttlSecurity: the number of hops to
	// the peer under the generalized TTL security mechanism (GTSM, RFC
	// 5082). The node sends with TTL 255 and drops packets that arrive
	// with a TTL below 256 - TTLSecurity, so it also allows a peer that
	// many hops away (BIRD's "ttl security yes; multihop N"). 0 is off;
	// it excludes EBGPMultihopTTL (GoBGP has one or the other).
	TTLSecurity int
	// RouteReflectorClient makes this node reflect routes to the peer
	// (the node has Node.spec.bgp.routeReflectorClusterID and the peer
	// does not share it).
	RouteReflectorClient bool
	// SourceAddress is the local address of the session (MetalLB's
	// sourceAddress; Calico's sourceAddress UseNodeIP is the default): the
	// zero Addr means Config.NodeIP / NodeIPv6. It must be of the peer's
	// family, and SourceAddressMode must not be SourceAddressNone.
	SourceAddress netip.Addr
	// SourceAddressMode is BGPPeer.sourceAddress: empty or
	// SourceAddressUseNodeIP binds the session to SourceAddress or the
	// node's address, SourceAddressNone to none (the kernel picks).
	SourceAddressMode SourceAddress
	// NumAllowedLocalASNumbers is BGPPeer.numAllowedLocalASNumbers: how
	// many times the node's own AS may appear in the AS path of a route
	// the peer sends before the route is dropped as a loop (BIRD's "allow
	// local as N", GoBGP's allow-own-as). 0, the default, allows none;
	// at most 255. It removes BGP's loop prevention for this session: for
	// sites that reuse one AS, as Calico warns, only when needed.
	// It acts only on what the peer sends: a tabby speaker (GoBGP) never
	// sends a peer a route whose AS path holds the peer's AS (GoBGP's
	// sender-side loop check), so a tabby node between two nodes of one AS
	// does not pass their routes on, whatever this says; it is for routers
	// that send such routes (BIRD does, TestBIRDAllowLocalAS).
	// PeerStatus.Received counts a route dropped as a loop, Accepted does
	// not.
	NumAllowedLocalASNumbers int
	// Passive waits for the peer to connect (Calico's mesh is passive on
	// one side). Set it on one side of a hand-written session between two
	// tabby speakers, as ResolvePeers does for node-to-node sessions:
	// GoBGP closes connections that arrive while its side is Idle and
	// stays Idle 5 s after each failed attempt, so when one side restarts
	// two active sides can keep missing each other for tens of seconds
	// (29 s and 50 s seen). Peers such as BIRD accept in any state.
	Passive bool
	// Filters are the BGPFilters of this session (BGPPeer.filters,
	// resolved), applied in order: import rules to what the peer sends
	// (a rejected route is neither programmed nor passed on), export rules
	// to what the node sends it. They change at run time without a
	// session reset (GoBGP soft reset).
	Filters []BGPFilter
}

// sameSession reports whether p and o differ at most in their filters.
func (p Peer) sameSession(o Peer) bool {
	return p.Name == o.Name && p.Address == o.Address && p.Port == o.Port && p.ASNumber == o.ASNumber &&
		p.Password == o.Password && p.KeepOriginalNextHop == o.KeepOriginalNextHop &&
		p.MaxRestartTime == o.MaxRestartTime && p.EBGPMultihopTTL == o.EBGPMultihopTTL && p.TTLSecurity == o.TTLSecurity &&
		p.RouteReflectorClient == o.RouteReflectorClient && p.SourceAddress == o.SourceAddress && p.Passive == o.Passive &&
		p.SourceAddressMode == o.SourceAddressMode && p.NumAllowedLocalASNumbers == o.NumAllowedLocalASNumbers
}

func (p Peer) equal(o Peer) bool {
	return p.sameSession(o) && slices.EqualFunc(p.Filters, o.Filters, func(a, b BGPFilter) bool {
		return a.Name == b.Name && slices.Equal(a.Export.V4, b.Export.V4) && slices.Equal(a.Export.V6, b.Export.V6) &&
			slices.Equal(a.Import.V4, b.Import.V4) && slices.Equal(a.Import.V6, b.Import.V6)
	})
}

func (p Peer) port() int {
	if p.Port == 0 {
		return DefaultListenPort
	}
	return p.Port
}

func (p Peer) validate() error {
	switch {
	case !p.Address.IsValid() || !usableAddr(p.Address) || p.Address.Is4In6() || p.Address.Zone() != "":
		return fmt.Errorf("peer %s address %q: %w", p.Name, p.Address, ErrInvalidPeer)
	case p.ASNumber == 0 || p.ASNumber == 23456:
		return fmt.Errorf("peer %s (%s) AS number %d: %w", p.Name, p.Address, p.ASNumber, ErrInvalidPeer)
	case p.Port < 0 || p.Port > 65535:
		return fmt.Errorf("peer %s (%s) port %d: %w", p.Name, p.Address, p.Port, ErrInvalidPeer)
	case p.EBGPMultihopTTL < 0 || p.EBGPMultihopTTL > 255:
		return fmt.Errorf("peer %s (%s) multihop TTL %d: want 0..255: %w", p.Name, p.Address, p.EBGPMultihopTTL, ErrInvalidPeer)
	case p.TTLSecurity < 0 || p.TTLSecurity > 255:
		return fmt.Errorf("peer %s (%s) ttlSecurity %d: want 0..255 hops: %w", p.Name, p.Address, p.TTLSecurity, ErrInvalidPeer)
	case p.TTLSecurity > 0 && p.EBGPMultihopTTL > 0:
		return fmt.Errorf("peer %s (%s): ttlSecurity and an eBGP multihop TTL exclude each other: %w", p.Name, p.Address, ErrInvalidPeer)
	case p.SourceAddress.IsValid() && (p.SourceAddress.Is4() != p.Address.Is4() || !usableAddr(p.SourceAddress)):
		return fmt.Errorf("peer %s (%s) source address %s: %w", p.Name, p.Address, p.SourceAddress, ErrInvalidPeer)
	case !p.SourceAddressMode.valid():
		return fmt.Errorf("peer %s (%s) sourceAddress %q: want UseNodeIP or None: %w", p.Name, p.Address, p.SourceAddressMode, ErrInvalidPeer)
	case p.SourceAddressMode == SourceAddressNone && p.SourceAddress.IsValid():
		return fmt.Errorf("peer %s (%s): sourceAddress None with source address %s: %w", p.Name, p.Address, p.SourceAddress, ErrInvalidPeer)
	case p.NumAllowedLocalASNumbers < 0 || p.NumAllowedLocalASNumbers > maxAllowedLocalAS:
		return fmt.Errorf("peer %s (%s) numAllowedLocalASNumbers %d: want 0..%d: %w", p.Name, p.Address, p.NumAllowedLocalASNumbers, maxAllowedLocalAS, ErrInvalidPeer)
	case len(p.Password) > 80:
		return fmt.Errorf("peer %s (%s): TCP MD5 password longer than 80 bytes: %w", p.Name, p.Address, ErrInvalidPeer)
	}
	if _, err := restartTime("peer max restart time", p.MaxRestartTime, 0); err != nil {
		return fmt.Errorf("peer %s (%s): %w: %w", p.Name, p.Address, ErrInvalidPeer, err)
	}
	for _, f := range p.Filters {
		if err := f.validate(); err != nil {
			return fmt.Errorf("peer %s (%s): %w", p.Name, p.Address, err)
		}
	}
	return nil
}

// validatePeers checks every peer and that no address appears twice.
func validatePeers(peers []Peer) error {
	seen := make(map[netip.Addr]string, len(peers))
	for _, p := range peers {
		if err := p.validate(); err != nil {
			return err
		}
		if other, dup := seen[p.Address]; dup {
			return fmt.Errorf("peer %s and %s both have address %s: %w", other, p.Name, p.Address, ErrDuplicatePeer)
		}
		seen[p.Address] = p.Name
	}
	return nil
}

func sortPeers(ps []Peer) {
	slices.SortFunc(ps, func(a, b Peer) int { return a.Address.Compare(b.Address) })
}

// ParsePeerIP parses Calico's BGPPeer.peerIP: "ip" or "ip:port" (IPv6 with a
// port in brackets, "[fd00::1]:1179"). Port 0 means 179.
func ParsePeerIP(s string) (netip.Addr, int, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" || a.Is4In6() {
			return netip.Addr{}, 0, fmt.Errorf("peer IP %q: zones and IPv4-mapped addresses are not allowed: %w", s, ErrInvalidPeer)
		}
		return a, 0, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || (ap.Addr().Is6() && !strings.HasPrefix(s, "[")) {
		return netip.Addr{}, 0, fmt.Errorf("peer IP %q: want ip or ip:port: %w", s, ErrInvalidPeer)
	}
	if ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
		return netip.Addr{}, 0, fmt.Errorf("peer IP %q: zones and IPv4-mapped addresses are not allowed: %w", s, ErrInvalidPeer)
	}
	if ap.Port() == 0 {
		return netip.Addr{}, 0, fmt.Errorf("peer IP %q: port 0: %w", s, ErrInvalidPeer)
	}
	return ap.Addr(), int(ap.Port()), nil
}

func formatPort(p int) string { return strconv.Itoa(p) }
