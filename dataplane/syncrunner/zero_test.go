package syncrunner

import (
	"testing"

	"github.com/tabbynet/tabby/dataplane/internal/zerotest"
)

// TestZeroValue: a Runner not made by New (nil or new(Runner)) never
// panics; Run returns ErrInvalidConfig, Trigger and RetryAfter do nothing.
func TestZeroValue(t *testing.T) {
	zerotest.Methods[Runner](t, ErrInvalidConfig, "Trigger", "RetryAfter")
}
