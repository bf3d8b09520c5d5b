package iptables

import (
	"net/netip"
	"reflect"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/services"
)

// rendered is what one service port owns: its nat chains (SVC, SVL, EXT,
// SEP) and its rules in the dispatch chains.
type rendered struct {
	chains         []ipt.Chain
	natServices    []ipt.Rule      // nat TABBY-SERVICES
	nodePorts      []ipt.Rule      // nat TABBY-NODEPORTS
	filterServices []ipt.Rule      // filter TABBY-SERVICES
	filterExternal []ipt.Rule      // filter TABBY-EXTERNAL-SERVICES
	filterFirewall []ipt.Rule      // filter TABBY-PROXY-FIREWALL
	hairpin        []ipsets.Member // hairpin set members (WithHairpinSet)
}

func (r *rendered) chain(name string) (ipt.Chain, bool) {
	if r == nil {
		return ipt.Chain{}, false
	}
	for _, c := range r.chains {
		if c.Name == name {
			return c, true
		}
	}
	return ipt.Chain{}, false
}

func sameDispatch(a, b *rendered) bool {
	if a == nil || b == nil {
		return a == b
	}
	return reflect.DeepEqual(a.natServices, b.natServices) && reflect.DeepEqual(a.nodePorts, b.nodePorts) &&
		reflect.DeepEqual(a.filterServices, b.filterServices) && reflect.DeepEqual(a.filterExternal, b.filterExternal) &&
		reflect.DeepEqual(a.filterFirewall, b.filterFirewall)
}

func protocolOf(p v1.Protocol) ipt.Protocol {
	switch p {
	case v1.ProtocolUDP:
		return ipt.UDP
	case v1.ProtocolSCTP:
		return ipt.SCTP
	}
	return ipt.TCP
}

// Chain name prefixes: kube-proxy's KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-SEP-, KUBE-FW-.
const (
	prefixFW  = ChainPrefix + "FW-"
	prefixSVC = ChainPrefix + "SVC-"
	prefixSVL = ChainPrefix + "SVL-"
	prefixEXT = ChainPrefix + "EXT-"
	prefixSEP = ChainPrefix + "SEP-"
	prefixHP  = ChainPrefix + "HP-" // tabby's: the hairpin chain of the inline layout
)

// renderPort turns one resolved service port into the chains and dispatch
// rules it owns, for the Proxier's family; nil for a removed port.
func (p *Proxier) renderPort(r *services.Resolved) *rendered {
	if r == nil {
		return nil
	}
	sp := r.Port
	fam := func(a netip.Addr) bool { return a.Is4() == (p.cfg.Family == ipt.IPv4) }
	var clusterIPs, extIPs, lbIPs []netip.Addr
	for _, a := range sp.ClusterIPs {
		if fam(a) {
			clusterIPs = append(clusterIPs, a)
		}
	}
	if len(clusterIPs) == 0 {
		return nil // the Service has no address of this family
	}
	for _, a := range sp.ExternalIPs {
		if fam(a) {
			extIPs = append(extIPs, a)
		}
	}
	for _, a := range sp.LoadBalancerIPs {
		if fam(a) {
			lbIPs = append(lbIPs, a)
		}
	}
	// keep returns the endpoints of the family: eps itself (no copy,
	// not modified) when they all are, the usual case.
	keep := func(eps []services.Endpoint) []services.Endpoint {
		for i, e := range eps {
			if fam(e.Addr) {
				continue
			}
			out := append([]services.Endpoint(nil), eps[:i]...)
			for _, e := range eps[i+1:] {
				if fam(e.Addr) {
					out = append(out, e)
				}
			}
			return out
		}
		return eps
	}
	cluster, local := keep(r.Endpoints.Cluster), keep(r.Endpoints.Local)
	internal, external := cluster, cluster
	if sp.InternalPolicyLocal {
		internal = local
	}
	if sp.ExternalPolicyLocal {
		external = local
	}
	name := sp.Name
	key := []string{name.Namespace, name.Name, name.Port, string(name.Protocol)}
	svc, svl, ext := chainName(prefixSVC, key...), chainName(prefixSVL, key...), chainName(prefixEXT, key...)
	proto := protocolOf(name.Protocol)
	comment := commentOf(name)
	out := &rendered{}

	// Affinity lists are named after the endpoint as kube-proxy's SEP
	// chains are (a SHA-256 each, computed once per endpoint).
	affinity := sp.AffinityTimeout > 0
	secs := max(uint32(sp.AffinityTimeout.Seconds()), 1)
	var listNames map[netip.AddrPort]string // only with affinity or SEP chains
	listName := func(e services.Endpoint) string {
		ap := e.AddrPort()
		n, ok := listNames[ap]
		if !ok {
			if listNames == nil {
				listNames = map[netip.AddrPort]string{}
			}
			n = chainName(prefixSEP, append(key, ap.String())...)
			listNames[ap] = n
		}
		return n
	}
	var balance func(eps []services.Endpoint) []ipt.Rule
	if hp, ok := hairpinChain(cluster, local, needsSVL(sp, local)); ok {
		balance = p.inlineBalancer(out, chainName(prefixHP, key...), hp, proto, affinity, secs, listName)
	} else {
		balance = p.sepBalancer(out, proto, affinity, secs, listName)
	}
	needSVL := needsSVL(sp, local)
	if len(cluster) > 0 {
		out.chains = append(out.chains, ipt.Chain{Name: svc, Rules: balance(cluster)})
	}
	if needSVL {
		out.chains = append(out.chains, ipt.Chain{Name: svl, Rules: balance(local)})
	}
	internalChain, externalChain := svc, svc
	if sp.InternalPolicyLocal {
		internalChain = svl
	}
	if sp.ExternalPolicyLocal {
		externalChain = svl
	}
	dst := func(a netip.Addr) ipt.MatchCriteria {
		return ipt.Match().DestNet(hostPrefix(a)).Protocol(proto).DestPorts(sp.Port)
	}
	// noEndpoints is REJECT when the Service has no endpoint at all, DROP
	// when it has some but none for this traffic policy (kube-proxy).
	noEndpoints := func() ipt.Action {
		if len(cluster) == 0 {
			return ipt.Reject{}
		}
		return ipt.Drop{}
	}
	for _, a := range clusterIPs {
		if len(internal) == 0 {
			out.filterServices = append(out.filterServices, ipt.Rule{Match: dst(a), Action: noEndpoints(), Comment: comment})
			continue
		}
		if len(p.cfg.ClusterCIDRs) > 0 {
			out.natServices = append(out.natServices, ipt.Rule{Match: dst(a), Action: ipt.Jump{Chain: ChainMasqNonPod}, Comment: comment})
		}
		out.natServices = append(out.natServices, ipt.Rule{Match: dst(a), Action: ipt.Jump{Chain: internalChain}, Comment: comment})
	}
	if !sp.ExternallyAccessible() {
		return out
	}
	if len(cluster) > 0 {
		// The external chain: masquerade (Cluster), or keep the source and
		// use the local endpoints (Local), except for traffic from pods
		// and from the node itself, which may go anywhere.
		var rules []ipt.Rule
		if sp.ExternalPolicyLocal {
			for _, c := range p.cfg.ClusterCIDRs {
				rules = append(rules, ipt.Rule{Match: ipt.Match().SourceNet(c), Action: ipt.Jump{Chain: svc}, Comment: "pod traffic to the whole cluster"})
			}
			rules = append(rules,
				ipt.Rule{Match: ipt.Match().SourceAddrTypeLocal(), Action: ipt.Jump{Chain: ChainMarkMasq}, Comment: "masquerade node traffic"},
				ipt.Rule{Match: ipt.Match().SourceAddrTypeLocal(), Action: ipt.Jump{Chain: svc}, Comment: "node traffic to the whole cluster"})
			if len(local) > 0 {
				rules = append(rules, ipt.Rule{Action: ipt.Jump{Chain: externalChain}})
			}
		} else {
			rules = []ipt.Rule{{Action: ipt.Jump{Chain: ChainMarkMasq}}, {Action: ipt.Jump{Chain: externalChain}}}
		}
		out.chains = append(out.chains, ipt.Chain{Name: ext, Rules: rules})
	}
	// loadBalancerSourceRanges (kube-proxy's KUBE-FW- chain): traffic to
	// a load-balancer IP goes through TABBY-FW-, which sends the allowed
	// sources on to EXT; the rest leaves nat undone and is dropped by
	// its TABBY-PROXY-FIREWALL rule. Only with endpoints, as kube-proxy:
	// without, the filter REJECT below answers every source.
	lbChain := ext
	if sources := sp.FirewallSources(p.cfg.Family == ipt.IPv6, p.cfg.NodeIPs); len(sources) > 0 && len(cluster) > 0 {
		lbChain = chainName(prefixFW, key...)
		rules := make([]ipt.Rule, 0, len(sources))
		for _, s := range sources {
			rules = append(rules, ipt.Rule{Match: ipt.Match().SourceNet(s), Action: ipt.Jump{Chain: ext}, Comment: comment})
		}
		out.chains = append(out.chains, ipt.Chain{Name: lbChain, Rules: rules})
		for _, a := range lbIPs {
			out.filterFirewall = append(out.filterFirewall, ipt.Rule{Match: dst(a), Action: ipt.Drop{}, Comment: comment + " not in loadBalancerSourceRanges"})
		}
	}
	for i, a := range append(extIPs, lbIPs...) {
		if len(cluster) > 0 {
			to := ext
			if i >= len(extIPs) {
				to = lbChain
			}
			out.natServices = append(out.natServices, ipt.Rule{Match: dst(a), Action: ipt.Jump{Chain: to}, Comment: comment})
		}
		if len(external) == 0 {
			out.filterExternal = append(out.filterExternal, ipt.Rule{Match: dst(a), Action: noEndpoints(), Comment: comment})
		}
	}
	if sp.NodePort != 0 {
		np := ipt.Match().Protocol(proto).DestPorts(sp.NodePort)
		if len(cluster) > 0 {
			out.nodePorts = append(out.nodePorts, ipt.Rule{Match: np, Action: ipt.Jump{Chain: ext}, Comment: comment})
		}
		if len(external) == 0 {
			out.filterExternal = append(out.filterExternal, ipt.Rule{Match: np.DestAddrTypeLocal(), Action: noEndpoints(), Comment: comment})
		}
	}
	return out
}

// commentOf is the rule comment naming a service port ("ns/name:port"),
// with characters iptables comments cannot hold replaced.
func commentOf(n services.ServicePortName) string {
	s := n.Namespace + "/" + n.Name
	if n.Port != "" {
		s += ":" + n.Port
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, s)
}

// needsSVL says whether a port has a TABBY-SVL- chain: a Local policy
// and local endpoints.
func needsSVL(sp *services.ServicePort, local []services.Endpoint) bool {
	return (sp.InternalPolicyLocal || sp.ExternalPolicyLocal) && len(local) > 0
}

// hairpinChain returns the endpoints of the port's hairpin chain, in
// first-seen order without duplicates: the Cluster ones and, when the
// port has an SVL chain, the Local ones. ok is false when two of them
// share an address with different ports: the hairpin chain picks the
// DNAT by source address, so such ports keep a SEP chain per endpoint.
func hairpinChain(cluster, local []services.Endpoint, withLocal bool) (eps []services.Endpoint, ok bool) {
	eps = make([]services.Endpoint, 0, len(cluster))
	// A linear scan while the list is short (the common case, no map),
	// a map beyond.
	var byAddr map[netip.Addr]uint16
	add := func(list []services.Endpoint) bool {
		for _, e := range list {
			if byAddr == nil && len(eps) >= 16 {
				byAddr = make(map[netip.Addr]uint16, len(cluster)+len(local))
				for _, x := range eps {
					byAddr[x.Addr] = x.Port
				}
			}
			port, seen := uint16(0), false
			if byAddr != nil {
				port, seen = byAddr[e.Addr]
			} else {
				for _, x := range eps {
					if x.Addr == e.Addr {
						port, seen = x.Port, true
						break
					}
				}
			}
			if seen {
				if port != e.Port {
					return false
				}
				continue
			}
			if byAddr != nil {
				byAddr[e.Addr] = e.Port
			}
			eps = append(eps, e)
		}
		return true
	}
	if !add(cluster) || (withLocal && !add(local)) {
		return nil, false
	}
	return eps, true
}

// inlineBalancer is tabby's layout (no chain per endpoint, see the
// package doc): it adds the hairpin chain hp (named hpName) to out and
// returns the function rendering a balancing chain's rules. Endpoint i
// gets, in the balancing chain, `-s EP [-m statistic] -j <hp>` (a client
// that is this endpoint: masquerade and DNAT in hp) and `! -s EP [-m
// statistic] [-m recent --set] -j DNAT`; with affinity, first the same
// pair with `-m recent --rcheck` instead of the statistic match. Each
// packet meets one probability per endpoint, as with SEP chains.
func (p *Proxier) inlineBalancer(out *rendered, hpName string, hp []services.Endpoint, proto ipt.Protocol,
	affinity bool, secs uint32, listName func(services.Endpoint) string) func([]services.Endpoint) []ipt.Rule {
	hpRules := make([]ipt.Rule, 0, len(hp)+1)
	hpRules = append(hpRules, ipt.Rule{Action: ipt.Jump{Chain: ChainMarkMasq}})
	for _, e := range hp {
		m := ipt.Match().SourceNet(hostPrefix(e.Addr)).Protocol(proto)
		if affinity {
			m = m.RecentSet(listName(e))
		}
		hpRules = append(hpRules, ipt.Rule{Match: m, Action: ipt.DNAT{To: e.AddrPort()}})
	}
	if len(hp) > 0 && (affinity || p.sets == nil) {
		out.chains = append(out.chains, ipt.Chain{Name: hpName, Rules: hpRules})
	}
	toHP := ipt.Jump{Chain: hpName}
	if !affinity && p.sets != nil {
		// Hairpin by set: one rule per endpoint, the set members here.
		for _, e := range hp {
			out.hairpin = append(out.hairpin, ipsets.IPPortIP(e.Addr, setProtocol(proto), e.Port, e.Addr))
		}
		return func(eps []services.Endpoint) []ipt.Rule {
			rules := make([]ipt.Rule, 0, len(eps))
			for i, e := range eps {
				m := ipt.Match()
				if i < len(eps)-1 {
					m = m.RandomProbability(1 / float64(len(eps)-i))
				}
				rules = append(rules, ipt.Rule{Match: m.Protocol(proto), Action: ipt.DNAT{To: e.AddrPort()}})
			}
			return rules
		}
	}
	return func(eps []services.Endpoint) []ipt.Rule {
		n := 2 * len(eps)
		if affinity {
			n *= 2
		}
		rules := make([]ipt.Rule, 0, n)
		if affinity {
			for _, e := range eps {
				src := hostPrefix(e.Addr)
				check := ipt.Match().RecentCheck(listName(e), secs)
				rules = append(rules,
					ipt.Rule{Match: check.SourceNet(src), Action: toHP},
					ipt.Rule{Match: check.NotSourceNet(src).Protocol(proto).RecentSet(listName(e)), Action: ipt.DNAT{To: e.AddrPort()}})
			}
		}
		for i, e := range eps {
			m := ipt.Match()
			if i < len(eps)-1 {
				m = m.RandomProbability(1 / float64(len(eps)-i))
			}
			src := hostPrefix(e.Addr)
			dnat := m.NotSourceNet(src).Protocol(proto)
			if affinity {
				dnat = dnat.RecentSet(listName(e))
			}
			// No endpoint comment: the rule shows the address (kube-proxy
			// drops them too above 1,000 endpoints, its large cluster mode).
			rules = append(rules,
				ipt.Rule{Match: m.SourceNet(src), Action: toHP},
				ipt.Rule{Match: dnat, Action: ipt.DNAT{To: e.AddrPort()}})
		}
		return rules
	}
}

// sepBalancer is kube-proxy's layout, a TABBY-SEP- chain per endpoint
// (added to out), kept for ports whose endpoints share an address with
// different ports.
func (p *Proxier) sepBalancer(out *rendered, proto ipt.Protocol, affinity bool, secs uint32,
	listName func(services.Endpoint) string) func([]services.Endpoint) []ipt.Rule {
	seps := map[netip.AddrPort]bool{}
	return func(eps []services.Endpoint) []ipt.Rule {
		var rules []ipt.Rule
		if affinity {
			for _, e := range eps {
				rules = append(rules, ipt.Rule{Match: ipt.Match().RecentCheck(listName(e), secs), Action: ipt.Jump{Chain: listName(e)}})
			}
		}
		for i, e := range eps {
			m := ipt.Match()
			if i < len(eps)-1 {
				m = m.RandomProbability(1 / float64(len(eps)-i))
			}
			rules = append(rules, ipt.Rule{Match: m, Action: ipt.Jump{Chain: listName(e)}, Comment: e.String()})
		}
		for _, e := range eps {
			if seps[e.AddrPort()] {
				continue
			}
			seps[e.AddrPort()] = true
			dnat := ipt.Match().Protocol(proto)
			if affinity {
				dnat = dnat.RecentSet(listName(e))
			}
			out.chains = append(out.chains, ipt.Chain{Name: listName(e), Rules: []ipt.Rule{
				{Match: ipt.Match().SourceNet(hostPrefix(e.Addr)), Action: ipt.Jump{Chain: ChainMarkMasq}},
				{Match: dnat, Action: ipt.DNAT{To: e.AddrPort()}},
			}})
		}
		return rules
	}
}

// hostPrefix is a's host prefix (/32 or /128).
func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// setProtocol is proto as an ipset member's protocol.
func setProtocol(proto ipt.Protocol) ipsets.Protocol {
	switch proto {
	case ipt.UDP:
		return ipsets.UDP
	case ipt.SCTP:
		return ipsets.SCTP
	}
	return ipsets.TCP
}
