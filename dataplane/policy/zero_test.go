package policy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tabbynet/tabby/dataplane/internal/zerotest"
	"github.com/tabbynet/tabby/dataplane/policy"
)

// TestZeroValue: a Compiler not made by New (nil or new(Compiler)) never
// panics, and starts no goroutine that could; its methods return
// ErrInvalidConfig or, for those below, do nothing and return zero values
// (Plan an empty plan).
func TestZeroValue(t *testing.T) {
	zerotest.Methods[policy.Compiler](t, policy.ErrInvalidConfig,
		"DeleteEndpoint", "RemoveInterface", "DeletePolicy", "NeedsL7", "Plan")
	assert.True(t, new(policy.Compiler).Plan().Empty())
	assert.True(t, (*policy.Compiler)(nil).Plan().Empty())
}

// TestZeroDropReader: a DropReader not made by ListenDrops returns
// ErrInvalidConfig.
func TestZeroDropReader(t *testing.T) {
	zerotest.Methods[policy.DropReader](t, policy.ErrInvalidConfig)
}
