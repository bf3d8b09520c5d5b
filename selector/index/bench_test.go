package index_test

import (
	"fmt"
	"maps"
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

// BenchmarkIndexMemory reports the live heap an Index adds, per item and
// per selector, with benchLabels items in benchNamespaces namespaces and
// benchSelector selectors. The labels and the parsed selectors are made
// first and count as the caller's; the index copies each label map (sharing
// the strings) and holds the Selector values. The peer is the same items
// held in a plain map[int]map[string]string of copied label maps, what a
// caller without an index keeps anyway, so index/peer says what the index
// adds beyond that. Each figure is the HeapAlloc difference after a GC.
func BenchmarkIndexMemory(b *testing.B) {
	for _, sz := range []struct{ items, selectors int }{{10_000, 1_000}, {100_000, 1_000}, {100_000, 10_000}} {
		b.Run(fmt.Sprintf("items=%d/selectors=%d", sz.items, sz.selectors), func(b *testing.B) {
			labels := make([]map[string]string, sz.items)
			for j := range labels {
				labels[j] = benchLabels(j)
			}
			sels := make([]selector.Selector, sz.selectors)
			for i := range sels {
				sels[i] = selector.MustParse(benchSelector(i))
			}
			var peerItem, indexItem, indexSel, matches float64
			for b.Loop() {
				base := liveHeap()
				peer := make(map[int]map[string]string)
				for j, l := range labels {
					peer[j] = maps.Clone(l)
				}
				peerItem = float64(liveHeap()-base) / float64(sz.items)
				runtime.KeepAlive(peer)
				peer = nil

				base = liveHeap()
				x := index.New[int, int, int]()
				for k := range benchNamespaces {
					x.UpdateParent(k, map[string]string{"team": fmt.Sprint("team-", k), "ns": fmt.Sprint("ns-", k)})
				}
				for j, l := range labels {
					x.UpdateItem(j, l, j%benchNamespaces)
				}
				withItems := liveHeap()
				for i, s := range sels {
					x.UpdateSelector(i, s)
				}
				indexItem = float64(withItems-base) / float64(sz.items)
				indexSel = float64(liveHeap()-withItems) / float64(sz.selectors)
				matches = 0
				for i := range sels {
					matches += float64(x.NumItemsMatching(i))
				}
				runtime.KeepAlive(x)
			}
			b.ReportMetric(indexItem, "index-B/item")
			b.ReportMetric(peerItem, "peer-B/item")
			b.ReportMetric(indexItem/peerItem, "index/peer")
			b.ReportMetric(indexSel, "index-B/selector")
			b.ReportMetric(matches/float64(sz.selectors), "matches/selector")
			runtime.KeepAlive(labels)
			runtime.KeepAlive(sels)
		})
	}
}

// liveHeap is the bytes of live heap objects, after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
