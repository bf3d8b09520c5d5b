package services

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
)

// Protocol is a service port's L4 protocol: TCP, UDP or SCTP
// (core/v1 Protocol).
type Protocol = v1.Protocol

// ServicePortName names one port of one Service, as kube-proxy's
// proxy.ServicePortName does: the Service's namespace and name, the port's
// name ("" for an unnamed single port) and its protocol.
type ServicePortName struct {
	Namespace string
	Name      string
	Port      string
	Protocol  Protocol
}

// String is "namespace/name:port/protocol", for logs.
func (n ServicePortName) String() string {
	return fmt.Sprintf("%s/%s:%s/%s", n.Namespace, n.Name, n.Port, n.Protocol)
}

// SortedNames returns m's keys ordered by their String form, formatting
// each name once: the deterministic order backends write rules in.
func SortedNames[V any](m map[ServicePortName]V) []ServicePortName {
	type keyed struct {
		s string
		n ServicePortName
	}
	ks := make([]keyed, 0, len(m))
	for n := range m {
		ks = append(ks, keyed{n.String(), n})
	}
	slices.SortFunc(ks, func(a, b keyed) int { return strings.Compare(a.s, b.s) })
	out := make([]ServicePortName, len(ks))
	for i, k := range ks {
		out[i] = k.n
	}
	return out
}

// ServicePort is one port of a proxied Service, with everything the
// backends need. Addresses of both families are kept; a backend renders
// only the family it serves.
type ServicePort struct {
	Name ServicePortName
	// ClusterIPs are spec.clusterIPs (one per family, dual stack).
	ClusterIPs []netip.Addr
	// Port is spec.ports[].port.
	Port uint16
	// NodePort is spec.ports[].nodePort, 0 when the Service has none
	// (ClusterIP type, or LoadBalancer with allocateLoadBalancerNodePorts false).
	NodePort uint16
	// ExternalIPs are spec.externalIPs.
	ExternalIPs []netip.Addr
	// LoadBalancerIPs are status.loadBalancer.ingress[].ip (type
	// LoadBalancer only) whose ipMode is VIP or unset; an ingress with
	// ipMode Proxy is left out, as kube-proxy does (KEP-1860: such a load
	// balancer sends traffic to the node's or pod's address, so the
	// ingress IP must not be captured on the node).
	LoadBalancerIPs []netip.Addr
	// LoadBalancerSourceRanges are spec.loadBalancerSourceRanges (type
	// LoadBalancer only), each trimmed of surrounding whitespace and
	// masked to its network (10.0.0.5/24 is 10.0.0.0/24), in spec order,
	// both families; nil when the field is empty. Semantics are
	// kube-proxy's: when a backend's family has at least one range and
	// one load-balancer IP, a new connection to a load-balancer IP (not
	// the cluster IP, node port or external IPs) from a source outside
	// every range of that family is dropped, one inside goes on to the
	// usual external handling. Ranges of the other family are ignored by
	// that backend, so a family without ranges is not filtered. Backends
	// also let through a source equal to a load-balancer IP when a range
	// holds the node's address (see their Config.NodeIPs). An entry that
	// is not a CIDR once trimmed (also an empty one, an IPv4 address with
	// leading zeros such as 010.0.0.0/8, an IPv4-mapped IPv6 prefix or one
	// with a zone) makes the whole Service invalid (ErrInvalidService:
	// skipped with its cluster IP and node ports, even before it has a
	// load-balancer IP), where kube-proxy would drop the entry: dropping
	// one can only widen who gets in.
	LoadBalancerSourceRanges []netip.Prefix
	// AffinityTimeout is sessionAffinityConfig.clientIP.timeoutSeconds when
	// sessionAffinity is ClientIP (default 10800 s), 0 without affinity.
	AffinityTimeout time.Duration
	// ExternalPolicyLocal is externalTrafficPolicy: Local (NodePort and
	// LoadBalancer types, or a Service with externalIPs).
	ExternalPolicyLocal bool
	// InternalPolicyLocal is internalTrafficPolicy: Local.
	InternalPolicyLocal bool
	// HealthCheckNodePort is spec.healthCheckNodePort (ExternalPolicyLocal only).
	HealthCheckNodePort uint16
}

// ExternallyAccessible reports whether the port is reachable from outside
// the cluster network (NodePort, external IPs or load-balancer IPs), so
// externalTrafficPolicy applies.
func (p *ServicePort) ExternallyAccessible() bool {
	return p.NodePort != 0 || len(p.ExternalIPs) > 0 || len(p.LoadBalancerIPs) > 0
}

// FirewallSources returns the sources a backend of one family (ipv6)
// lets reach the port's load-balancer IPs, as kube-proxy computes them
// for its KUBE-FW- chains and firewall sets: the source ranges of that
// family, then, when one of them contains one of nodeIPs (kube-proxy's
// node IP, "allowFromNode"), each load-balancer IP of that family as a
// host prefix: a VIP-style load balancer's address is often also
// routed to the node, so the node's own connections to it arrive with
// that address as source. nodeIPs in IPv4-mapped IPv6 form
// (::ffff:a.b.c.d, what netip.AddrFromSlice makes of a net.IP) count as
// IPv4, as net.IP treats them. nil when the family is not filtered (no
// source range or no load-balancer IP of it).
func (p *ServicePort) FirewallSources(ipv6 bool, nodeIPs []netip.Addr) []netip.Prefix {
	var lbIPs []netip.Addr
	for _, a := range p.LoadBalancerIPs {
		if a.Is6() == ipv6 {
			lbIPs = append(lbIPs, a)
		}
	}
	if len(lbIPs) == 0 {
		return nil
	}
	var out []netip.Prefix
	fromNode := false
	for _, r := range p.LoadBalancerSourceRanges {
		if r.Addr().Is6() != ipv6 {
			continue
		}
		out = append(out, r)
		fromNode = fromNode || slices.ContainsFunc(nodeIPs, func(n netip.Addr) bool { return r.Contains(n.Unmap()) })
	}
	if fromNode {
		for _, a := range lbIPs {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// Endpoint is one address:port serving a ServicePort, from an
// EndpointSlice endpoint and the slice port matching the service port's
// name and protocol.
type Endpoint struct {
	Addr netip.Addr
	Port uint16
	// NodeName is endpoints[].nodeName; Local is NodeName == the node
	// the model was built for.
	NodeName string
	Local    bool
	// Conditions (endpoints[].conditions), with the EndpointSlice API
	// defaults for unset fields: ready and serving default to true,
	// terminating to false.
	Ready, Serving, Terminating bool
	// Hints is what endpoints[].hints says about the node the model
	// was built for (topology-aware routing; see Categorize).
	Hints Hints
}

// Hints is an endpoint's topology hints (discovery/v1 EndpointHints,
// set by the EndpointSlice controller for topology-aware routing and
// spec.trafficDistribution PreferSameZone/PreferClose and
// PreferSameNode) as seen from one node: whether there are hints and
// whether they name this node's zone (TrackerConfig.Zone) or the node
// itself (TrackerConfig.NodeName).
type Hints struct {
	// HasZoneHints: hints.forZones is not empty; ForZone: one of them is
	// the node's zone (false when the zone is not configured).
	HasZoneHints, ForZone bool
	// HasNodeHints: hints.forNodes is not empty; ForNode: one of them is
	// the node (false when the node name is not configured).
	HasNodeHints, ForNode bool
}

// AddrPort is the endpoint's address and port.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.Addr, e.Port) }

// String is "addr:port".
func (e Endpoint) String() string { return e.AddrPort().String() }

// EndpointSets are the endpoints a backend balances over, computed as
// kube-proxy's CategorizeEndpoints does for one ServicePort.
type EndpointSets struct {
	// Cluster is for traffic policy Cluster: all ready endpoints (only
	// those topology hints select for this node or zone when the hints
	// apply, see Categorize), or when none is ready, the serving
	// terminating ones.
	Cluster []Endpoint
	// Local is for traffic policy Local: the ready node-local endpoints,
	// or when none is ready, the serving terminating node-local ones.
	Local []Endpoint
	// Serving is every endpoint that is ready or serving (terminating
	// ones included), whatever the traffic policies and topology hints,
	// sorted: the endpoints existing flows may keep using, as
	// kube-proxy's conntrack cleanup keeps them (StaleFlows). Backends
	// balance over Cluster and Local only.
	Serving []Endpoint
}

// Internal is the set internal traffic (cluster IPs) goes to.
func (s EndpointSets) Internal(p *ServicePort) []Endpoint {
	if p.InternalPolicyLocal {
		return s.Local
	}
	return s.Cluster
}

// External is the set external traffic (node ports, external and
// load-balancer IPs) goes to.
func (s EndpointSets) External(p *ServicePort) []Endpoint {
	if p.ExternalPolicyLocal {
		return s.Local
	}
	return s.Cluster
}

// All is every endpoint Cluster or Local uses, sorted, without
// duplicates (the endpoint chains a backend keeps; Serving is not
// included).
func (s EndpointSets) All() []Endpoint {
	all := append(slices.Clone(s.Cluster), s.Local...)
	slices.SortFunc(all, compareEndpoints)
	return slices.CompactFunc(all, func(a, b Endpoint) bool { return a.AddrPort() == b.AddrPort() })
}

func compareEndpoints(a, b Endpoint) int { return a.AddrPort().Compare(b.AddrPort()) }

// Categorize splits endpoints into the Cluster and Local sets as
// kube-proxy's CategorizeEndpoints does: ready endpoints are used; only
// when none is ready are serving terminating endpoints used (kube-proxy's
// terminating fallback, KEP-1669), separately for each set.
//
// Topology-aware routing applies to the ready endpoints of the Cluster
// set, per address family (kube-proxy runs one proxier per family):
// when every ready endpoint of the family has node hints and one is
// hinted for this node (Hints.ForNode), only those hinted for the node
// are used (trafficDistribution PreferSameNode); otherwise, when every
// one has zone hints and one is hinted for this node's zone, only those
// hinted for the zone (topology-aware routing, trafficDistribution
// PreferSameZone/PreferClose). Otherwise the hints are ignored and every
// ready endpoint of the family is used, for each kind of hint when some
// ready endpoint of the family has none of that kind (partial hints: one
// endpoint without forZones makes the others' zone hints count for
// nothing), when none names this node or zone, or when
// TrackerConfig.NodeName or Zone is empty. kube-proxy logs that it ignores
// the hints there; Categorize does not log, the Tracker does (once per
// service port and family each time the reason changes, see Tracker). Hints of endpoints that are
// not ready do not count. The terminating fallback and the Local set
// ignore hints. Results are sorted by address and port.
func Categorize(eps []Endpoint) EndpointSets {
	topo4, topo6 := topology(eps, false), topology(eps, true)
	inTopology := func(e Endpoint) bool {
		if e.Addr.Is6() {
			return topo6(e)
		}
		return topo4(e)
	}
	pick := func(local bool, topo func(Endpoint) bool) []Endpoint {
		var ready, term []Endpoint
		for _, e := range eps {
			if local && !e.Local {
				continue
			}
			if e.Ready {
				if topo(e) {
					ready = append(ready, e)
				}
			} else if e.Serving && e.Terminating {
				term = append(term, e)
			}
		}
		out := ready
		if len(out) == 0 {
			out = term
		}
		slices.SortFunc(out, compareEndpoints)
		return out
	}
	var serving []Endpoint
	for _, e := range eps {
		if e.Ready || e.Serving {
			serving = append(serving, e)
		}
	}
	slices.SortFunc(serving, compareEndpoints)
	return EndpointSets{
		Cluster: pick(false, inTopology),
		Local:   pick(true, func(Endpoint) bool { return true }),
		Serving: serving,
	}
}

// topologyScan is what topology-aware routing weighs in the ready
// endpoints of one family (kube-proxy's topologyModeFromHints): whether
// there is one, whether every one / some one has node (zone) hints, and
// whether one is hinted for this node (zone).
type topologyScan struct {
	ready                     bool
	allNode, anyNode, forNode bool
	allZone, anyZone, forZone bool
}

func scanTopology(eps []Endpoint, ipv6 bool) topologyScan {
	s := topologyScan{allNode: true, allZone: true}
	for _, e := range eps {
		if !e.Ready || e.Addr.Is6() != ipv6 {
			continue
		}
		h := e.Hints
		s.ready = true
		s.allNode, s.anyNode, s.forNode = s.allNode && h.HasNodeHints, s.anyNode || h.HasNodeHints, s.forNode || h.HasNodeHints && h.ForNode
		s.allZone, s.anyZone, s.forZone = s.allZone && h.HasZoneHints, s.anyZone || h.HasZoneHints, s.forZone || h.HasZoneHints && h.ForZone
	}
	return s
}

func (s topologyScan) byNode() bool { return s.ready && s.allNode && s.forNode }
func (s topologyScan) byZone() bool { return s.ready && s.allZone && s.forZone }

// topology returns the filter topology-aware routing puts on the ready
// endpoints of one family (ipv6) for the Cluster set (kube-proxy's
// topologyModeFromHints and availableForTopology): by node hints, by
// zone hints, or none. A mode is used only when it keeps at least one
// ready endpoint.
func topology(eps []Endpoint, ipv6 bool) func(Endpoint) bool {
	switch s := scanTopology(eps, ipv6); {
	case s.byNode():
		return func(e Endpoint) bool { return e.Hints.ForNode }
	case s.byZone():
		return func(e Endpoint) bool { return e.Hints.ForZone }
	}
	return func(Endpoint) bool { return true }
}

// Why topologyIgnored ignores hints, in kube-proxy's terms.
const (
	reasonNodeHintMissing = "one or more ready endpoints is missing a node hint"
	reasonNoNodeHint      = "no ready endpoint is hinted for this node"
	reasonZoneHintMissing = "one or more ready endpoints is missing a zone hint"
	reasonNoZone          = "the node has no zone (TrackerConfig.Zone is empty)"
	reasonNoZoneHint      = "no ready endpoint is hinted for this node's zone"
)

// topologyIgnored says why Categorize ignores the topology hints some
// ready endpoint of one family (ipv6) has, and so uses every ready
// endpoint of the family: kube-proxy's reasons (topologyModeFromHints
// logs them), one per kind of hint present, node hints first, joined by
// "; ". It is "" when the hints are used, or when no ready endpoint of
// the family has any (nothing is ignored). zone is TrackerConfig.Zone.
func topologyIgnored(eps []Endpoint, ipv6 bool, zone string) string {
	s := scanTopology(eps, ipv6)
	if s.byNode() || s.byZone() || !s.anyNode && !s.anyZone {
		return ""
	}
	var why []string
	switch {
	case !s.anyNode:
	case !s.allNode:
		why = append(why, reasonNodeHintMissing)
	default:
		why = append(why, reasonNoNodeHint)
	}
	switch {
	case !s.anyZone:
	case !s.allZone:
		why = append(why, reasonZoneHintMissing)
	case zone == "":
		why = append(why, reasonNoZone)
	default:
		why = append(why, reasonNoZoneHint)
	}
	return strings.Join(why, "; ")
}
