package selector

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLabelRestrictions(t *testing.T) {
	tests := []struct {
		sel  string
		want map[string]Restriction
	}{
		{`all()`, map[string]Restriction{}},
		{`a == "x"`, map[string]Restriction{"a": {MustBePresent: true, MustHaveOneOfValues: []string{"x"}}}},
		{`a != "x"`, map[string]Restriction{}},
		{`!(a != "x")`, map[string]Restriction{"a": {MustBePresent: true, MustHaveOneOfValues: []string{"x"}}}},
		{`has(a)`, map[string]Restriction{"a": {MustBePresent: true}}},
		{`!has(a)`, map[string]Restriction{"a": {MustBeAbsent: true}}},
		{`a in {"y","x"}`, map[string]Restriction{"a": {MustBePresent: true, MustHaveOneOfValues: []string{"x", "y"}}}},
		{`a not in {"x"}`, map[string]Restriction{}},
		{`a contains "x"`, map[string]Restriction{"a": {MustBePresent: true}}},
		{`a == "x" && b == "y"`, map[string]Restriction{
			"a": {MustBePresent: true, MustHaveOneOfValues: []string{"x"}},
			"b": {MustBePresent: true, MustHaveOneOfValues: []string{"y"}},
		}},
		{`a in {"x","y"} && a in {"y","z"}`, map[string]Restriction{"a": {MustBePresent: true, MustHaveOneOfValues: []string{"y"}}}},
		{`a == "x" && a == "y"`, map[string]Restriction{"a": {MustBePresent: true, MustHaveOneOfValues: []string{}}}},
		{`a == "x" || a == "y"`, map[string]Restriction{"a": {MustBePresent: true, MustHaveOneOfValues: []string{"x", "y"}}}},
		{`a == "x" || has(a)`, map[string]Restriction{"a": {MustBePresent: true}}},
		{`a == "x" || b == "y"`, map[string]Restriction{}},
		{`!has(a) || !has(a)`, map[string]Restriction{"a": {MustBeAbsent: true}}},
		{`!(has(a) || b == "x")`, map[string]Restriction{"a": {MustBeAbsent: true}}},
		{`a == "x" || !all()`, map[string]Restriction{"a": {MustBePresent: true, MustHaveOneOfValues: []string{"x"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			assert.Equal(t, tt.want, MustParse(tt.sel).LabelRestrictions())
		})
	}
}

func TestSatisfiable(t *testing.T) {
	tests := []struct {
		sel  string
		want bool
	}{
		{`all()`, true},
		{`!all()`, false},
		{`a == "x"`, true},
		{`a == "x" && a == "y"`, false},
		{`has(a) && !has(a)`, false},
		{`a == "x" && !has(a)`, false},
		{`a in {}`, false},
		{`a not in {}`, true},
		{`a == "x" && a != "x"`, false},
		{`a in {"x","y"} && a not in {"x","y"}`, false},
		{`a in {"x","y"} && a not in {"x"}`, true},
		{`(a == "x" || b == "y") && !has(a) && !has(b)`, false},
		{`(a == "x" || b == "y") && !has(a)`, true},
		{`!(a != "x") && a != "x"`, false},
		{`a == "x" && a contains "y"`, false},
		{`a starts with "x" && a ends with "y"`, true},
		{`a contains "x" && !has(a)`, false},
		{`a contains "x" && a contains "y"`, true}, // not provable either way by search; kept satisfiable
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			assert.Equal(t, tt.want, MustParse(tt.sel).Satisfiable())
		})
	}
}

func TestKeys(t *testing.T) {
	for in, want := range map[string][]string{
		"all()":    nil,
		"global()": nil,
		`a == "x"`: {"a"},
		`b in {"1"} && (a == "x" || !has(c)) && a != "y"`:                             {"a", "b", "c"},
		`!(z contains "q" || y starts with "p") && x ends with "r" && w not in {"s"}`: {"w", "x", "y", "z"},
	} {
		sel, err := Parse(in)
		require.NoError(t, err)
		assert.Equal(t, want, sel.Keys(), in)
	}
}
