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
	chainServices       = "services"
	chainMarkMasq       = "mark-for-masquerade"
	chainMasquerading   = "masquerading"
	chainSvcCheck       = "service-endpoints-check"
	chainNodePortCheck  = "nodeport-endpoints-check"
	mapServiceIPs       = "service-ips"
	mapServiceNodePorts = "service-nodeports"
	mapNoEndpointSvcs   = "no-endpoint-services"
	mapNoEndpointNPs    = "no-endpoint-nodeports"
	setRejectSvcs       = "reject-services"
	setRejectNPs        = "reject-nodeports"
	setHairpin          = "hairpin"
	setClusterCIDRs     = "cluster-cidrs"
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
	// epMap is the port's endpoint map ("" with ClientIP affinity, which
	// keeps a rule per endpoint).
	epMap string
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

// endpointSlots is the numgen modulus of endpoint selection through an
// endpoint map: 720720 = lcm(1..16), so N endpoints get exactly 1/N each
// for every N up to 16 (and for all divisors of 720720, which include
// 18, 20, 24, 30, 36, 40, ...); for other N the shares differ by at
// most 1/720720.
const endpointSlots = 720720

// endpointMapTypeOf is the typeof of the endpoint maps: a numgen value
// (an integer, in network byte order) mapped to address . port.
func (p *Proxier) endpointMapTypeOf() string {
	return "numgen random mod 1 : " + p.ipX() + " daddr . th dport"
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
	if affinity == 0 {
		out.epMap = "endpoints-" + key
	}

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
	// dispatch balances over eps. Without affinity it is one rule whatever
	// the endpoints: numgen picks a slot in [bank, bank+endpointSlots) and
	// the endpoint map sends the slot's range to its endpoint, so an
	// endpoint change is only element changes in the map (a rule or
	// chain change would make the kernel re-validate the whole table). An
	// empty bank matches nothing, so the packet is not DNATed and the
	// endpoints-check chains reject or drop it.
	dispatch := func(eps []services.Endpoint, bank int) []string {
		if affinity == 0 {
			for i, e := range eps {
				lo, hi := bank+i*endpointSlots/len(eps), bank+(i+1)*endpointSlots/len(eps)-1
				out.elements[element{out.epMap, fmt.Sprintf("%d-%d", lo, hi), fmt.Sprintf("%s . %d", e.Addr, e.Port)}] = true
			}
			offset := ""
			if bank > 0 {
				offset = fmt.Sprintf(" offset %d", bank)
			}
			return []string{fmt.Sprintf("meta l4proto %s dnat %s addr . port to numgen random mod %d%s map @%s", proto, ip, endpointSlots, offset, out.epMap)}
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
	out.chains[svcChain] = append(rules, dispatch(internal, 0)...)
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
	if sp.ExternalPolicyLocal {
		// Traffic from the node itself or from pods short-circuits to
		// the cluster-wide set (kube-proxy does the same), masqueraded
		// when it comes from the node.
		rules = append(rules, "fib saddr type local jump "+chainMarkMasq)
		// (Only when the service chain balances over the cluster set,
		// that is internalTrafficPolicy Cluster.)
		if !sp.InternalPolicyLocal {
			rules = append(rules, "fib saddr type local goto "+svcChain)
			if len(p.clusterCIDRs()) > 0 {
				rules = append(rules, fmt.Sprintf("%s saddr @%s goto %s", ip, setClusterCIDRs, svcChain))
			}
		}
		rules = append(rules, dispatch(external, endpointSlots)...)
	} else {
		rules = append(rules, "jump "+chainMarkMasq)
		if sp.InternalPolicyLocal {
			rules = append(rules, dispatch(external, endpointSlots)...)
		} else {
			rules = append(rules, "goto "+svcChain)
		}
	}
	out.chains[extChain] = rules
	out.order = append(out.order, extChain)
	ext := func(m, nm, rs, k string) {
		out.elements[element{m, k, "goto " + extChain}] = true
		if len(external) == 0 {
			noEndpoints(nm, rs, k, len(cluster) > 0)
		}
	}
	for _, a := range append(p.addrs(sp.ExternalIPs), p.addrs(sp.LoadBalancerIPs)...) {
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
