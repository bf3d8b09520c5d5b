package bgp

// GoBGP routing policy: keepOriginalNextHop and the per-peer BGPFilters.
//
// GoBGP only has per-neighbor policy assignments for route-server clients,
// so per-peer behaviour is expressed as GoBGP's one global import policy
// and one global export policy whose statements carry a neighbor-set
// condition: on import GoBGP matches it against the peer that sent the
// route, on export against the peer the route is about to be sent to.
// Both policies always exist (possibly without statements) and stay
// assigned, so an update is one SetPolicies call that swaps their content.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
)

const (
	importPolicyName = "tabby-import"
	exportPolicyName = "tabby-export"
	// keepNextHopPolicy names the statement (and neighbor set) that
	// implements Peer.KeepOriginalNextHop.
	keepNextHopPolicy = "tabby-keep-original-next-hop"
)

// policyBuilder collects the defined sets and statements of one rendering.
type policyBuilder struct {
	sets []*api.DefinedSet
	// local maps the node's own advertised prefixes to their interface,
	// for rules with an interface pattern.
	local map[netip.Prefix]string
}

func neighborSet(name string, addrs ...netip.Addr) *api.DefinedSet {
	l := make([]string, len(addrs))
	for i, a := range addrs {
		l[i] = netip.PrefixFrom(a, a.BitLen()).String()
	}
	return &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: name, List: l}
}

// ruleStatements renders one BGPFilter rule for the peer whose neighbor
// set is nb as zero or more GoBGP statements (zero: the rule can match no
// route). Statement and set names start with name.
func (b *policyBuilder) ruleStatements(name, nb string, r FilterRule, v4 bool) []*api.Statement {
	bits := 128
	family := netip.MustParsePrefix("::/0")
	if v4 {
		bits, family = 32, netip.MustParsePrefix("0.0.0.0/0")
	}
	entry := func(p netip.Prefix, lo, hi int) *api.Prefix {
		return &api.Prefix{IpPrefix: p.String(), MaskLengthMin: uint32(lo), MaskLengthMax: uint32(hi)}
	}
	var prefixes []*api.Prefix
	match := api.MatchSet_ANY
	routeTypes := []api.Conditions_RouteType{api.Conditions_ROUTE_TYPE_NONE}
	if r.Source == RemotePeers {
		routeTypes = []api.Conditions_RouteType{api.Conditions_ROUTE_TYPE_INTERNAL, api.Conditions_ROUTE_TYPE_EXTERNAL}
	}
	lo, hi := r.lengthRange(bits)
	switch {
	case r.Interface != "":
		// Only the node's own advertisements have an interface: the rule
		// becomes the exact list of those that match it.
		if r.Source == RemotePeers {
			return nil
		}
		for p, iface := range b.local {
			if p.Addr().Is4() == v4 && r.matches(FilterRoute{Prefix: p, Interface: iface}) {
				prefixes = append(prefixes, entry(p, p.Bits(), p.Bits()))
			}
		}
		slices.SortFunc(prefixes, func(a, b *api.Prefix) int { return strings.Compare(a.IpPrefix, b.IpPrefix) })
		routeTypes = []api.Conditions_RouteType{api.Conditions_ROUTE_TYPE_LOCAL}
	case !r.CIDR.IsValid():
		if lo <= hi {
			prefixes = append(prefixes, entry(family, lo, hi))
		}
	case r.MatchOperator == Equal || r.MatchOperator == NotEqual:
		prefixes = append(prefixes, entry(r.CIDR, r.CIDR.Bits(), r.CIDR.Bits()))
		if r.MatchOperator == NotEqual {
			match = api.MatchSet_INVERT
		}
	case lo > hi: // an empty prefix set: In matches nothing, NotIn all
		if r.MatchOperator == NotIn {
			prefixes = append(prefixes, entry(family, 0, bits))
		}
	default:
		prefixes = append(prefixes, entry(r.CIDR, lo, hi))
		if r.MatchOperator == NotIn {
			match = api.MatchSet_INVERT
		}
	}
	if len(prefixes) == 0 {
		return nil
	}
	// A prefix set only matches routes of its own family, inverted or not.
	b.sets = append(b.sets, &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: name, Prefixes: prefixes})
	action := api.RouteAction_ACCEPT
	if r.Action == Reject {
		action = api.RouteAction_REJECT
	}
	out := make([]*api.Statement, 0, len(routeTypes))
	for i, rt := range routeTypes {
		out = append(out, &api.Statement{
			Name: fmt.Sprintf("%s/%d", name, i),
			Conditions: &api.Conditions{
				NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: nb},
				PrefixSet:   &api.MatchSet{Type: match, Name: name},
				RouteType:   rt,
			},
			Actions: &api.Actions{RouteAction: action},
		})
	}
	return out
}

// filterStatements renders the rules of one direction of a peer's filters,
// in order.
func (b *policyBuilder) filterStatements(dir string, addr netip.Addr, nb string, filters []BGPFilter) []*api.Statement {
	var out []*api.Statement
	for fi, f := range filters {
		fl := f.Export
		if dir == "import" {
			fl = f.Import
		}
		for ri, r := range fl.V4 {
			name := fmt.Sprintf("tabby-%s/%s/%d/%s/v4/%d", dir, addr, fi, f.Name, ri)
			out = append(out, b.ruleStatements(name, nb, r, true)...)
		}
		for ri, r := range fl.V6 {
			name := fmt.Sprintf("tabby-%s/%s/%d/%s/v6/%d", dir, addr, fi, f.Name, ri)
			out = append(out, b.ruleStatements(name, nb, r, false)...)
		}
	}
	return out
}

// usesInterfaces reports whether a desired peer has a filter rule with an
// interface pattern (then the policy depends on the advertisements).
func (s *Speaker) usesInterfacesLocked() bool {
	for _, p := range s.peers.Desired().All() {
		for _, f := range p.Filters {
			for _, fl := range []Filter{f.Export, f.Import} {
				for _, r := range slices.Concat(fl.V4, fl.V6) {
					if r.Interface != "" {
						return true
					}
				}
			}
		}
	}
	return false
}

// renderPoliciesLocked builds GoBGP's policy configuration for the desired
// peers: the keepOriginalNextHop statement first (it changes the next hop
// and lets evaluation go on), then each peer's filters.
func (s *Speaker) renderPoliciesLocked() *api.SetPoliciesRequest {
	b := &policyBuilder{}
	if s.usesInterfacesLocked() {
		b.local = map[netip.Prefix]string{}
		for p, pa := range s.adv.Desired().All() {
			if pa.iface != "" {
				b.local[p] = pa.iface
			}
		}
	}
	var addrs []netip.Addr
	var keep []netip.Addr
	for addr, p := range s.peers.Desired().All() {
		addrs = append(addrs, addr)
		if p.KeepOriginalNextHop {
			keep = append(keep, addr)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	slices.SortFunc(keep, netip.Addr.Compare)
	imp := &api.Policy{Name: importPolicyName}
	exp := &api.Policy{Name: exportPolicyName}
	if len(keep) > 0 {
		b.sets = append(b.sets, neighborSet(keepNextHopPolicy, keep...))
		exp.Statements = append(exp.Statements, &api.Statement{
			Name:       keepNextHopPolicy,
			Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: keepNextHopPolicy}},
			Actions:    &api.Actions{Nexthop: &api.NexthopAction{Unchanged: true}},
		})
	}
	for _, addr := range addrs {
		p, _ := s.peers.Desired().Get(addr)
		if len(p.Filters) == 0 {
			continue
		}
		nb := "tabby-peer/" + addr.String()
		i := b.filterStatements("import", addr, nb, p.Filters)
		e := b.filterStatements("export", addr, nb, p.Filters)
		if len(i)+len(e) == 0 {
			continue
		}
		b.sets = append(b.sets, neighborSet(nb, addr))
		imp.Statements = append(imp.Statements, i...)
		exp.Statements = append(exp.Statements, e...)
	}
	return &api.SetPoliciesRequest{DefinedSets: b.sets, Policies: []*api.Policy{imp, exp}}
}

// setPoliciesLocked installs the rendered policies when they changed, and
// on the first call after Start assigns them as the global import and
// export policies (default accept).
func (s *Speaker) setPoliciesLocked(ctx context.Context) error {
	req := s.renderPoliciesLocked()
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return fmt.Errorf("render BGP policies: %w", err)
	}
	key := string(raw)
	if s.keepInstalled != nil && *s.keepInstalled == key {
		return nil
	}
	if err := s.srv.SetPolicies(ctx, req); err != nil {
		return fmt.Errorf("set BGP policies (keepOriginalNextHop, peer filters): %w", err)
	}
	if s.keepInstalled == nil {
		for _, a := range []*api.PolicyAssignment{
			{Name: "global", Direction: api.PolicyDirection_IMPORT, DefaultAction: api.RouteAction_ACCEPT, Policies: []*api.Policy{{Name: importPolicyName}}},
			{Name: "global", Direction: api.PolicyDirection_EXPORT, DefaultAction: api.RouteAction_ACCEPT, Policies: []*api.Policy{{Name: exportPolicyName}}},
		} {
			if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: a}); err != nil {
				return fmt.Errorf("assign BGP %s policy: %w", a.Direction, err)
			}
		}
	}
	s.keepInstalled = &key
	return nil
}

// exportVerdict is the verdict of a peer's filters, in order, on rt: the
// first filter with a matching rule decides; none means Accept.
func exportVerdict(filters []BGPFilter, rt FilterRoute) Action {
	for _, f := range filters {
		if act, i := f.Export.DecideRoute(rt); i >= 0 {
			return act
		}
	}
	return Accept
}

// exportTightenedLocked reports whether changing a peer's filters from old
// to new rejects a route the node may have sent it: one of its own
// advertisements or a learned prefix of the peer's family. GoBGP keeps no
// Adj-RIB-Out, so a soft reset can announce what a filter now accepts but
// cannot withdraw what it now rejects; such a change resets the session.
func (s *Speaker) exportTightenedLocked(old, new Peer) bool {
	v4 := new.Address.Is4()
	tightened := func(rt FilterRoute) bool {
		return rt.Prefix.Addr().Is4() == v4 && exportVerdict(old.Filters, rt) == Accept && exportVerdict(new.Filters, rt) == Reject
	}
	for p, pa := range s.adv.Dataplane().All() {
		if tightened(FilterRoute{Prefix: p, Interface: pa.iface}) {
			return true
		}
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	for p := range s.learned.Desired().All() {
		if tightened(FilterRoute{Prefix: p, FromPeer: true}) {
			return true
		}
	}
	for p := range s.learnedWhy {
		if tightened(FilterRoute{Prefix: p, FromPeer: true}) {
			return true
		}
	}
	return false
}
