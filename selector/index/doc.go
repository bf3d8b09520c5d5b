// Package index keeps the matches between many selectors and many labelled
// items up to date incrementally, and reports each match as it starts and
// stops. It does the job of Felix's label index (InheritIndex): which
// endpoints does each policy selector pick, which members belong in each IP
// set.
//
//	x := index.New[string, string, string](
//		index.OnMatchStarted(func(sel, pod string) { ipsets.Add(sel, pod) }),
//		index.OnMatchStopped(func(sel, pod string) { ipsets.Remove(sel, pod) }),
//	)
//	x.UpdateParent("ns/prod", map[string]string{"env": "prod"})
//	x.UpdateItem("prod/web-1", map[string]string{"app": "web"}, "ns/prod", "sa/prod/web")
//	x.UpdateSelector("allow-web", selector.MustParse(`app == "web" && env == "prod"`))
//
// # Model
//
// An Index[S, I, P] holds selectors keyed by S, items keyed by I and parents
// keyed by P; the three key types are the caller's (strings, structs, the
// datastore's own keys), and the index knows nothing of where updates come
// from.
//
//   - An item has its own labels and an ordered list of parents (a
//     namespace, a service account). Its effective labels are its own, then
//     each parent's in order: its own labels hide its parents', and an
//     earlier parent hides a later one. Name the parents most specific first.
//   - A parent may be named before it exists (UpdateItem before
//     UpdateParent): it counts as having no labels until it is updated, and
//     again after DeleteParent. Items keep naming a deleted parent.
//   - Every Update replaces what was there; updating to an equal value (a
//     selector with the same canonical form, equal labels and parents) emits
//     nothing. Deleting something unknown does nothing.
//   - OnMatchStarted and OnMatchStopped are called exactly once per
//     transition, synchronously, before the update returns. For each item
//     (or selector) re-evaluated, stops are reported before starts; no pair
//     ever starts and stops within one update. A selector that stops matching
//     because it or its item is deleted reports a stop for each match.
//   - ItemsMatching and SelectorsMatching iterate over the current matches
//     without copying; Matches, NumItemsMatching and NumSelectorsMatching
//     answer in constant time.
//
// # Design
//
//  1. Never re-scan everything. Each selector is filed once, under the most
//     selective demand of its LabelRestrictions: a label with the fewest
//     allowed values (app == "web", tier in {...}) under each (label, value),
//     else a label it requires (has(k), k starts with "x") under the label.
//     When an item's labels change, only its current matches, the selectors
//     filed under one of its effective (label, value) pairs or labels, and
//     the unindexed selectors are evaluated: the cost follows the number of
//     candidates, not the number of selectors (BenchmarkIndex). When only
//     an item's own labels change (its parents stay), of those candidates
//     only the selectors that read a changed label (Selector.Keys) are
//     evaluated: the others' verdicts cannot have changed. Selectors
//     with no positive demand (all(), a != "x", !has(a)) are unindexed and
//     evaluated for every changed item; Stats reports how many there are.
//  2. Unsatisfiable selectors (Selector.Satisfiable false, such as
//     a == "x" && a == "y") are stored but never evaluated.
//  3. The reverse lookups are indexed too: items by their own (label,
//     value) pairs and parents by theirs, so a new or changed selector is
//     evaluated only against items that have, or inherit, the value it needs
//     (all items only when it is unindexed). A parent's label change
//     re-evaluates that parent's children only.
//  4. Effective labels are never flattened into a map: each item evaluates
//     through a view (own labels, then its parents' in order) that
//     implements selector.Labels on a pointer, so evaluation does not
//     allocate. Shadowed parent labels are skipped when looking up
//     candidates. Labels are copied into storage the index reuses, so a
//     steady relabelling makes no allocations; an item's own labels are kept
//     as a slice sorted by key, less than half the memory of a map of a few
//     labels (README.md has the figures, BenchmarkIndexMemory).
//  5. Generic and datastore-agnostic, like Calico's LabelRestrictionIndex,
//     with the inheritance of its InheritIndex; callbacks are given at
//     construction, not returned as event lists, so nothing is buffered.
//
// Trade-offs: memory is spent on the two reverse indexes and on match sets
// held from both sides (selector → items and item → selectors), since
// neither side can be derived from the other without a scan. Each side keeps
// up to 16 entry pointers in a slice and only a larger set in a map keyed by
// pointer, so a match costs about a quarter of what two maps keyed by the
// caller's ids did (README.md, BenchmarkIndexMemory). A selector
// keyed only on a label present on most items (has(app)) is a candidate for
// most item changes; a value demand is always preferred when there is one.
//
// An Index is not safe for concurrent use: callers serialise updates and
// queries, typically from the one goroutine that owns the datastore
// watch. Callbacks must not call back into the Index, and the index must not
// change while ItemsMatching or SelectorsMatching is being iterated.
//
// # Performance
//
// An item's label change costs the same however many selectors cannot match
// it, while evaluating every selector grows linearly; README.md has the
// figures and the command (BenchmarkIndex).
package index
