package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPoolRefusesV4MappedRange: an IPv6 pool overlapping ::ffff:0:0/96
// is ErrInvalid on create and update (except to disable it).
func TestPoolRefusesV4MappedRange(t *testing.T) {
	tests := []struct {
		name string
		cidr string
		err  error
	}{
		{"contains the mapped range", "::fffe:0:0/95", ErrInvalid},
		{"first half of the space", "::/1", ErrInvalid},
		{"whole space", "::/0", ErrInvalid},
		{"mapped CIDR itself", "::ffff:10.0.0.0/120", ErrInvalid},
		{"just below the range", "::fffe:0:0/96", nil},
		{"just above the range", "::1:0:0:0/96", nil},
		{"ipv4 pool", "10.0.0.0/16", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			_, err := e.ipam.CreatePool(e.ctx, IPPool{Name: "p", CIDR: pfx(tc.cidr)})
			if tc.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.err)
			assert.Contains(t, err.Error(), "pool \"p\"")
			pools, err := e.ipam.Pools(e.ctx)
			require.NoError(t, err)
			assert.Empty(t, pools)
		})
	}
}

// storeRawPools writes pools as a tabby predating a check would have.
func (e *env) storeRawPools(pools ...IPPool) {
	e.t.Helper()
	for i := range pools {
		pools[i] = pools[i].normalize()
	}
	b, err := json.Marshal(pools)
	require.NoError(e.t, err)
	_, err = e.s.Create(e.ctx, keyPools, b)
	require.NoError(e.t, err)
}

// TestStoredPoolOverlappingV4Mapped: a stored pool covering the
// IPv4-mapped range never yields a mapped address, can be disabled but not
// otherwise updated.
func TestStoredPoolOverlappingV4Mapped(t *testing.T) {
	tests := []struct {
		name    string
		reserve string // reservation leaving only the mapped half
		num     int
		err     error
	}{
		{"half the blocks are mapped", "", 130, nil},
		{"only mapped blocks left", "::fffe:0:0/96", 1, ErrPoolExhausted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.storeRawPools(IPPool{Name: "old", CIDR: pfx("::fffe:0:0/95"), BlockSize: 122})
			if tc.reserve != "" {
				require.NoError(t, e.ipam.SetReservation(e.ctx, IPReservation{Name: "r", CIDRs: []netip.Prefix{pfx(tc.reserve)}}))
			}
			// Each node starts its block search at its own place: about
			// half of these start in the mapped range.
			for i := range 8 {
				node := fmt.Sprintf("n%d", i)
				r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: node, Node: node, Num6: tc.num})
				if tc.err != nil {
					require.ErrorIs(t, err, tc.err)
				} else {
					require.NoError(t, err)
					require.Len(t, r.IPv6, tc.num)
				}
				for _, ip := range r.IPv6 {
					require.False(t, ip.Addr.Is4In6(), "mapped address %s handed out", ip.Addr)
					require.False(t, v4Mapped.Overlaps(ip.Block), "block %s is in the mapped range", ip.Block)
				}
			}

			p, err := e.ipam.Pool(e.ctx, "old")
			require.NoError(t, err)
			p.NATOutgoing = true
			_, err = e.ipam.UpdatePool(e.ctx, p)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), "IPv4-mapped")
			p.NATOutgoing, p.Disabled = false, true
			_, err = e.ipam.UpdatePool(e.ctx, p)
			require.NoError(t, err, "disabling a stored mapped pool is allowed")
		})
	}
}

func TestBlockCandidatesSkipV4Mapped(t *testing.T) {
	tests := []struct {
		name  string
		pool  IPPool
		count int
	}{
		{"contains the mapped range", IPPool{CIDR: pfx("::fffe:0:0/95"), BlockSize: 112}, 1 << 16},
		{"beside it", IPPool{CIDR: pfx("::fffe:0:0/96"), BlockSize: 112}, 1 << 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(map[netip.Prefix]bool, tc.count)
			blockCandidates(tc.pool, "n", 1<<30, func(b netip.Prefix) bool {
				require.False(t, v4Mapped.Overlaps(b), "mapped block %s", b)
				require.True(t, tc.pool.CIDR.Contains(b.Addr()))
				seen[b] = true
				return true
			})
			assert.Len(t, seen, tc.count, "every usable block once")
		})
	}
}
