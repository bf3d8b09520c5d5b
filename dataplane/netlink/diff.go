package netlink

import (
	"fmt"
	"slices"
	"strings"
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

// Diff compares desired routes with the routes the owner has in the kernel
// (owned: already filtered by the owner's protocol) and returns the changes.
// It is pure. Each list is sorted by key; desired routes with duplicate keys
// keep the first. A route already right is in no list, so re-running a
// reconcile after a crash does not flap it.
func Diff(desired, owned []Route) Plan {
	have := make(map[RouteKey]Route, len(owned))
	for _, r := range owned {
		have[r.Key()] = r
	}
	var p Plan
	want := make(map[RouteKey]bool, len(desired))
	for _, r := range desired {
		k := r.Key()
		if want[k] {
			continue
		}
		want[k] = true
		h, ok := have[k]
		switch {
		case !ok:
			p.Add = append(p.Add, r)
		case !satisfies(r, h):
			p.Replace = append(p.Replace, r)
		}
	}
	for k, r := range have {
		if !want[k] {
			p.Delete = append(p.Delete, r)
		}
	}
	sortByKey(p.Add)
	sortByKey(p.Replace)
	sortByKey(p.Delete)
	return p
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
