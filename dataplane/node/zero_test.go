package node_test

import (
	"testing"

	"github.com/tabbynet/tabby/dataplane/internal/zerotest"
	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/node"
)

// TestZeroValue: a Dataplane not made by New, NewWith or NewFake (nil or
// new(Dataplane)) never panics; its methods that change or write return
// tnl.ErrInvalidSpec, Close returns nil and the getters zero values.
func TestZeroValue(t *testing.T) {
	zerotest.Methods[node.Dataplane](t, tnl.ErrInvalidSpec,
		"Close", "Name", "Config", "Workloads", "Routes", "VXLAN", "Blocks", "Peers", "AsPeer")
}
