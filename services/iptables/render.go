package iptables

import (
	"net/netip"
	"reflect"
	"strings"

	v1 "k8s.io/api/core/v1"

	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/services"
)

// rendered is what one service port owns: its nat chains (SVC, SVL, EXT,
// SEP) and its rules in the dispatch chains.
type rendered struct {
	chains         []ipt.Chain
	natServices    []ipt.Rule // nat TABBY-SERVICES
	nodePorts      []ipt.Rule // nat TABBY-NODEPORTS
	filterServices []ipt.Rule // filter TABBY-SERVICES
	filterExternal []ipt.Rule // filter TABBY-EXTERNAL-SERVICES
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
		reflect.DeepEqual(a.filterServices, b.filterServices) && reflect.DeepEqual(a.filterExternal, b.filterExternal)
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

// Chain name prefixes: kube-proxy's KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-SEP-.
const (
	prefixSVC = ChainPrefix + "SVC-"
	prefixSVL = ChainPrefix + "SVL-"
	prefixEXT = ChainPrefix + "EXT-"
	prefixSEP = ChainPrefix + "SEP-"
)

// renderPort turns one resolved service port into the chains and dispatch
// rules it owns, for the Proxier's family; nil for a removed port.
func (p *Proxier) renderPort(r *services.Resolved) *rendered {
	if r == nil {
		return nil
	}
	sp := r.Port
	fam := func(a netip.Addr) bool { return a.Is4() == (p.cfg.Family == ipt.IPv4) }
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
	var clusterIPs, extIPs []netip.Addr
	for _, a := range sp.ClusterIPs {
		if fam(a) {
			clusterIPs = append(clusterIPs, a)
		}
	}
	if len(clusterIPs) == 0 {
		return nil // the Service has no address of this family
	}
	for _, a := range append(append([]netip.Addr(nil), sp.ExternalIPs...), sp.LoadBalancerIPs...) {
		if fam(a) {
			extIPs = append(extIPs, a)
		}
	}
	keep := func(eps []services.Endpoint) []services.Endpoint {
		var out []services.Endpoint
		for _, e := range eps {
			if fam(e.Addr) {
				out = append(out, e)
			}
		}
		return out
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

	// sepNames caches each endpoint's SEP chain name (a SHA-256 each):
	// an endpoint is named up to five times.
	sepNames := map[netip.AddrPort]string{}
	sepName := func(e services.Endpoint) string {
		ap := e.AddrPort()
		n, ok := sepNames[ap]
		if !ok {
			n = chainName(prefixSEP, append(key, ap.String())...)
			sepNames[ap] = n
		}
		return n
	}
	seps := map[netip.AddrPort]bool{}
	// balance returns the rules of a chain spreading over eps.
	balance := func(eps []services.Endpoint) []ipt.Rule {
		var rules []ipt.Rule
		if sp.AffinityTimeout > 0 {
			secs := uint32(sp.AffinityTimeout.Seconds())
			for _, e := range eps {
				rules = append(rules, ipt.Rule{Match: ipt.Match().RecentCheck(sepName(e), max(secs, 1)), Action: ipt.Jump{Chain: sepName(e)}})
			}
		}
		for i, e := range eps {
			m := ipt.Match()
			if i < len(eps)-1 {
				m = m.RandomProbability(1 / float64(len(eps)-i))
			}
			rules = append(rules, ipt.Rule{Match: m, Action: ipt.Jump{Chain: sepName(e)}, Comment: e.String()})
		}
		for _, e := range eps {
			if seps[e.AddrPort()] {
				continue
			}
			seps[e.AddrPort()] = true
			dnat := ipt.Match().Protocol(proto)
			if sp.AffinityTimeout > 0 {
				dnat = dnat.RecentSet(sepName(e))
			}
			out.chains = append(out.chains, ipt.Chain{Name: sepName(e), Rules: []ipt.Rule{
				{Match: ipt.Match().SourceNet(host(e.Addr)), Action: ipt.Jump{Chain: ChainMarkMasq}},
				{Match: dnat, Action: ipt.DNAT{To: e.AddrPort()}},
			}})
		}
		return rules
	}
	needSVL := (sp.InternalPolicyLocal || sp.ExternalPolicyLocal) && len(local) > 0
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
		return ipt.Match().DestNet(host(a)).Protocol(proto).DestPorts(sp.Port)
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
	for _, a := range extIPs {
		if len(cluster) > 0 {
			out.natServices = append(out.natServices, ipt.Rule{Match: dst(a), Action: ipt.Jump{Chain: ext}, Comment: comment})
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
