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
	chainReject         = "reject-chain"
	mapServiceIPs       = "service-ips"
	mapServiceNodePorts = "service-nodeports"
	mapNoEndpointSvcs   = "no-endpoint-services"
	mapNoEndpointNPs    = "no-endpoint-nodeports"
	setHairpin          = "hairpin"
	setClusterCIDRs     = "cluster-cidrs"
)

// element is one map element a service port owns.
type element struct {
	Map   string
	Key   string // " . "-joined
	Value string
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

	// No chain per endpoint: each endpoint is one rule in the dispatching
	// chain (a chain per endpoint would multiply the chains by the
	// endpoints, and every nft invocation lists all chains, which the
	// kernel does in time quadratic in their number). Hairpin traffic (an
	// endpoint reaching itself through the service) is masqueraded in
	// postrouting through the hairpin set instead of per-endpoint rules.
	for _, e := range (services.EndpointSets{Cluster: internal, Local: external}).All() {
		out.hairpin = append(out.hairpin, e.Addr.String())
	}
	dnat := func(e services.Endpoint) string {
		if affinity > 0 {
			return fmt.Sprintf("update @affinity-%s__%s { %s saddr } meta l4proto %s dnat to %s", key, epName(e), ip, proto, e.AddrPort())
		}
		return fmt.Sprintf("meta l4proto %s dnat to %s", proto, e.AddrPort())
	}
	dispatch := func(eps []services.Endpoint) []string {
		var rules []string
		if affinity > 0 {
			for _, e := range eps {
				set := "affinity-" + key + "__" + epName(e)
				out.sets[set] = affinity
				rules = append(rules, fmt.Sprintf("%s saddr @%s %s", ip, set, dnat(e)))
			}
		}
		// Random balancing without a per-service anonymous map: rule i
		// matches with probability 1/(N-i), so each of the N endpoints
		// gets 1/N (the iptables statistic scheme). Anonymous maps would
		// make a large transaction quadratic in the kernel (each binding
		// walks the transaction list, __nft_set_trans_bind).
		for i, e := range eps {
			if i == len(eps)-1 {
				rules = append(rules, dnat(e))
			} else {
				rules = append(rules, fmt.Sprintf("numgen random mod %d == 0 %s", len(eps)-i, dnat(e)))
			}
		}
		return rules
	}
	noEndpoints := func(hasAny bool) string {
		if hasAny {
			return "drop" // a Local policy with no local endpoint: drop, as kube-proxy does
		}
		return "goto " + chainReject
	}

	// Internal traffic: cluster IPs.
	if len(internal) > 0 {
		var rules []string
		if len(p.clusterCIDRs()) > 0 {
			for _, cip := range clusterIPs {
				rules = append(rules, fmt.Sprintf("%s daddr %s %s dport %d %s saddr != @%s jump %s", ip, cip, proto, sp.Port, ip, setClusterCIDRs, chainMarkMasq))
			}
		}
		out.chains[svcChain] = append(rules, dispatch(internal)...)
		out.order = append(out.order, svcChain)
	}
	for _, cip := range clusterIPs {
		k := fmt.Sprintf("%s . %s . %d", cip, proto, sp.Port)
		if len(internal) > 0 {
			out.elements[element{mapServiceIPs, k, "goto " + svcChain}] = true
		} else {
			out.elements[element{mapNoEndpointSvcs, k, noEndpoints(len(cluster) > 0)}] = true
		}
	}

	// External traffic: node ports, external IPs, load-balancer IPs.
	if !sp.ExternallyAccessible() {
		return out
	}
	if len(external) > 0 {
		var rules []string
		if sp.ExternalPolicyLocal {
			// Traffic from the node itself or from pods short-circuits to
			// the cluster-wide set (kube-proxy does the same), masqueraded
			// when it comes from the node.
			rules = append(rules, "fib saddr type local jump "+chainMarkMasq)
			// (Only when the service chain balances over the cluster set,
			// that is internalTrafficPolicy Cluster.)
			if len(cluster) > 0 && !sp.InternalPolicyLocal {
				rules = append(rules, "fib saddr type local goto "+svcChain)
				if len(p.clusterCIDRs()) > 0 {
					rules = append(rules, fmt.Sprintf("%s saddr @%s goto %s", ip, setClusterCIDRs, svcChain))
				}
			}
			rules = append(rules, dispatch(external)...)
		} else {
			rules = append(rules, "jump "+chainMarkMasq)
			if sp.InternalPolicyLocal {
				rules = append(rules, dispatch(external)...)
			} else {
				rules = append(rules, "goto "+svcChain)
			}
		}
		out.chains[extChain] = rules
		out.order = append(out.order, extChain)
	}
	ext := func(m, nm, k string) {
		if len(external) > 0 {
			out.elements[element{m, k, "goto " + extChain}] = true
		} else {
			out.elements[element{nm, k, noEndpoints(len(cluster) > 0)}] = true
		}
	}
	for _, a := range append(p.addrs(sp.ExternalIPs), p.addrs(sp.LoadBalancerIPs)...) {
		ext(mapServiceIPs, mapNoEndpointSvcs, fmt.Sprintf("%s . %s . %d", a, proto, sp.Port))
	}
	if sp.NodePort != 0 {
		ext(mapServiceNodePorts, mapNoEndpointNPs, fmt.Sprintf("%s . %d", proto, sp.NodePort))
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
