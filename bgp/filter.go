package bgp

import (
	"fmt"
	"net/netip"
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

// FilterRule is one rule of a Calico BGPFilter. An empty CIDR matches every
// prefix of the family; PrefixLength narrows the match to prefix lengths in
// [Min, Max] (0 = no bound).
type FilterRule struct {
	Action        Action
	CIDR          netip.Prefix
	MatchOperator MatchOperator
	PrefixLength  struct{ Min, Max int }
}

// Filter is an ordered list of rules per family; the first rule that
// matches decides. When none matches the prefix is accepted, as in Calico
// (a BGPFilter only adds rules before the default policy).
type Filter struct {
	V4, V6 []FilterRule
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
	if r.CIDR.IsValid() {
		if err := validPrefix(r.CIDR); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidFilter, err)
		}
		if r.CIDR.Addr().Is4() != v4 {
			return fmt.Errorf("cidr %s is of the wrong family: %w", r.CIDR, ErrInvalidFilter)
		}
		switch r.MatchOperator {
		case Equal, NotEqual, In, NotIn:
		default:
			return fmt.Errorf("matchOperator %q: %w", r.MatchOperator, ErrInvalidFilter)
		}
	} else if r.MatchOperator != "" {
		return fmt.Errorf("matchOperator %q without cidr: %w", r.MatchOperator, ErrInvalidFilter)
	}
	pl := r.PrefixLength
	if pl.Min < 0 || pl.Max < 0 || pl.Min > max || pl.Max > max || (pl.Max != 0 && pl.Min > pl.Max) {
		return fmt.Errorf("prefixLength [%d, %d]: want 0 <= min <= max <= %d: %w", pl.Min, pl.Max, max, ErrInvalidFilter)
	}
	return nil
}

func (r FilterRule) matches(p netip.Prefix) bool {
	if pl := r.PrefixLength; p.Bits() < pl.Min || (pl.Max != 0 && p.Bits() > pl.Max) {
		return false
	}
	if !r.CIDR.IsValid() {
		return true
	}
	if r.CIDR.Addr().Is4() != p.Addr().Is4() {
		return false
	}
	in := r.CIDR.Bits() <= p.Bits() && r.CIDR.Contains(p.Addr())
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

// Decide returns the verdict for p and the index of the deciding rule, or
// -1 when no rule matched (then the verdict is Accept).
func (f Filter) Decide(p netip.Prefix) (Action, int) {
	rules := f.V6
	if p.Addr().Is4() {
		rules = f.V4
	}
	for i, r := range rules {
		if r.matches(p) {
			return r.Action, i
		}
	}
	return Accept, -1
}
