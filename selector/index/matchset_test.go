package index

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMatchSetAgainstMap drives a matchSet through both of its forms (the
// slice and, past smallMatches members, the map) with random adds and
// removes, including removals from inside all(), and checks it against a
// plain map after every step.
func TestMatchSetAgainstMap(t *testing.T) {
	for seed := range 20 {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 7))
			pool := make([]*int, 3*smallMatches)
			for i := range pool {
				pool[i] = new(int)
			}
			var m matchSet[int]
			want := map[*int]bool{}
			for step := range 500 {
				e := pool[r.IntN(len(pool))]
				switch k := r.IntN(10); {
				case k < 5:
					if !want[e] {
						m.add(e)
						want[e] = true
					}
				case k < 8:
					m.remove(e)
					delete(want, e)
				default:
					// Remove about half the members while iterating, as
					// the index does when matches stop.
					before := maps.Clone(want)
					seen := map[*int]bool{}
					for e := range m.all() {
						require.False(t, seen[e], "step %d: member visited twice", step)
						seen[e] = true
						if r.IntN(2) == 0 {
							m.remove(e)
							delete(want, e)
						}
					}
					require.Equal(t, before, seen, "step %d: members visited", step)
				}
				require.Equal(t, len(want), m.len(), "step %d", step)
				require.ElementsMatch(t, slices.Collect(maps.Keys(want)), slices.Collect(m.all()), "step %d", step)
				for _, e := range pool {
					require.Equal(t, want[e], m.has(e), "step %d", step)
				}
			}
		})
	}
}

// TestMatchSetAllVisitsEveryMember checks that removing every member while
// iterating visits each exactly once, in both forms.
func TestMatchSetAllVisitsEveryMember(t *testing.T) {
	for _, n := range []int{0, 1, smallMatches, smallMatches + 1, 4 * smallMatches} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var m matchSet[int]
			for range n {
				m.add(new(int))
			}
			visited := 0
			for e := range m.all() {
				m.remove(e)
				visited++
			}
			require.Equal(t, n, visited)
			require.Zero(t, m.len())
		})
	}
}
