package index_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/tabbynet/tabby/selector"
	"github.com/tabbynet/tabby/selector/index"
)

const (
	benchItems      = 10_000
	benchValues     = 1_000 // distinct values per item label; selector i targets value i
	benchNamespaces = 50
)

// benchSelector is selector i of a realistic mix: mostly app == "x", some in,
// has and namespace-label selectors, each aimed at value i so that selectors
// beyond benchValues can match no item.
func benchSelector(i int) string {
	switch i % 20 {
	case 14, 15:
		return fmt.Sprintf(`tier in {"tier-%d", "tier-%d"}`, i, i+1)
	case 16, 17:
		return fmt.Sprintf(`has(feature-%d)`, i)
	case 18:
		return fmt.Sprintf(`team == "team-%d" && app starts with "app"`, i)
	case 19:
		return fmt.Sprintf(`app in {"app-%d"} && version != "v1"`, i)
	default:
		return fmt.Sprintf(`app == "app-%d"`, i)
	}
}

// Five unindexable selectors, evaluated on every item change whatever the
// number of selectors.
var benchUnindexed = []string{`all()`, `version != "v9"`, `!has(quarantine)`, `version != "v1" || has(x)`, `!(tier == "tier-0")`}

func benchLabels(j int) map[string]string {
	return map[string]string{
		"app":                                 fmt.Sprint("app-", j%benchValues),
		"tier":                                fmt.Sprint("tier-", (j+7)%benchValues),
		fmt.Sprint("feature-", j%benchValues): "",
		"version":                             fmt.Sprint("v", j%3),
	}
}

func newBenchIndex(b *testing.B, selectors int) (*index.Index[int, int, int], *int) {
	events := 0
	count := func(int, int) { events++ }
	x := index.New[int, int, int](index.OnMatchStarted(count), index.OnMatchStopped(count))
	for k := range benchNamespaces {
		x.UpdateParent(k, map[string]string{"team": fmt.Sprint("team-", k), "ns": fmt.Sprint("ns-", k)})
	}
	for j := range benchItems {
		x.UpdateItem(j, benchLabels(j), j%benchNamespaces)
	}
	for i := range selectors {
		x.UpdateSelector(i, selector.MustParse(benchSelector(i)))
	}
	for i, s := range benchUnindexed {
		x.UpdateSelector(-1-i, selector.MustParse(s))
	}
	if st := x.Stats(); st.Unindexed != len(benchUnindexed) {
		b.Fatalf("stats %+v: want %d unindexed", st, len(benchUnindexed))
	}
	runtime.GC() // collect the set-up garbage before timing
	return x, &events
}

// BenchmarkIndex measures, in an index of 10,000 items in 50 namespaces at
// 200, 2,000 and 20,000 selectors (5 of them unindexable):
//
//   - item: one item label change (app flips between two values selectors
//     target), the headline figure; its cost depends on the item's candidate
//     selectors, not on the total;
//   - scan-all: for contrast, evaluating every selector against that item
//     once, which is what an index without candidate lookup would pay;
//   - parent: a namespace label change that re-evaluates its 200 pods;
//   - selector: one selector changing the value it requires.
func BenchmarkIndex(b *testing.B) {
	for _, n := range []int{200, 2_000, 20_000} {
		b.Run(fmt.Sprint("selectors=", n), func(b *testing.B) {
			x, events := newBenchIndex(b, n)
			const j = 21 // app-21, tier-28, feature-21, namespace 21
			ns := j % benchNamespaces

			b.Run("item", func(b *testing.B) {
				before, after := benchLabels(j), benchLabels(j)
				after["app"] = "app-41"
				runFlip(b, events, func(flip bool) {
					if flip {
						x.UpdateItem(j, after, ns)
					} else {
						x.UpdateItem(j, before, ns)
					}
				})
			})
			b.Run("scan-all", func(b *testing.B) {
				sels := make([]selector.Selector, 0, n+len(benchUnindexed))
				for i := range n {
					sels = append(sels, selector.MustParse(benchSelector(i)))
				}
				for _, s := range benchUnindexed {
					sels = append(sels, selector.MustParse(s))
				}
				view := &selector.Overlay{Top: selector.Map(benchLabels(j)), Bottom: selector.Map{"team": "team-21", "ns": "ns-21"}}
				matched := 0
				b.ReportAllocs()
				for b.Loop() {
					for _, s := range sels {
						if s.Evaluate(view) {
							matched++
						}
					}
				}
				if matched == 0 {
					b.Fatal("nothing matched")
				}
			})
			b.Run("parent", func(b *testing.B) {
				before := map[string]string{"team": "team-21", "ns": "ns-21"}
				after := map[string]string{"team": "team-38", "ns": "ns-21"}
				runFlip(b, events, func(flip bool) {
					if flip {
						x.UpdateParent(ns, after)
					} else {
						x.UpdateParent(ns, before)
					}
				})
			})
			b.Run("selector", func(b *testing.B) {
				before, after := selector.MustParse(benchSelector(1)), selector.MustParse(`app == "app-61"`)
				runFlip(b, events, func(flip bool) {
					if flip {
						x.UpdateSelector(1, after)
					} else {
						x.UpdateSelector(1, before)
					}
				})
			})
		})
	}
}

// runFlip times update(true), update(false), ... and reports the match
// events per update. It leaves the index as it found it.
func runFlip(b *testing.B, events *int, update func(flip bool)) {
	*events = 0
	flip := false
	b.ReportAllocs()
	for b.Loop() {
		flip = !flip
		update(flip)
	}
	b.StopTimer()
	b.ReportMetric(float64(*events)/float64(b.N), "events/op")
	if flip {
		update(false)
	}
}
