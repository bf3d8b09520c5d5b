package policy

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/selector"
)

func TestPrefixSelector(t *testing.T) {
	tests := []struct{ in, want string }{
		{"all()", "all()"},
		{"", "all()"},
		{"global()", "global()"},
		{"a == 'x'", `pcns.a == "x"`},
		{"!has(k)", "!has(pcns.k)"},
		{"!(a == 'x' || has(b)) && c in {'z','y'} && d not in {'q'}",
			`(!(pcns.a == "x" || has(pcns.b)) && pcns.c in {"y", "z"} && pcns.d not in {"q"})`},
		{`x contains 'a && b' && y starts with "p'q" && z ends with '"'`,
			`(pcns.x contains "a && b" && pcns.y starts with "p'q" && pcns.z ends with '"')`},
		{"has(has) && in == 'in' && all != '!('", `(has(pcns.has) && pcns.in == "in" && pcns.all != "!(")`},
		{"projectcalico.org/name == 'a' || all()", `(pcns.projectcalico.org/name == "a" || all())`},
	}
	for _, tt := range tests {
		got, err := prefixSelector(selector.MustParse(tt.in), LabelPrefixNamespace)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got.String(), tt.in)
	}
	_, err := prefixSelector(selector.Has(longKey(510)), LabelPrefixNamespace)
	assert.Error(t, err, "a key over 512 characters once prefixed")
}

func longKey(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'k'
	}
	return string(b)
}

// checkPrefixed asserts that prefixing keys changes nothing but the keys:
// the prefixed selector on prefixed labels agrees with the original on the
// original labels.
func checkPrefixed(t testing.TB, s selector.Selector, labels []map[string]string) {
	p, err := prefixSelector(s, LabelPrefixNamespace)
	if err != nil {
		return // a key too long once prefixed
	}
	for _, l := range labels {
		pl := map[string]string{}
		for k, v := range l {
			pl[LabelPrefixNamespace+k] = v
		}
		if s.Evaluate(selector.Map(l)) != p.Evaluate(selector.Map(pl)) {
			t.Fatalf("%s and %s disagree on %v", s, p, l)
		}
	}
}

var prefixLabelSets = []map[string]string{
	{}, {"a": "x"}, {"a": "y", "b": ""}, {"c": "z", "d": "q"}, {"has": "1", "in": "in", "all": "!("},
	{"x": "a && b", "y": "p'q", "z": `"`}, {"projectcalico.org/name": "a"},
}

func TestPrefixSelectorSemantics(t *testing.T) {
	for _, s := range append(slices.Clone(refSelectors), "a == 'x' || !(b != '' && has(c))", "has(in) && in not in {'in'}") {
		checkPrefixed(t, selector.MustParse(s), prefixLabelSets)
	}
}

func TestSelectionSelectors(t *testing.T) {
	objs, err := Decode([]byte(`apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  selector: app == 'db'
  serviceAccountSelector: team == 'x'
  ingress:
  - action: Allow
    source: {selector: app == 'web', namespaceSelector: env == 'prod', serviceAccounts: {names: [b, a], selector: has(t)}, notSelector: bad == 'yes'}
  - action: Allow
    source: {notSelector: bad == 'yes'}
  - action: Allow
    source: {namespaceSelector: global()}
    destination: {nets: [10.0.0.0/8]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  namespaceSelector: all()
  selector: all()
  egress:
  - action: Allow
    destination: {namespaceSelector: all(), selector: app == 'x'}
`))
	require.NoError(t, err)
	rp, err := objs[0].(*NetworkPolicy).Resolve()
	require.NoError(t, err)
	assert.Equal(t, `(projectcalico.org/namespace == "shop" && pcsa.team == "x" && app == "db")`, rp.EndpointSelector().String())
	r0 := &rp.IngressRules[0].Src
	sel, ok := r0.MatchSelector()
	assert.True(t, ok)
	assert.Equal(t, `(pcns.env == "prod" && projectcalico.org/serviceaccount in {"a", "b"} && has(pcsa.t) && app == "web")`, sel.String())
	not, ok := r0.NotMatchSelector()
	assert.True(t, ok)
	assert.Equal(t, `bad == "yes"`, not.String())
	sel, ok = rp.IngressRules[1].Src.MatchSelector()
	assert.True(t, ok, "a notSelector in a namespaced policy confines the rule to the namespace")
	assert.Equal(t, `projectcalico.org/namespace == "shop"`, sel.String())
	sel, _ = rp.IngressRules[2].Src.MatchSelector()
	assert.Equal(t, `!has(projectcalico.org/namespace)`, sel.String())
	_, ok = rp.IngressRules[2].Dst.MatchSelector()
	assert.False(t, ok, "no selector: any address")
	_, ok = rp.IngressRules[2].Dst.NotMatchSelector()
	assert.False(t, ok)

	gp, err := objs[1].(*GlobalNetworkPolicy).Resolve()
	require.NoError(t, err)
	assert.Equal(t, `has(projectcalico.org/namespace)`, gp.EndpointSelector().String(), "one term, not two equal ones")
	sel, _ = gp.EgressRules[0].Dst.MatchSelector()
	assert.Equal(t, `(has(projectcalico.org/namespace) && app == "x")`, sel.String())

	// A hand-built match works its selector out on demand.
	hand := EntityMatch{HasSelector: true, Scope: ScopeNamespace, Namespace: "a", Selector: selector.MustParse("x == 'y'")}
	sel, ok = hand.MatchSelector()
	assert.True(t, ok)
	assert.Equal(t, `(projectcalico.org/namespace == "a" && x == "y")`, sel.String())
}

// FuzzPrefixSelector: prefixing the keys of any selector either fails (a
// key too long) or gives a selector that agrees with the original on
// prefixed labels, and whose canonical form is stable.
func FuzzPrefixSelector(f *testing.F) {
	for _, s := range append(slices.Clone(refSelectors), "!(a == 'x' || has(b)) && c in {'z','y'}", `x contains 'a && b' || y ends with '"'`, "has(has) && in not in {'in'}", "global()") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := selector.Parse(s)
		if err != nil {
			return
		}
		// Label sets the selector cares about: each key it restricts,
		// with each value it allows, and all of them together.
		sets := slices.Clone(prefixLabelSets)
		all := map[string]string{}
		for k, r := range sel.LabelRestrictions() {
			sets = append(sets, map[string]string{k: ""})
			for _, v := range r.MustHaveOneOfValues {
				sets = append(sets, map[string]string{k: v})
				all[k] = v
			}
		}
		checkPrefixed(t, sel, append(sets, all))
		p, err := prefixSelector(sel, LabelPrefixServiceAccount)
		if err != nil {
			return
		}
		if again := selector.MustParse(p.String()); again.String() != p.String() {
			t.Fatalf("%q: canonical form not stable: %q then %q", s, p, again)
		}
	})
}
