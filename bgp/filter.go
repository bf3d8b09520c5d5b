package bgp

import (
	"fmt"
	"net/netip"
	pathpkg "path"
	"slices"
)

// Action is a filter rule's verdict (BGPFilter rule action).
type Action string

const (
	Accept Action = "Accept"
	Reject Action = "Reject"
)

// MatchOperator compares a prefix with a rule's CIDR (BGPFilter
// matchOperator).
type MatchOperator string

const (
	// Equal: the prefix is the CIDR.
	Equal MatchOperator = "Equal"
	// NotEqual: the prefix is not the CIDR.
	NotEqual MatchOperator = "NotEqual"
	// In: the prefix lies inside the CIDR (or is it).
	In MatchOperator = "In"
	// NotIn: the prefix does not lie inside the CIDR.
	NotIn MatchOperator = "NotIn"
)

// FilterSource restricts a rule to where a route comes from (BGPFilter
// rule source).
type FilterSource string

// RemotePeers matches routes learned from BGP peers, not the node's own
// advertisements (BIRD's source ~ [RTS_BGP], as Calico renders it).
const RemotePeers FilterSource = "RemotePeers"

// FilterRule is one rule of a Calico BGPFilter (exportV4[], importV6[],
// ...). Every condition that is set must hold for the rule to match:
//
//   - CIDR with MatchOperator: the prefix compared with CIDR. With
//     PrefixLength the CIDR stands for Calico's prefix set
//     CIDR{max(CIDR bits, Min), min(32|128, Max)} (0 = unset), so In
//     means "inside CIDR with a length in that range" and NotIn its
//     negation (BIRD's net ~ / net !~ [cidr{min,max}]). Equal and
//     NotEqual compare with CIDR itself and refuse PrefixLength.
//   - No CIDR: every prefix of the rule's family; PrefixLength then
//     narrows to lengths in [Min, Max] (a tabby extension: Calico ignores
//     prefixLength without cidr).
//   - Source RemotePeers: only routes learned from BGP peers.
//   - Interface: only the node's own advertisements whose
//     Advertisement.Interface matches this shell pattern ("*.calico";
//     BIRD's ifname ~ "..."). Learned routes have no interface here.
type FilterRule struct {
	Action        Action
	CIDR          netip.Prefix
	MatchOperator MatchOperator
	PrefixLength  struct{ Min, Max int }
	Source        FilterSource
	Interface     string
}

// Filter is an ordered list of rules per family; the first rule that
// matches decides. When none matches the prefix is accepted, as in Calico
// (a BGPFilter only adds rules before the default policy).
type Filter struct {
	V4, V6 []FilterRule
}

func (f Filter) clone() Filter { return Filter{V4: slices.Clone(f.V4), V6: slices.Clone(f.V6)} }

// clone copies the rule slices, so a caller's later edits do not reach a
// speaker's desired state.
func (f BGPFilter) clone() BGPFilter {
	return BGPFilter{Name: f.Name, Export: f.Export.clone(), Import: f.Import.clone()}
}

// BGPFilter follows Calico's BGPFilter resource: Export.V4, Import.V4,
// Export.V6 and Import.V6 are spec.exportV4, importV4, exportV6 and
// importV6. A BGPPeer names the filters that apply to its sessions
// (BGPPeer.Filters); they run in that order before the speaker's
// defaults, so the first matching rule of the first filter with one wins.
type BGPFilter struct {
	Name           string
	Export, Import Filter
}

func (f BGPFilter) validate() error {
	if err := f.Export.validate(); err != nil {
		return fmt.Errorf("bgpfilter %s export: %w", f.Name, err)
	}
	if err := f.Import.validate(); err != nil {
		return fmt.Errorf("bgpfilter %s import: %w", f.Name, err)
	}
	return nil
}

// empty reports whether the filter has no rule at all.
func (f Filter) empty() bool { return len(f.V4) == 0 && len(f.V6) == 0 }

// FilterRoute is what a filter rule looks at: the prefix, whether a BGP
// peer sent it, and for the node's own advertisements their interface.
type FilterRoute struct {
	Prefix    netip.Prefix
	FromPeer  bool
	Interface string
}

func (f Filter) validate() error {
	for fam, rules := range map[string][]FilterRule{"V4": f.V4, "V6": f.V6} {
		for i, r := range rules {
			if err := r.validate(fam == "V4"); err != nil {
				return fmt.Errorf("%s rule %d: %w", fam, i, err)
			}
		}
	}
	return nil
}

func (r FilterRule) validate(v4 bool) error {
	if r.Action != Accept && r.Action != Reject {
		return fmt.Errorf("action %q: want Accept or Reject: %w", r.Action, ErrInvalidFilter)
	}
	max := 128
	if v4 {
		max = 32
	}
	pl := r.PrefixLength
	if r.CIDR.IsValid() {
		if err := validPrefix(r.CIDR); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidFilter, err)
		}
		if r.CIDR.Addr().Is4() != v4 {
			return fmt.Errorf("cidr %s is of the wrong family: %w", r.CIDR, ErrInvalidFilter)
		}
		switch r.MatchOperator {
		case In, NotIn:
		case Equal, NotEqual:
			if pl.Min != 0 || pl.Max != 0 {
				return fmt.Errorf("prefixLength with matchOperator %s: want In or NotIn: %w", r.MatchOperator, ErrInvalidFilter)
			}
		default:
			return fmt.Errorf("cidr %s needs matchOperator Equal, NotEqual, In or NotIn, not %q: %w", r.CIDR, r.MatchOperator, ErrInvalidFilter)
		}
	} else if r.MatchOperator != "" {
		return fmt.Errorf("matchOperator %q without cidr: %w", r.MatchOperator, ErrInvalidFilter)
	}
	if pl.Min < 0 || pl.Max < 0 || pl.Min > max || pl.Max > max || (pl.Max != 0 && pl.Min > pl.Max) {
		return fmt.Errorf("prefixLength [%d, %d]: want 0 <= min <= max <= %d: %w", pl.Min, pl.Max, max, ErrInvalidFilter)
	}
	if r.Source != "" && r.Source != RemotePeers {
		return fmt.Errorf("source %q: want RemotePeers or empty: %w", r.Source, ErrInvalidFilter)
	}
	if r.Interface != "" {
		if _, err := pathpkg.Match(r.Interface, ""); err != nil {
			return fmt.Errorf("interface pattern %q: %w", r.Interface, ErrInvalidFilter)
		}
	}
	return nil
}

// lengthRange is the [lo, hi] prefix-length range the rule's CIDR or
// family match covers (Calico's cidr{min,max}); lo > hi means none.
func (r FilterRule) lengthRange(bits int) (lo, hi int) {
	lo, hi = r.PrefixLength.Min, bits
	if r.CIDR.IsValid() {
		lo = max(lo, r.CIDR.Bits())
	}
	if r.PrefixLength.Max != 0 {
		hi = min(hi, r.PrefixLength.Max)
	}
	return lo, hi
}

// matchesPrefix evaluates the rule's CIDR (or family) condition alone.
func (r FilterRule) matchesPrefix(p netip.Prefix) bool {
	if r.CIDR.IsValid() && r.CIDR.Addr().Is4() != p.Addr().Is4() {
		return false
	}
	lo, hi := r.lengthRange(p.Addr().BitLen())
	inRange := lo <= p.Bits() && p.Bits() <= hi
	if !r.CIDR.IsValid() {
		return inRange
	}
	in := r.CIDR.Bits() <= p.Bits() && r.CIDR.Contains(p.Addr()) && inRange
	switch r.MatchOperator {
	case Equal:
		return p == r.CIDR
	case NotEqual:
		return p != r.CIDR
	case In:
		return in
	case NotIn:
		return !in
	}
	return false
}

func (r FilterRule) matches(rt FilterRoute) bool {
	if r.Source == RemotePeers && !rt.FromPeer {
		return false
	}
	if r.Interface != "" {
		if rt.FromPeer || rt.Interface == "" {
			return false
		}
		if ok, _ := pathpkg.Match(r.Interface, rt.Interface); !ok {
			return false
		}
	}
	return r.matchesPrefix(rt.Prefix)
}

// Decide returns the verdict for p as one of the node's own advertisements
// without an interface (DecideRoute with only Prefix set), and the index
// of the deciding rule in p's family's list, or -1 when none matched (the
// verdict is then Accept).
func (f Filter) Decide(p netip.Prefix) (Action, int) {
	return f.DecideRoute(FilterRoute{Prefix: p})
}

// DecideRoute returns the verdict for rt and the index of the deciding
// rule in the list of rt's family, or -1 when no rule matched (then the
// verdict is Accept).
func (f Filter) DecideRoute(rt FilterRoute) (Action, int) {
	rules := f.V6
	if rt.Prefix.Addr().Is4() {
		rules = f.V4
	}
	for i, r := range rules {
		if r.matches(rt) {
			return r.Action, i
		}
	}
	return Accept, -1
}
