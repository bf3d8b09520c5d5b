package deltatracker_test

import (
	"fmt"
	"maps"
	"slices"

	"github.com/tabbynet/tabby/dataplane/deltatracker"
)

// An applier for "ip neigh"-like entries (IP → MAC): the renderer sets the
// desired entries, a dump fills the dataplane view, and the applier writes
// only the difference, marking each write done on the dataplane view.
func Example() {
	neigh := deltatracker.New[string, string]()
	neigh.Desired().Set("10.0.0.2", "66:cc:0a:00:00:02")
	neigh.Desired().Set("10.0.0.3", "66:cc:0a:00:00:03")

	// Resync from a dump of the kernel: one entry right, one stale.
	neigh.Dataplane().ReplaceAll(maps.All(map[string]string{
		"10.0.0.2": "66:cc:0a:00:00:02",
		"10.0.0.9": "66:cc:0a:00:00:09",
	}))

	for _, ip := range slices.Sorted(maps.Keys(maps.Collect(neigh.PendingDeletions()))) {
		fmt.Println("ip neigh del", ip)
		neigh.Dataplane().Delete(ip)
	}
	for ip, mac := range neigh.PendingUpdates() {
		fmt.Println("ip neigh replace", ip, "lladdr", mac)
		neigh.Dataplane().Set(ip, mac)
	}
	fmt.Println("in sync:", neigh.InSync())
	// Output:
	// ip neigh del 10.0.0.9
	// ip neigh replace 10.0.0.3 lladdr 66:cc:0a:00:00:03
	// in sync: true
}
