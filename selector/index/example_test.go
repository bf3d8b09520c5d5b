package index_test

import (
	"fmt"
	"slices"

	"github.com/tabbynet/tabby/selector"
	"github.com/tabbynet/tabby/selector/index"
)

func Example() {
	// Selectors are keyed by policy name, pods by name, parents by
	// namespace name.
	x := index.New[string, string, string](
		index.OnMatchStarted(func(sel, pod string) { fmt.Println("start", sel, pod) }),
		index.OnMatchStopped(func(sel, pod string) { fmt.Println("stop ", sel, pod) }),
	)
	x.UpdateSelector("web", selector.MustParse(`app == "web"`))
	x.UpdateSelector("payments", selector.MustParse(`team == "payments" && has(app)`))

	x.UpdateParent("ns-pay", map[string]string{"team": "payments"})
	x.UpdateItem("pod-1", map[string]string{"app": "web"}, "ns-pay")
	x.UpdateItem("pod-2", map[string]string{"app": "db", "team": "search"}, "ns-pay") // own label wins

	fmt.Println("--- relabel pod-1")
	x.UpdateItem("pod-1", map[string]string{"app": "api"}, "ns-pay")
	fmt.Println("--- namespace changes team")
	x.UpdateParent("ns-pay", map[string]string{"team": "search"})
	fmt.Println("--- same labels again: no events")
	x.UpdateParent("ns-pay", map[string]string{"team": "search"})

	fmt.Println(slices.Sorted(x.ItemsMatching("payments")), slices.Sorted(x.SelectorsMatching("pod-1")))
	// Output:
	// start web pod-1
	// start payments pod-1
	// --- relabel pod-1
	// stop  web pod-1
	// --- namespace changes team
	// stop  payments pod-1
	// --- same labels again: no events
	// [] []
}
