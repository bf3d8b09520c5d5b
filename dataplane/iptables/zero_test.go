package iptables

import (
	"testing"

	"github.com/tabbynet/tabby/dataplane/internal/zerotest"
)

// TestZeroValue: an IPTables not made by New (nil or new(IPTables)) never
// panics; its methods return ErrInvalidConfig or, for those below, do
// nothing and return zero values.
func TestZeroValue(t *testing.T) {
	zerotest.Methods[IPTables](t, ErrInvalidConfig,
		"Netns", "Execer", "DeleteChain", "QueueResync", "Family", "Backend", "InSync", "Render")
}
