package k8sselector

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/tabbynet/tabby/selector"
)

// FromLabelSelector converts a Kubernetes LabelSelector with the semantics
// Kubernetes gives it (metav1.LabelSelectorAsSelector):
//   - nil matches nothing (selector.Nothing());
//   - an empty selector matches everything (selector.All());
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
// An error wraps selector.ErrInvalid and comes with selector.Nothing(), so a caller that
// ignores it gets a selector that matches nothing, never all().
func FromLabelSelector(ls *metav1.LabelSelector) (selector.Selector, error) {
	if ls == nil {
		return selector.Nothing(), nil
	}
	var terms []selector.Selector
	keys := make([]string, 0, len(ls.MatchLabels))
	for k := range ls.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := checkK8sLabel(k, ls.MatchLabels[k]); err != nil {
			return selector.Nothing(), fmt.Errorf("%w: matchLabels: %w", selector.ErrInvalid, err)
		}
		terms = append(terms, selector.Eq(k, ls.MatchLabels[k]))
	}
	for i, e := range ls.MatchExpressions {
		if err := checkK8sLabel(e.Key); err != nil {
			return selector.Nothing(), fmt.Errorf("%w: matchExpressions[%d]: %w", selector.ErrInvalid, i, err)
		}
		var t selector.Selector
		switch e.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(e.Values) == 0 {
				return selector.Nothing(), fmt.Errorf("%w: matchExpressions[%d]: operator %s needs at least one value", selector.ErrInvalid, i, e.Operator)
			}
			if err := checkK8sLabel(e.Key, e.Values...); err != nil {
				return selector.Nothing(), fmt.Errorf("%w: matchExpressions[%d]: %w", selector.ErrInvalid, i, err)
			}
			if e.Operator == metav1.LabelSelectorOpIn {
				t = selector.In(e.Key, e.Values...)
			} else {
				t = selector.NotIn(e.Key, e.Values...)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(e.Values) != 0 {
				return selector.Nothing(), fmt.Errorf("%w: matchExpressions[%d]: operator %s takes no values", selector.ErrInvalid, i, e.Operator)
			}
			t = selector.Has(e.Key)
			if e.Operator == metav1.LabelSelectorOpDoesNotExist {
				t = selector.Not(t)
			}
		default:
			return selector.Nothing(), fmt.Errorf("%w: matchExpressions[%d]: unknown operator %q", selector.ErrInvalid, i, e.Operator)
		}
		terms = append(terms, t)
	}
	sel := selector.And(terms...)
	if err := sel.Err(); err != nil {
		return selector.Nothing(), invalid(err)
	}
	return sel, nil
}

// FromK8sSelector converts a parsed Kubernetes labels.Selector (from
// labels.Parse or metav1.LabelSelectorAsSelector). Gt and Lt have no
// equivalent and are rejected, as are keys and values Kubernetes itself
// rejects (a Requirement built while ignoring labels.NewRequirement's error).
// A nil ks, like labels.Nothing(), matches nothing. An error wraps selector.ErrInvalid and comes with
// selector.Nothing(), so a caller that ignores it gets a selector that matches nothing.
func FromK8sSelector(ks labels.Selector) (selector.Selector, error) {
	if ks == nil {
		return selector.Nothing(), nil
	}
	reqs, selectable := ks.Requirements()
	if !selectable {
		return selector.Nothing(), nil
	}
	terms := make([]selector.Selector, 0, len(reqs))
	for _, r := range reqs {
		vals := r.ValuesUnsorted()
		if err := checkK8sLabel(r.Key(), vals...); err != nil {
			return selector.Nothing(), fmt.Errorf("%w: %w", selector.ErrInvalid, err)
		}
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.NotEquals:
			if len(vals) != 1 {
				return selector.Nothing(), fmt.Errorf("%w: label %q: operator %q needs exactly one value", selector.ErrInvalid, r.Key(), r.Operator())
			}
		}
		var t selector.Selector
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals:
			t = selector.Eq(r.Key(), vals[0])
		case selection.In:
			t = selector.In(r.Key(), vals...)
		case selection.NotEquals:
			t = selector.Ne(r.Key(), vals[0])
		case selection.NotIn:
			t = selector.NotIn(r.Key(), vals...)
		case selection.Exists:
			t = selector.Has(r.Key())
		case selection.DoesNotExist:
			t = selector.Not(selector.Has(r.Key()))
		default:
			return selector.Nothing(), fmt.Errorf("%w: label %q: operator %q has no selector equivalent", selector.ErrInvalid, r.Key(), r.Operator())
		}
		terms = append(terms, t)
	}
	sel := selector.And(terms...)
	if err := sel.Err(); err != nil {
		return selector.Nothing(), invalid(err)
	}
	return sel, nil
}

// ToLabelSelector converts a selector to a Kubernetes LabelSelector when it
// is a conjunction of terms one can express (see selector.Selector's
// Requirements, whose errors, wrapping selector.ErrNotLabelSelector and, for
// a selector that matches nothing, selector.ErrMatchesNothing, it returns)
// and every key is a Kubernetes qualified name and every value a valid label
// value; otherwise the error wraps selector.ErrNotLabelSelector with
// Kubernetes' own message. Equalities go to matchLabels, every other term to
// matchExpressions in the order written, leaving out each term another one
// already implies: a second k == "v" or k in {"v"} beside matchLabels k: v,
// any In, NotIn or Exists on a key matchLabels fixes, a term written twice
// (the first is kept), has(k) beside k in {...}, and an In or NotIn a
// narrower one on the same key implies (k in {"x", "y"} beside k in {"x"}).
// It does not merge terms that only together imply a third (k in {"x", "y"}
// && k in {"y", "z"} stays as written, not k: y).
func ToLabelSelector(s selector.Selector) (*metav1.LabelSelector, error) {
	matchLabels, reqs, err := s.Requirements()
	if err != nil {
		return nil, err
	}
	reqs = withoutImplied(matchLabels, reqs)
	for _, k := range slices.Sorted(maps.Keys(matchLabels)) {
		if err := checkK8sLabel(k, matchLabels[k]); err != nil {
			return nil, fmt.Errorf("%w: %w", selector.ErrNotLabelSelector, err)
		}
	}
	out := &metav1.LabelSelector{MatchLabels: matchLabels}
	for _, r := range reqs {
		if err := checkK8sLabel(r.Key, r.Values...); err != nil {
			return nil, fmt.Errorf("%w: %w", selector.ErrNotLabelSelector, err)
		}
		out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: r.Key, Operator: metav1.LabelSelectorOperator(r.Operator), Values: r.Values})
	}
	return out, nil
}

// withoutImplied returns reqs, in order, without the requirements that
// matchLabels or another requirement implies. Of requirements that imply
// each other (the same term twice) the first stays; a requirement implied by
// a strictly stronger one goes whatever their order. Every requirement
// dropped is implied by one that stays, by following stronger or earlier
// ones, so the result means the same.
func withoutImplied(matchLabels map[string]string, reqs []selector.Requirement) []selector.Requirement {
	var out []selector.Requirement
	for i, r := range reqs {
		if v, ok := matchLabels[r.Key]; ok && labelImplies(v, r) {
			continue
		}
		dropped := false
		for j, o := range reqs {
			if j != i && implies(o, r) && (j < i || !implies(r, o)) {
				dropped = true
				break
			}
		}
		if !dropped {
			out = append(out, r)
		}
	}
	return out
}

// labelImplies reports whether the label being v implies r (on the same key).
func labelImplies(v string, r selector.Requirement) bool {
	switch r.Operator {
	case selector.OpExists:
		return true
	case selector.OpIn:
		return slices.Contains(r.Values, v)
	case selector.OpNotIn:
		return !slices.Contains(r.Values, v)
	}
	return false // DoesNotExist: a contradiction Requirements rejects
}

// implies reports whether requirement a implies requirement b: whenever a
// holds, b does.
func implies(a, b selector.Requirement) bool {
	if a.Key != b.Key {
		return false
	}
	switch b.Operator {
	case selector.OpExists:
		return a.Operator == selector.OpExists || a.Operator == selector.OpIn
	case selector.OpDoesNotExist:
		return a.Operator == selector.OpDoesNotExist
	case selector.OpIn: // a's allowed values are some of b's
		return a.Operator == selector.OpIn && subset(a.Values, b.Values)
	case selector.OpNotIn: // a excludes every value b excludes
		switch a.Operator {
		case selector.OpDoesNotExist:
			return true
		case selector.OpNotIn:
			return subset(b.Values, a.Values)
		case selector.OpIn:
			return !slices.ContainsFunc(a.Values, func(v string) bool { return slices.Contains(b.Values, v) })
		}
	}
	return false
}

// subset reports whether every value of a is in b.
func subset(a, b []string) bool {
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	return true
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
	if errors.Is(err, selector.ErrInvalid) {
		return err
	}
	return fmt.Errorf("%w: %w", selector.ErrInvalid, err)
}
