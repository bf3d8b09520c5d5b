package ipam

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCreatePoolOverOrphanBlocks: a block can outlive its pool (Check
// reports it "outside every pool"). A new pool over it must carve the
// same blocks, else two blocks would hold the same addresses and hand
// them out twice; one that does adopts the block.
func TestCreatePoolOverOrphanBlocks(t *testing.T) {
	tests := []struct {
		name string
		pool IPPool
		err  error
	}{
		{"same CIDR, other block size", IPPool{Name: "new", CIDR: pfx("10.0.0.0/24"), BlockSize: 26}, ErrOverlap},
		{"smaller block size", IPPool{Name: "new", CIDR: pfx("10.0.0.0/24"), BlockSize: 30}, ErrOverlap},
		{"pool inside the block", IPPool{Name: "new", CIDR: pfx("10.0.0.0/30"), BlockSize: 30}, ErrOverlap},
		{"same block size", IPPool{Name: "new", CIDR: pfx("10.0.0.0/24"), BlockSize: 28}, nil},
		{"larger pool, same block size", IPPool{Name: "new", CIDR: pfx("10.0.0.0/16"), BlockSize: 28}, nil},
		{"elsewhere", IPPool{Name: "new", CIDR: pfx("10.1.0.0/24"), BlockSize: 26}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			onEveryBackend(t, func(t *testing.T, e *env) {
				e.pool("old", "10.0.0.0/24", 28)
				ip, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Handle: "h", Node: "n", Addrs: []netip.Addr{addr("10.0.0.1")}})
				require.NoError(t, err)
				// The pool goes, its block stays (a stored state Check
				// reports; DeletePool refuses to make it).
				kv, err := e.s.Get(e.ctx, keyPools)
				require.NoError(t, err)
				val, err := json.Marshal([]IPPool{})
				require.NoError(t, err)
				_, err = e.s.Update(e.ctx, keyPools, val, kv.Revision)
				require.NoError(t, err)

				_, err = e.ipam.CreatePool(e.ctx, tc.pool)
				if tc.err != nil {
					require.ErrorIs(t, err, tc.err)
					assert.Contains(t, err.Error(), ip[0].Block.String())
					pools, err := e.ipam.Pools(e.ctx)
					require.NoError(t, err)
					assert.Empty(t, pools)
					return
				}
				require.NoError(t, err)
				// The address is still taken, whichever pool holds it now.
				_, err = e.ipam.AssignIP(e.ctx, AssignIPArgs{Handle: "h2", Node: "n", Addrs: []netip.Addr{addr("10.0.0.1")}})
				if tc.pool.CIDR.Contains(addr("10.0.0.1")) {
					require.ErrorIs(t, err, ErrAddressInUse)
					e.checkClean()
				}
			})
		})
	}
}
