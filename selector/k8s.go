package selector

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// ErrNotLabelSelector is wrapped by ToLabelSelector's errors for selectors a
// Kubernetes LabelSelector cannot express.
var ErrNotLabelSelector = errors.New("not expressible as a Kubernetes LabelSelector")

// ErrMatchesNothing is wrapped, beside ErrNotLabelSelector, by
// ToLabelSelector's errors for selectors that match no label set: a
// LabelSelector that matches nothing cannot be written (nil means "not set").
// A caller may treat such a selector as matching nothing instead of failing.
var ErrMatchesNothing = errors.New("matches nothing, which a LabelSelector cannot express")

// FromLabelSelector converts a Kubernetes LabelSelector with the semantics
// Kubernetes gives it (metav1.LabelSelectorAsSelector):
//   - nil matches nothing (Nothing());
//   - an empty selector matches everything (All());
//   - matchLabels k: v is k == "v";
//   - In is k in {...}, NotIn is k not in {...} (true when k is absent),
//     Exists is has(k), DoesNotExist is !has(k); all terms are ANDed.
//
// It rejects what metav1.LabelSelectorAsSelector rejects: a key that is not
// a Kubernetes qualified name (content.IsLabelKey), a value that is not a
// valid label value (content.IsLabelValue: empty, or at most 63 characters
// from [A-Za-z0-9-_.] starting and ending with an alphanumeric), In or NotIn
// without values, Exists or DoesNotExist with values, and any other operator.
// The error message is Kubernetes' own. So every selector it returns converts
// back with ToLabelSelector (unless it matches nothing; see there).
//
// Where a Kubernetes field treats nil as "not set" (a NetworkPolicy peer's
// namespaceSelector), the caller decides what that means before calling.
//
// An error wraps ErrInvalid and comes with Nothing(), so a caller that
// ignores it gets a selector that matches nothing, never all().
func FromLabelSelector(ls *metav1.LabelSelector) (Selector, error) {
	if ls == nil {
		return Nothing(), nil
	}
	var terms []Selector
	keys := make([]string, 0, len(ls.MatchLabels))
	for k := range ls.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := checkK8sLabel(k, ls.MatchLabels[k]); err != nil {
			return Nothing(), fmt.Errorf("%w: matchLabels: %w", ErrInvalid, err)
		}
		terms = append(terms, Eq(k, ls.MatchLabels[k]))
	}
	for i, e := range ls.MatchExpressions {
		if err := checkK8sLabel(e.Key); err != nil {
			return Nothing(), fmt.Errorf("%w: matchExpressions[%d]: %w", ErrInvalid, i, err)
		}
		var t Selector
		switch e.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(e.Values) == 0 {
				return Nothing(), fmt.Errorf("%w: matchExpressions[%d]: operator %s needs at least one value", ErrInvalid, i, e.Operator)
			}
			if err := checkK8sLabel(e.Key, e.Values...); err != nil {
				return Nothing(), fmt.Errorf("%w: matchExpressions[%d]: %w", ErrInvalid, i, err)
			}
			if e.Operator == metav1.LabelSelectorOpIn {
				t = In(e.Key, e.Values...)
			} else {
				t = NotIn(e.Key, e.Values...)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(e.Values) != 0 {
				return Nothing(), fmt.Errorf("%w: matchExpressions[%d]: operator %s takes no values", ErrInvalid, i, e.Operator)
			}
			t = Has(e.Key)
			if e.Operator == metav1.LabelSelectorOpDoesNotExist {
				t = Not(t)
			}
		default:
			return Nothing(), fmt.Errorf("%w: matchExpressions[%d]: unknown operator %q", ErrInvalid, i, e.Operator)
		}
		terms = append(terms, t)
	}
	sel := And(terms...)
	if err := sel.Err(); err != nil {
		return Nothing(), invalid(err)
	}
	return sel, nil
}

// FromK8sSelector converts a parsed Kubernetes labels.Selector (from
// labels.Parse or metav1.LabelSelectorAsSelector). Gt and Lt have no
// equivalent and are rejected, as are keys and values Kubernetes itself
// rejects (a Requirement built while ignoring labels.NewRequirement's error).
// A nil ks, like labels.Nothing(), matches nothing. An error wraps ErrInvalid and comes with
// Nothing(), so a caller that ignores it gets a selector that matches nothing.
func FromK8sSelector(ks labels.Selector) (Selector, error) {
	if ks == nil {
		return Nothing(), nil
	}
	reqs, selectable := ks.Requirements()
	if !selectable {
		return Nothing(), nil
	}
	terms := make([]Selector, 0, len(reqs))
	for _, r := range reqs {
		vals := r.ValuesUnsorted()
		if err := checkK8sLabel(r.Key(), vals...); err != nil {
			return Nothing(), fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.NotEquals:
			if len(vals) != 1 {
				return Nothing(), fmt.Errorf("%w: label %q: operator %q needs exactly one value", ErrInvalid, r.Key(), r.Operator())
			}
		}
		var t Selector
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals:
			t = Eq(r.Key(), vals[0])
		case selection.In:
			t = In(r.Key(), vals...)
		case selection.NotEquals:
			t = Ne(r.Key(), vals[0])
		case selection.NotIn:
			t = NotIn(r.Key(), vals...)
		case selection.Exists:
			t = Has(r.Key())
		case selection.DoesNotExist:
			t = Not(Has(r.Key()))
		default:
			return Nothing(), fmt.Errorf("%w: label %q: operator %q has no selector equivalent", ErrInvalid, r.Key(), r.Operator())
		}
		terms = append(terms, t)
	}
	sel := And(terms...)
	if err := sel.Err(); err != nil {
		return Nothing(), invalid(err)
	}
	return sel, nil
}

// ToLabelSelector converts the selector to a Kubernetes LabelSelector when it
// is a conjunction of terms one can express: k == "v", k != "v", k in {...},
// k not in {...}, has(k), !has(k), all(), and the negations of the first
// four. Every other selector returns an error that wraps ErrNotLabelSelector
// and names the term and why it cannot be expressed:
//   - "||": a LabelSelector ANDs its terms and has no OR;
//   - "!" of a bracketed group: there is no general NOT;
//   - contains, starts with, ends with (negated or not): no such operator;
//   - global(): only Calico's namespace selectors give it a meaning;
//   - a key that is not a Kubernetes qualified name or a value that is not a
//     valid label value (with Kubernetes' own message).
//
// A conjunction that matches nothing is rejected too, since a LabelSelector
// that matches nothing cannot be written (nil means "not set"); these errors
// also wrap ErrMatchesNothing. For a conjunction of the terms above the check
// is exact: !all(), k in {}, and any label whose terms contradict each other,
// that is, one that must be both present and absent (has(k) && !has(k),
// k == "v" && !has(k)), or whose every allowed value is excluded
// (k == "x" && k == "y", k in {"x"} && k != "x").
func (s Selector) ToLabelSelector() (*metav1.LabelSelector, error) {
	p := s.prog()
	if p.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotLabelSelector, p.err)
	}
	terms := []int32{p.root}
	if root := &p.nodes[p.root]; root.op == opAnd && !root.neg {
		terms = p.kidsOf(root)
	}
	out := &metav1.LabelSelector{}
	addExpr := func(key string, o metav1.LabelSelectorOperator, vals ...string) {
		out.MatchExpressions = append(out.MatchExpressions,
			metav1.LabelSelectorRequirement{Key: key, Operator: o, Values: vals})
	}
	for _, i := range terms {
		n := &p.nodes[i]
		if why, nothing := notLabelSelector(n); why != "" {
			var b strings.Builder
			p.writeCanonical(&b, i)
			if nothing {
				return nil, fmt.Errorf("%w: %s: %s %w", ErrNotLabelSelector, b.String(), why, ErrMatchesNothing)
			}
			return nil, fmt.Errorf("%w: %s: %s", ErrNotLabelSelector, b.String(), why)
		}
		if n.op == opAll {
			continue
		}
		vals := n.set.vals
		if n.op != opIn && n.op != opNotIn && n.op != opHas {
			vals = []string{n.val}
		}
		if err := checkK8sLabel(n.key, vals...); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotLabelSelector, err)
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
				addExpr(n.key, metav1.LabelSelectorOpDoesNotExist)
				continue
			}
		}
		switch o {
		case opHas:
			addExpr(n.key, metav1.LabelSelectorOpExists)
		case opEq:
			if _, dup := out.MatchLabels[n.key]; dup {
				addExpr(n.key, metav1.LabelSelectorOpIn, n.val)
				continue
			}
			if out.MatchLabels == nil {
				out.MatchLabels = map[string]string{}
			}
			out.MatchLabels[n.key] = n.val
		case opNe:
			addExpr(n.key, metav1.LabelSelectorOpNotIn, n.val)
		case opIn:
			addExpr(n.key, metav1.LabelSelectorOpIn, n.set.values()...)
		case opNotIn:
			if n.set.len() > 0 { // "not in {}" always holds
				addExpr(n.key, metav1.LabelSelectorOpNotIn, n.set.values()...)
			}
		}
	}
	if why := contradiction(out); why != "" {
		return nil, fmt.Errorf("%w: %s: %s, so it %w", ErrNotLabelSelector, s.String(), why, ErrMatchesNothing)
	}
	return out, nil
}

// contradiction says which label of a LabelSelector no label set can
// satisfy, or returns "". It is exact: a label that must be absent, or
// present with any value outside a finite list, can always be found.
func contradiction(ls *metav1.LabelSelector) string {
	type demand struct {
		present, absent bool
		allowed         []string // nil: any value
		forbidden       []string
	}
	var keys []string
	demands := map[string]*demand{}
	get := func(k string) *demand {
		d, ok := demands[k]
		if !ok {
			d = &demand{}
			demands[k] = d
			keys = append(keys, k)
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
	for k, v := range ls.MatchLabels {
		allow(get(k), []string{v})
	}
	for _, e := range ls.MatchExpressions {
		d := get(e.Key)
		switch e.Operator {
		case metav1.LabelSelectorOpExists:
			d.present = true
		case metav1.LabelSelectorOpDoesNotExist:
			d.absent = true
		case metav1.LabelSelectorOpIn:
			allow(d, e.Values)
		case metav1.LabelSelectorOpNotIn:
			d.forbidden = append(d.forbidden, e.Values...)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
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

// checkK8sLabel reports a label key or value that Kubernetes'
// labels.NewRequirement rejects, with Kubernetes' own message.
func checkK8sLabel(key string, vals ...string) error {
	if errs := content.IsLabelKey(key); len(errs) > 0 {
		return fmt.Errorf("label key %q: %s", key, strings.Join(errs, "; "))
	}
	for _, v := range vals {
		if errs := content.IsLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("label %q value %q: %s", key, v, strings.Join(errs, "; "))
		}
	}
	return nil
}

// invalid makes a conversion error wrap ErrInvalid, as every error from
// FromLabelSelector and FromK8sSelector does.
func invalid(err error) error {
	if errors.Is(err, ErrInvalid) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInvalid, err)
}
