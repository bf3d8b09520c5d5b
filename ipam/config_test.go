package ipam

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSetConfigWithBlocksAssigned checks what IPAMConfig.MaxBlocksPerHost
// and SetConfig promise: like Calico's IPAMConfiguration resource, a cap
// needs no StrictAffinity; the configuration may change while blocks and
// addresses exist, and a change takes nothing already assigned away (a
// lowered cap stops new claims only, strict affinity new borrowing only).
func TestSetConfigWithBlocksAssigned(t *testing.T) {
	t.Run("lowered cap", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.pool("p", "10.0.0.0/24", 28)
			_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h0", Node: "n", Num4: 17})
			require.NoError(t, err)
			blocks, _, err := e.ipam.AffineBlocks(e.ctx, "n")
			require.NoError(t, err)
			require.Len(t, blocks, 2)

			e.config(IPAMConfig{AutoAllocateBlocks: true, MaxBlocksPerHost: 1})
			_, err = e.ipam.Assign(e.ctx, AssignArgs{Handle: "h1", Node: "n", Num4: 15})
			require.NoError(t, err, "the node keeps using both its blocks")
			_, err = e.ipam.Assign(e.ctx, AssignArgs{Handle: "h2", Node: "n", Num4: 1})
			require.ErrorIs(t, err, ErrBlockLimit, "over the cap, no new block and no borrowing")
			e.requireHolds("h0", 17)
			e.requireHolds("h1", 15)
			after, _, err := e.ipam.AffineBlocks(e.ctx, "n")
			require.NoError(t, err)
			assert.Equal(t, blocks, after)
			e.checkClean()
		})
	})
	t.Run("strict affinity turned on", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.pool("p", "10.0.0.0/28", 28) // one block
			e.mustAssign4("h0", "owner")
			b := e.mustAssign4("h1", "n")
			require.True(t, b.Borrowed)

			e.config(IPAMConfig{StrictAffinity: true, AutoAllocateBlocks: true})
			e.requireHolds("h1", 1)
			_, err := e.assign4("h2", "n")
			require.ErrorIs(t, err, ErrStrictAffinity)
			e.checkClean()
		})
	})
}
