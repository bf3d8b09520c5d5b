package nettest_test

import (
	"fmt"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// A Matrix prints as a table; ExpectMatrix shows it when a pair differs.
func ExampleMatrix() {
	pods := []*nettest.Pod{{Name: "frontend"}, {Name: "backend"}, {Name: "db"}}
	m := nettest.Matrix{Pods: pods, OK: [][]bool{
		{false, true, false},
		{true, false, true},
		{false, false, false},
	}}
	fmt.Print(m)
	// Output:
	// from\to      frontend     backend      db
	// frontend     ·            ✓            ✗
	// backend      ✓            ·            ✓
	// db           ✗            ✗            ·
}
