package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/selector"
)

// Tiers returns the tier names in evaluation order.
func (ps *PolicySet) Tiers() []string {
	out := make([]string, len(ps.tiers))
	for i, t := range ps.tiers {
		out[i] = t.name
	}
	return out
}

// Policies returns every policy in evaluation order (tier order, then policy
// order with nil last, then key).
func (ps *PolicySet) Policies() []*ResolvedPolicy { return slices.Clone(ps.policies) }

// Policy returns a policy by key ("namespace/name" or a global name).
func (ps *PolicySet) Policy(key string) (*ResolvedPolicy, error) {
	i, ok := ps.policyIndex[key]
	if !ok {
		return nil, fmt.Errorf("%q: %w", key, ErrUnknownPolicy)
	}
	return ps.policies[i], nil
}

// Endpoints returns every endpoint, sorted by key.
func (ps *PolicySet) Endpoints() []*Endpoint {
	out := make([]*Endpoint, len(ps.endpoints))
	for i, it := range ps.endpoints {
		out[i] = it.ep
	}
	return out
}

// Endpoint returns an endpoint by key.
func (ps *PolicySet) Endpoint(key string) (*Endpoint, error) {
	i, ok := ps.endpointBy[key]
	if !ok {
		return nil, fmt.Errorf("%q: %w", key, ErrUnknownEndpoint)
	}
	return ps.endpoints[i].ep, nil
}

// TiersFor returns, for one endpoint and direction, the tiers that have
// policies applying to it and those policies, in evaluation order. Tiers with
// no applicable policy are left out (evaluation skips them). Untracked and
// pre-DNAT policies are not included. This is the chain structure the
// dataplane renders for the endpoint.
func (ps *PolicySet) TiersFor(endpoint string, d Direction) ([]TierPolicies, error) {
	i, ok := ps.endpointBy[endpoint]
	if !ok {
		return nil, fmt.Errorf("%q: %w", endpoint, ErrUnknownEndpoint)
	}
	groups := ps.tiersFor(i, d)
	out := make([]TierPolicies, len(groups))
	for gi, g := range groups {
		out[gi] = TierPolicies{Tier: g.Tier, DefaultAction: g.DefaultAction, Policies: slices.Clone(g.Policies), keys: g.keys}
	}
	return out, nil
}

// PoliciesFor returns every policy that selects the endpoint, in either
// direction and including untracked and pre-DNAT ones, in evaluation order.
func (ps *PolicySet) PoliciesFor(endpoint string) ([]*ResolvedPolicy, error) {
	i, ok := ps.endpointBy[endpoint]
	if !ok {
		return nil, fmt.Errorf("%q: %w", endpoint, ErrUnknownEndpoint)
	}
	var out []*ResolvedPolicy
	for _, pos := range ps.applying(ps.endpoints[i]) {
		out = append(out, ps.policies[pos])
	}
	return out, nil
}

// EndpointsFor returns the endpoints a policy selects, sorted by key.
func (ps *PolicySet) EndpointsFor(policy string) ([]*Endpoint, error) {
	p, err := ps.Policy(policy)
	if err != nil {
		return nil, err
	}
	var out []*Endpoint
	for id := range ps.model.ItemsMatching(SelectorID(p.EndpointSelector().String())) {
		if it := ps.items[id]; it.ep != nil {
			out = append(out, it.ep)
		}
	}
	slices.SortFunc(out, func(a, b *Endpoint) int { return strings.Compare(a.Key(), b.Key()) })
	return out, nil
}

// SelectorMembers returns what an entity match's positive selection covers,
// as an IP set would hold it: the addresses (as full-length prefixes) of the
// endpoints it selects and the nets of the network sets it selects, sorted
// and without duplicates. ok is false when the match has no selection (it
// then matches any address).
func (ps *PolicySet) SelectorMembers(m *EntityMatch) (members []netip.Prefix, ok bool) {
	sel, ok := m.MatchSelector()
	if !ok {
		return nil, false
	}
	return ps.members(sel), true
}

// NotSelectorMembers returns the addresses and nets whose owners' own labels
// match the match's notSelector; ok is false when it has none.
func (ps *PolicySet) NotSelectorMembers(m *EntityMatch) (members []netip.Prefix, ok bool) {
	sel, ok := m.NotMatchSelector()
	if !ok {
		return nil, false
	}
	return ps.members(sel), true
}

// members is the IP set of a selector the model holds: the nets of the
// items it matches, sorted and without duplicates.
func (ps *PolicySet) members(sel selector.Selector) []netip.Prefix {
	var out []netip.Prefix
	for id := range ps.model.ItemsMatching(SelectorID(sel.String())) {
		out = append(out, ps.model.ItemNets(id)...)
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// NamedPortMember is one (address, protocol, port) of a named port or a
// service.
type NamedPortMember struct {
	Addr     netip.Addr `json:"addr"`
	Protocol Protocol   `json:"protocol"`
	Port     uint16     `json:"port"`
}

// NamedPortMembers returns, for a named port used in an entity match (a
// rule's source or destination), the (address, protocol, port) triples of
// the endpoints it selects (all endpoints when it has no selection; its
// notSelector does not narrow them) that have a port of that name and
// protocol: what a hash:ip,port IP set for the rule would hold, matched
// against the packet's destination (dst,dst) for the destination and its
// source (src,src) for the source, as Felix matches DstNamedPortIpSetIds
// and SrcNamedPortIpSetIds.
func (ps *PolicySet) NamedPortMembers(m *EntityMatch, name string, proto Protocol) []NamedPortMember {
	var out []NamedPortMember
	candidates := ps.endpoints
	if sel, ok := m.MatchSelector(); ok {
		candidates = nil
		for id := range ps.model.ItemsMatching(SelectorID(sel.String())) {
			if it := ps.items[id]; it.ep != nil {
				candidates = append(candidates, it)
			}
		}
	}
	for _, it := range candidates {
		for _, np := range it.ep.Ports {
			if np.Name == name && np.Protocol == proto {
				for _, a := range it.ep.Addresses {
					out = append(out, NamedPortMember{Addr: a.Unmap(), Protocol: proto, Port: np.Port})
				}
			}
		}
	}
	sortMembers(out)
	return slices.Compact(out)
}

// ServiceMembers returns what an entity match's services field covers: the
// service's endpoint addresses with each of its ports (Protocol and Port
// zero when the service lists no ports, meaning any port), sorted. ok is
// false when the match names no service; an unknown service has no members.
func (ps *PolicySet) ServiceMembers(m *EntityMatch) (members []NamedPortMember, ok bool) {
	if m.Service == nil {
		return nil, false
	}
	svc := ps.services[m.Service.Namespace+"/"+m.Service.Name]
	if svc == nil {
		return nil, true
	}
	for _, a := range svc.Addresses {
		if len(svc.Ports) == 0 {
			members = append(members, NamedPortMember{Addr: a.Unmap()})
		}
		for _, sp := range svc.Ports {
			members = append(members, NamedPortMember{Addr: a.Unmap(), Protocol: sp.Protocol, Port: sp.Port})
		}
	}
	sortMembers(members)
	return slices.Compact(members), true
}

func sortMembers(ms []NamedPortMember) {
	slices.SortFunc(ms, func(a, b NamedPortMember) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if a.Protocol != b.Protocol {
			return int(a.Protocol) - int(b.Protocol)
		}
		return int(a.Port) - int(b.Port)
	})
}

// Matrix is the effective allow matrix between endpoints for one protocol
// and destination port: Allowed[i][j] says whether Endpoints[i] may open a
// flow to Endpoints[j].
type Matrix struct {
	Endpoints []string `json:"endpoints"`
	Protocol  Protocol `json:"protocol"`
	Port      uint16   `json:"port"`
	Allowed   [][]bool `json:"allowed"`
}

// Matrix evaluates a flow from every endpoint to every endpoint (itself
// included) with the given protocol and destination port. An empty list means
// every endpoint with an address.
func (ps *PolicySet) Matrix(endpoints []string, proto Protocol, port uint16) (*Matrix, error) {
	if len(endpoints) == 0 {
		for _, it := range ps.endpoints {
			if len(it.ep.Addresses) > 0 {
				endpoints = append(endpoints, it.key)
			}
		}
	}
	m := &Matrix{Endpoints: slices.Clone(endpoints), Protocol: proto, Port: port, Allowed: make([][]bool, len(endpoints))}
	for i, src := range endpoints {
		m.Allowed[i] = make([]bool, len(endpoints))
		for j, dst := range endpoints {
			v, err := ps.Evaluate(Flow{Src: EndpointPeer(src), Dst: EndpointPeer(dst), Protocol: proto, DstPort: port})
			if err != nil {
				return nil, fmt.Errorf("matrix %s → %s: %w", src, dst, err)
			}
			m.Allowed[i][j] = v.Allowed()
		}
	}
	return m, nil
}

// String renders the matrix as a table: rows are sources, columns
// destinations (numbered as in the row labels), "✓" allowed and "✗" denied.
func (m *Matrix) String() string {
	var b strings.Builder
	w := 0
	for _, e := range m.Endpoints {
		w = max(w, len(e))
	}
	fmt.Fprintf(&b, "%-*s", w+5, fmt.Sprintf("%s/%d", m.Protocol, m.Port))
	for j := range m.Endpoints {
		fmt.Fprintf(&b, " %2d", j+1)
	}
	b.WriteString("\n")
	for i, e := range m.Endpoints {
		fmt.Fprintf(&b, "%2d %-*s  ", i+1, w, e)
		for j := range m.Endpoints {
			c := "✗"
			if m.Allowed[i][j] {
				c = "✓"
			}
			fmt.Fprintf(&b, "  %s", c)
		}
		b.WriteString("\n")
	}
	return b.String()
}
