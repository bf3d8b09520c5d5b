package ipam

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDeletePoolRacingClaim: DeletePool checks that the pool has no
// blocks and then removes it, two separate store operations, while
// another process may claim a block from the pool in between. Whatever
// the interleaving, no block may be left outside every pool (its
// addresses could later be handed out twice by a new overlapping pool
// with another block size): either DeletePool fails with ErrPoolInUse
// and the pool stays, or the claim backs off.
func TestDeletePoolRacingClaim(t *testing.T) {
	tests := []struct {
		name string
		// race reports whether the other process's Assign runs inside
		// DeletePool (true) or DeletePool inside the Assign's claim.
		assignInsideDelete bool
		// assignIP: the other process asks for 10.0.0.7 (AssignIP), else
		// for any address (Assign); noClaim: it may not claim a block, so
		// AssignIP creates one with no affinity.
		assignIP, noClaim bool
	}{
		{"claim between DeletePool's check and its write", true, false, false},
		{"DeletePool between the claim's read of the pools and its block write", false, false, false},
		{"DeletePool between AssignIP's read of the pools and its claim", false, true, false},
		{"DeletePool between AssignIP's read of the pools and its unaffine block", false, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			onEveryBackend(t, func(t *testing.T, e *env) {
				inner := e.s
				hs := &hookStore{Store: inner}
				e.pool("p", "10.0.0.0/24", 28)
				if tc.noClaim {
					e.config(IPAMConfig{AutoAllocateBlocks: true, MaxBlocksPerHost: 1})
					e.pool("q", "10.1.0.0/24", 28)
					_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "q", Node: "n", Num4: 1, IPv4Pools: []string{"q"}})
					require.NoError(t, err)
				}
				deleter := mustNew(t, hs, WithClock(e.clock.Now))
				assigner := mustNew(t, hs, WithClock(e.clock.Now))
				var once sync.Once
				var assignErr, deleteErr error
				if tc.assignInsideDelete {
					hs.set(func(op, key string) error {
						if key == keyPools {
							once.Do(func() {
								_, assignErr = mustNew(t, inner, WithClock(e.clock.Now)).Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num4: 1})
							})
						}
						return nil
					}, nil, nil)
					deleteErr = deleter.DeletePool(e.ctx, "p")
					require.NoError(t, assignErr)
				} else {
					hs.set(func(op, key string) error {
						if op == "create" && strings.HasPrefix(key, keyBlocks) {
							once.Do(func() { deleteErr = mustNew(t, inner, WithClock(e.clock.Now)).DeletePool(e.ctx, "p") })
						}
						return nil
					}, nil, nil)
					if tc.assignIP {
						_, assignErr = assigner.AssignIP(e.ctx, AssignIPArgs{Handle: "h", Node: "n", Addrs: []netip.Addr{addr("10.0.0.7")}})
					} else {
						_, assignErr = assigner.Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num4: 1})
					}
				}
				hs.set(nil, nil, nil)
				t.Logf("DeletePool: %v; Assign: %v", deleteErr, assignErr)
				_, err := e.ipam.Pool(e.ctx, "p")
				if deleteErr != nil {
					require.ErrorIs(t, deleteErr, ErrPoolInUse)
					require.NoError(t, err, "a refused DeletePool leaves the pool")
				} else {
					require.ErrorIs(t, err, ErrNotFound)
					require.Error(t, assignErr, "the pool is gone: nothing can have been assigned from it")
					if tc.assignIP {
						require.ErrorIs(t, assignErr, ErrNotInPool)
					}
				}
				r, err := e.ipam.Check(e.ctx, CheckOptions{})
				require.NoError(t, err)
				assert.True(t, r.OK(), "check: %s", r)
			})
		})
	}
}
