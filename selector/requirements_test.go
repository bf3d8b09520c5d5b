package selector

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequirements(t *testing.T) {
	tests := []struct {
		sel         string
		matchLabels map[string]string
		reqs        []Requirement
	}{
		{`all()`, nil, nil},
		{`a == "1"`, map[string]string{"a": "1"}, nil},
		{`a == "1" && a == "1"`, map[string]string{"a": "1"}, []Requirement{{"a", OpIn, []string{"1"}}}},
		{`has(x) && !has(y) && z in {"b","a"} && w not in {"c"} && !(v in {"d"}) && u not in {} && t != "e" && !(s != "f")`,
			map[string]string{"s": "f"}, []Requirement{
				{"x", OpExists, nil},
				{"y", OpDoesNotExist, nil},
				{"z", OpIn, []string{"a", "b"}},
				{"w", OpNotIn, []string{"c"}},
				{"v", OpNotIn, []string{"d"}},
				{"t", OpNotIn, []string{"e"}},
			}},
		// Keys Kubernetes would reject are not checked here.
		{`-a == "x y"`, map[string]string{"-a": "x y"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			ml, reqs, err := MustParse(tt.sel).Requirements()
			require.NoError(t, err)
			assert.Equal(t, tt.matchLabels, ml)
			assert.Equal(t, tt.reqs, reqs)
		})
	}
}

func TestRequirementsErrors(t *testing.T) {
	tests := []struct {
		sel  string
		want string
	}{
		{`a == "x" || b == "y"`, `(a == "x" || b == "y"): "||" cannot be expressed: a LabelSelector ANDs its terms and has no OR`},
		{`!(a == "x" && b == "y")`, `"!" of a bracketed group cannot be expressed`},
		{`a starts with "x"`, `"starts with" cannot be expressed`},
		{`global()`, `global() cannot be expressed`},
		{`!all()`, `!all(): !all() matches nothing, which a LabelSelector cannot express`},
		{`a in {}`, `a in {}: an empty set matches nothing`},
		{`a == "x" && a == "y"`, `label "a" has no value that every term allows, so it matches nothing`},
		{`has(a) && !has(a)`, `label "a" must be both present and absent, so it matches nothing`},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			sel := MustParse(tt.sel)
			ml, reqs, err := sel.Requirements()
			require.ErrorIs(t, err, ErrNotLabelSelector)
			assert.ErrorContains(t, err, tt.want)
			assert.Nil(t, ml)
			assert.Nil(t, reqs)
			assert.Equal(t, !sel.Satisfiable(), errors.Is(err, ErrMatchesNothing), "ErrMatchesNothing exactly when nothing matches")
		})
	}
	_, _, err := Eq("a", `'"`).Requirements()
	require.ErrorIs(t, err, ErrNotLabelSelector)
	require.ErrorIs(t, err, ErrUnrepresentable)
}

// TestSelectorImportsNoKubernetes pins the reason k8sselector is a separate
// package: importing selector must not build Kubernetes' API machinery
// (before, importing selector alone pulled in k8s.io/apimachinery's meta/v1
// and some 80 packages with it).
func TestSelectorImportsNoKubernetes(t *testing.T) {
	for _, pkg := range []string{".", "./index"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		require.NoError(t, err, "go list %s", pkg)
		for _, dep := range strings.Fields(string(out)) {
			assert.True(t, strings.HasPrefix(dep, "github.com/tabbynet/tabby/selector"), "%s imports %s", pkg, dep)
		}
	}
}
