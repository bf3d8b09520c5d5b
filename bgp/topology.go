package bgp

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/tabbynet/tabby/selector"
)

// Node is what the speaker needs to know of a cluster node (Calico's Node
// resource: metadata.name, labels, spec.bgp).
type Node struct {
	Name   string
	Labels map[string]string
	// IPv4 and IPv6 are spec.bgp.ipv4Address / ipv6Address without the mask.
	IPv4, IPv6 netip.Addr
	// ASNumber is spec.bgp.asNumber; 0 means the global AS.
	ASNumber uint32
	// RouteReflectorClusterID (spec.bgp.routeReflectorClusterID) makes the
	// node a route reflector with this cluster ID; it must be an IPv4
	// address (ResolvePeers: ErrInvalidConfig). For the local node,
	// Config.RouteReflectorClusterID wins when set.
	RouteReflectorClusterID string
}

// BGPPeer follows Calico's BGPPeer. Which nodes it applies to: Node (one
// node by name), else NodeSelector, else every node (a global peer). Whom
// they peer with: PeerIP and ASNumber, or PeerSelector (the selected nodes,
// each with its own AS) — the way route reflectors are set up; peering by
// selector is symmetric, as Calico's: a node selected by PeerSelector also
// peers with the nodes NodeSelector picks. As in Calico, Node and
// NodeSelector exclude each other, and so do PeerSelector and PeerIP or
// ASNumber: ResolvePeers returns ErrInvalidPeer for such a BGPPeer.
type BGPPeer struct {
	Name                string
	Node                string
	NodeSelector        *selector.Selector
	PeerIP              string // ip or ip:port
	ASNumber            uint32
	PeerSelector        *selector.Selector
	Password            string
	KeepOriginalNextHop bool
	// MaxRestartTime is maxRestartTime: the graceful-restart time
	// announced to the peer (Peer.MaxRestartTime); whole seconds.
	MaxRestartTime  time.Duration
	EBGPMultihopTTL int
	TTLSecurity     int // ttlSecurity, hops
	// Filters names BGPFilters of Topology.BGPFilters (BGPPeer.filters),
	// applied in this order to every session the BGPPeer makes.
	Filters []string
	// SourceAddress is sourceAddress: UseNodeIP (the default, also for
	// empty) binds the sessions to the node's address, None to none (the
	// kernel picks); any other value is ErrInvalidPeer
	// (Peer.SourceAddressMode).
	SourceAddress SourceAddress
	// NumAllowedLocalASNumbers is numAllowedLocalASNumbers: how many times
	// the node's AS may appear in the AS path of a route from the peer
	// (Peer.NumAllowedLocalASNumbers); 0 to 255, 0 the default. Only
	// routes the peer sends count: another tabby speaker never sends a
	// route whose AS path holds this node's AS (see the Peer field).
	NumAllowedLocalASNumbers int
}

// Topology is the cluster-wide input to ResolvePeers.
type Topology struct {
	Nodes    []Node
	BGPPeers []BGPPeer
	// BGPFilters are the cluster's BGPFilter resources, by Name.
	BGPFilters []BGPFilter
}

// clone copies the slices and label maps of t, so a caller's later edits
// do not reach a speaker that keeps it.
func (t Topology) clone() Topology {
	out := Topology{Nodes: slices.Clone(t.Nodes), BGPPeers: slices.Clone(t.BGPPeers)}
	for i := range out.Nodes {
		out.Nodes[i].Labels = maps.Clone(out.Nodes[i].Labels)
	}
	for i := range out.BGPPeers {
		out.BGPPeers[i].Filters = slices.Clone(out.BGPPeers[i].Filters)
	}
	if t.BGPFilters != nil {
		out.BGPFilters = make([]BGPFilter, len(t.BGPFilters))
		for i, f := range t.BGPFilters {
			out.BGPFilters[i] = f.clone()
		}
	}
	return out
}

// filtersOf resolves a BGPPeer's filter names.
func (t Topology) filtersOf(bp BGPPeer, byName map[string]BGPFilter) ([]BGPFilter, error) {
	var out []BGPFilter
	for _, n := range bp.Filters {
		f, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("bgppeer %s: filter %q is not in the BGPFilter list: %w", bp.Name, n, ErrInvalidFilter)
		}
		out = append(out, f)
	}
	return out, nil
}

// validate refuses the field combinations Calico's BGPPeer validation
// refuses (libcalico-go validateBGPPeerSpec): node with nodeSelector,
// and peerIP or asNumber with peerSelector (the selected nodes' own
// addresses and AS numbers are used). ResolvePeers checks every BGPPeer,
// whether it applies to the node or not, as the API server checks each
// resource.
func (p BGPPeer) validate() error {
	switch {
	case p.Node != "" && p.NodeSelector != nil:
		return fmt.Errorf("bgppeer %s: node must be empty when nodeSelector is set: %w", p.Name, ErrInvalidPeer)
	case p.PeerIP != "" && p.PeerSelector != nil:
		return fmt.Errorf("bgppeer %s: peerIP must be empty when peerSelector is set: %w", p.Name, ErrInvalidPeer)
	case p.ASNumber != 0 && p.PeerSelector != nil:
		return fmt.Errorf("bgppeer %s: asNumber must be empty when peerSelector is set (each selected node's AS is used): %w", p.Name, ErrInvalidPeer)
	case !p.SourceAddress.valid():
		return fmt.Errorf("bgppeer %s: sourceAddress %q: want UseNodeIP or None: %w", p.Name, p.SourceAddress, ErrInvalidPeer)
	case p.NumAllowedLocalASNumbers < 0 || p.NumAllowedLocalASNumbers > maxAllowedLocalAS:
		return fmt.Errorf("bgppeer %s: numAllowedLocalASNumbers %d: want 0..%d: %w", p.Name, p.NumAllowedLocalASNumbers, maxAllowedLocalAS, ErrInvalidPeer)
	}
	return nil
}

// session is the part of every Peer bp makes that comes from bp itself,
// with filters fs (resolved from bp.Filters).
func (p BGPPeer) session(fs []BGPFilter) Peer {
	return Peer{Password: p.Password, KeepOriginalNextHop: p.KeepOriginalNextHop,
		MaxRestartTime: p.MaxRestartTime, EBGPMultihopTTL: p.EBGPMultihopTTL, TTLSecurity: p.TTLSecurity,
		SourceAddressMode: p.SourceAddress, NumAllowedLocalASNumbers: p.NumAllowedLocalASNumbers, Filters: fs}
}

func (p BGPPeer) appliesTo(n Node) bool {
	switch {
	case p.Node != "":
		return p.Node == n.Name
	case p.NodeSelector != nil:
		return p.NodeSelector.Evaluate(selector.Map(n.Labels))
	}
	return true
}

// ResolvePeers computes the sessions of node cfg.NodeName: explicit
// BGPPeers that apply to it, peers picked by PeerSelector (both ways), and,
// when the mesh is on, every other node. One session per address: an
// explicit peer wins over a selected node, which wins over the mesh.
// The result is sorted by address. Every BGPFilter of the topology is
// validated, referenced or not (as the API server validates each
// resource): one invalid filter, like any invalid BGPPeer, makes the
// whole resolution fail with ErrInvalidFilter, so a caller keeps its
// previous peers rather than applying part of a broken topology.
func ResolvePeers(cfg Config, topo Topology) ([]Peer, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	var local *Node
	for i := range topo.Nodes {
		if topo.Nodes[i].Name == cfg.NodeName {
			local = &topo.Nodes[i]
		}
	}
	if local == nil {
		return nil, fmt.Errorf("node %q is not in the node list: %w", cfg.NodeName, ErrInvalidConfig)
	}
	for _, n := range topo.Nodes {
		if n.RouteReflectorClusterID == "" {
			continue
		}
		if a, err := netip.ParseAddr(n.RouteReflectorClusterID); err != nil || !a.Is4() {
			return nil, fmt.Errorf("node %s: route reflector cluster ID %q must be an IPv4 address: %w", n.Name, n.RouteReflectorClusterID, ErrInvalidConfig)
		}
	}
	// The node's cluster ID: Config's (this node's Node.spec.bgp) wins
	// over the topology's copy of the node.
	localCID := r.RouteReflectorClusterID
	if localCID == "" {
		localCID = local.RouteReflectorClusterID
	}
	asOf := func(n Node) uint32 {
		if n.ASNumber != 0 {
			return n.ASNumber
		}
		return r.asn
	}
	filters := make(map[string]BGPFilter, len(topo.BGPFilters))
	for _, f := range topo.BGPFilters {
		if f.Name == "" {
			return nil, fmt.Errorf("a bgpfilter has no name: %w", ErrInvalidFilter)
		}
		if _, dup := filters[f.Name]; dup {
			return nil, fmt.Errorf("bgpfilter name %q used twice: %w", f.Name, ErrInvalidFilter)
		}
		if err := f.validate(); err != nil {
			return nil, err
		}
		filters[f.Name] = f
	}
	for _, bp := range topo.BGPPeers {
		if err := bp.validate(); err != nil {
			return nil, err
		}
	}
	var out []Peer
	seen := map[netip.Addr]bool{}
	add := func(p Peer) {
		if !p.Address.IsValid() || seen[p.Address] || p.Address == r.NodeIP || p.Address == r.NodeIPv6 {
			return
		}
		seen[p.Address] = true
		out = append(out, p)
	}
	for _, bp := range topo.BGPPeers {
		if bp.PeerSelector != nil || !bp.appliesTo(*local) {
			continue
		}
		if bp.PeerSelector == nil && bp.PeerIP == "" {
			return nil, fmt.Errorf("bgppeer %s: neither peerIP nor peerSelector: %w", bp.Name, ErrInvalidPeer)
		}
		addr, port, err := ParsePeerIP(bp.PeerIP)
		if err != nil {
			return nil, fmt.Errorf("bgppeer %s: %w", bp.Name, err)
		}
		fs, err := topo.filtersOf(bp, filters)
		if err != nil {
			return nil, err
		}
		p := bp.session(fs)
		p.Name, p.Address, p.Port, p.ASNumber = "bgppeer/"+bp.Name, addr, port, bp.ASNumber
		if err := p.validate(); err != nil {
			return nil, err
		}
		add(p)
	}
	nodePeers := func(n Node, name string, tmpl Peer) {
		rr := localCID != "" && localCID != n.RouteReflectorClusterID
		for _, pair := range [][2]netip.Addr{{r.NodeIP, n.IPv4}, {r.NodeIPv6, n.IPv6}} {
			if !pair[0].IsValid() || !pair[1].IsValid() {
				continue
			}
			p := tmpl
			p.Name, p.Address, p.ASNumber, p.RouteReflectorClient = name, pair[1], asOf(n), rr
			// Node-to-node sessions use the cluster's listen port and are
			// passive on the side with the higher address, so only one
			// side connects.
			if r.port > 0 && r.port != DefaultListenPort {
				p.Port = int(r.port)
			}
			p.Passive = pair[0].Compare(pair[1]) > 0
			add(p)
		}
	}
	for _, bp := range topo.BGPPeers {
		if bp.PeerSelector == nil {
			continue
		}
		fs, err := topo.filtersOf(bp, filters)
		if err != nil {
			return nil, err
		}
		tmpl := bp.session(fs)
		localSel := bp.PeerSelector.Evaluate(selector.Map(local.Labels))
		localApplies := bp.appliesTo(*local)
		for _, n := range topo.Nodes {
			if n.Name == local.Name {
				continue
			}
			if (localApplies && bp.PeerSelector.Evaluate(selector.Map(n.Labels))) || (localSel && bp.appliesTo(n)) {
				nodePeers(n, "bgppeer/"+bp.Name+"/"+n.Name, tmpl)
			}
		}
	}
	if r.mesh {
		for _, n := range topo.Nodes {
			if n.Name == local.Name {
				continue
			}
			tmpl := Peer{Password: r.NodeMeshPassword, MaxRestartTime: r.NodeMeshMaxRestartTime}
			nodePeers(n, "mesh/"+n.Name, tmpl)
		}
	}
	sortPeers(out)
	return out, validatePeers(out)
}
