package selector

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ErrNotLabelSelector is wrapped by Requirements' errors (and so by
// k8sselector.ToLabelSelector's) for selectors a Kubernetes LabelSelector
// cannot express.
var ErrNotLabelSelector = errors.New("not expressible as a Kubernetes LabelSelector")

// ErrMatchesNothing is wrapped, beside ErrNotLabelSelector, by
// Requirements' errors for selectors that match no label set: a
// LabelSelector that matches nothing cannot be written (nil means "not set").
// A caller may treat such a selector as matching nothing instead of failing.
var ErrMatchesNothing = errors.New("matches nothing, which a LabelSelector cannot express")

// Operator is the operator of a Requirement. Its values are the names of
// Kubernetes' metav1.LabelSelectorOperator, so a conversion is a type
// conversion.
type Operator string

// The operators of a Requirement, as Kubernetes names them.
const (
	OpIn           Operator = "In"
	OpNotIn        Operator = "NotIn"
	OpExists       Operator = "Exists"
	OpDoesNotExist Operator = "DoesNotExist"
)

// Requirement is one term of a conjunction in the shape of a Kubernetes
// LabelSelectorRequirement: In and NotIn hold at least one value, Exists
// and DoesNotExist none.
type Requirement struct {
	Key      string
	Operator Operator
	Values   []string
}

// Requirements returns the selector as the two parts of a Kubernetes
// LabelSelector, without depending on Kubernetes' packages (package
// selector/k8sselector builds the metav1.LabelSelector from them): the
// labels the selector requires with one value (k == "v", first occurrence of
// a key) in matchLabels, and every other term as a Requirement in the order
// written. matchLabels is nil when there are none; all() gives (nil, nil,
// nil).
//
// It succeeds when the selector is a conjunction of terms a LabelSelector
// can express: k == "v", k != "v" (NotIn), k in {...}, k not in {...},
// has(k), !has(k), all(), and the negations of the first four. Every other
// selector returns an error that wraps ErrNotLabelSelector and names the term
// and why it cannot be expressed:
//   - "||": a LabelSelector ANDs its terms and has no OR;
//   - "!" of a bracketed group: there is no general NOT;
//   - contains, starts with, ends with (negated or not): no such operator;
//   - global(): only Calico's namespace selectors give it a meaning.
//
// A conjunction that matches nothing is rejected too, since a LabelSelector
// that matches nothing cannot be written (nil means "not set"); these errors
// also wrap ErrMatchesNothing. For a conjunction of the terms above the check
// is exact: !all(), k in {}, and any label whose terms contradict each other,
// that is, one that must be both present and absent (has(k) && !has(k),
// k == "v" && !has(k)), or whose every allowed value is excluded
// (k == "x" && k == "y", k in {"x"} && k != "x").
//
// Keys and values are not checked against Kubernetes' label syntax here;
// k8sselector.ToLabelSelector does that.
func (s Selector) Requirements() (matchLabels map[string]string, reqs []Requirement, err error) {
	p := s.prog()
	if p.err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotLabelSelector, p.err)
	}
	terms := []int32{p.root}
	if root := &p.nodes[p.root]; root.op == opAnd && !root.neg {
		terms = p.kidsOf(root)
	}
	add := func(key string, o Operator, vals ...string) {
		reqs = append(reqs, Requirement{Key: key, Operator: o, Values: vals})
	}
	for _, i := range terms {
		n := &p.nodes[i]
		if why, nothing := notLabelSelector(n); why != "" {
			var b strings.Builder
			p.writeCanonical(&b, i)
			if nothing {
				return nil, nil, fmt.Errorf("%w: %s: %s %w", ErrNotLabelSelector, b.String(), why, ErrMatchesNothing)
			}
			return nil, nil, fmt.Errorf("%w: %s: %s", ErrNotLabelSelector, b.String(), why)
		}
		if n.op == opAll {
			continue
		}
		// Fold the negation into the operator.
		o := n.op
		if n.neg {
			switch o {
			case opEq:
				o = opNe
			case opNe:
				o = opEq
			case opIn:
				o = opNotIn
			case opNotIn:
				o = opIn
			case opHas:
				add(n.key, OpDoesNotExist)
				continue
			}
		}
		switch o {
		case opHas:
			add(n.key, OpExists)
		case opEq:
			if _, dup := matchLabels[n.key]; dup {
				add(n.key, OpIn, n.val)
				continue
			}
			if matchLabels == nil {
				matchLabels = map[string]string{}
			}
			matchLabels[n.key] = n.val
		case opNe:
			add(n.key, OpNotIn, n.val)
		case opIn:
			add(n.key, OpIn, n.set.values()...)
		case opNotIn:
			if n.set.len() > 0 { // "not in {}" always holds
				add(n.key, OpNotIn, n.set.values()...)
			}
		}
	}
	if why := contradiction(matchLabels, reqs); why != "" {
		return nil, nil, fmt.Errorf("%w: %s: %s, so it %w", ErrNotLabelSelector, s.String(), why, ErrMatchesNothing)
	}
	return matchLabels, reqs, nil
}

// contradiction says which label of a LabelSelector no label set can
// satisfy, or returns "". It is exact: a label that must be absent, or
// present with any value outside a finite list, can always be found.
func contradiction(matchLabels map[string]string, reqs []Requirement) string {
	type demand struct {
		present, absent bool
		allowed         []string // nil: any value
		forbidden       []string
	}
	demands := map[string]*demand{}
	get := func(k string) *demand {
		d, ok := demands[k]
		if !ok {
			d = &demand{}
			demands[k] = d
		}
		return d
	}
	allow := func(d *demand, vals []string) {
		d.present = true
		if d.allowed == nil {
			d.allowed = vals
		} else {
			d.allowed = intersect(d.allowed, vals)
		}
	}
	for k, v := range matchLabels {
		allow(get(k), []string{v})
	}
	for _, r := range reqs {
		d := get(r.Key)
		switch r.Operator {
		case OpExists:
			d.present = true
		case OpDoesNotExist:
			d.absent = true
		case OpIn:
			allow(d, r.Values)
		case OpNotIn:
			d.forbidden = append(d.forbidden, r.Values...)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(demands)) {
		d := demands[k]
		if d.present && d.absent {
			return fmt.Sprintf("label %q must be both present and absent", k)
		}
		if d.allowed != nil && !slices.ContainsFunc(d.allowed, func(v string) bool { return !slices.Contains(d.forbidden, v) }) {
			return fmt.Sprintf("label %q has no value that every term allows", k)
		}
	}
	return ""
}

// notLabelSelector says why a term of a conjunction has no LabelSelector
// equivalent, or returns "". When the reason is that the term matches
// nothing, why is the term's description and nothing is true.
func notLabelSelector(n *node) (why string, nothing bool) {
	switch {
	case n.op == opOr:
		return `"||" cannot be expressed: a LabelSelector ANDs its terms and has no OR`, false
	case n.op == opAnd: // only a negated group is left as a term
		return `"!" of a bracketed group cannot be expressed: a LabelSelector has no general NOT`, false
	case n.op == opContains:
		return `"contains" cannot be expressed: a LabelSelector has no such operator`, false
	case n.op == opStartsWith:
		return `"starts with" cannot be expressed: a LabelSelector has no such operator`, false
	case n.op == opEndsWith:
		return `"ends with" cannot be expressed: a LabelSelector has no such operator`, false
	case n.op == opGlobal:
		return "global() cannot be expressed: it has a meaning only in a Calico namespace selector", false
	case n.op == opAll && n.neg:
		return "!all()", true
	case n.op == opIn && !n.neg && n.set.len() == 0, n.op == opNotIn && n.neg && n.set.len() == 0:
		return "an empty set", true
	}
	return "", false
}
