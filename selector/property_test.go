package selector

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// refExpr is a selector written two ways: as text, and as a plain Go
// function that states Calico's semantics directly, without the parser,
// the flat tree or the canonical form.
type refExpr struct {
	text string
	eval func(map[string]string) bool
}

func randomExpr(rng *rand.Rand, depth int) refExpr {
	keys := []string{"a", "b", "example.com/c"}
	vals := []string{"x", "y", "xy", "", `q"`}
	k := keys[rng.IntN(len(keys))]
	v := vals[rng.IntN(len(vals))]
	quote := func(s string) string {
		if strings.Contains(s, `"`) {
			return "'" + s + "'"
		}
		return `"` + s + `"`
	}
	lookup := func(m map[string]string) (string, bool) { x, ok := m[k]; return x, ok }
	if depth > 0 && rng.IntN(3) == 0 {
		l, r := randomExpr(rng, depth-1), randomExpr(rng, depth-1)
		if rng.IntN(2) == 0 {
			return refExpr{"(" + l.text + ") && (" + r.text + ")", func(m map[string]string) bool { return l.eval(m) && r.eval(m) }}
		}
		return refExpr{"(" + l.text + ") || (" + r.text + ")", func(m map[string]string) bool { return l.eval(m) || r.eval(m) }}
	}
	switch rng.IntN(11) {
	case 0:
		return refExpr{k + " == " + quote(v), func(m map[string]string) bool { x, ok := lookup(m); return ok && x == v }}
	case 1:
		return refExpr{k + " != " + quote(v), func(m map[string]string) bool { x, ok := lookup(m); return !ok || x != v }}
	case 2, 3:
		set := []string{v, vals[rng.IntN(len(vals))], vals[rng.IntN(len(vals))]}[:rng.IntN(4)%3+rng.IntN(2)]
		var qs []string
		for _, s := range set {
			qs = append(qs, quote(s))
		}
		lit := "{" + strings.Join(qs, ",") + "}"
		if rng.IntN(2) == 0 {
			return refExpr{k + " in " + lit, func(m map[string]string) bool { x, ok := lookup(m); return ok && slices.Contains(set, x) }}
		}
		return refExpr{k + " not in " + lit, func(m map[string]string) bool { x, ok := lookup(m); return !ok || !slices.Contains(set, x) }}
	case 4:
		return refExpr{"has(" + k + ")", func(m map[string]string) bool { _, ok := lookup(m); return ok }}
	case 5:
		return refExpr{k + " contains " + quote(v), func(m map[string]string) bool { x, ok := lookup(m); return ok && strings.Contains(x, v) }}
	case 6:
		return refExpr{k + " starts with " + quote(v), func(m map[string]string) bool { x, ok := lookup(m); return ok && strings.HasPrefix(x, v) }}
	case 7:
		return refExpr{k + " ends with " + quote(v), func(m map[string]string) bool { x, ok := lookup(m); return ok && strings.HasSuffix(x, v) }}
	case 8:
		return refExpr{"all()", func(map[string]string) bool { return true }}
	default:
		in := randomExpr(rng, depth-1)
		return refExpr{"!(" + in.text + ")", func(m map[string]string) bool { return !in.eval(m) }}
	}
}

// TestEvaluateAgreesWithReference compares every evaluation path (Map, the
// generic Labels path through Overlay, the canonical form, the builder-free
// round trip) with the reference on random selectors and label sets.
func TestEvaluateAgreesWithReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	n := 3000
	if testing.Short() {
		n = 500
	}
	vals := []string{"x", "y", "xy", "", `q"`, "zz"}
	in := NewInterner()
	for i := range n {
		e := randomExpr(rng, 4)
		s, err := Parse(e.text)
		require.NoError(t, err, e.text)
		c := MustParse(s.String())
		restrictions := s.LabelRestrictions()
		compiled := in.Compile(s)
		for range 16 {
			m := map[string]string{}
			for _, k := range []string{"a", "b", "example.com/c"} {
				if rng.IntN(3) > 0 {
					m[k] = vals[rng.IntN(len(vals))]
				}
			}
			want := e.eval(m)
			msg := fmt.Sprintf("case %d: %s (canonical %s) on %v", i, e.text, s, m)
			require.Equal(t, want, s.Evaluate(Map(m)), msg)
			require.Equal(t, want, s.Evaluate(&Overlay{Top: Map(m)}), msg)
			require.Equal(t, want, c.Evaluate(Map(m)), msg)
			ls := in.LabelSet(m)
			require.Equal(t, want, compiled.Evaluate(ls), msg)
			require.Equal(t, want, s.Evaluate(ls), msg)
			if !s.Satisfiable() {
				require.False(t, want, "Satisfiable said never, but it matched: "+msg)
			}
			if !want {
				continue
			}
			// Whatever matches must meet every restriction (the index relies
			// on this to skip selectors).
			for k, r := range restrictions {
				v, ok := m[k]
				require.False(t, r.MustBePresent && !ok, "%s: %s must be present", msg, k)
				require.False(t, r.MustBeAbsent && ok, "%s: %s must be absent", msg, k)
				if r.MustHaveOneOfValues != nil {
					require.Contains(t, r.MustHaveOneOfValues, v, "%s: value of %s", msg, k)
				}
			}
		}
	}
}
