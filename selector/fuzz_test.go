package selector

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// FuzzParse checks that no input panics, that the canonical form of anything
// that parses parses again to the same canonical form (a fixed point), and
// that the canonical form evaluates the same as the original.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		``, `all()`, `!all()`, `global()`, `a == "b"`, `a != 'b'`, `a in {"x", 'y'}`, `a not in {}`,
		`has(a)`, `!has(a)`, `a contains "x"`, `a starts with "x"`, `a ends  with "x"`,
		`(a == "1" || b == "2") && !(c in {"3"})`, `!!(has(a) && has(b)) && has(c)`,
		`projectcalico.org/namespace == 'it"s'`, `a == "ü🐱"`, `((((has(x))))))`, `a & b`, `a == "x`,
		`a in {"x",}`, `a in {,}`, "a not\nin {}", "has(\r\nk )", "a startswith'x'", "\n", "a == 'x'\n", "has (k)",
		`has(a) && !has(a)`, `a == "b" && a in {"b"} && a != "b"`, `a == "x" && a == "y"`, `a not in {"b"} && has(a)`,
		// Precedence-implied groups deepen the canonical form: 51 brackets
		// here are 102 levels there.
		strings.Repeat(`a == "x" || b == "y" && (`, 51) + `z == "1"` + strings.Repeat(")", 51),
		strings.Repeat(`a == "x" || b == "y" && (`, 50) + `z == "1"` + strings.Repeat(")", 50),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			return
		}
		c := s.String()
		again, err := Parse(c)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", c, in, err)
		}
		if again.String() != c {
			t.Fatalf("canonical form is not a fixed point: %q -> %q -> %q", in, c, again.String())
		}
		if again.UniqueID() != s.UniqueID() {
			t.Fatalf("UniqueID differs for %q", in)
		}
		for _, l := range []Map{{}, {"a": "b"}, {"a": "x", "b": "2"}, {"c": "3", "has": "x"}} {
			if s.Evaluate(l) != again.Evaluate(l) {
				t.Fatalf("%q and its canonical form %q disagree on %v", in, c, l)
			}
		}
		_ = s.LabelRestrictions()
		satisfiable := s.Satisfiable()
		ls, err := s.ToLabelSelector()
		if err == nil && !satisfiable {
			t.Fatalf("%q matches nothing, yet converts to the LabelSelector %v", in, ls)
		}
		if errors.Is(err, ErrMatchesNothing) {
			for _, l := range []Map{{}, {"a": "b"}, {"a": "x", "b": "2"}, {"c": "3", "has": "x"}} {
				if s.Evaluate(l) {
					t.Fatalf("ToLabelSelector says %q matches nothing, but it matches %v", in, l)
				}
			}
		}
	})
}

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
			if !errors.Is(err, ErrInvalid) || ours.String() != "!all()" {
				t.Fatalf("%v: error %v with %s", ls, err, ours)
			}
			return
		}
		// A selector that matches nothing cannot convert back; then the
		// round trip is Nothing(), which the checks below hold to Kubernetes.
		again := Nothing()
		back, err := ours.ToLabelSelector()
		switch {
		case errors.Is(err, ErrMatchesNothing):
		case err != nil:
			t.Fatalf("%v converts to %s, which does not convert back: %v", ls, ours, err)
		default:
			if again, err = FromLabelSelector(back); err != nil {
				t.Fatalf("%v: round trip %v: %v", ls, back, err)
			}
		}
		for _, l := range []map[string]string{{}, {mk: mv}, {ek: v1}, {ek: v2}, {mk: mv, ek: v1}, {mk: mv, ek: "other"}} {
			want := theirs.Matches(labels.Set(l))
			if ours.Evaluate(Map(l)) != want || again.Evaluate(Map(l)) != want {
				t.Fatalf("%v on %v: Kubernetes says %v, %s says %v, round trip %s says %v",
					ls, l, want, ours, ours.Evaluate(Map(l)), again, again.Evaluate(Map(l)))
			}
		}
	})
}
