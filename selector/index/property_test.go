package index_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/selector"
	"github.com/tabbynet/tabby/selector/index"
)

// model is the brute-force oracle: plain maps, matches recomputed from
// scratch by flattening every item's labels and evaluating every selector.
type model struct {
	sels    map[int]selector.Selector
	items   map[int]modelItem
	parents map[int]map[string]string
}

type modelItem struct {
	labels  map[string]string
	parents []int
}

type pair struct{ sel, item int }

func (m *model) matches() map[pair]bool {
	out := map[pair]bool{}
	for iid, it := range m.items {
		flat := map[string]string{}
		for _, pid := range slices.Backward(it.parents) { // earlier parents win
			maps.Copy(flat, m.parents[pid])
		}
		maps.Copy(flat, it.labels)
		for sid, s := range m.sels {
			if s.Evaluate(selector.Map(flat)) {
				out[pair{sid, iid}] = true
			}
		}
	}
	return out
}

var propSelectors = []string{
	`all()`, `!all()`, `a == "x"`, `a == "y"`, `a != "x"`, `has(a)`, `!has(a)`,
	`a in {"x", "y"}`, `a not in {"x"}`, `b == "x" && a == "y"`, `a == "x" || b == "y"`,
	`has(a) && has(b)`, `c starts with "x"`, `c contains "y"`, `a == "x" && a == "y"`,
	`has(b) && !has(b)`, `!(a == "x" && b == "x")`, `(a == "x" || a == "y") && c == "z"`,
	`b in {"x", "y", "z"} && !has(c)`, `global()`, `a in {}`, `c ends with "z"`,
}

func randLabels(r *rand.Rand) map[string]string {
	if r.IntN(8) == 0 {
		return nil
	}
	l := map[string]string{}
	for _, k := range []string{"a", "b", "c"} {
		if r.IntN(2) == 0 {
			l[k] = []string{"x", "y", "z", "xy"}[r.IntN(4)]
		}
	}
	if r.IntN(6) == 0 {
		// Keys that sort between a and b, so that lookups of a, b and c
		// take the bisecting path of a long label list.
		for i := range 6 + r.IntN(8) {
			l[fmt.Sprint("a", i)] = "x"
		}
	}
	return l
}

func randParents(r *rand.Rand) []int {
	var ps []int
	for range r.IntN(4) {
		ps = append(ps, r.IntN(4))
	}
	return ps
}

func TestPropertyAgainstOracle(t *testing.T) {
	seeds, steps := 20, 300
	if !testing.Short() {
		seeds, steps = 200, 2000
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 42))
			m := &model{sels: map[int]selector.Selector{}, items: map[int]modelItem{}, parents: map[int]map[string]string{}}
			var started, stopped []pair
			x := index.New[int, int, int](
				index.OnMatchStarted(func(s, i int) { started = append(started, pair{s, i}) }),
				index.OnMatchStopped(func(s, i int) { stopped = append(stopped, pair{s, i}) }),
			)
			prev := map[pair]bool{}
			for step := range steps {
				var desc string
				switch k := r.IntN(10); {
				case k < 2:
					id, s := r.IntN(12), propSelectors[r.IntN(len(propSelectors))]
					desc = fmt.Sprintf("UpdateSelector(%d, %s)", id, s)
					m.sels[id] = selector.MustParse(s)
					x.UpdateSelector(id, m.sels[id])
				case k < 3:
					id := r.IntN(12)
					desc = fmt.Sprintf("DeleteSelector(%d)", id)
					delete(m.sels, id)
					x.DeleteSelector(id)
				case k < 6:
					id, l, ps := r.IntN(12), randLabels(r), randParents(r)
					if old, ok := m.items[id]; ok && r.IntN(2) == 0 {
						ps = old.parents // only its own labels change
					}
					desc = fmt.Sprintf("UpdateItem(%d, %v, %v)", id, l, ps)
					m.items[id] = modelItem{maps.Clone(l), ps}
					x.UpdateItem(id, l, ps...)
				case k < 7:
					id := r.IntN(12)
					desc = fmt.Sprintf("DeleteItem(%d)", id)
					delete(m.items, id)
					x.DeleteItem(id)
				case k < 9:
					id, l := r.IntN(4), randLabels(r)
					desc = fmt.Sprintf("UpdateParent(%d, %v)", id, l)
					m.parents[id] = maps.Clone(l)
					x.UpdateParent(id, l)
				default:
					id := r.IntN(4)
					desc = fmt.Sprintf("DeleteParent(%d)", id)
					delete(m.parents, id)
					x.DeleteParent(id)
				}
				want := m.matches()

				// Callbacks: exactly the difference, each pair once.
				got := maps.Clone(prev)
				for _, p := range stopped {
					require.True(t, got[p], "step %d %s: stop of %v, which was not matching", step, desc, p)
					delete(got, p)
				}
				for _, p := range started {
					require.False(t, got[p] || prev[p], "step %d %s: start of %v, which was already matching", step, desc, p)
					got[p] = true
				}
				require.Equal(t, want, got, "step %d %s: matches from callbacks", step, desc)
				started, stopped, prev = nil, nil, want

				// Queries, both directions.
				fromQueries := map[pair]bool{}
				for sid := range m.sels {
					n := 0
					for iid := range x.ItemsMatching(sid) {
						fromQueries[pair{sid, iid}] = true
						n++
					}
					require.Equal(t, n, x.NumItemsMatching(sid))
				}
				for iid := range m.items {
					require.Equal(t, len(slices.Collect(x.SelectorsMatching(iid))), x.NumSelectorsMatching(iid))
					for sid := range x.SelectorsMatching(iid) {
						require.True(t, fromQueries[pair{sid, iid}], "step %d %s: %v only in SelectorsMatching", step, desc, pair{sid, iid})
						require.True(t, x.Matches(sid, iid))
					}
				}
				require.Equal(t, want, fromQueries, "step %d %s: matches from queries", step, desc)
				require.Equal(t, len(m.sels), x.Stats().Selectors)
				require.Equal(t, len(m.items), x.Stats().Items)
			}
		})
	}
}
