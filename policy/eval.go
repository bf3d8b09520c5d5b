package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Direction is the side of an endpoint a packet crosses.
type Direction uint8

// Directions.
const (
	Ingress Direction = iota // into the endpoint
	Egress                   // out of the endpoint
)

func (d Direction) String() string {
	if d == Ingress {
		return "ingress"
	}
	return "egress"
}

// MarshalText writes "ingress" or "egress", so traces print well as JSON.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "ingress" or "egress".
func (d *Direction) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ingress":
		*d = Ingress
	case "egress":
		*d = Egress
	default:
		return fmt.Errorf("direction %q: %w: want ingress or egress", b, ErrInvalid)
	}
	return nil
}

// Peer is one end of a flow: an endpoint by key ("namespace/name", or the
// name of a host endpoint), an IP address, or both (an endpoint using one of
// its addresses). An IP alone that belongs to an endpoint is that endpoint
// (the first by key when several share it); any other IP is external and has
// no policy of its own, though network sets may still give it labels.
type Peer struct {
	Endpoint string     `json:"endpoint,omitempty"`
	IP       netip.Addr `json:"ip,omitzero"`
}

// EndpointPeer names an endpoint; its first address (of the flow's family)
// is used.
func EndpointPeer(key string) Peer { return Peer{Endpoint: key} }

// IPPeer is a bare address.
func IPPeer(ip netip.Addr) Peer { return Peer{IP: ip} }

// ICMPInfo is an ICMP packet's type and code.
type ICMPInfo struct {
	Type uint8 `json:"type"`
	Code uint8 `json:"code"`
}

// HTTPRequest is the HTTP method and path of a flow, for rules with http.
type HTTPRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
}

// Flow is a packet (or connection) to decide on.
type Flow struct {
	Src      Peer     `json:"src"`
	Dst      Peer     `json:"dst"`
	Protocol Protocol `json:"protocol"` // required, e.g. ProtoTCP
	// SrcPort is the source port (TCP, UDP, SCTP). 0, not given, is
	// matched as port 0, which no real client sends from: a rule's source
	// ports match it only in a range from 0, its named ports never, its
	// notPorts match unless they hold 0. Give the client's port when
	// rules match source ports. Verdict.String shows it when not 0.
	SrcPort uint16 `json:"srcPort,omitempty"`
	// DstPort is the destination port: 1-65535, required for TCP, UDP and
	// SCTP; 0 for other protocols.
	DstPort uint16       `json:"dstPort,omitempty"`
	ICMP    *ICMPInfo    `json:"icmp,omitempty"` // for ICMP/ICMPv6 flows
	HTTP    *HTTPRequest `json:"http,omitempty"` // when known; rules with http match only flows that carry one
}

// RuleRef points at the rule (or tier end, or profile) that did something.
type RuleRef struct {
	Tier   string `json:"tier"`
	Policy string `json:"policy,omitempty"` // policy key; empty at the end of a tier
	Rule   int    `json:"rule"`             // index in the policy's rules for the direction; -1 at the end of a tier
	Action Action `json:"action"`
}

func (r RuleRef) String() string {
	if r.Policy == "" {
		return fmt.Sprintf("end of tier, no rule matched (%s)", r.Action)
	}
	return fmt.Sprintf("policy %s rule %d (%s)", r.Policy, r.Rule, r.Action)
}

// TierTrace is what happened in one tier.
type TierTrace struct {
	Tier     string    `json:"tier"`
	Policies []string  `json:"policies"`         // policies in the tier that apply to the endpoint, in order
	Logged   []RuleRef `json:"logged,omitempty"` // Log rules that matched on the way
	Result   RuleRef   `json:"result"`           // the rule that decided or passed, or the tier's end
}

// DirectionTrace explains the decision for one direction: the egress of the
// source or the ingress of the destination.
type DirectionTrace struct {
	Direction Direction   `json:"direction"`
	Endpoint  string      `json:"endpoint,omitempty"` // endpoint key; empty when the peer is not an endpoint
	Peer      string      `json:"peer"`               // how to print the peer
	Tiers     []TierTrace `json:"tiers,omitempty"`
	// Profile is set when evaluation reached the profiles (no tier decided):
	// "kns.<namespace>" for a workload, or the host endpoint's profiles.
	Profile string `json:"profile,omitempty"`
	Action  Action `json:"action"` // Allow or Deny
}

// Decider returns the rule that decided, and false when the profiles (or the
// absence of an endpoint) decided.
func (t *DirectionTrace) Decider() (RuleRef, bool) {
	if t.Profile != "" || t.Endpoint == "" || len(t.Tiers) == 0 {
		return RuleRef{}, false
	}
	return t.Tiers[len(t.Tiers)-1].Result, true
}

// String reads like
// "egress of default/frontend: tier default → policy default/knp.default.allow-web rule 0 (Allow)".
func (t *DirectionTrace) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s of %s: ", t.Direction, t.Peer)
	if t.Endpoint == "" {
		fmt.Fprintf(&b, "not an endpoint, no policy (%s)", t.Action)
		return b.String()
	}
	if len(t.Tiers) == 0 {
		b.WriteString("no policy applies")
	}
	for i, tt := range t.Tiers {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString("tier ")
		b.WriteString(tt.Tier)
		for _, l := range tt.Logged {
			b.WriteString(" → ")
			b.WriteString(l.String())
		}
		b.WriteString(" → ")
		if tt.Result.Policy == "" && len(tt.Policies) > 0 {
			fmt.Fprintf(&b, "end of tier, no rule matched in %s (%s)", summarise(tt.Policies, 3), tt.Result.Action)
			continue
		}
		b.WriteString(tt.Result.String())
	}
	if t.Profile != "" {
		fmt.Fprintf(&b, " → profile %s (%s)", t.Profile, t.Action)
	}
	return b.String()
}

// Verdict is the decision on a flow with its explanation. Action is Allow
// only when both the source's egress and the destination's ingress allow.
type Verdict struct {
	Action  Action         `json:"action"`
	Flow    Flow           `json:"flow"`
	SrcIP   netip.Addr     `json:"srcIP"`
	DstIP   netip.Addr     `json:"dstIP"`
	Egress  DirectionTrace `json:"egress"`
	Ingress DirectionTrace `json:"ingress"`
}

// Allowed reports whether the flow is allowed.
func (v *Verdict) Allowed() bool { return v.Action == Allow }

// String is a short multi-line explanation:
//
//	Allow TCP default/frontend (10.0.0.1) → default/backend (10.0.0.2):80
//	  egress of default/frontend: no policy applies → profile kns.default (Allow)
//	  ingress of default/backend: tier default → policy ... rule 0 (Allow)
func (v *Verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", v.Action, v.Flow.Protocol, v.Egress.Peer)
	if protoHasPorts(v.Flow.Protocol) && v.Flow.SrcPort != 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(int(v.Flow.SrcPort)))
	}
	fmt.Fprintf(&b, " → %s", v.Ingress.Peer)
	if protoHasPorts(v.Flow.Protocol) {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(int(v.Flow.DstPort)))
	} else if v.Flow.ICMP != nil {
		fmt.Fprintf(&b, " type %d code %d", v.Flow.ICMP.Type, v.Flow.ICMP.Code)
	}
	if h := v.Flow.HTTP; h != nil {
		fmt.Fprintf(&b, " %s %s", h.Method, h.Path)
	}
	b.WriteString("\n  ")
	b.WriteString(v.Egress.String())
	b.WriteString("\n  ")
	b.WriteString(v.Ingress.String())
	return b.String()
}

// flowCtx is a flow with both ends resolved.
type flowCtx struct {
	f              *Flow
	srcIP, dstIP   netip.Addr
	srcEP, dstEP   int // endpoint positions, -1 when not an endpoint
	srcOwn, dstOwn []*item
	ipVersion      int
}

// Evaluate decides a flow: the egress policy of the source endpoint, then the
// ingress policy of the destination endpoint, each as Calico evaluates it
// (see the package documentation). An end that is not an endpoint has no
// policy of its own. An invalid flow (see Flow.Validate; no protocol,
// ports on ICMP, ICMP on IPv6, a peer naming an endpoint with an IP that is
// not one of its addresses) is a *ValidationError wrapping
// ErrInvalid (and ErrNoProtocol when the protocol is missing); a peer that
// cannot be resolved is ErrUnknownEndpoint or ErrNoAddress.
func (ps *PolicySet) Evaluate(f Flow) (*Verdict, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if err := ps.checkPeerAddresses(&f); err != nil {
		return nil, err
	}
	fc := flowCtx{f: &f}
	var err error
	if fc.srcEP, fc.srcIP, err = ps.resolvePeer(f.Src, f.Dst.IP); err != nil {
		return nil, fmt.Errorf("flow source: %w", err)
	}
	if fc.dstEP, fc.dstIP, err = ps.resolvePeer(f.Dst, fc.srcIP); err != nil {
		return nil, fmt.Errorf("flow destination: %w", err)
	}
	if !f.Src.IP.IsValid() && fc.srcEP >= 0 && fc.srcIP.Is4() != fc.dstIP.Is4() {
		// The source was chosen before the destination's family was known.
		if _, ip, err := ps.resolvePeer(f.Src, fc.dstIP); err == nil {
			fc.srcIP = ip
		}
	}
	if fc.srcIP.Is4() != fc.dstIP.Is4() {
		return nil, fmt.Errorf("flow %s → %s: %w: source and destination are different IP versions", fc.srcIP, fc.dstIP, ErrNoAddress)
	}
	fc.ipVersion = 6
	if fc.srcIP.Is4() {
		fc.ipVersion = 4
	}
	if err := f.checkFamily(fc.ipVersion); err != nil {
		return nil, err
	}
	fc.srcOwn = ps.owners(fc.srcIP, nil)
	fc.dstOwn = ps.owners(fc.dstIP, nil)

	v := &Verdict{Flow: f, SrcIP: fc.srcIP, DstIP: fc.dstIP}
	v.Egress = ps.evalDirection(fc.srcEP, Egress, &fc)
	v.Ingress = ps.evalDirection(fc.dstEP, Ingress, &fc)
	v.Egress.Peer = ps.peerString(fc.srcEP, fc.srcIP)
	v.Ingress.Peer = ps.peerString(fc.dstEP, fc.dstIP)
	v.Action = Deny
	if v.Egress.Action == Allow && v.Ingress.Action == Allow {
		v.Action = Allow
	}
	return v, nil
}

func (ps *PolicySet) peerString(ep int, ip netip.Addr) string {
	if ep < 0 {
		return ip.String()
	}
	return ps.endpoints[ep].key + " (" + ip.String() + ")"
}

// resolvePeer finds the endpoint and address of a flow end; like is an
// address of the other end (possibly invalid) whose family is preferred.
func (ps *PolicySet) resolvePeer(p Peer, like netip.Addr) (int, netip.Addr, error) {
	if p.Endpoint == "" {
		if !p.IP.IsValid() {
			return -1, netip.Addr{}, fmt.Errorf("%w: neither an endpoint nor an IP given", ErrNoAddress)
		}
		ip := p.IP.Unmap()
		if owners := ps.byAddr[ip]; len(owners) > 0 {
			return ps.endpointBy[owners[0].key], ip, nil
		}
		return -1, ip, nil
	}
	i, ok := ps.endpointBy[p.Endpoint]
	if !ok {
		return -1, netip.Addr{}, fmt.Errorf("%q: %w", p.Endpoint, ErrUnknownEndpoint)
	}
	if p.IP.IsValid() {
		return i, p.IP.Unmap(), nil
	}
	addrs := ps.endpoints[i].ep.Addresses
	for _, a := range addrs {
		if !like.IsValid() || a.Unmap().Is4() == like.Is4() {
			return i, a.Unmap(), nil
		}
	}
	if len(addrs) > 0 {
		return i, addrs[0].Unmap(), nil
	}
	return -1, netip.Addr{}, fmt.Errorf("endpoint %q: %w", p.Endpoint, ErrNoAddress)
}

// owners returns the items an address belongs to: endpoints with that
// address and network sets containing it. This is what makes a selector
// match an address, as an IP set of the selector's members would.
func (ps *PolicySet) owners(ip netip.Addr, out []*item) []*item {
	out = append(out, ps.byAddr[ip]...)
	for _, ns := range ps.netsets {
		for _, n := range ns.nets {
			if n.Contains(ip) {
				out = append(out, ns)
				break
			}
		}
	}
	return out
}

func (ps *PolicySet) evalDirection(ep int, d Direction, fc *flowCtx) DirectionTrace {
	tr := DirectionTrace{Direction: d}
	if ep < 0 {
		tr.Action = Allow
		return tr
	}
	it := ps.endpoints[ep]
	tr.Endpoint = it.key
	groups := ps.tiersFor(ep, d)
	tr.Tiers = make([]TierTrace, 0, len(groups))
tiers:
	for gi := range groups {
		g := &groups[gi]
		tt := TierTrace{Tier: g.Tier, Policies: g.keys}
		for _, p := range g.Policies {
			rules := p.Rules(d)
			for ri := range rules {
				r := &rules[ri]
				if !ps.ruleMatches(r, fc) {
					continue
				}
				ref := RuleRef{Tier: g.Tier, Policy: p.Key, Rule: r.Index, Action: r.Action}
				switch r.Action {
				case Log:
					tt.Logged = append(tt.Logged, ref)
					continue
				case Pass:
					tt.Result = ref
					tr.Tiers = append(tr.Tiers, tt)
					continue tiers
				default: // Allow, Deny
					tt.Result = ref
					tr.Tiers = append(tr.Tiers, tt)
					tr.Action = r.Action
					return tr
				}
			}
		}
		tt.Result = RuleRef{Tier: g.Tier, Rule: -1, Action: g.DefaultAction}
		tr.Tiers = append(tr.Tiers, tt)
		if g.DefaultAction != Pass {
			tr.Action = Deny
			return tr
		}
	}
	// No tier decided: the profiles do.
	if it.ep.IsHost() {
		tr.Action = Deny
		tr.Profile = "(none)"
		if len(it.ep.Profiles) > 0 {
			tr.Profile = strings.Join(it.ep.Profiles, ",")
		}
		if slices.Contains(it.ep.Profiles, DefaultAllowProfile) {
			tr.Action = Allow
		}
		return tr
	}
	tr.Profile = "kns." + it.namespace
	tr.Action = Allow
	return tr
}

// ruleMatches reports whether a resolved rule matches a flow whose ends have
// been resolved by the set; it is what Evaluate uses for each rule.
func (ps *PolicySet) ruleMatches(r *ResolvedRule, fc *flowCtx) bool {
	proto := fc.f.Protocol
	if r.IPVersion != 0 && r.IPVersion != fc.ipVersion {
		return false
	}
	if r.Protocol != nil && *r.Protocol != proto {
		return false
	}
	if r.NotProtocol != nil && *r.NotProtocol == proto {
		return false
	}
	if r.ICMP != nil && !icmpMatches(r.ICMP, fc.f) {
		return false
	}
	if r.NotICMP != nil && icmpMatches(r.NotICMP, fc.f) {
		return false
	}
	if !ps.entityMatches(&r.Src, fc.srcIP, fc.srcOwn, fc.f.SrcPort, proto, false) {
		return false
	}
	if !ps.entityMatches(&r.Dst, fc.dstIP, fc.dstOwn, fc.f.DstPort, proto, true) {
		return false
	}
	if r.HTTP != nil && !httpMatches(r.HTTP, fc.f.HTTP) {
		return false
	}
	return true
}

func icmpMatches(m *ICMPMatch, f *Flow) bool {
	if f.Protocol != ProtoICMP && f.Protocol != ProtoICMPv6 {
		return false
	}
	if m.Type < 0 {
		return true
	}
	if f.ICMP == nil || int(f.ICMP.Type) != m.Type {
		return false
	}
	return m.Code < 0 || int(f.ICMP.Code) == m.Code
}

func httpMatches(m *HTTPMatch, h *HTTPRequest) bool {
	if h == nil {
		return false
	}
	if len(m.Methods) > 0 && !slices.Contains(m.Methods, h.Method) {
		return false
	}
	if len(m.Paths) == 0 {
		return true
	}
	for _, p := range m.Paths {
		if (p.Exact != "" && h.Path == p.Exact) || (p.Prefix != "" && strings.HasPrefix(h.Path, p.Prefix)) {
			return true
		}
	}
	return false
}

func inNets(nets []netip.Prefix, ip netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func (ps *PolicySet) entityMatches(m *EntityMatch, ip netip.Addr, owners []*item, port uint16, proto Protocol, dst bool) bool {
	if len(m.Nets) > 0 && !inNets(m.Nets, ip) {
		return false
	}
	if inNets(m.NotNets, ip) {
		return false
	}
	if n, ok := ps.selNumber(m, false); ok && !ps.anyMatches(n, owners) {
		return false
	}
	if n, ok := ps.selNumber(m, true); ok && ps.anyMatches(n, owners) {
		return false
	}
	if len(m.Ports) > 0 && !ps.portMatches(m, m.Ports, port, proto, owners) {
		return false
	}
	if len(m.NotPorts) > 0 && ps.portMatches(m, m.NotPorts, port, proto, owners) {
		return false
	}
	if m.Service != nil && !ps.serviceMatches(m.Service, ip, port, proto, dst) {
		return false
	}
	return true
}

// anyMatches reports whether the model's selector matches any owner of an
// address: the address is in the selector's IP set.
func (ps *PolicySet) anyMatches(n uint32, owners []*item) bool {
	for _, it := range owners {
		if ps.model.matches(n, it.num) {
			return true
		}
	}
	return false
}

// selectsItem is the entity's positive selection (all items when it has
// none).
func (ps *PolicySet) selectsItem(m *EntityMatch, it *item) bool {
	n, ok := ps.selNumber(m, false)
	return !ok || ps.model.matches(n, it.num)
}

// portMatches: a numeric port in range, or a named port of an endpoint that
// owns the address, is selected by the entity's positive selection (all
// endpoints when it has none) and names this protocol and port. The address
// and port are the flow's destination ones for a rule's destination and its
// source ones for its source, so one function serves both sides.
func (ps *PolicySet) portMatches(m *EntityMatch, ports []Port, port uint16, proto Protocol, owners []*item) bool {
	for _, p := range ports {
		if !p.IsNamed() {
			if p.Contains(port) {
				return true
			}
			continue
		}
		for _, it := range owners {
			if it.ep == nil || !ps.selectsItem(m, it) {
				continue
			}
			for _, np := range it.ep.Ports {
				if np.Name == p.PortName && np.Protocol == proto && np.Port == port {
					return true
				}
			}
		}
	}
	return false
}

func (ps *PolicySet) serviceMatches(s *ServiceMatch, ip netip.Addr, port uint16, proto Protocol, dst bool) bool {
	svc := ps.services[s.Namespace+"/"+s.Name]
	if svc == nil || !slices.ContainsFunc(svc.Addresses, func(a netip.Addr) bool { return a.Unmap() == ip }) {
		return false
	}
	if !dst || len(svc.Ports) == 0 {
		return true
	}
	for _, sp := range svc.Ports {
		if sp.Protocol == proto && sp.Port == port {
			return true
		}
	}
	return false
}

// summarise lists up to n names and counts the rest.
func summarise(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}
