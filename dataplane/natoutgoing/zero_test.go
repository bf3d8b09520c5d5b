package natoutgoing_test

import (
	"testing"

	"github.com/tabbynet/tabby/dataplane/internal/zerotest"
	"github.com/tabbynet/tabby/dataplane/natoutgoing"
)

// TestZeroValue: an Applier not made by New (nil or new(Applier)) never
// panics; every method returns ErrInvalidConfig.
func TestZeroValue(t *testing.T) {
	zerotest.Methods[natoutgoing.Applier](t, natoutgoing.ErrInvalidConfig)
}
