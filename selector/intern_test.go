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
