package k8sselector

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/tabbynet/tabby/selector"
)

func TestFromLabelSelector(t *testing.T) {
	tests := []struct {
		name string
		in   *metav1.LabelSelector
		want string
		err  string
	}{
		{"nil matches nothing", nil, `!all()`, ""},
		{"empty matches everything", &metav1.LabelSelector{}, `all()`, ""},
		{"match labels sorted", &metav1.LabelSelector{MatchLabels: map[string]string{"b": "2", "a": "1"}}, `(a == "1" && b == "2")`, ""},
		{"expressions", &metav1.LabelSelector{
			MatchLabels: map[string]string{"app": "web"},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "dev"}},
				{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"db"}},
				{Key: "team", Operator: metav1.LabelSelectorOpExists},
				{Key: "legacy", Operator: metav1.LabelSelectorOpDoesNotExist},
			},
		}, `(app == "web" && env in {"dev", "prod"} && tier not in {"db"} && has(team) && !has(legacy))`, ""},
		{"in without values", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "a", Operator: metav1.LabelSelectorOpIn}}}, "", "matchExpressions[0]: operator In needs at least one value"},
		{"exists with values", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "a", Operator: metav1.LabelSelectorOpExists, Values: []string{"x"}}}}, "", "matchExpressions[0]: operator Exists takes no values"},
		{"unknown operator", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "a", Operator: "Gt", Values: []string{"1"}}}}, "", `matchExpressions[0]: unknown operator "Gt"`},
		{"bad key", &metav1.LabelSelector{MatchLabels: map[string]string{"a b": "x"}}, "", `label key "a b"`},
		{"value with space", &metav1.LabelSelector{MatchLabels: map[string]string{"a": "x y"}}, "",
			`matchLabels: label "a" value "x y": a valid label must be an empty string or consist of alphanumeric characters`},
		{"value too long", &metav1.LabelSelector{MatchLabels: map[string]string{"a": strings.Repeat("v", 64)}}, "",
			"must be no more than 63 bytes"},
		{"value starts with dash", &metav1.LabelSelector{MatchLabels: map[string]string{"a": "-x"}}, "", `label "a" value "-x"`},
		{"value with quote", &metav1.LabelSelector{MatchLabels: map[string]string{"a": `it"s`}}, "", `label "a" value "it\"s"`},
		{"empty and longest values", &metav1.LabelSelector{MatchLabels: map[string]string{"a": "", "b": strings.Repeat("v", 63)}},
			`(a == "" && b == "` + strings.Repeat("v", 63) + `")`, ""},
		{"prefixed key", &metav1.LabelSelector{MatchLabels: map[string]string{"example.com/a_b.c-d": "A.b_c-9"}},
			`example.com/a_b.c-d == "A.b_c-9"`, ""},
		{"In value invalid", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "a", Operator: metav1.LabelSelectorOpIn, Values: []string{"ok", "not ok"}}}}, "", `matchExpressions[0]: label "a" value "not ok"`},
		{"NotIn value invalid", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "a", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"x."}}}}, "", `matchExpressions[0]: label "a" value "x."`},
		{"expression key invalid", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "a", Operator: metav1.LabelSelectorOpExists}, {Key: "a/b/c", Operator: metav1.LabelSelectorOpExists}}}, "",
			`matchExpressions[1]: label key "a/b/c": a valid label key must consist of`},
		{"key name part too long", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: strings.Repeat("k", 64), Operator: metav1.LabelSelectorOpDoesNotExist}}}, "", "name part must be no more than 63 bytes"},
		{"key valid for Calico, not Kubernetes", &metav1.LabelSelector{MatchLabels: map[string]string{"-a": "x"}}, "",
			`matchLabels: label key "-a": name part must consist of`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := FromLabelSelector(tt.in)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, s.String())
		})
	}
}

// TestFromLabelSelectorRejectsWhatKubernetesRejects checks the validation
// against metav1.LabelSelectorAsSelector and that whatever is accepted
// converts back with ToLabelSelector (the round trip is symmetric).
func TestFromLabelSelectorRejectsWhatKubernetesRejects(t *testing.T) {
	for _, tt := range []struct {
		key, val string
		ok       bool
	}{
		{"a", "x", true},
		{"a", "", true},
		{"a", "x y", false},
		{"a", "x_y.z-1", true},
		{"a", "_x", false},
		{"a", "x_", false},
		{"a", strings.Repeat("v", 63), true},
		{"a", strings.Repeat("v", 64), false},
		{"a", "é", false},
		{"a", `"`, false},
		{"example.com/a", "x", true},
		{"Example.com/a", "x", false},
		{"a/b/c", "x", false},
		{"/a", "x", false},
		{"", "x", false},
		{"a.", "x", false},
	} {
		t.Run(tt.key+"="+tt.val, func(t *testing.T) {
			ls := &metav1.LabelSelector{MatchLabels: map[string]string{tt.key: tt.val}}
			_, k8sErr := metav1.LabelSelectorAsSelector(ls)
			require.Equal(t, tt.ok, k8sErr == nil, "the table disagrees with Kubernetes: %v", k8sErr)
			s, err := FromLabelSelector(ls)
			if !tt.ok {
				require.ErrorIs(t, err, selector.ErrInvalid)
				assert.Equal(t, `!all()`, s.String())
				return
			}
			require.NoError(t, err)
			back, err := ToLabelSelector(s)
			require.NoError(t, err)
			assert.Equal(t, ls, back)
		})
	}
}

func TestFromK8sSelectorRejectsInvalidRequirement(t *testing.T) {
	// labels.NewRequirement returns the Requirement along with its error; a
	// caller who ignores the error can still build a selector.Selector from it.
	r, err := labels.NewRequirement("a", selection.Equals, []string{"x y"})
	require.Error(t, err)
	s, err := FromK8sSelector(labels.NewSelector().Add(*r))
	require.ErrorIs(t, err, selector.ErrInvalid)
	assert.ErrorContains(t, err, `label "a" value "x y"`)
	assert.Equal(t, `!all()`, s.String())
}

func TestToLabelSelector(t *testing.T) {
	tests := []struct {
		sel  string
		want *metav1.LabelSelector
		err  bool
	}{
		{`all()`, &metav1.LabelSelector{}, false},
		{`a == "1"`, &metav1.LabelSelector{MatchLabels: map[string]string{"a": "1"}}, false},
		{`a == "1" && a == "1"`, &metav1.LabelSelector{MatchLabels: map[string]string{"a": "1"}}, false},
		{`a == "1" && a in {"1"}`, &metav1.LabelSelector{MatchLabels: map[string]string{"a": "1"}}, false},
		{`a in {"1"} && a == "1"`, &metav1.LabelSelector{MatchLabels: map[string]string{"a": "1"}}, false},
		// Every term on a is implied by matchLabels a: 1, and c's NotIn by
		// its DoesNotExist.
		{`a == "1" && a in {"1", "2"} && a != "2" && has(a) && b not in {"x"} && !has(c) && c not in {"y"}`, &metav1.LabelSelector{
			MatchLabels: map[string]string{"a": "1"},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "b", Operator: "NotIn", Values: []string{"x"}},
				{Key: "c", Operator: "DoesNotExist"},
			}}, false},
		{`has(a) && has(a) && !has(b) && !has(b)`, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "a", Operator: "Exists"},
				{Key: "b", Operator: "DoesNotExist"},
			}}, false},
		{`has(a) && a in {"x", "y"} && a not in {"z"}`, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "In", Values: []string{"x", "y"}}}}, false},
		{`a in {"x", "y"} && a in {"y", "x"}`, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "In", Values: []string{"x", "y"}}}}, false},
		{`a in {"x", "y"} && a in {"x"}`, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "In", Values: []string{"x"}}}}, false},
		{`a != "x" && a not in {"x"} && a not in {"y", "x"}`, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "NotIn", Values: []string{"x", "y"}}}}, false},
		{`!has(a) && a not in {"x"}`, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "DoesNotExist"}}}, false},
		// Not merged: only together do the two Ins leave a single value.
		{`a in {"x", "y"} && a in {"y", "z"}`, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "a", Operator: "In", Values: []string{"x", "y"}},
				{Key: "a", Operator: "In", Values: []string{"y", "z"}},
			}}, false},
		// Terms on different keys never imply each other.
		{`has(a) && has(b) && a not in {"x"}`, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "a", Operator: "Exists"},
				{Key: "b", Operator: "Exists"},
				{Key: "a", Operator: "NotIn", Values: []string{"x"}},
			}}, false},
		{`has(a) && a not in {"x", "y"}`, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "a", Operator: "Exists"},
				{Key: "a", Operator: "NotIn", Values: []string{"x", "y"}},
			}}, false},
		{`a != "1" && !(b == "2") && !(c != "3")`, &metav1.LabelSelector{
			MatchLabels: map[string]string{"c": "3"},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "a", Operator: "NotIn", Values: []string{"1"}},
				{Key: "b", Operator: "NotIn", Values: []string{"2"}},
			}}, false},
		{`has(x) && !has(y) && z in {"b","a"} && w not in {"c"} && !(v in {"d"}) && u not in {}`, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "x", Operator: "Exists"},
				{Key: "y", Operator: "DoesNotExist"},
				{Key: "z", Operator: "In", Values: []string{"a", "b"}},
				{Key: "w", Operator: "NotIn", Values: []string{"c"}},
				{Key: "v", Operator: "NotIn", Values: []string{"d"}},
			}}, false},
		{`a == "1" || b == "2"`, nil, true},
		{`a contains "x"`, nil, true},
		{`global()`, nil, true},
		{`!all()`, nil, true},
		{`!(a == "1" && b == "2")`, nil, true},
		{`a in {}`, nil, true},
		{`a == "has space"`, nil, true},
		{`-a == "x"`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			got, err := ToLabelSelector(selector.MustParse(tt.sel))
			if tt.err {
				require.ErrorIs(t, err, selector.ErrNotLabelSelector)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestToLabelSelectorErrors(t *testing.T) {
	tests := []struct{ sel, want string }{
		{`a == "x" || b == "y"`, `(a == "x" || b == "y"): "||" cannot be expressed: a LabelSelector ANDs its terms and has no OR`},
		{`c == "z" && (a == "x" || b == "y")`, `(a == "x" || b == "y"): "||" cannot be expressed`},
		{`!(a == "x" && b == "y")`, `!(a == "x" && b == "y"): "!" of a bracketed group cannot be expressed: a LabelSelector has no general NOT`},
		{`c == "z" && !(a == "x" || b == "y")`, `!(a == "x" || b == "y"): "||" cannot be expressed`},
		{`a contains "x"`, `a contains "x": "contains" cannot be expressed: a LabelSelector has no such operator`},
		{`!a starts with "x"`, `!a starts with "x": "starts with" cannot be expressed`},
		{`a ends with "x"`, `a ends with "x": "ends with" cannot be expressed`},
		{`global()`, `global(): global() cannot be expressed: it has a meaning only in a Calico namespace selector`},
		{`!all()`, `!all(): !all() matches nothing, which a LabelSelector cannot express`},
		{`a in {}`, `a in {}: an empty set matches nothing, which a LabelSelector cannot express`},
		{`!a not in {}`, `!a not in {}: an empty set matches nothing`},
		{`a == "has space"`, `label "a" value "has space": a valid label must be`},
		{`has(a) && !has(a)`, `(has(a) && !has(a)): label "a" must be both present and absent, so it matches nothing, which a LabelSelector cannot express`},
		{`b == "x" && !has(b)`, `label "b" must be both present and absent`},
		{`a in {"x"} && !has(a)`, `label "a" must be both present and absent`},
		{`a == "x" && a == "y"`, `(a == "x" && a == "y"): label "a" has no value that every term allows, so it matches nothing`},
		{`a in {"x", "y"} && a in {"y", "z"} && a != "y"`, `label "a" has no value that every term allows`},
		{`a in {"x"} && a not in {"x"}`, `label "a" has no value that every term allows`},
		{`a == "x" && !(a == "x")`, `label "a" has no value that every term allows`},
		{`has(z) && a == "x" && a == "y" && !has(z)`, `label "a" has no value`},
		{`-a == "x"`, `label key "-a": name part must consist of`},
		{`has(a/b/c)`, `label key "a/b/c": a valid label key must consist of`},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			sel := selector.MustParse(tt.sel)
			_, err := ToLabelSelector(sel)
			require.ErrorIs(t, err, selector.ErrNotLabelSelector)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, !sel.Satisfiable(), errors.Is(err, selector.ErrMatchesNothing), "ErrMatchesNothing exactly when nothing matches")
		})
	}
	_, err := ToLabelSelector(selector.Eq("a", `'"`))
	require.ErrorIs(t, err, selector.ErrNotLabelSelector)
	require.ErrorIs(t, err, selector.ErrUnrepresentable)
}

func TestFromK8sSelector(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `all()`},
		{"a=1,b!=2", `(a == "1" && b != "2")`},
		{"a in (x,y),b notin (z),c,!d", `(a in {"x", "y"} && b not in {"z"} && has(c) && !has(d))`},
	}
	for _, tt := range tests {
		ks, err := labels.Parse(tt.in)
		require.NoError(t, err)
		s, err := FromK8sSelector(ks)
		require.NoError(t, err)
		assert.Equal(t, tt.want, s.String(), tt.in)
	}
	s, err := FromK8sSelector(labels.Nothing())
	require.NoError(t, err)
	assert.Equal(t, `!all()`, s.String())
	s, err = FromK8sSelector(nil)
	require.NoError(t, err)
	assert.Equal(t, `!all()`, s.String(), "a nil labels.Selector matches nothing")
	gt, err := labels.Parse("a>1")
	require.NoError(t, err)
	_, err = FromK8sSelector(gt)
	require.ErrorContains(t, err, "has no selector equivalent")
}

// TestK8sConversionAgreesWithKubernetes checks, on random selectors and label
// sets, that a converted selector matches exactly what Kubernetes' own
// matcher does, and that the conversion back gives an equivalent selector.
func TestK8sConversionAgreesWithKubernetes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "b", "example.com/c"}
	vals := []string{"x", "y", "z"}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn,
		metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	for i := range 500 {
		ls := &metav1.LabelSelector{MatchLabels: map[string]string{}}
		for range rng.IntN(2) {
			ls.MatchLabels[pick(keys)] = pick(vals)
		}
		for range rng.IntN(4) {
			r := metav1.LabelSelectorRequirement{Key: pick(keys), Operator: ops[rng.IntN(len(ops))]}
			if r.Operator == metav1.LabelSelectorOpIn || r.Operator == metav1.LabelSelectorOpNotIn {
				r.Values = []string{pick(vals), pick(vals)}
			}
			ls.MatchExpressions = append(ls.MatchExpressions, r)
		}
		ours, err := FromLabelSelector(ls)
		require.NoError(t, err)
		theirs, err := metav1.LabelSelectorAsSelector(ls)
		require.NoError(t, err)
		// Satisfiable's exhaustive search is exact on these few keys and
		// values, so it checks ToLabelSelector's contradiction test both ways.
		roundTrip := selector.Nothing()
		back, err := ToLabelSelector(ours)
		if ours.Satisfiable() {
			require.NoError(t, err, "selector %s", ours)
			roundTrip, err = FromLabelSelector(back)
			require.NoError(t, err)
			// back is already free of implied terms: converting it again
			// drops nothing more.
			again, err := ToLabelSelector(roundTrip)
			require.NoError(t, err)
			require.Equal(t, back, again, "selector %s", ours)
		} else {
			require.ErrorIs(t, err, selector.ErrMatchesNothing, "selector %s", ours)
			require.ErrorIs(t, err, selector.ErrNotLabelSelector)
		}
		for range 20 {
			l := map[string]string{}
			for _, k := range keys {
				if rng.IntN(3) > 0 {
					l[k] = pick(vals)
				}
			}
			want := theirs.Matches(labels.Set(l))
			msg := fmt.Sprintf("case %d: %s on %v", i, ours, l)
			assert.Equal(t, want, ours.Evaluate(selector.Map(l)), msg)
			assert.Equal(t, want, roundTrip.Evaluate(selector.Map(l)), msg)
		}
	}
}

func TestFromLabelSelectorErrorsWrapErrInvalid(t *testing.T) {
	for name, ls := range map[string]*metav1.LabelSelector{
		"In without values":      {MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpIn}}},
		"Exists with values":     {MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpExists, Values: []string{"x"}}}},
		"unknown operator":       {MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Gt", Values: []string{"1"}}}},
		"bad key in matchLabels": {MatchLabels: map[string]string{"bad key": "x"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := FromLabelSelector(ls)
			require.Error(t, err)
			assert.ErrorIs(t, err, selector.ErrInvalid)
		})
	}
}

// TestErrorsComeWithNothing checks that every function returning
// (selector.Selector, error) pairs an error with selector.Nothing(), so a caller that ignores
// the error gets a selector matching nothing rather than the zero selector.Selector
// (all()).
func TestErrorsComeWithNothing(t *testing.T) {
	gt, err := labels.Parse("a>1")
	require.NoError(t, err)
	tests := []struct {
		name string
		call func() (selector.Selector, error)
	}{
		{"FromLabelSelector In without values", func() (selector.Selector, error) {
			return FromLabelSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "a", Operator: metav1.LabelSelectorOpIn}}})
		}},
		{"FromLabelSelector unknown operator", func() (selector.Selector, error) {
			return FromLabelSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "a", Operator: "Gt", Values: []string{"1"}}}})
		}},
		{"FromLabelSelector Exists with values", func() (selector.Selector, error) {
			return FromLabelSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "a", Operator: metav1.LabelSelectorOpExists, Values: []string{"x"}}}})
		}},
		{"FromLabelSelector bad key", func() (selector.Selector, error) {
			return FromLabelSelector(&metav1.LabelSelector{MatchLabels: map[string]string{"a b": "x"}})
		}},
		{"FromK8sSelector Gt", func() (selector.Selector, error) { return FromK8sSelector(gt) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.call()
			require.ErrorIs(t, err, selector.ErrInvalid)
			assert.Equal(t, `!all()`, s.String())
			for _, l := range []selector.Map{{}, {"a": "x"}, {"a": "1", "b": "y"}} {
				assert.False(t, s.Evaluate(l), "%v", l)
			}
		})
	}
}
