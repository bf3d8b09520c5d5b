package nftables

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
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
	chainFirewallCheck   = "firewall-check"
	chainClusterIPsCheck = "cluster-ips-check"
	setClusterIPs        = "cluster-ips"
	setServiceCIDRs      = "service-cidrs"
	mapFirewallIPs       = "firewall-ips"
)

// element is one map or set element a service port owns.
type element struct {
	Map   string // map or set name
	Key   string // " . "-joined
	Value string // " . "-joined; "" for a set element
}

// rendered is what one service port owns in the table: its chains (with
// their rules), its sets (affinity sets with their timeout in seconds;
// 0 for its firewall's interval set of allowed sources) and its map
// and set elements. Two rendered values are compared to find what changed.
type rendered struct {
	chains   map[string][]string
	order    []string // chain names, in the order they are written (targets first)
	sets     map[string]int
	elements map[element]bool
	// hairpin lists the endpoint addresses the port uses; the hairpin
	// set holds "A . A" for each, reference-counted across ports.
	hairpin []string
	// clusterIPs lists the port's cluster IPs; the cluster-ips set holds
	// each, reference-counted across ports.
	clusterIPs []string
	// ks lists the endpoint counts the port uses in dispatch chains.
	ks []dispatchKey
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
	if !slices.ContainsFunc(in, func(e services.Endpoint) bool { return !p.inFamily(e.Addr) }) {
		return in // (not modified by the caller)
	}
	var out []services.Endpoint
	for _, e := range in {
		if p.inFamily(e.Addr) {
			out = append(out, e)
		}
	}
	return out
}

// externalBank is the first slot of the external bank of the endpoint
// maps: external chains balance over a service port's external
// endpoints (node-local ones under externalTrafficPolicy Local) in
// [externalBank, 2^32), service chains over its internal ones in
// [0, externalBank).
const externalBank = 1 << 31

// maxEndpoints bounds the endpoints one service port balances over
// (slotBase(maxEndpoints)+maxEndpoints stays below externalBank).
const maxEndpoints = 65535

// slotBase is the first slot of a port with n endpoints in a bank: the
// ranges [slotBase(n), slotBase(n)+n) of different n do not overlap, so
// the dispatch rule for n (`numgen random mod n offset slotBase(n)`)
// only finds the elements of ports with n endpoints.
func slotBase(n int) int { return n * (n - 1) / 2 }

// dispatchChain names the shared chain that balances ports of protocol
// c.proto over their endpoints in bank c.bank.
func (p *Proxier) dispatchChain(c dispatchChainKey) string {
	if c.bank == externalBank {
		return "external-endpoints-" + c.proto
	}
	return "endpoints-" + c.proto
}

// dispatchRules are the rules of dispatch chain c for the endpoint
// counts ns in use: for each n, a rule looking the destination address .
// port . slot up in the protocol's service endpoint map, then (node
// ports, after every address rule, so an address match wins as in the
// services chain) the port . slot in its node-port endpoint map. A
// lookup that finds nothing does not match; at the end of the chain the
// packet leaves without DNAT and the endpoints-check chains reject or
// drop it.
func (p *Proxier) dispatchRules(c dispatchChainKey, ns []int) []string {
	ip := p.ipX()
	svcMap, npMap := endpointMaps(c.proto)
	var addr, np []string
	for _, n := range ns {
		offset := ""
		if o := c.bank + slotBase(n); o > 0 {
			offset = fmt.Sprintf(" offset %d", o)
		}
		addr = append(addr, fmt.Sprintf("meta l4proto %s dnat %s addr . port to %s daddr . %s dport . numgen random mod %d%s map @%s",
			c.proto, ip, ip, c.proto, n, offset, svcMap))
		np = append(np, fmt.Sprintf("fib daddr type local meta l4proto %s dnat %s addr . port to %s dport . numgen random mod %d%s map @%s",
			c.proto, ip, c.proto, n, offset, npMap))
	}
	return append(addr, np...)
}

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
	key := keyOf(sp.Name)
	proto := strings.ToLower(string(sp.Name.Protocol))
	svcChain, extChain := "service-"+key, "external-"+key
	internal, external := p.eps(r.Endpoints.Internal(sp)), p.eps(r.Endpoints.External(sp))
	cluster := p.eps(r.Endpoints.Cluster)
	affinity := int(sp.AffinityTimeout.Seconds())
	// At most: per cluster IP an endpoint-map element per internal
	// endpoint, a service-ips element and a no-endpoint one; per
	// external address and the node port, elements per cluster-wide and
	// external endpoint and two more.
	size := len(clusterIPs) * (len(internal) + 2)
	if sp.ExternallyAccessible() {
		size += (len(sp.ExternalIPs) + len(sp.LoadBalancerIPs) + 1) * (len(cluster) + len(external) + 2)
	}
	out := &rendered{chains: make(map[string][]string, 2), sets: map[string]int{}, elements: make(map[element]bool, size)}
	var buf []byte

	// No chain per endpoint: each endpoint is an element of the service's
	// endpoint map (or, with affinity, one rule of the dispatching chain).
	// Hairpin traffic (an endpoint reaching itself through the service)
	// is masqueraded in postrouting through the hairpin set instead of
	// per-endpoint rules.
	used := services.EndpointSets{Cluster: internal, Local: external}
	if shortCircuits(sp) {
		// (Local is then external, and internal one of the two.)
		used.Cluster = cluster
	}
	for _, e := range used.All() {
		out.hairpin = append(out.hairpin, e.Addr.String())
	}
	dnat := func(e services.Endpoint) string {
		if affinity > 0 {
			return fmt.Sprintf("update @affinity-%s__%s { %s saddr } meta l4proto %s dnat to %s", key, epName(e), ip, proto, e.AddrPort())
		}
		return fmt.Sprintf("meta l4proto %s dnat to %s", proto, e.AddrPort())
	}
	// slots adds the endpoint-map elements that send slot
	// bank+slotBase(N)+i of each destination (addrs . port, and the node
	// port when not 0) to endpoint i, and counts N as in use in the
	// bank's dispatch chain. Replacing an endpoint, or changing N to a
	// count some port already has, is then only element changes (a rule
	// or chain change, or a per-service named map, would make the kernel
	// walk the whole table, all its sets, or every rule bound to a map).
	slots := func(eps []services.Endpoint, bank int, addrs []netip.Addr, nodePort uint16) {
		if len(eps) > maxEndpoints {
			eps = eps[:maxEndpoints]
		}
		if len(eps) == 0 {
			return
		}
		out.ks = append(out.ks, dispatchKey{dispatchChainKey{proto, bank}, len(eps)})
		svcMap, npMap := endpointMaps(proto)
		base := bank + slotBase(len(eps))
		for i, e := range eps {
			// (Keys built by appending: a full sync makes one per
			// endpoint and address, and fmt costs more than the rest.)
			buf = appendJoined(buf[:0], e.Addr, uint64(e.Port))
			v := string(buf)
			for _, a := range addrs {
				buf = appendJoined(buf[:0], a, uint64(sp.Port), uint64(base+i))
				out.elements[element{svcMap, string(buf), v}] = true
			}
			if nodePort != 0 {
				buf = appendJoined(buf[:0], netip.Addr{}, uint64(nodePort), uint64(base+i))
				out.elements[element{npMap, string(buf), v}] = true
			}
		}
	}
	internalDispatch := "goto " + p.dispatchChain(dispatchChainKey{proto, 0})
	externalDispatch := "goto " + p.dispatchChain(dispatchChainKey{proto, externalBank})
	// affinityRules balance over eps with ClientIP affinity: a rule per
	// endpoint.
	affinityRules := func(eps []services.Endpoint) []string {
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
	if affinity > 0 {
		rules = append(rules, affinityRules(internal)...)
	} else {
		rules = append(rules, internalDispatch)
		slots(internal, 0, clusterIPs, 0)
	}
	out.chains[svcChain] = rules
	out.order = append(out.order, svcChain)
	for _, cip := range clusterIPs {
		out.clusterIPs = append(out.clusterIPs, cip.String())
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
		// the cluster-wide set whatever internalTrafficPolicy says
		// (kube-proxy: a port that is externally accessible always uses
		// its Cluster endpoints), masqueraded when it comes from the
		// node. Without affinity the cluster-wide endpoints are slots of
		// the internal bank under the external addresses and node port;
		// with affinity, the service chain when it balances over them
		// (internalTrafficPolicy Cluster), else a cluster chain of its
		// own.
		shortCircuit := internalDispatch
		switch {
		case affinity == 0:
			slots(cluster, 0, extAddrs, sp.NodePort)
		case !sp.InternalPolicyLocal:
			shortCircuit = "goto " + svcChain
		default:
			clChain := "cluster-" + key
			out.chains[clChain] = affinityRules(cluster)
			out.order = append(out.order, clChain)
			shortCircuit = "goto " + clChain
		}
		rules = append(rules, "fib saddr type local jump "+chainMarkMasq, "fib saddr type local "+shortCircuit)
		if len(p.clusterCIDRs()) > 0 {
			rules = append(rules, fmt.Sprintf("%s saddr @%s %s", ip, setClusterCIDRs, shortCircuit))
		}
	} else {
		rules = append(rules, "jump "+chainMarkMasq)
	}
	switch {
	case affinity == 0:
		rules = append(rules, externalDispatch)
		slots(external, externalBank, extAddrs, sp.NodePort)
	case sp.ExternalPolicyLocal || sp.InternalPolicyLocal:
		rules = append(rules, affinityRules(external)...)
	default:
		rules = append(rules, "goto "+svcChain)
	}
	out.chains[extChain] = rules
	out.order = append(out.order, extChain)
	// loadBalancerSourceRanges (kube-proxy's firewall-ips map and
	// firewall chains): a new connection to a load-balancer IP . proto .
	// port goes, before DNAT, to the port's firewall chain, which drops
	// sources outside its set. Whatever the endpoints, as kube-proxy's
	// nftables mode (without any, allowed sources then meet the reject).
	if sources := sp.FirewallSources(p.cfg.Family == knftables.IPv6Family, p.cfg.NodeIPs); len(sources) > 0 {
		fwChain, fwSet := "firewall-"+key, "firewall-sources-"+key
		out.sets[fwSet] = 0
		for _, s := range outermost(sources) {
			out.elements[element{Map: fwSet, Key: s.String()}] = true
		}
		out.chains[fwChain] = []string{fmt.Sprintf("%s saddr != @%s drop", ip, fwSet)}
		out.order = append(out.order, fwChain)
		for _, a := range p.addrs(sp.LoadBalancerIPs) {
			out.elements[element{mapFirewallIPs, fmt.Sprintf("%s . %s . %d", a, proto, sp.Port), "goto " + fwChain}] = true
		}
	}
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

// shortCircuits reports whether sp's external chain sends traffic from
// the node and from pods to its cluster-wide endpoints
// (externalTrafficPolicy Local on an externally accessible port).
func shortCircuits(sp *services.ServicePort) bool {
	return sp.ExternalPolicyLocal && sp.ExternallyAccessible()
}

// outermost returns the prefixes of ps not inside another one (an
// interval set refuses overlapping elements), sorted.
func outermost(ps []netip.Prefix) []netip.Prefix {
	sorted := slices.Clone(ps)
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		if a.Bits() != b.Bits() {
			return a.Bits() - b.Bits()
		}
		return a.Addr().Compare(b.Addr())
	})
	var out []netip.Prefix
	for _, p := range sorted {
		if !slices.ContainsFunc(out, func(q netip.Prefix) bool { return q.Contains(p.Addr()) }) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}

// appendJoined appends " . "-joined key fields: the address a (unless
// it is the zero Addr), then the numbers ns in decimal.
func appendJoined(b []byte, a netip.Addr, ns ...uint64) []byte {
	sep := false
	if a.IsValid() {
		b, sep = a.AppendTo(b), true
	}
	for _, n := range ns {
		if sep {
			b = append(b, " . "...)
		}
		b, sep = strconv.AppendUint(b, n, 10), true
	}
	return b
}

func (p *Proxier) clusterCIDRs() []string {
	var out []string
	for _, c := range p.familyPrefixes(p.cfg.ClusterCIDRs) {
		out = append(out, c.String())
	}
	return out
}

// familyPrefixes returns those of cidrs in the Proxier's family, masked,
// in their order.
func (p *Proxier) familyPrefixes(cidrs []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range cidrs {
		if p.inFamily(c.Addr()) {
			out = append(out, c.Masked())
		}
	}
	return out
}

// isEndpointMap reports whether name is one of the endpoint dispatch maps
// (service-endpoints-<proto>, nodeport-endpoints-<proto>).
func isEndpointMap(name string) bool {
	return strings.HasPrefix(name, mapServiceEndpoints+"-") || strings.HasPrefix(name, mapNodePortEndpoints+"-")
}
