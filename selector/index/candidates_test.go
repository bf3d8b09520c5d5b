package index

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tabbynet/tabby/selector"
)

// TestOnlyCandidatesEvaluated checks the performance contract directly: an
// item change evaluates its current matches, the selectors indexed on its
// effective label values and labels, and the unindexed selectors; nothing
// else, however many selectors there are. When only an item's own labels
// change, of those only the selectors that read a changed label.
func TestOnlyCandidatesEvaluated(t *testing.T) {
	x := New[string, string, string]()
	for i := range 1000 {
		x.UpdateSelector(fmt.Sprint("eq", i), selector.MustParse(fmt.Sprintf(`app == "a%d"`, i)))
		x.UpdateSelector(fmt.Sprint("in", i), selector.MustParse(fmt.Sprintf(`tier in {"t%d", "u%d"}`, i, i)))
		x.UpdateSelector(fmt.Sprint("has", i), selector.MustParse(fmt.Sprintf(`has(k%d)`, i)))
		x.UpdateSelector(fmt.Sprint("never", i), selector.MustParse(fmt.Sprintf(`x == "%d" && x == "y"`, i)))
	}
	x.UpdateSelector("unindexed", selector.MustParse(`env != "prod"`))
	x.UpdateParent("ns", map[string]string{"tier": "t7", "app": "hidden"})

	x.evals = 0
	x.UpdateItem("p", map[string]string{"app": "a3", "k5": ""}, "ns")
	// eq3, in7 (inherited), has5, unindexed; app == "hidden" is shadowed.
	assert.Equal(t, uint64(4), x.evals)
	assert.Equal(t, 4, x.NumSelectorsMatching("p"))

	x.evals = 0
	x.UpdateItem("p", map[string]string{"app": "a4", "k5": ""}, "ns")
	// Only app changed: of the 4 current matches only eq3 reads it (and
	// stops), then eq4 is tried; env != "prod" does not read app.
	assert.Equal(t, uint64(2), x.evals)
	assert.Equal(t, 4, x.NumSelectorsMatching("p"))

	x.evals = 0
	x.UpdateParent("ns", map[string]string{"tier": "u8"})
	// 4 current matches re-checked (in7 stops), then in8 tried.
	assert.Equal(t, uint64(5), x.evals)

	x.evals = 0
	x.UpdateParent("unrelated", map[string]string{"tier": "t1"})
	assert.Zero(t, x.evals)

	// A new selector is evaluated only against items with its value.
	for i := range 100 {
		x.UpdateItem(fmt.Sprint("q", i), map[string]string{"app": fmt.Sprint("b", i)})
	}
	x.evals = 0
	x.UpdateSelector("new", selector.MustParse(`app in {"b1", "b2"} && has(zzz)`))
	assert.Equal(t, uint64(2), x.evals)
}
