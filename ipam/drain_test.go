package ipam

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDeletePoolRecipe: the documented recipe (disable the pool, release
// its addresses, ReleaseEmptyBlocks after the grace period) drains a pool
// even when its block was the node's first, and DeletePool then succeeds.
// The block kept as the node's last is one it can still use.
func TestDeletePoolRecipe(t *testing.T) {
	tests := []struct {
		name      string
		newPool   string // "" for none
		newSel    string // the new pool's nodeSelector
		assignNew bool   // assign (and release) from the new pool too
		released  []string
		kept      []string
	}{
		{"new pool has an empty block", "10.1.0.0/26", "", true,
			[]string{"10.0.0.0/26"}, []string{"10.1.0.0/26"}},
		{"no usable block: keep none", "", "", false,
			[]string{"10.0.0.0/26"}, nil},
		{"new pool does not select the node", "10.1.0.0/26", "zone == 'x'", false,
			[]string{"10.0.0.0/26"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			onEveryBackend(t, func(t *testing.T, e *env) {
				// A pool of one block, so its block is known.
				e.pool("old", "10.0.0.0/26", 26)
				e.mustAssign4("h-old", "n")

				old, err := e.ipam.Pool(e.ctx, "old")
				require.NoError(t, err)
				old.Disabled = true
				_, err = e.ipam.UpdatePool(e.ctx, old)
				require.NoError(t, err)
				if tc.newPool != "" {
					e.pool("new", tc.newPool, 26, func(p *IPPool) { p.NodeSelector = tc.newSel })
				}
				if tc.assignNew {
					ip := e.mustAssign4("h-new", "n")
					require.Equal(t, "new", ip.Pool)
					_, err = e.ipam.ReleaseByHandle(e.ctx, "h-new")
					require.NoError(t, err)
				}
				_, err = e.ipam.ReleaseByHandle(e.ctx, "h-old")
				require.NoError(t, err)
				require.ErrorIs(t, e.ipam.DeletePool(e.ctx, "old"), ErrPoolInUse, "its block remains")

				rel, err := e.ipam.ReleaseEmptyBlocks(e.ctx, "n")
				require.NoError(t, err)
				assert.Empty(t, rel, "within the grace period")

				e.clock.Advance(DefaultEmptyBlockGracePeriod)
				rel, err = e.ipam.ReleaseEmptyBlocks(e.ctx, "n")
				require.NoError(t, err)
				assert.Equal(t, pfxs(tc.released...), rel)
				blocks, _, err := e.ipam.AffineBlocks(e.ctx, "n")
				require.NoError(t, err)
				assert.Equal(t, pfxs(tc.kept...), blocks)

				require.NoError(t, e.ipam.DeletePool(e.ctx, "old"))
				e.checkClean()
			})
		})
	}
}

func pfxs(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, pfx(x))
	}
	return out
}
