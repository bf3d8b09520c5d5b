package selector

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInternedLabelSetLayers(t *testing.T) {
	in := NewInterner()
	pod := map[string]string{"app": "web", "env": "pod-wins"}
	ns := map[string]string{"env": "prod", "team": "a"}
	ls := in.LabelSet(pod, ns)
	assert.Equal(t, 3, ls.Len())
	for sel, want := range map[string]bool{
		`app == "web" && team == "a" && env == "pod-wins"`: true,
		`env == "prod"`:       false,
		`has(zone)`:           false, // a key first seen after the label set was built
		`!has(zone)`:          true,
		`all()`:               true,
		`team in {"a", "b"}`:  true,
		`team not in {"a"}`:   false,
		`app starts with "w"`: true,
	} {
		c := in.Compile(MustParse(sel))
		assert.Equal(t, want, c.Evaluate(ls), sel)
		assert.Equal(t, want, MustParse(sel).Evaluate(ls), "%s through Labels", sel)
	}
	v, ok := ls.Get("team")
	assert.True(t, ok)
	assert.Equal(t, "a", v)
	_, ok = ls.Get("never-seen")
	assert.False(t, ok)

	// A key interned by a later label set does not confuse an earlier one.
	later := in.LabelSet(map[string]string{"zone": "z1"})
	c := in.Compile(MustParse(`zone == "z1"`))
	assert.True(t, c.Evaluate(later))
	assert.False(t, c.Evaluate(ls))
	assert.True(t, in.Compile(Selector{}).Evaluate(ls), "the zero selector is all()")
	assert.False(t, in.Compile(Eq("a b", "x")).Evaluate(ls), "an invalid selector matches nothing")
	assert.Equal(t, `zone == "z1"`, c.Selector().String())
}

func TestCompiledEvaluateDoesNotAllocate(t *testing.T) {
	in := NewInterner()
	c := in.Compile(MustParse(`(app == "web" || app in {"a","b","c","d","e","f"}) && !has(x) && tier starts with "f"`))
	ls := in.LabelSet(map[string]string{"app": "f", "tier": "front"})
	allocs := testing.AllocsPerRun(100, func() {
		if !c.Evaluate(ls) {
			t.Fatal("expected a match")
		}
	})
	require.Zero(t, allocs)
}

// TestNilLabelsAreEmpty checks that every nil label source (a nil Labels, a
// nil Map, *Overlay or *LabelSet, the zero LabelSet) behaves as a set with no
// labels instead of panicking, through Selector.Evaluate and
// Compiled.Evaluate.
func TestNilLabelsAreEmpty(t *testing.T) {
	in := NewInterner()
	sources := map[string]Labels{
		"nil Labels":       nil,
		"nil Map":          Map(nil),
		"nil *Overlay":     (*Overlay)(nil),
		"nil *LabelSet":    (*LabelSet)(nil),
		"zero LabelSet":    &LabelSet{},
		"empty Overlay":    &Overlay{},
		"empty LabelSet":   in.LabelSet(),
		"overlay of nils":  &Overlay{Top: (*LabelSet)(nil), Bottom: Map(nil)},
		"nil *Overlay top": &Overlay{Top: (*Overlay)(nil)},
	}
	tests := []struct {
		sel  string
		want bool
	}{
		{`all()`, true},
		{`!all()`, false},
		{`has(a)`, false},
		{`!has(a)`, true},
		{`a == "x"`, false},
		{`a != "x"`, true},
		{`a in {"x"}`, false},
		{`a not in {"x"}`, true},
		{`a starts with ""`, false},
		{`(a == "x" || !has(b)) && c not in {"y"}`, true},
	}
	for name, l := range sources {
		t.Run(name, func(t *testing.T) {
			for _, tt := range tests {
				s := MustParse(tt.sel)
				assert.Equal(t, tt.want, s.Evaluate(l), tt.sel)
				if ls, ok := l.(*LabelSet); ok || l == nil {
					assert.Equal(t, tt.want, in.Compile(s).Evaluate(ls), "%s compiled", tt.sel)
				}
			}
			if ls, ok := l.(*LabelSet); ok {
				assert.Zero(t, ls.Len())
				_, found := ls.Get("a")
				assert.False(t, found)
			}
		})
	}
}

func TestZeroInternerIsUsable(t *testing.T) {
	var in Interner
	ls := in.LabelSet(map[string]string{"a": "x"})
	assert.Equal(t, 1, ls.Len())
	assert.True(t, in.Compile(MustParse(`a == "x"`)).Evaluate(ls))
	assert.False(t, in.Compile(MustParse(`has(b)`)).Evaluate(ls))
	v, ok := ls.Get("a")
	assert.True(t, ok)
	assert.Equal(t, "x", v)
}

// TestCompiledRejectsOtherInterner checks that a selector compiled with one
// Interner matches nothing on a LabelSet from another, where the key IDs
// would otherwise silently name other keys.
func TestCompiledRejectsOtherInterner(t *testing.T) {
	a, b := NewInterner(), NewInterner()
	// In b, "q" gets ID 0, the ID "a" has in a.
	a.LabelSet(map[string]string{"a": "x"})
	fromB := b.LabelSet(map[string]string{"q": "x"})
	tests := []struct {
		sel       string
		sameOwner bool // the verdict with a LabelSet from the same Interner
	}{
		{`a == "x"`, false},
		{`!has(a)`, true},
		{`all()`, true},
		{`q == "x"`, true},
		{`a == "x" || q == "x"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			s := MustParse(tt.sel)
			assert.False(t, a.Compile(s).Evaluate(fromB), "another Interner's LabelSet matches nothing")
			assert.Equal(t, tt.sameOwner, b.Compile(s).Evaluate(fromB))
			assert.Equal(t, tt.sameOwner, a.Compile(s).Selector().Evaluate(fromB), "by key, across Interners")
			assert.Equal(t, tt.sameOwner, s.Evaluate(Map{"q": "x"}))
		})
	}
	assert.True(t, Compiled{}.Evaluate(fromB), "the zero Compiled is all()")
}
