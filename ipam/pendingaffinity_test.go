package ipam

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPendingAffinityConfirmedOnUse: a block whose claim was interrupted
// before its affinity was confirmed is confirmed by the node's next
// assignment from it (design 2), so that AffineBlocks — what the node
// agent advertises and blackholes — includes the block holding the new
// address, also when that assignment is satisfied from the block.
func TestPendingAffinityConfirmedOnUse(t *testing.T) {
	tests := []struct {
		name string
		num  int
	}{
		{"request satisfied by the block", 1},
		{"request spilling into a new block", 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			onEveryBackend(t, func(t *testing.T, e *env) {
				e.pool("p", "10.0.0.0/24", 28)
				first := e.mustAssign4("h1", "n")
				// Put the affinity back to pending, as a claim interrupted
				// before its confirmation leaves it.
				key := affinityKey("n", first.Block)
				kv, err := e.s.Get(e.ctx, key)
				require.NoError(t, err)
				var af Affinity
				require.NoError(t, json.Unmarshal(kv.Value, &af))
				af.State = AffinityPending
				val, err := json.Marshal(af)
				require.NoError(t, err)
				_, err = e.s.Update(e.ctx, key, val, kv.Revision)
				require.NoError(t, err)

				// Another process (a CNI plugin) assigns on the node.
				other := mustNew(t, e.s, WithClock(e.clock.Now))
				r, err := other.Assign(e.ctx, AssignArgs{Handle: "h2", Node: "n", Num4: tc.num})
				require.NoError(t, err)
				assert.Equal(t, first.Block, r.IPv4[0].Block)
				blocks, _, err := e.ipam.AffineBlocks(e.ctx, "n")
				require.NoError(t, err)
				assert.Contains(t, blocks, first.Block)
				e.checkClean()
			})
		})
	}

}
