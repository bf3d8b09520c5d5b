package deltatracker_test

import (
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/deltatracker"
)

func pending(t *deltatracker.Tracker[string, int]) (upd map[string]int, del map[string]int) {
	return maps.Collect(t.PendingUpdates()), maps.Collect(t.PendingDeletions())
}

func TestTracker(t *testing.T) {
	type step func(tr *deltatracker.Tracker[string, int])
	setD := func(k string, v int) step {
		return func(tr *deltatracker.Tracker[string, int]) { tr.Desired().Set(k, v) }
	}
	delD := func(k string) step { return func(tr *deltatracker.Tracker[string, int]) { tr.Desired().Delete(k) } }
	setP := func(k string, v int) step {
		return func(tr *deltatracker.Tracker[string, int]) { tr.Dataplane().Set(k, v) }
	}
	delP := func(k string) step { return func(tr *deltatracker.Tracker[string, int]) { tr.Dataplane().Delete(k) } }
	replP := func(m map[string]int) step {
		return func(tr *deltatracker.Tracker[string, int]) { tr.Dataplane().ReplaceAll(maps.All(m)) }
	}
	replD := func(m map[string]int) step {
		return func(tr *deltatracker.Tracker[string, int]) { tr.Desired().ReplaceAll(maps.All(m)) }
	}
	tests := []struct {
		name     string
		steps    []step
		upd, del map[string]int
	}{
		{"empty", nil, map[string]int{}, map[string]int{}},
		{"desired only", []step{setD("a", 1)}, map[string]int{"a": 1}, map[string]int{}},
		{"dataplane only", []step{setP("a", 1)}, map[string]int{}, map[string]int{"a": 1}},
		{"in sync", []step{setD("a", 1), setP("a", 1)}, map[string]int{}, map[string]int{}},
		{"in sync, dataplane first", []step{setP("a", 1), setD("a", 1)}, map[string]int{}, map[string]int{}},
		{"differs", []step{setD("a", 1), setP("a", 2)}, map[string]int{"a": 1}, map[string]int{}},
		{"desired deleted", []step{setD("a", 1), setP("a", 1), delD("a")}, map[string]int{}, map[string]int{"a": 1}},
		{"desired deleted before written", []step{setD("a", 1), delD("a")}, map[string]int{}, map[string]int{}},
		{"dataplane lost it", []step{setD("a", 1), setP("a", 1), delP("a")}, map[string]int{"a": 1}, map[string]int{}},
		{"stale deleted", []step{setP("a", 1), delP("a")}, map[string]int{}, map[string]int{}},
		{"unknown deletes ignored", []step{delD("x"), delP("y")}, map[string]int{}, map[string]int{}},
		{"desired changes back", []step{setP("a", 1), setD("a", 2), setD("a", 1)}, map[string]int{}, map[string]int{}},
		{"resync", []step{setD("a", 1), setD("b", 2), setP("c", 3), replP(map[string]int{"a": 1, "b": 5, "d": 4})},
			map[string]int{"b": 2}, map[string]int{"d": 4}},
		{"resync to empty", []step{setD("a", 1), setP("a", 1), setP("c", 3), replP(nil)},
			map[string]int{"a": 1}, map[string]int{}},
		{"full render", []step{setD("a", 1), setP("a", 1), setP("b", 2), replD(map[string]int{"b": 2, "c": 3})},
			map[string]int{"c": 3}, map[string]int{"a": 1}},
		{"delete all desired", []step{setD("a", 1), setD("b", 2), setP("a", 1), func(tr *deltatracker.Tracker[string, int]) { tr.Desired().DeleteAll() }},
			map[string]int{}, map[string]int{"a": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := deltatracker.New[string, int]()
			for _, s := range tt.steps {
				s(tr)
			}
			upd, del := pending(tr)
			require.Equal(t, tt.upd, upd)
			require.Equal(t, tt.del, del)
			require.Equal(t, len(tt.upd), tr.NumPendingUpdates())
			require.Equal(t, len(tt.del), tr.NumPendingDeletions())
			require.Equal(t, len(tt.upd)+len(tt.del) == 0, tr.InSync())
		})
	}
}

func TestViews(t *testing.T) {
	tr := deltatracker.New[string, int]()
	tr.Desired().Set("a", 1)
	tr.Dataplane().Set("b", 2)
	v, ok := tr.Desired().Get("a")
	require.True(t, ok)
	require.Equal(t, 1, v)
	_, ok = tr.Desired().Get("b")
	require.False(t, ok)
	v, ok = tr.Dataplane().Get("b")
	require.True(t, ok)
	require.Equal(t, 2, v)
	require.Equal(t, map[string]int{"a": 1}, maps.Collect(tr.Desired().All()))
	require.Equal(t, map[string]int{"b": 2}, maps.Collect(tr.Dataplane().All()))
	require.Equal(t, 1, tr.Desired().Len())
	require.Equal(t, 1, tr.Dataplane().Len())
}

// An applier marks each write done while iterating; a failed write stays
// pending; breaking out of the loop stops the iteration.
func TestApplyWhileIterating(t *testing.T) {
	tr := deltatracker.New[int, int]()
	for i := range 100 {
		tr.Desired().Set(i, i)
		tr.Dataplane().Set(1000+i, i)
	}
	for k, v := range tr.PendingUpdates() {
		switch {
		case k%10 == 0: // every tenth write "fails"
		case k%2 == 0:
			tr.Dataplane().Set(k, v)
		default:
			tr.UpdateApplied(k)
		}
	}
	for k := range tr.PendingDeletions() {
		if k%2 == 0 {
			tr.Dataplane().Delete(k)
		} else {
			tr.DeletionApplied(k)
		}
	}
	tr.UpdateApplied(-1)   // not pending: ignored
	tr.DeletionApplied(-1) // not pending: ignored
	require.Equal(t, 90, tr.Dataplane().Len())
	v, _ := tr.Dataplane().Get(11)
	require.Equal(t, 11, v)
	require.Equal(t, 10, tr.NumPendingUpdates())
	require.Equal(t, 0, tr.NumPendingDeletions())
	n := 0
	for range tr.PendingUpdates() {
		n++
		break
	}
	require.Equal(t, 1, n)
}

// An asymmetric equal: a desired value of 0 means "anything".
func TestNewFunc(t *testing.T) {
	tr := deltatracker.NewFunc[string](func(want, have int) bool { return want == 0 || want == have })
	tr.Desired().Set("any", 0)
	tr.Dataplane().Set("any", 7)
	tr.Desired().Set("exact", 3)
	tr.Dataplane().Set("exact", 7)
	require.Equal(t, map[string]int{"exact": 3}, maps.Collect(tr.PendingUpdates()))
}

// A random walk of operations: the incrementally kept pending sets always
// equal a full diff of the two views, and applying them converges.
func TestRandomAgainstFullDiff(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tr := deltatracker.New[int, int]()
	for range 5000 {
		k, v := r.IntN(20), r.IntN(3)
		switch r.IntN(6) {
		case 0:
			tr.Desired().Set(k, v)
		case 1:
			tr.Desired().Delete(k)
		case 2:
			tr.Dataplane().Set(k, v)
		case 3:
			tr.Dataplane().Delete(k)
		case 4:
			m := map[int]int{}
			for range r.IntN(10) {
				m[r.IntN(20)] = r.IntN(3)
			}
			if r.IntN(2) == 0 {
				tr.Dataplane().ReplaceAll(maps.All(m))
			} else {
				tr.Desired().ReplaceAll(maps.All(m))
			}
		case 5:
			for k, v := range tr.PendingUpdates() {
				if k%2 == 0 {
					tr.Dataplane().Set(k, v)
				} else {
					tr.UpdateApplied(k)
				}
			}
			for k := range tr.PendingDeletions() {
				if k%2 == 0 {
					tr.Dataplane().Delete(k)
				} else {
					tr.DeletionApplied(k)
				}
			}
			require.True(t, tr.InSync())
			require.Equal(t, maps.Collect(tr.Desired().All()), maps.Collect(tr.Dataplane().All()))
		}
		want, have := maps.Collect(tr.Desired().All()), maps.Collect(tr.Dataplane().All())
		upd, del := map[int]int{}, map[int]int{}
		for k, v := range want {
			if hv, ok := have[k]; !ok || hv != v {
				upd[k] = v
			}
		}
		for k, v := range have {
			if _, ok := want[k]; !ok {
				del[k] = v
			}
		}
		require.Equal(t, upd, maps.Collect(tr.PendingUpdates()))
		require.Equal(t, del, maps.Collect(tr.PendingDeletions()))
	}
}

// BenchmarkSyncAfterSmallChange: 10,000 keys in sync, 10 change, the
// applier finds what to write. The peer is the full diff of two maps that
// tabby's appliers did before the tracker (the old DiffEntries).
func BenchmarkSyncAfterSmallChange(b *testing.B) {
	const n, changed = 10000, 10
	b.Run("tracker", func(b *testing.B) {
		tr := deltatracker.New[int, int]()
		for i := range n {
			tr.Desired().Set(i, i)
			tr.Dataplane().Set(i, i)
		}
		round := 0
		for b.Loop() {
			round++
			for i := range changed {
				tr.Desired().Set(i, round)
			}
			for k, v := range tr.PendingUpdates() {
				tr.Dataplane().Set(k, v)
			}
		}
	})
	b.Run("full-diff", func(b *testing.B) {
		want, have := map[int]int{}, map[int]int{}
		for i := range n {
			want[i], have[i] = i, i
		}
		round := 0
		for b.Loop() {
			round++
			for i := range changed {
				want[i] = round
			}
			var set []int
			for k, v := range want {
				if hv, ok := have[k]; !ok || hv != v {
					set = append(set, k)
				}
			}
			for k := range have {
				if _, ok := want[k]; !ok {
					delete(have, k)
				}
			}
			for _, k := range set {
				have[k] = want[k]
			}
		}
	})
}
