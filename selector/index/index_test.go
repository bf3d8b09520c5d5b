package index_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/selector"
	"github.com/tabbynet/tabby/selector/index"
)

// recorder collects match events as "+sel/item" and "-sel/item".
type recorder struct{ events []string }

func (r *recorder) index() *index.Index[string, string, string] {
	return index.New[string, string, string](
		index.OnMatchStarted(func(s, i string) { r.events = append(r.events, "+"+s+"/"+i) }),
		index.OnMatchStopped(func(s, i string) { r.events = append(r.events, "-"+s+"/"+i) }),
	)
}

// take returns the events so far, sorted, and forgets them.
func (r *recorder) take() []string {
	ev := r.events
	r.events = nil
	slices.Sort(ev)
	return ev
}

type labels = map[string]string

// op is one index operation in a table test.
type op func(x *index.Index[string, string, string])

func sel(id, s string) op {
	return func(x *index.Index[string, string, string]) { x.UpdateSelector(id, selector.MustParse(s)) }
}
func delSel(id string) op {
	return func(x *index.Index[string, string, string]) { x.DeleteSelector(id) }
}
func item(id string, l labels, parents ...string) op {
	return func(x *index.Index[string, string, string]) { x.UpdateItem(id, l, parents...) }
}
func delItem(id string) op { return func(x *index.Index[string, string, string]) { x.DeleteItem(id) } }
func parent(id string, l labels) op {
	return func(x *index.Index[string, string, string]) { x.UpdateParent(id, l) }
}
func delParent(id string) op {
	return func(x *index.Index[string, string, string]) { x.DeleteParent(id) }
}

func TestOperations(t *testing.T) {
	tests := []struct {
		name  string
		setup []op
		op    op
		want  []string // events of op, sorted
		after map[string][]string
	}{
		{
			name:  "selector added before items matches later items",
			setup: []op{sel("s", `app == "web"`)},
			op:    item("p1", labels{"app": "web"}),
			want:  []string{"+s/p1"},
			after: map[string][]string{"s": {"p1"}},
		},
		{
			name:  "selector added after items",
			setup: []op{item("p1", labels{"app": "web"}), item("p2", labels{"app": "db"}), item("p3", nil)},
			op:    sel("s", `app == "web"`),
			want:  []string{"+s/p1"},
			after: map[string][]string{"s": {"p1"}},
		},
		{
			name:  "selector changed: some stop, some start",
			setup: []op{item("p1", labels{"app": "web"}), item("p2", labels{"app": "db"}), sel("s", `app == "web"`)},
			op:    sel("s", `app in {"db", "cache"}`),
			want:  []string{"+s/p2", "-s/p1"},
			after: map[string][]string{"s": {"p2"}},
		},
		{
			name:  "selector changed to an equivalent spelling: nothing",
			setup: []op{item("p1", labels{"app": "web"}), sel("s", `app == "web"`)},
			op:    sel("s", `(app=='web')`),
			after: map[string][]string{"s": {"p1"}},
		},
		{
			name:  "selector changed to unsatisfiable stops everything",
			setup: []op{item("p1", labels{"app": "web"}), sel("s", `app == "web"`)},
			op:    sel("s", `app == "web" && app == "db"`),
			want:  []string{"-s/p1"},
			after: map[string][]string{"s": nil},
		},
		{
			name:  "selector deleted",
			setup: []op{item("p1", labels{"app": "web"}), item("p2", labels{"app": "web"}), sel("s", `has(app)`)},
			op:    delSel("s"),
			want:  []string{"-s/p1", "-s/p2"},
			after: map[string][]string{"s": nil},
		},
		{
			name: "delete unknown selector, item, parent: nothing",
			op: func(x *index.Index[string, string, string]) {
				x.DeleteSelector("nope")
				x.DeleteItem("nope")
				x.DeleteParent("nope")
			},
		},
		{
			name:  "unindexable selector matches items without the label",
			setup: []op{item("p1", labels{"app": "web"}), item("p2", nil), sel("s", `app != "web"`)},
			op:    item("p3", labels{"x": "y"}),
			want:  []string{"+s/p3"},
			after: map[string][]string{"s": {"p2", "p3"}},
		},
		{
			name:  "all() matches everything",
			setup: []op{item("p1", labels{"app": "web"}), item("p2", nil)},
			op:    sel("s", `all()`),
			want:  []string{"+s/p1", "+s/p2"},
		},
		{
			name:  "item label change moves it between selectors",
			setup: []op{sel("web", `app == "web"`), sel("db", `app == "db"`), sel("any", `has(app)`), item("p1", labels{"app": "web"})},
			op:    item("p1", labels{"app": "db"}),
			want:  []string{"+db/p1", "-web/p1"},
			after: map[string][]string{"web": nil, "db": {"p1"}, "any": {"p1"}},
		},
		{
			name:  "item update to the same labels: nothing",
			setup: []op{sel("s", `app == "web"`), item("p1", labels{"app": "web"})},
			op:    item("p1", labels{"app": "web"}),
			after: map[string][]string{"s": {"p1"}},
		},
		{
			name:  "item deleted",
			setup: []op{sel("s", `app == "web"`), sel("t", `all()`), item("p1", labels{"app": "web"})},
			op:    delItem("p1"),
			want:  []string{"-s/p1", "-t/p1"},
		},
		{
			name:  "item inherits parent labels",
			setup: []op{sel("s", `app == "web" && team == "pay"`), parent("ns", labels{"team": "pay"})},
			op:    item("p1", labels{"app": "web"}, "ns"),
			want:  []string{"+s/p1"},
		},
		{
			name:  "selector indexed on a label only a parent has",
			setup: []op{parent("ns", labels{"team": "pay"}), item("p1", labels{"app": "web"}, "ns"), item("p2", labels{"team": "pay"})},
			op:    sel("s", `team == "pay"`),
			want:  []string{"+s/p1", "+s/p2"},
		},
		{
			name:  "own labels override parent labels",
			setup: []op{sel("s", `team == "pay"`), parent("ns", labels{"team": "pay"})},
			op:    item("p1", labels{"team": "ops"}, "ns"),
			after: map[string][]string{"s": nil},
		},
		{
			name:  "earlier parent overrides later parent",
			setup: []op{sel("pay", `team == "pay"`), sel("ops", `team == "ops"`), parent("ns", labels{"team": "pay"}), parent("sa", labels{"team": "ops"})},
			op:    item("p1", nil, "ns", "sa"),
			want:  []string{"+pay/p1"},
		},
		{
			name:  "reordering parents changes the winner",
			setup: []op{sel("pay", `team == "pay"`), sel("ops", `team == "ops"`), parent("ns", labels{"team": "pay"}), parent("sa", labels{"team": "ops"}), item("p1", nil, "ns", "sa")},
			op:    item("p1", nil, "sa", "ns"),
			want:  []string{"+ops/p1", "-pay/p1"},
		},
		{
			name:  "later parent fills labels the earlier lacks",
			setup: []op{sel("s", `team == "pay" && sa == "x"`), parent("ns", labels{"team": "pay"}), parent("sa", labels{"team": "ops", "sa": "x"})},
			op:    item("p1", nil, "ns", "sa"),
			want:  []string{"+s/p1"},
		},
		{
			name:  "parent not yet known counts as empty, then arrives",
			setup: []op{sel("s", `team == "pay"`), sel("n", `!has(team)`), item("p1", labels{"app": "web"}, "ns")},
			op:    parent("ns", labels{"team": "pay"}),
			want:  []string{"+s/p1", "-n/p1"},
		},
		{
			name:  "parent label change re-evaluates its children only",
			setup: []op{sel("s", `team == "pay"`), parent("ns", labels{"team": "ops"}), parent("other", labels{"team": "pay"}), item("p1", nil, "ns"), item("p2", nil, "ns"), item("p3", nil, "other")},
			op:    parent("ns", labels{"team": "pay"}),
			want:  []string{"+s/p1", "+s/p2"},
			after: map[string][]string{"s": {"p1", "p2", "p3"}},
		},
		{
			name:  "parent update to the same labels: nothing",
			setup: []op{sel("s", `team == "pay"`), parent("ns", labels{"team": "pay"}), item("p1", nil, "ns")},
			op:    parent("ns", labels{"team": "pay"}),
			after: map[string][]string{"s": {"p1"}},
		},
		{
			name:  "parent deleted: children lose its labels but keep naming it",
			setup: []op{sel("s", `team == "pay"`), parent("ns", labels{"team": "pay"}), item("p1", nil, "ns")},
			op: func(x *index.Index[string, string, string]) {
				x.DeleteParent("ns")
				x.UpdateParent("ns", labels{"team": "pay"}) // back again: p1 still names it
			},
			want:  []string{"+s/p1", "-s/p1"},
			after: map[string][]string{"s": {"p1"}},
		},
		{
			name:  "parent deleted, override by own label: no change",
			setup: []op{sel("s", `team == "ops"`), parent("ns", labels{"team": "pay"}), item("p1", labels{"team": "ops"}, "ns")},
			op:    delParent("ns"),
			after: map[string][]string{"s": {"p1"}},
		},
		{
			name:  "item drops a parent",
			setup: []op{sel("s", `team == "pay"`), parent("ns", labels{"team": "pay"}), item("p1", nil, "ns")},
			op:    item("p1", nil),
			want:  []string{"-s/p1"},
		},
		{
			name:  "same parent named twice",
			setup: []op{sel("s", `team == "pay"`), parent("ns", labels{"team": "pay"})},
			op:    item("p1", nil, "ns", "ns"),
			want:  []string{"+s/p1"},
		},
		{
			name:  "unsatisfiable selector never matches",
			setup: []op{item("p1", labels{"a": "x"})},
			op:    sel("s", `has(a) && !has(a)`),
			after: map[string][]string{"s": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r recorder
			x := r.index()
			for _, o := range tt.setup {
				o(x)
			}
			r.take()
			tt.op(x)
			assert.Equal(t, tt.want, r.take())
			for s, want := range tt.after {
				got := slices.Sorted(x.ItemsMatching(s))
				assert.Equal(t, want, got, "items matching %s", s)
				assert.Len(t, want, x.NumItemsMatching(s))
				for _, i := range want {
					assert.True(t, x.Matches(s, i))
					assert.Contains(t, slices.Collect(x.SelectorsMatching(i)), s)
				}
			}
		})
	}
}

func TestCallerMayReuseMaps(t *testing.T) {
	var r recorder
	x := r.index()
	x.UpdateSelector("s", selector.MustParse(`app == "web"`))
	l := labels{"app": "web"}
	x.UpdateItem("p1", l)
	l["app"] = "db" // must not leak into the index
	pl := labels{"team": "a"}
	x.UpdateParent("ns", pl)
	pl["team"] = "b"
	assert.True(t, x.Matches("s", "p1"))
	x.UpdateItem("p1", l)
	assert.False(t, x.Matches("s", "p1"))
	assert.Equal(t, []string{"+s/p1", "-s/p1"}, r.take())
}

func TestUnknownQueries(t *testing.T) {
	x := index.New[int, int, int]()
	assert.Empty(t, slices.Collect(x.ItemsMatching(1)))
	assert.Empty(t, slices.Collect(x.SelectorsMatching(1)))
	assert.False(t, x.Matches(1, 1))
	assert.Zero(t, x.NumItemsMatching(1))
	assert.Zero(t, x.NumSelectorsMatching(1))
	// No callbacks set: still works.
	x.UpdateSelector(1, selector.All())
	x.UpdateItem(1, nil)
	assert.Equal(t, 1, x.NumSelectorsMatching(1))
}

func TestStats(t *testing.T) {
	x := index.New[string, string, string]()
	for i, s := range []string{`a == "x"`, `has(b)`, `a in {"x", "y"} && c == "z"`, `all()`, `a != "x"`, `!has(a)`, `a == "x" && a == "y"`} {
		x.UpdateSelector(fmt.Sprint(i), selector.MustParse(s))
	}
	x.UpdateItem("i", nil, "ns", "sa")
	x.UpdateParent("ns", nil)
	require.Equal(t, index.Stats{Selectors: 7, Unindexed: 3, Unsatisfiable: 1, Items: 1, Parents: 2}, x.Stats())

	// Parents no item names are forgotten once deleted.
	x.DeleteItem("i")
	assert.Equal(t, 1, x.Stats().Parents) // ns still exists
	x.DeleteParent("ns")
	x.DeleteSelector("6")
	assert.Equal(t, index.Stats{Selectors: 6, Unindexed: 3}, x.Stats())
}
