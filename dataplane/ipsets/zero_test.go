package ipsets

import (
	"testing"

	"github.com/tabbynet/tabby/dataplane/internal/zerotest"
)

// TestZeroValue: an IPSets not made by New (nil or new(IPSets)) never
// panics; its methods return ErrInvalidConfig or, for those below, do
// nothing and return zero values.
func TestZeroValue(t *testing.T) {
	zerotest.Methods[IPSets](t, ErrInvalidConfig,
		"Prefix", "DeleteSet", "Members", "QueueResync", "InSync", "TempName")
}
