package nftables

import (
	"fmt"
	"net/netip"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/services"
)

// Names of the objects in the table (kube-proxy's nftables layout).
const (
	chainServices        = "services"
	chainMarkMasq        = "mark-for-masquerade"
	chainMasquerading    = "masquerading"
	chainSvcCheck        = "service-endpoints-check"
	chainNodePortCheck   = "nodeport-endpoints-check"
	mapServiceIPs        = "service-ips"
	mapServiceNodePorts  = "service-nodeports"
	mapNoEndpointSvcs    = "no-endpoint-services"
	mapNoEndpointNPs     = "no-endpoint-nodeports"
	mapServiceEndpoints  = "service-endpoints"
	mapNodePortEndpoints = "nodeport-endpoints"
	setRejectSvcs        = "reject-services"
	setRejectNPs         = "reject-nodeports"
	setHairpin           = "hairpin"
	setClusterCIDRs      = "cluster-cidrs"
)

// element is one map or set element a service port owns.
type element struct {
	Map   string // map or set name
	Key   string // " . "-joined
	Value string // " . "-joined; "" for a set element
}

// rendered is what one service port owns in the table: its chains (with
// their rules), its affinity sets (with their timeout in seconds) and its
// map elements. Two rendered values are compared to find what changed.
type rendered struct {
	chains   map[string][]string
	order    []string // chain names, in the order they are written (targets first)
	sets     map[string]int
	elements map[element]bool
	// hairpin lists the endpoint addresses the port uses; the hairpin
	// set holds "A . A" for each, reference-counted across ports.
	hairpin []string
}

// keyOf is "ns/name/proto/port", the part of chain names that names the
// service port (nft identifiers allow letters, digits, / - _ .).
func keyOf(n services.ServicePortName) string {
	return fmt.Sprintf("%s/%s/%s/%s", n.Namespace, n.Name, strings.ToLower(string(n.Protocol)), n.Port)
}

func epName(e services.Endpoint) string {
	return strings.ReplaceAll(e.Addr.String(), ":", ".") + "/" + fmt.Sprint(e.Port)
}

func (p *Proxier) ipX() string {
	if p.cfg.Family == knftables.IPv6Family {
		return "ip6"
	}
	return "ip"
}

func (p *Proxier) inFamily(a netip.Addr) bool {
	return a.Is6() == (p.cfg.Family == knftables.IPv6Family)
}

func (p *Proxier) addrs(in []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range in {
		if p.inFamily(a) {
			out = append(out, a)
		}
	}
	return out
}

func (p *Proxier) eps(in []services.Endpoint) []services.Endpoint {
	var out []services.Endpoint
	for _, e := range in {
		if p.inFamily(e.Addr) {
			out = append(out, e)
		}
	}
	return out
}

// endpointBank is the numgen offset of the second bank of the endpoint
// maps: a service port's external chain balances over its external
// endpoints (node-local ones under externalTrafficPolicy Local) in slots
// [endpointBank, endpointBank+N), its service chain over the internal
// ones in [0, N).
const endpointBank = 1 << 16

// endpointProtocols are the protocols with endpoint maps, one pair of
// maps each (`nft` 1.0.6 cannot add a rule that reads a map whose typeof
// holds `th dport` once the map exists, so the port field names the
// protocol).
var endpointProtocols = []string{"tcp", "udp", "sctp"}

// endpointMaps returns the names of the endpoint maps of proto: keyed by
// destination address . port . slot, and by node port . slot.
func endpointMaps(proto string) (service, nodePort string) {
	return mapServiceEndpoints + "-" + proto, mapNodePortEndpoints + "-" + proto
}

// endpointMapTypeOfs are the typeofs of the endpoint maps of proto.
func (p *Proxier) endpointMapTypeOfs(proto string) (service, nodePort string) {
	ip := p.ipX()
	return fmt.Sprintf("%s daddr . %s dport . numgen random mod 1 : %s daddr . %s dport", ip, proto, ip, proto),
		fmt.Sprintf("%s dport . numgen random mod 1 : %s daddr . %s dport", proto, ip, proto)
}

// render turns one resolved service port into the objects it owns; nil
// when it has nothing in this family.
func (p *Proxier) render(r *services.Resolved) *rendered {
	if r == nil {
		return nil
	}
	sp := r.Port
	ip := p.ipX()
	clusterIPs := p.addrs(sp.ClusterIPs)
	if len(clusterIPs) == 0 {
		return nil
	}
	out := &rendered{chains: map[string][]string{}, sets: map[string]int{}, elements: map[element]bool{}}
	key := keyOf(sp.Name)
	proto := strings.ToLower(string(sp.Name.Protocol))
	svcChain, extChain := "service-"+key, "external-"+key
	internal, external := p.eps(r.Endpoints.Internal(sp)), p.eps(r.Endpoints.External(sp))
	cluster := p.eps(r.Endpoints.Cluster)
	affinity := int(sp.AffinityTimeout.Seconds())

	// No chain per endpoint: each endpoint is an element of the service's
	// endpoint map (or, with affinity, one rule of the dispatching chain).
	// Hairpin traffic (an endpoint reaching itself through the service)
	// is masqueraded in postrouting through the hairpin set instead of
	// per-endpoint rules.
	for _, e := range (services.EndpointSets{Cluster: internal, Local: external}).All() {
		out.hairpin = append(out.hairpin, e.Addr.String())
	}
	dnat := func(e services.Endpoint) string {
		if affinity > 0 {
			return fmt.Sprintf("update @affinity-%s__%s { %s saddr } meta l4proto %s dnat to %s", key, epName(e), ip, proto, e.AddrPort())
		}
		return fmt.Sprintf("meta l4proto %s dnat to %s", proto, e.AddrPort())
	}
	// dispatch balances over eps, for packets to the given addresses
	// (and node port, when not 0). Without affinity it is one rule per
	// key form, `dnat … to <destination> . numgen random mod N map
	// @service-endpoints` (or @nodeport-endpoints), and slot bank+i of
	// each destination maps to endpoint i: replacing an endpoint is only
	// element changes in the shared maps (a rule or chain change, or a
	// per-service named map, would make the kernel walk the whole table
	// or all its sets). A change of N rewrites the rule. With no
	// endpoints there is no rule: the packet is not DNATed and the
	// endpoints-check chains reject or drop it.
	dispatch := func(eps []services.Endpoint, bank int, addrs []netip.Addr, nodePort uint16, prefix string) []string {
		if affinity == 0 {
			if len(eps) == 0 {
				return nil
			}
			offset := ""
			if bank > 0 {
				offset = fmt.Sprintf(" offset %d", bank)
			}
			svcMap, npMap := endpointMaps(proto)
			var rules []string
			if len(addrs) > 0 {
				rules = append(rules, fmt.Sprintf("%smeta l4proto %s dnat %s addr . port to %s daddr . %s dport . numgen random mod %d%s map @%s",
					prefix, proto, ip, ip, proto, len(eps), offset, svcMap))
			}
			if nodePort != 0 {
				rules = append(rules, fmt.Sprintf("%smeta l4proto %s dnat %s addr . port to %s dport . numgen random mod %d%s map @%s",
					prefix, proto, ip, proto, len(eps), offset, npMap))
			}
			for i, e := range eps {
				v := fmt.Sprintf("%s . %d", e.Addr, e.Port)
				for _, a := range addrs {
					out.elements[element{svcMap, fmt.Sprintf("%s . %d . %d", a, sp.Port, bank+i), v}] = true
				}
				if nodePort != 0 {
					out.elements[element{npMap, fmt.Sprintf("%d . %d", nodePort, bank+i), v}] = true
				}
			}
			return rules
		}
		if prefix != "" {
			// With affinity the short-circuits go to the service chain,
			// as kube-proxy does.
			return []string{prefix + "goto " + svcChain}
		}
		var rules []string
		for _, e := range eps {
			set := "affinity-" + key + "__" + epName(e)
			out.sets[set] = affinity
			rules = append(rules, fmt.Sprintf("%s saddr @%s %s", ip, set, dnat(e)))
		}
		// Random balancing without a per-service anonymous map: rule i
		// matches with probability 1/(N-i), so each of the N endpoints
		// gets 1/N (the iptables statistic scheme).
		for i, e := range eps {
			if i == len(eps)-1 {
				rules = append(rules, dnat(e))
			} else {
				rules = append(rules, fmt.Sprintf("numgen random mod %d == 0 %s", len(eps)-i, dnat(e)))
			}
		}
		return rules
	}
	// noEndpoints records key (of the address or node port) as having no
	// usable endpoint: rejected when the service has none at all,
	// dropped when it has endpoints but none local under a Local policy
	// (as kube-proxy does).
	noEndpoints := func(dropMap, rejectSet, k string, hasAny bool) {
		if hasAny {
			out.elements[element{dropMap, k, "drop"}] = true
		} else {
			out.elements[element{Map: rejectSet, Key: k}] = true
		}
	}

	// Internal traffic: cluster IPs. The chain and the service-ips
	// elements exist whatever the endpoints.
	var rules []string
	if len(p.clusterCIDRs()) > 0 {
		for _, cip := range clusterIPs {
			rules = append(rules, fmt.Sprintf("%s daddr %s %s dport %d %s saddr != @%s jump %s", ip, cip, proto, sp.Port, ip, setClusterCIDRs, chainMarkMasq))
		}
	}
	out.chains[svcChain] = append(rules, dispatch(internal, 0, clusterIPs, 0, "")...)
	out.order = append(out.order, svcChain)
	for _, cip := range clusterIPs {
		k := fmt.Sprintf("%s . %s . %d", cip, proto, sp.Port)
		out.elements[element{mapServiceIPs, k, "goto " + svcChain}] = true
		if len(internal) == 0 {
			noEndpoints(mapNoEndpointSvcs, setRejectSvcs, k, len(cluster) > 0)
		}
	}

	// External traffic: node ports, external IPs, load-balancer IPs.
	if !sp.ExternallyAccessible() {
		return out
	}
	rules = nil
	extAddrs := append(p.addrs(sp.ExternalIPs), p.addrs(sp.LoadBalancerIPs)...)
	if sp.ExternalPolicyLocal {
		// Traffic from the node itself or from pods short-circuits to
		// the cluster-wide set (kube-proxy does the same), masqueraded
		// when it comes from the node.
		rules = append(rules, "fib saddr type local jump "+chainMarkMasq)
		// (Only when the service balances over the cluster set, that is
		// internalTrafficPolicy Cluster.)
		if !sp.InternalPolicyLocal {
			rules = append(rules, dispatch(internal, 0, extAddrs, sp.NodePort, "fib saddr type local ")...)
			if len(p.clusterCIDRs()) > 0 {
				rules = append(rules, dispatch(internal, 0, extAddrs, sp.NodePort, fmt.Sprintf("%s saddr @%s ", ip, setClusterCIDRs))...)
			}
		}
	} else {
		rules = append(rules, "jump "+chainMarkMasq)
	}
	rules = append(rules, dispatch(external, endpointBank, extAddrs, sp.NodePort, "")...)
	out.chains[extChain] = rules
	out.order = append(out.order, extChain)
	ext := func(m, nm, rs, k string) {
		out.elements[element{m, k, "goto " + extChain}] = true
		if len(external) == 0 {
			noEndpoints(nm, rs, k, len(cluster) > 0)
		}
	}
	for _, a := range extAddrs {
		ext(mapServiceIPs, mapNoEndpointSvcs, setRejectSvcs, fmt.Sprintf("%s . %s . %d", a, proto, sp.Port))
	}
	if sp.NodePort != 0 {
		ext(mapServiceNodePorts, mapNoEndpointNPs, setRejectNPs, fmt.Sprintf("%s . %d", proto, sp.NodePort))
	}
	return out
}

func (p *Proxier) clusterCIDRs() []string {
	var out []string
	for _, c := range p.cfg.ClusterCIDRs {
		if p.inFamily(c.Addr()) {
			out = append(out, c.Masked().String())
		}
	}
	return out
}
