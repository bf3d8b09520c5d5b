package netlink

import (
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/dataplane/deltatracker"
)

// Plan is what a reconcile will do: routes to add (missing), to replace
// (present but different) and to delete (owned but no longer desired). It is
// the dry-run output of RouteOwner.Plan and the input of its applier.
type Plan struct {
	Add     []Route
	Replace []Route
	Delete  []Route
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Add)+len(p.Replace)+len(p.Delete) == 0 }

// String lists the plan one change per line, "+ " add, "~ " replace, "- " delete.
func (p Plan) String() string {
	var b strings.Builder
	for _, r := range p.Add {
		fmt.Fprintf(&b, "+ %s\n", r)
	}
	for _, r := range p.Replace {
		fmt.Fprintf(&b, "~ %s\n", r)
	}
	for _, r := range p.Delete {
		fmt.Fprintf(&b, "- %s\n", r)
	}
	return b.String()
}

// routeTracker is the delta tracker of a RouteOwner: desired routes against
// the routes of its protocol in the kernel, by key. A desired route matches
// a kernel route when it is satisfied by it (a next hop without a device
// matches one on any device).
type routeTracker = deltatracker.Tracker[RouteKey, Route]

func newRouteTracker() *routeTracker { return deltatracker.NewFunc[RouteKey](routeSatisfied) }

// routeSatisfied is satisfies without its copies for routes with at most
// one next hop (the common case, compared once per route and resync).
func routeSatisfied(want, have Route) bool {
	if len(want.NextHops) > 1 || len(have.NextHops) > 1 {
		return satisfies(want, have)
	}
	if want.Type != have.Type || want.Src != have.Src || len(want.NextHops) != len(have.NextHops) {
		return false
	}
	if len(want.NextHops) == 0 {
		return true
	}
	a, b := want.NextHops[0], have.NextHops[0]
	return a.Gateway == b.Gateway && a.OnLink == b.OnLink && a.weight() == b.weight() && (a.Dev == "" || a.Dev == b.Dev)
}

// Diff compares desired routes with the routes the owner has in the kernel
// (owned: already filtered by the owner's protocol) and returns the changes.
// It is pure: a one-off deltatracker. Each list is sorted by key; desired
// routes with duplicate keys keep the first. A route already right is in no
// list, so re-running a reconcile after a crash does not flap it.
func Diff(desired, owned []Route) Plan {
	t := newRouteTracker()
	t.Desired().ReplaceAll(firstByKey(slices.Values(desired)))
	t.Dataplane().ReplaceAll(byKey(owned))
	return planOf(t)
}

// planOf reads the pending changes of t as a Plan: a pending update is an
// Add when the kernel has nothing at its key, else a Replace.
func planOf(t *routeTracker) Plan {
	var p Plan
	for k, r := range t.PendingUpdates() {
		if _, ok := t.Dataplane().Get(k); ok {
			p.Replace = append(p.Replace, r)
		} else {
			p.Add = append(p.Add, r)
		}
	}
	for _, r := range t.PendingDeletions() {
		p.Delete = append(p.Delete, r)
	}
	sortByKey(p.Add)
	sortByKey(p.Replace)
	sortByKey(p.Delete)
	return p
}

// byKey yields routes with their keys (a repeated key: the last wins in
// a ReplaceAll).
func byKey(rs []Route) iter.Seq2[RouteKey, Route] {
	return func(yield func(RouteKey, Route) bool) {
		for _, r := range rs {
			if !yield(r.Key(), r) {
				return
			}
		}
	}
}

// firstByKey yields each route of rs whose key it has not yielded yet.
func firstByKey(rs iter.Seq[Route]) iter.Seq2[RouteKey, Route] {
	return func(yield func(RouteKey, Route) bool) {
		seen := map[RouteKey]bool{}
		for r := range rs {
			k := r.Key()
			if seen[k] {
				continue
			}
			seen[k] = true
			if !yield(k, r) {
				return
			}
		}
	}
}

// sortByKey sorts routes by Key, computing each key once.
func sortByKey(rs []Route) {
	type keyed struct {
		k RouteKey
		r Route
	}
	ks := make([]keyed, len(rs))
	for i, r := range rs {
		ks[i] = keyed{r.Key(), r}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return compareKeys(a.k, b.k) })
	for i := range ks {
		rs[i] = ks[i].r
	}
}
