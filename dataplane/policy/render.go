package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	pol "github.com/tabbynet/tabby/policy"
)

// Chain names (with iptables.DefaultChainPrefix "tabby-"; at most 28 bytes).
const (
	ChainForward      = "tabby-FORWARD"
	ChainInput        = "tabby-INPUT"
	ChainOutput       = "tabby-OUTPUT"
	ChainFromDispatch = "tabby-from-wl-dispatch"
	ChainToDispatch   = "tabby-to-wl-dispatch"
	ChainFromHEP      = "tabby-from-host-dispatch"
	ChainToHEP        = "tabby-to-host-dispatch"
)

// Per-endpoint chains: tw/fw (to/from workload: ingress/egress of a
// workload), fh/th (from/to host endpoint: ingress/egress of a host
// endpoint).
func (c *Compiler) twChain(iface string) string { return "tabby-tw-" + iface }
func (c *Compiler) fwChain(iface string) string { return "tabby-fw-" + iface }
func (c *Compiler) fhChain(iface string) string { return "tabby-fh-" + iface }
func (c *Compiler) thChain(iface string) string { return "tabby-th-" + iface }

// policyChain is tabby-pi-<16 hex> (ingress) or tabby-po-<16 hex> (egress).
func policyChain(key string, d pol.Direction) string {
	if d == pol.Ingress {
		return "tabby-pi-" + hash16(key)
	}
	return "tabby-po-" + hash16(key)
}

func (c *Compiler) marks() uint32 { return c.cfg.MarkAccept | c.cfg.MarkPass }

func (c *Compiler) setChain(name string, rules []iptables.Rule) {
	c.chains[name] = rules
	c.dirtyChains[name] = true
}

func (c *Compiler) deleteChain(name string) {
	if _, ok := c.chains[name]; ok {
		delete(c.chains, name)
		c.dirtyChains[name] = true
	}
}

// flush renders everything dirty into the desired chains and sets.
func (c *Compiler) flush() {
	if c.dispatchDirty {
		c.renderStatic()
		c.dispatchDirty = false
	}
	for key := range c.dirtyPolicies {
		c.renderPolicy(key)
	}
	clear(c.dirtyPolicies)
	for key := range c.dirtyEndpoints {
		if iface, ok := c.local[key]; ok {
			c.renderEndpoint(key, iface)
		}
	}
	clear(c.dirtyEndpoints)
	for name := range c.dirtyNP {
		c.fillNamedPortSet(name)
	}
	clear(c.dirtyNP)
}

// renderStatic renders the top-level and dispatch chains.
func (c *Compiler) renderStatic() {
	wild := c.cfg.InterfacePrefix + "+"
	m := c.marks()
	c.setChain(ChainForward, []iptables.Rule{
		{Action: iptables.SetMark{Value: 0, Mask: m}, Comment: "clear tabby marks"},
		{Match: iptables.Match().InInterface(wild), Action: iptables.Jump{Chain: ChainFromDispatch}},
		{Match: iptables.Match().OutInterface(wild), Action: iptables.Jump{Chain: ChainToDispatch}},
		{Match: iptables.Match().MarkMatchesWithMask(c.cfg.MarkAccept, c.cfg.MarkAccept), Action: iptables.Accept{},
			Comment: "policy accepted the packet"},
	})
	acceptMark := iptables.Match().MarkMatchesWithMask(c.cfg.MarkAccept, c.cfg.MarkAccept)
	input := []iptables.Rule{{Action: iptables.SetMark{Value: 0, Mask: m}, Comment: "clear tabby marks"}}
	if c.cfg.Family == iptables.IPv6 {
		// A pod resolves its gateway (the host veth's link-local address)
		// and answers the host with ICMPv6 neighbour discovery, which its
		// egress policy must not see: MLD query, report and done
		// (130-132), router solicitation (133), neighbour solicitation
		// and advertisement (135, 136), the types Felix accepts from
		// workloads to the host before their policy.
		for _, typ := range []int{130, 131, 132, 133, 135, 136} {
			input = append(input, iptables.Rule{
				Match:  iptables.Match().InInterface(wild).Protocol(iptables.ICMPv6).ICMPType(typ, -1),
				Action: iptables.Accept{}, Comment: "ICMPv6 neighbour discovery and MLD from workloads"})
		}
	}
	c.setChain(ChainInput, append(input, []iptables.Rule{
		{Match: iptables.Match().InInterface(wild), Action: iptables.Jump{Chain: ChainFromDispatch},
			Comment: "egress policy of workloads applies to the host"},
		{Match: iptables.Match().NotInInterface(wild), Action: iptables.Jump{Chain: ChainFromHEP}},
		{Match: acceptMark, Action: iptables.Accept{}, Comment: "policy accepted the packet"},
	}...))
	c.setChain(ChainOutput, []iptables.Rule{
		{Action: iptables.SetMark{Value: 0, Mask: m}, Comment: "clear tabby marks"},
		{Match: iptables.Match().OutInterface(wild), Action: iptables.Return{}, Comment: "host to workload is allowed"},
		{Action: iptables.Jump{Chain: ChainToHEP}},
		{Match: acceptMark, Action: iptables.Accept{}, Comment: "policy accepted the packet"},
	})
	var wls, heps []string
	for k, i := range c.local {
		switch ep := c.endpoints[k]; {
		case ep == nil: // chains exist only for known endpoints
		case ep.IsHost():
			heps = append(heps, i)
		default:
			wls = append(wls, i)
		}
	}
	slices.Sort(wls)
	slices.Sort(heps)
	from := make([]iptables.Rule, 0, len(wls)+1)
	to := make([]iptables.Rule, 0, len(wls)+1)
	for _, i := range wls {
		from = append(from, iptables.Rule{Match: iptables.Match().InInterface(i), Action: iptables.Goto{Chain: c.fwChain(i)}})
		to = append(to, iptables.Rule{Match: iptables.Match().OutInterface(i), Action: iptables.Goto{Chain: c.twChain(i)}})
	}
	from = append(from, iptables.Rule{Action: iptables.Drop{}, Comment: "unknown workload interface"})
	to = append(to, iptables.Rule{Action: iptables.Drop{}, Comment: "unknown workload interface"})
	c.setChain(ChainFromDispatch, from)
	c.setChain(ChainToDispatch, to)
	var fromH, toH []iptables.Rule
	for _, i := range heps {
		fromH = append(fromH, iptables.Rule{Match: iptables.Match().InInterface(i), Action: iptables.Goto{Chain: c.fhChain(i)}})
		toH = append(toH, iptables.Rule{Match: iptables.Match().OutInterface(i), Action: iptables.Goto{Chain: c.thChain(i)}})
	}
	c.setChain(ChainFromHEP, fromH)
	c.setChain(ChainToHEP, toH)
}

type tierGroup struct {
	name     string
	info     tierInfo
	policies []*pol.ResolvedPolicy
}

// tiersFor groups the policies applying to ep in direction d by tier, in
// evaluation order (tier order, nil last, then name; policy order, nil
// last, then key). doNotTrack and preDNAT policies are left out.
func (c *Compiler) tiersFor(id pol.ItemID, d pol.Direction) []tierGroup {
	byTier := map[string]*tierGroup{}
	for _, key := range c.model.PoliciesMatching(id) {
		rp := c.policies[key]
		if rp == nil || rp.DoNotTrack || rp.PreDNAT || !rp.AppliesTo(d) {
			continue
		}
		g := byTier[rp.Tier]
		if g == nil {
			g = &tierGroup{name: rp.Tier, info: c.tiers[rp.Tier]}
			byTier[rp.Tier] = g
		}
		g.policies = append(g.policies, rp)
	}
	out := make([]tierGroup, 0, len(byTier))
	for _, g := range byTier {
		slices.SortFunc(g.policies, func(a, b *pol.ResolvedPolicy) int {
			return cmp.Or(cmpOrder(a.Order, b.Order), cmp.Compare(a.Key, b.Key))
		})
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b tierGroup) int {
		return cmp.Or(cmpOrder(a.info.order, b.info.order), cmp.Compare(a.name, b.name))
	})
	return out
}

// renderEndpoint renders the to-workload (ingress) and from-workload
// (egress) chains of a local endpoint.
func (c *Compiler) renderEndpoint(key, iface string) {
	ep := c.endpoints[key]
	if ep == nil {
		c.dropEndpointChains(iface)
		return
	}
	in, out, gone := c.twChain(iface), c.fwChain(iface), []string{c.fhChain(iface), c.thChain(iface)}
	if ep.IsHost() {
		in, out, gone = c.fhChain(iface), c.thChain(iface), []string{c.twChain(iface), c.fwChain(iface)}
	}
	for _, n := range gone { // the endpoint changed kind
		c.deleteChain(n)
	}
	c.setChain(in, c.endpointRules(ep, pol.Ingress))
	c.setChain(out, c.endpointRules(ep, pol.Egress))
}

func (c *Compiler) endpointRules(ep *pol.Endpoint, d pol.Direction) []iptables.Rule {
	acc, pass := c.cfg.MarkAccept, c.cfg.MarkPass
	rules := []iptables.Rule{
		{Match: iptables.Match().ConntrackState(iptables.StateRelated, iptables.StateEstablished), Action: iptables.Accept{}},
		{Match: iptables.Match().ConntrackState(iptables.StateInvalid), Action: iptables.Drop{}},
		{Action: iptables.SetMark{Value: 0, Mask: acc | pass}},
	}
	for i, g := range c.tiersFor(ep.ID(), d) {
		if i > 0 {
			rules = append(rules, iptables.Rule{Action: iptables.SetMark{Value: 0, Mask: pass}, Comment: "start of tier " + safeComment(g.name)})
		}
		for _, rp := range g.policies {
			rules = append(rules,
				iptables.Rule{Match: iptables.Match().MarkClear(pass), Action: iptables.Jump{Chain: policyChain(rp.Key, d)},
					Comment: "policy " + safeComment(rp.Key)},
				iptables.Rule{Match: iptables.Match().MarkMatchesWithMask(acc, acc), Action: iptables.Return{}})
		}
		if g.info.defaultAction != pol.Pass {
			m := iptables.Match().MarkClear(pass)
			if c.cfg.NFLOGGroup != 0 {
				names := make([]string, len(g.policies))
				for i, p := range g.policies {
					names[i] = p.Key
				}
				prefix := c.dropPrefix(DropCause{Kind: KindEndOfTier, Tier: g.name, Direction: d, Rule: -1,
					Endpoint: ep.Key(), Policies: names})
				rules = append(rules, iptables.Rule{Match: m, Action: iptables.NFLOG{Group: c.cfg.NFLOGGroup, Prefix: prefix}})
			}
			rules = append(rules, iptables.Rule{Match: m, Action: iptables.Drop{},
				Comment: "end of tier " + safeComment(g.name) + ": drop if no policy passed the packet"})
		}
	}
	allow := !ep.IsHost() || slices.Contains(ep.Profiles, pol.DefaultAllowProfile)
	if allow {
		rules = append(rules,
			iptables.Rule{Action: iptables.SetMark{Value: acc, Mask: acc}, Comment: "profile " + safeComment(profileName(ep))},
			iptables.Rule{Action: iptables.Return{}})
	} else {
		rules = append(rules, iptables.Rule{Action: iptables.Drop{}, Comment: "drop if no profile matched"})
	}
	return rules
}

func profileName(ep *pol.Endpoint) string {
	if ep.IsHost() {
		return pol.DefaultAllowProfile
	}
	return "kns." + ep.Namespace
}

// safeComment keeps what an iptables comment may hold.
func safeComment(s string) string {
	if len(s) <= 150 && !strings.ContainsFunc(s, func(r rune) bool {
		return r < ' ' || r > '~' || r == '"' || r == '\\' || r == '\''
	}) {
		return s
	}
	b := []byte(s)
	for i, ch := range b {
		if ch < ' ' || ch > '~' || ch == '"' || ch == '\\' || ch == '\'' {
			b[i] = '_'
		}
	}
	if len(b) > 150 {
		b = b[:150]
	}
	return string(b)
}

// renderPolicy renders (or deletes) a policy's chains and the nets and
// named-port sets its rules use.
func (c *Compiler) renderPolicy(key string) {
	for _, name := range c.polRefs[key] {
		if s := c.setState[name]; s != nil {
			s.refs--
			if s.refs <= 0 {
				delete(c.setState, name)
				delete(c.npSets, name)
				c.dirtySets[name] = true
			}
		}
	}
	delete(c.polRefs, key)
	delete(c.l7, key)
	rp := c.policies[key]
	for _, d := range []pol.Direction{pol.Ingress, pol.Egress} {
		name := policyChain(key, d)
		if rp == nil || !rp.AppliesTo(d) || rp.DoNotTrack || rp.PreDNAT {
			c.deleteChain(name)
			delete(c.chainOf, name)
			continue
		}
		c.chainOf[name] = key + " " + d.String()
		rs := rp.Rules(d)
		rules := make([]iptables.Rule, 0, 2*len(rs)+1)
		for i := range rs {
			rules = c.ruleRules(rules, rp, d, &rs[i])
		}
		c.setChain(name, rules)
	}
}

func (c *Compiler) refSet(policy, name string, spec ipsets.SetSpec, fill func(*desiredSet)) {
	s := c.setState[name]
	if s == nil {
		s = &desiredSet{spec: spec, members: map[ipsets.Member]int{}}
		c.setState[name] = s
		fill(s)
		c.dirtySets[name] = true
	}
	s.refs++
	c.polRefs[policy] = append(c.polRefs[policy], name)
}

// netsSet returns the name of the hash:net set holding nets.
func (c *Compiler) netsSet(policy string, nets []netip.Prefix) string {
	strs := make([]string, len(nets))
	for i, n := range nets {
		strs[i] = n.Masked().String()
	}
	slices.Sort(strs)
	strs = slices.Compact(strs)
	name := c.setName('n', strings.Join(strs, ","))
	c.refSet(policy, name, ipsets.SetSpec{Name: name, Type: ipsets.HashNet, Family: c.setFamily()}, func(s *desiredSet) {
		for _, n := range nets {
			for _, m := range netMembers(n) {
				s.members[m] = 1
			}
		}
	})
	return name
}

func (c *Compiler) namedPortSet(policy string, k npKey) string {
	name := c.setName('p', string(k.sel)+"\x00"+k.name+"\x00"+strconv.Itoa(int(k.proto)))
	c.refSet(policy, name, ipsets.SetSpec{Name: name, Type: ipsets.HashIPPort, Family: c.setFamily()}, func(*desiredSet) {
		c.npSets[name] = k
		c.dirtyNP[name] = true
	})
	return name
}

// fillNamedPortSet recomputes a named-port set: (address, protocol, port)
// of every endpoint its selector matches (every endpoint without one)
// that has a port of that name and protocol.
func (c *Compiler) fillNamedPortSet(name string) {
	k, ok := c.npSets[name]
	s := c.setState[name]
	if !ok || s == nil {
		return
	}
	clear(s.members)
	add := func(ep *pol.Endpoint) {
		for _, p := range ep.Ports {
			if p.Name != k.name || p.Protocol != k.proto {
				continue
			}
			for _, a := range ep.Addresses {
				if a.Is4() == (c.cfg.Family == iptables.IPv4) {
					s.members[ipsets.IPPort(a, ipsets.Protocol(p.Protocol), p.Port)] = 1
				}
			}
		}
	}
	if k.sel == "" {
		for _, ep := range c.endpoints {
			add(ep)
		}
	} else {
		for it := range c.model.ItemsMatching(k.sel) {
			if it.Kind != pol.ItemEndpoint {
				continue
			}
			if ep, ok := c.model.Endpoint(it); ok {
				add(ep)
			}
		}
	}
	c.dirtySets[name] = true
}

// ipt returns the iptables name of a protocol number.
func iptProto(p pol.Protocol) iptables.Protocol {
	switch p {
	case pol.ProtoTCP:
		return iptables.TCP
	case pol.ProtoUDP:
		return iptables.UDP
	case pol.ProtoSCTP:
		return iptables.SCTP
	case pol.ProtoICMP:
		return iptables.ICMP
	case pol.ProtoICMPv6:
		return iptables.ICMPv6
	}
	return iptables.Protocol(strconv.Itoa(int(p)))
}

// ruleRules renders one policy rule into iptables rules: one per
// alternative of its OR-ed parts (port lists longer than a multiport
// match, named ports), each doing the action, then for Allow and Pass a
// RETURN once the mark is set. A rule that cannot match in this family
// (ipVersion, nets, ICMP version), or that needs L7 (HTTP) or a Service,
// renders to nothing, as it never matches a netfilter packet. It appends
// them to out and returns the result.
func (c *Compiler) ruleRules(out []iptables.Rule, rp *pol.ResolvedPolicy, d pol.Direction, r *pol.ResolvedRule) []iptables.Rule {
	ref := RuleRef{Policy: rp.Key, Direction: d, Rule: r.Index}
	if r.HTTP != nil {
		c.l7[rp.Key] = append(c.l7[rp.Key], ref)
		return out
	}
	v6 := c.cfg.Family == iptables.IPv6
	if (r.IPVersion == 4 && v6) || (r.IPVersion == 6 && !v6) || r.Src.Service != nil || r.Dst.Service != nil {
		return out
	}
	if r.Protocol != nil && ((*r.Protocol == pol.ProtoICMP && v6) || (*r.Protocol == pol.ProtoICMPv6 && !v6)) {
		return out
	}
	base, ok := protoMatch(r, v6)
	if !ok {
		return out
	}
	alts := []iptables.MatchCriteria{base}
	for _, side := range []struct {
		m   *pol.EntityMatch
		src bool
	}{{&r.Src, true}, {&r.Dst, false}} {
		var ok bool
		alts, ok = c.sideMatches(rp.Key, r, side.m, side.src, alts)
		if !ok {
			return out
		}
	}
	var act iptables.Action
	var returnMark uint32 // RETURN once this mark is set, when non-zero
	switch r.Action {
	case pol.Allow:
		act = iptables.SetMark{Value: c.cfg.MarkAccept, Mask: c.cfg.MarkAccept}
		returnMark = c.cfg.MarkAccept
	case pol.Pass:
		act = iptables.SetMark{Value: c.cfg.MarkPass, Mask: c.cfg.MarkPass}
		returnMark = c.cfg.MarkPass
	case pol.Deny:
		act = iptables.Drop{}
	case pol.Log:
		act = iptables.Log{Prefix: DefaultLogPrefix}
	default:
		return out
	}
	comment := safeComment(rp.Key + " " + d.String() + " rule " + strconv.Itoa(r.Index) + " " + string(r.Action))
	for _, m := range alts {
		if r.Action == pol.Deny && c.cfg.NFLOGGroup != 0 {
			prefix := c.dropPrefix(DropCause{Kind: KindRule, Tier: rp.Tier, Policy: rp.Key, Direction: d, Rule: r.Index})
			out = append(out, iptables.Rule{Match: m, Action: iptables.NFLOG{Group: c.cfg.NFLOGGroup, Prefix: prefix}})
		}
		out = append(out, iptables.Rule{Match: m, Action: act, Comment: comment})
	}
	if returnMark != 0 {
		out = append(out, iptables.Rule{Match: iptables.Match().MarkMatchesWithMask(returnMark, returnMark), Action: iptables.Return{}})
	}
	return out
}

// protoMatch renders a rule's protocol, notProtocol, icmp and notICMP
// matches; ok false when the rule can never match (notProtocol equal to
// protocol, or an empty notICMP, which excludes every ICMP packet). It
// never leaves out a match it cannot express: the policy package refuses
// icmp and notICMP without protocol ICMP or ICMPv6, and a hand-built
// ResolvedPolicy that has them anyway renders a match iptables refuses
// (ErrInvalidRule, reported by UpdatePolicy and Replace).
func protoMatch(r *pol.ResolvedRule, v6 bool) (iptables.MatchCriteria, bool) {
	m := iptables.Match()
	switch {
	case r.Protocol != nil && r.NotProtocol != nil && *r.Protocol == *r.NotProtocol:
		return m, false
	case r.Protocol != nil:
		// A different notProtocol is implied; iptables takes one -p.
		m = m.Protocol(iptProto(*r.Protocol))
	case r.NotProtocol != nil:
		p := iptProto(*r.NotProtocol)
		if (*r.NotProtocol == pol.ProtoICMP && v6) || (*r.NotProtocol == pol.ProtoICMPv6 && !v6) {
			p = iptables.Protocol(strconv.Itoa(int(*r.NotProtocol))) // the name is refused in the other family
		}
		m = m.NotProtocol(p)
	}
	if r.ICMP != nil && (r.ICMP.Type >= 0 || r.Protocol == nil) {
		// Without a type, icmp matches every ICMP packet: -p icmp says it.
		m = m.ICMPType(r.ICMP.Type, r.ICMP.Code)
	}
	if r.NotICMP != nil {
		if r.NotICMP.Type < 0 && r.Protocol != nil && r.Protocol.IsICMP() {
			return m, false
		}
		m = m.NotICMPType(r.NotICMP.Type, r.NotICMP.Code)
	}
	return m, true
}

// maxSlots is the multiport limit.
const maxSlots = 15

func portRanges(ps []pol.Port) (chunks [][]iptables.PortRange, named []string) {
	var cur []iptables.PortRange
	slots := 0
	for _, p := range ps {
		if p.IsNamed() {
			named = append(named, p.PortName)
			continue
		}
		n := 1
		if p.MinPort != p.MaxPort {
			n = 2
		}
		if slots+n > maxSlots {
			chunks = append(chunks, cur)
			cur, slots = nil, 0
		}
		cur = append(cur, iptables.PortRange{First: p.MinPort, Last: p.MaxPort})
		slots += n
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks, named
}

// sideMatches adds one side's (source or destination) matches to every
// alternative; ok false when the side can never match in this family.
func (c *Compiler) sideMatches(policy string, r *pol.ResolvedRule, m *pol.EntityMatch, src bool, alts []iptables.MatchCriteria) ([]iptables.MatchCriteria, bool) {
	var nets, notNets []netip.Prefix
	for _, n := range m.Nets {
		if c.inFamily(n) {
			nets = append(nets, n)
		}
	}
	for _, n := range m.NotNets {
		if c.inFamily(n) {
			notNets = append(notNets, n)
		}
	}
	if len(m.Nets) > 0 && len(nets) == 0 {
		return nil, false
	}
	if slices.ContainsFunc(notNets, func(p netip.Prefix) bool { return p.Bits() == 0 }) {
		return nil, false // nothing is outside 0.0.0.0/0
	}
	if slices.ContainsFunc(nets, func(p netip.Prefix) bool { return p.Bits() == 0 }) {
		nets = nil // everything is inside
	}
	each := func(f func(iptables.MatchCriteria) iptables.MatchCriteria) {
		for i := range alts {
			alts[i] = f(alts[i])
		}
	}
	switch {
	case len(nets) == 1 && src:
		each(func(x iptables.MatchCriteria) iptables.MatchCriteria { return x.SourceNet(nets[0].Masked()) })
	case len(nets) == 1:
		each(func(x iptables.MatchCriteria) iptables.MatchCriteria { return x.DestNet(nets[0].Masked()) })
	case len(nets) > 1:
		name := c.netsSet(policy, nets)
		each(func(x iptables.MatchCriteria) iptables.MatchCriteria { return setMatch(x, name, src, false) })
	}
	switch {
	case len(notNets) == 1 && len(nets) == 0 && src: // iptables takes one -s
		each(func(x iptables.MatchCriteria) iptables.MatchCriteria { return x.NotSourceNet(notNets[0].Masked()) })
	case len(notNets) == 1 && len(nets) == 0:
		each(func(x iptables.MatchCriteria) iptables.MatchCriteria { return x.NotDestNet(notNets[0].Masked()) })
	case len(notNets) > 0:
		name := c.netsSet(policy, notNets)
		each(func(x iptables.MatchCriteria) iptables.MatchCriteria { return setMatch(x, name, src, true) })
	}
	var posSel string
	if sel, ok := m.MatchSelector(); ok {
		name := c.selSets[pol.SelectorID(sel.String())]
		if name == "" {
			name = c.setName('s', sel.String())
		}
		posSel = sel.String()
		each(func(x iptables.MatchCriteria) iptables.MatchCriteria { return setMatch(x, name, src, false) })
	}
	if sel, ok := m.NotMatchSelector(); ok {
		name := c.selSets[pol.SelectorID(sel.String())]
		if name == "" {
			name = c.setName('s', sel.String())
		}
		each(func(x iptables.MatchCriteria) iptables.MatchCriteria { return setMatch(x, name, src, true) })
	}
	// Named ports resolve on the endpoints this side's positive selection
	// selects (all without one), with the rule's protocol (TCP without
	// one), as Felix's rule scanner does for both sides.
	proto := pol.ProtoTCP
	if r.Protocol != nil {
		proto = *r.Protocol
	}
	portSet := func(name string) string {
		return c.namedPortSet(policy, npKey{sel: pol.SelectorID(posSel), name: name, proto: proto})
	}
	// notPorts: all AND-ed into every alternative.
	if len(m.NotPorts) > 0 {
		chunks, named := portRanges(m.NotPorts)
		for _, ch := range chunks {
			each(func(x iptables.MatchCriteria) iptables.MatchCriteria { return portsMatch(x, ch, src, true) })
		}
		for _, n := range named {
			name := portSet(n)
			each(func(x iptables.MatchCriteria) iptables.MatchCriteria { return ipPortSetMatch(x, name, src, true) })
		}
	}
	// ports: OR of numeric chunks and named-port sets.
	if len(m.Ports) > 0 {
		chunks, named := portRanges(m.Ports)
		names := make([]string, len(named))
		for i, n := range named {
			names[i] = portSet(n)
		}
		var out []iptables.MatchCriteria
		for _, x := range alts {
			for _, ch := range chunks {
				out = append(out, portsMatch(x, ch, src, false))
			}
			for _, name := range names {
				out = append(out, ipPortSetMatch(x, name, src, false))
			}
		}
		alts = out
	}
	return alts, true
}

// portsMatch matches the source or destination port in the ranges (one
// multiport match), or in none of them when not.
func portsMatch(x iptables.MatchCriteria, ranges []iptables.PortRange, src, not bool) iptables.MatchCriteria {
	switch {
	case src && not:
		return x.NotSourcePortRanges(ranges...)
	case src:
		return x.SourcePortRanges(ranges...)
	case not:
		return x.NotDestPortRanges(ranges...)
	}
	return x.DestPortRanges(ranges...)
}

// ipPortSetMatch matches a named-port (hash:ip,port) set against the
// packet's source address and port (src,src) for a rule's source or its
// destination ones (dst,dst) for its destination, as Felix renders
// SrcNamedPortIpSetIds and DstNamedPortIpSetIds; negated for notPorts.
func ipPortSetMatch(x iptables.MatchCriteria, name string, src, not bool) iptables.MatchCriteria {
	switch {
	case src && not:
		return x.NotSourceIPPortSet(name)
	case src:
		return x.SourceIPPortSet(name)
	case not:
		return x.NotDestIPPortSet(name)
	}
	return x.DestIPPortSet(name)
}

func setMatch(x iptables.MatchCriteria, name string, src, not bool) iptables.MatchCriteria {
	switch {
	case src && not:
		return x.NotSourceIPSet(name)
	case src:
		return x.SourceIPSet(name)
	case not:
		return x.NotDestIPSet(name)
	}
	return x.DestIPSet(name)
}

// netMembers returns the hash:net members for p: p itself, or for a /0
// (which hash:net cannot hold) its two halves, as Felix does.
func netMembers(p netip.Prefix) []ipsets.Member {
	if p.Bits() != 0 {
		return []ipsets.Member{ipsets.Net(p)}
	}
	if p.Addr().Is4() {
		return []ipsets.Member{ipsets.Net(netip.MustParsePrefix("0.0.0.0/1")), ipsets.Net(netip.MustParsePrefix("128.0.0.0/1"))}
	}
	return []ipsets.Member{ipsets.Net(netip.MustParsePrefix("::/1")), ipsets.Net(netip.MustParsePrefix("8000::/1"))}
}
