package ipam

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// allButLastBlock returns reservation CIDRs covering every block of pool
// except its last one: the first half of what is left, for each prefix
// length from the pool's down to the block size.
func allButLastBlock(pool netip.Prefix, blockSize int) []netip.Prefix {
	var out []netip.Prefix
	rest := pool
	for bits := pool.Bits() + 1; bits <= blockSize; bits++ {
		first := netip.PrefixFrom(rest.Addr(), bits)
		out = append(out, first)
		second := toU128(first.Addr()).add(1, first.Addr().BitLen()-bits)
		rest = netip.PrefixFrom(fromU128(second, first.Addr().Is4()), bits)
	}
	return out
}

// TestClaimPastLargeReservations: a node looks for a free block from its
// own starting place in the pool. Blocks wholly reserved are no candidates
// and must not use up the search: a pool whose only unreserved block is
// its last one, hundreds of thousands of blocks away, still gives that
// block to every node that asks, whatever its starting place. An IPv6
// pool of more than 2^62 blocks (a /48 in /122 blocks, Calico's usual
// IPv6 pool) has its candidates spread over the whole pool, so reserving
// its start, or all but its last 2^-62 part, leaves blocks to claim.
func TestClaimPastLargeReservations(t *testing.T) {
	tests := []struct {
		name      string
		pool      string
		blockSize int
		reserved  func(pool netip.Prefix) []netip.Prefix
		want      string // the block claimed; "" for any unreserved one
	}{
		{"IPv4 /8 in /26 blocks, all but the last reserved", "10.0.0.0/8", 26,
			func(p netip.Prefix) []netip.Prefix { return allButLastBlock(p, 26) }, "10.255.255.192/26"},
		{"IPv4 /8 in /26 blocks, first half reserved", "10.0.0.0/8", 26,
			func(netip.Prefix) []netip.Prefix { return []netip.Prefix{pfx("10.0.0.0/9")} }, ""},
		{"IPv6 /64 in /122 blocks, all but the last reserved", "fd00::/64", 122,
			func(p netip.Prefix) []netip.Prefix { return allButLastBlock(p, 122) }, "fd00::ffff:ffff:ffff:ffc0/122"},
		{"IPv6 /48 in /122 blocks, all but the last /110 reserved", "fd00::/48", 122,
			func(p netip.Prefix) []netip.Prefix { return allButLastBlock(p, 110) }, "fd00::ffff:ffff:ffff:fffc:0/122"},
		{"IPv6 /48 in /122 blocks, its first /52 reserved", "fd00::/48", 122,
			func(netip.Prefix) []netip.Prefix { return []netip.Prefix{pfx("fd00::/52")} }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 4 {
				node := fmt.Sprintf("node-%d", i)
				t.Run(node, func(t *testing.T) {
					e := newEnv(t)
					p := e.pool("p", tc.pool, tc.blockSize)
					res := tc.reserved(p.CIDR)
					require.NoError(t, e.ipam.SetReservation(e.ctx, IPReservation{Name: "r", CIDRs: res}))
					r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h", Node: node, Num4: b2i(p.CIDR.Addr().Is4()), Num6: b2i(p.CIDR.Addr().Is6())})
					require.NoError(t, err)
					got := append(r.IPv4, r.IPv6...)
					require.Len(t, got, 1)
					assert.False(t, got[0].Borrowed)
					assert.True(t, p.CIDR.Contains(got[0].Addr))
					for _, rr := range res {
						assert.False(t, rr.Overlaps(got[0].Block), "block %s in reservation %s", got[0].Block, rr)
					}
					if tc.want != "" {
						assert.Equal(t, pfx(tc.want), got[0].Block)
					}
				})
			}
		})
	}
}

// TestBlockCandidatesSkipping: candidates inside a covering range are
// left out without counting toward the limit, once each around the pool.
func TestBlockCandidatesSkipping(t *testing.T) {
	pool := IPPool{CIDR: pfx("10.0.0.0/24"), BlockSize: 28}
	res := []netip.Prefix{pfx("10.0.0.32/27"), pfx("10.0.0.128/26"), pfx("10.0.0.240/28")}
	for _, node := range []string{"a", "b", "c", "d", "e"} {
		var got []netip.Prefix
		blockCandidatesSkipping(pool, node, 16, func(b netip.Prefix) (netip.Prefix, bool) { return coveringReservation(b, res) },
			func(b netip.Prefix) bool { got = append(got, b); return true })
		assert.ElementsMatch(t, []netip.Prefix{pfx("10.0.0.0/28"), pfx("10.0.0.16/28"), pfx("10.0.0.64/28"), pfx("10.0.0.80/28"),
			pfx("10.0.0.96/28"), pfx("10.0.0.112/28"), pfx("10.0.0.192/28"), pfx("10.0.0.208/28"), pfx("10.0.0.224/28")}, got, node)
		var limited []netip.Prefix
		blockCandidatesSkipping(pool, node, 3, func(b netip.Prefix) (netip.Prefix, bool) { return coveringReservation(b, res) },
			func(b netip.Prefix) bool { limited = append(limited, b); return true })
		assert.Len(t, limited, 3, node)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
