package k8sselector

import (
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tabbynet/tabby/selector"
)

// FuzzFromLabelSelector checks FromLabelSelector against Kubernetes on one
// matchLabels entry and one expression: no panic, an error exactly when
// metav1.LabelSelectorAsSelector gives one (and then Nothing()), the same
// verdict as Kubernetes' matcher on a few label sets, and a conversion back
// with ToLabelSelector that means the same.
func FuzzFromLabelSelector(f *testing.F) {
	for _, c := range []struct{ mk, mv, ek, op, v1, v2 string }{
		{"a", "x", "b", "In", "y", "z"},
		{"a", "x y", "b", "Exists", "", ""},
		{"example.com/a", "", "b", "NotIn", "x", ""},
		{"a", "x", "b", "DoesNotExist", "", ""},
		{"a/b/c", "x", "b", "In", "", ""},
		{"a", "-x", "b", "Gt", "1", ""},
		{"", "", "a", "In", "x", `it"s`},
		{"a", "é", "b", "Exists", "v", ""},
		{"a", "x", "a", "DoesNotExist", "", ""},
		{"a", "x", "a", "NotIn", "x", ""},
		{"a", "x", "a", "In", "y", "z"},
	} {
		f.Add(c.mk, c.mv, c.ek, c.op, c.v1, c.v2)
	}
	f.Fuzz(func(t *testing.T, mk, mv, ek, op, v1, v2 string) {
		ls := &metav1.LabelSelector{}
		if mk != "" {
			ls.MatchLabels = map[string]string{mk: mv}
		}
		r := metav1.LabelSelectorRequirement{Key: ek, Operator: metav1.LabelSelectorOperator(op)}
		for _, v := range []string{v1, v2} {
			if v != "" {
				r.Values = append(r.Values, v)
			}
		}
		ls.MatchExpressions = []metav1.LabelSelectorRequirement{r}
		theirs, k8sErr := metav1.LabelSelectorAsSelector(ls)
		ours, err := FromLabelSelector(ls)
		if (err == nil) != (k8sErr == nil) {
			t.Fatalf("%v: our error %v, Kubernetes' %v", ls, err, k8sErr)
		}
		if err != nil {
			if !errors.Is(err, selector.ErrInvalid) || ours.String() != "!all()" {
				t.Fatalf("%v: error %v with %s", ls, err, ours)
			}
			return
		}
		// A selector that matches nothing cannot convert back; then the
		// round trip is Nothing(), which the checks below hold to Kubernetes.
		again := selector.Nothing()
		back, err := ToLabelSelector(ours)
		switch {
		case errors.Is(err, selector.ErrMatchesNothing):
		case err != nil:
			t.Fatalf("%v converts to %s, which does not convert back: %v", ls, ours, err)
		default:
			if again, err = FromLabelSelector(back); err != nil {
				t.Fatalf("%v: round trip %v: %v", ls, back, err)
			}
		}
		for _, l := range []map[string]string{{}, {mk: mv}, {ek: v1}, {ek: v2}, {mk: mv, ek: v1}, {mk: mv, ek: "other"}} {
			want := theirs.Matches(labels.Set(l))
			if ours.Evaluate(selector.Map(l)) != want || again.Evaluate(selector.Map(l)) != want {
				t.Fatalf("%v on %v: Kubernetes says %v, %s says %v, round trip %s says %v",
					ls, l, want, ours, ours.Evaluate(selector.Map(l)), again, again.Evaluate(selector.Map(l)))
			}
		}
	})
}
