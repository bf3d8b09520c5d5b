package netlink

import (
	"testing"

	"github.com/tabbynet/tabby/dataplane/internal/zerotest"
)

// TestZeroValue: a RouteOwner, VXLAN or Workloads not made by its
// constructor (nil or a zero value) never panics and never acts on the
// caller's namespace; its methods return ErrInvalidSpec or, for those
// listed, do nothing and return zero values.
func TestZeroValue(t *testing.T) {
	t.Run("RouteOwner", func(t *testing.T) {
		zerotest.Methods[RouteOwner](t, ErrInvalidSpec, "Protocol", "Remove", "Desired")
	})
	t.Run("VXLAN", func(t *testing.T) {
		zerotest.Methods[VXLAN](t, ErrInvalidSpec, "Config", "Peers")
	})
	t.Run("Workloads", func(t *testing.T) {
		zerotest.Methods[Workloads](t, ErrInvalidSpec, "Close", "HostNetns", "HostIfaceName")
	})
}
