package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reasons are the sentinels an *AllocationError can carry.
var reasons = []error{ErrPoolExhausted, ErrBlockLimit, ErrStrictAffinity, ErrNoMatchingPool}

// requireOnlyReason asserts err is an *AllocationError for want and for
// no other reason.
func requireOnlyReason(t *testing.T, err error, want error) {
	t.Helper()
	var ae *AllocationError
	require.ErrorAs(t, err, &ae)
	for _, r := range reasons {
		assert.Equal(t, r == want, errors.Is(err, r), "%v: errors.Is(%v)", err, r)
	}
}

// TestBlockLimitOrder follows Calico's autoAssign: the node's usable
// blocks, then the block limit (ErrBlockLimit, strict or not, no
// borrowing), then a new block, then — only when no block is left to
// claim — borrowing unless strict affinity forbids it. Only blocks the
// node may still allocate from count toward the limit.
func TestBlockLimitOrder(t *testing.T) {
	fill := func(e *env, node string, n int) {
		for i := range n {
			e.mustAssign4(fmt.Sprintf("%s-%d", node, i), node)
		}
	}
	// makeUnusable turns pool "old" into one node n may no longer use.
	unusable := map[string]func(p *IPPool){
		"pool disabled":            func(p *IPPool) { p.Disabled = true },
		"pool no longer selects n": func(p *IPPool) { p.NodeSelector = `zone == "elsewhere"` },
		"pool forbids the use":     func(p *IPPool) { p.AllowedUses = []Use{UseTunnel} },
	}
	type outcome struct {
		reason   error // nil: success
		borrowed bool
	}
	type scenario struct {
		name  string
		limit int
		setup func(e *env)
		// want per strictness: [non-strict, strict]
		want [2]outcome
	}
	scenarios := []scenario{
		{"at the limit, usable block full, others have room", 1, func(e *env) {
			e.pool("p", "10.0.0.0/24", 30)
			fill(e, "m", 1)
			fill(e, "n", 4)
		}, [2]outcome{{reason: ErrBlockLimit}, {reason: ErrBlockLimit}}},
		{"under the limit, a block left to claim", 2, func(e *env) {
			e.pool("p", "10.0.0.0/24", 30)
			fill(e, "n", 4)
		}, [2]outcome{{}, {}}},
		{"under the limit, no block left, others have room", 2, func(e *env) {
			e.pool("p", "10.0.0.0/29", 30)
			fill(e, "m", 1)
			fill(e, "n", 4)
		}, [2]outcome{{borrowed: true}, {reason: ErrStrictAffinity}}},
		{"under the limit, nothing free anywhere", 2, func(e *env) {
			e.pool("p", "10.0.0.0/29", 30)
			fill(e, "m", 4)
			fill(e, "n", 4)
		}, [2]outcome{{reason: ErrPoolExhausted}, {reason: ErrPoolExhausted}}},
	}
	// oldBlockUnusable gives n one block, in pool "old", then makes the
	// pool unusable for n.
	oldBlockUnusable := func(e *env, mod func(p *IPPool)) {
		old := e.pool("old", "10.1.0.0/24", 26)
		fill(e, "n", 1)
		mod(&old)
		_, err := e.ipam.UpdatePool(e.ctx, old)
		require.NoError(e.t, err)
	}
	for kind, mod := range unusable {
		scenarios = append(scenarios,
			scenario{"at the limit only counting an unusable block (" + kind + "), a block left to claim", 1, func(e *env) {
				oldBlockUnusable(e, mod)
				e.pool("new", "10.2.0.0/24", 26)
			}, [2]outcome{{}, {}}},
			scenario{"at the limit only counting an unusable block (" + kind + "), no block left, others have room", 1, func(e *env) {
				oldBlockUnusable(e, mod)
				e.pool("new", "10.2.0.0/30", 30)
				_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "m-0", Node: "m", Num4: 1, IPv4Pools: []string{"new"}})
				require.NoError(e.t, err)
			}, [2]outcome{{borrowed: true}, {reason: ErrStrictAffinity}}},
		)
	}
	for _, sc := range scenarios {
		for i, strict := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/strict=%v", sc.name, strict), func(t *testing.T) {
				onEveryBackend(t, func(t *testing.T, e *env) {
					e.config(IPAMConfig{AutoAllocateBlocks: true, StrictAffinity: strict, MaxBlocksPerHost: sc.limit})
					sc.setup(e)
					ip, err := e.assign4("last", "n")
					want := sc.want[i]
					if want.reason != nil {
						requireOnlyReason(t, err, want.reason)
						e.requireHolds("last", 0) // on error nothing stays assigned
					} else {
						require.NoError(t, err)
						assert.Equal(t, want.borrowed, ip.Borrowed)
					}
					e.checkClean()
				})
			})
		}
	}
}

// TestBlockLimitIssueExample: the default limit of 20 /32 blocks stops the
// 21st assignment with ErrBlockLimit, not ErrPoolExhausted, though 236
// addresses are free (Calico does not borrow at the limit).
func TestBlockLimitIssueExample(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.21.0.0/24", 32)
		for i := range 20 {
			e.mustAssign4(fmt.Sprint("h", i), "n1")
		}
		_, err := e.assign4("h20", "n1")
		requireOnlyReason(t, err, ErrBlockLimit)
		assert.Contains(t, err.Error(), "20 usable blocks (limit 20)")
		u, err := e.ipam.Usage(e.ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(236), u.Pools[0].Free)
		// Another node is not limited by n1's blocks.
		e.mustAssign4("other", "n2")
	})
}

// TestStrictLimitWithDisabledPool: strict affinity, maxBlocksPerHost 1, and
// the node's only block in a pool since disabled: the node claims from the
// new pool.
func TestStrictLimitWithDisabledPool(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.config(IPAMConfig{AutoAllocateBlocks: true, StrictAffinity: true, MaxBlocksPerHost: 1})
		old := e.pool("old", "10.1.0.0/24", 26)
		e.mustAssign4("a", "n")
		old.Disabled = true
		_, err := e.ipam.UpdatePool(e.ctx, old)
		require.NoError(t, err)
		e.pool("new", "10.2.0.0/24", 26)
		ip := e.mustAssign4("b", "n")
		assert.Equal(t, "new", ip.Pool)
		assert.False(t, ip.Borrowed)
		e.checkClean()
	})
}

// TestAssignIPCountsUsableBlocks: AssignIP claims the block of a requested
// address when the node has fewer usable blocks than the limit, counted
// as Assign counts them (a block in a disabled pool does not count).
func TestAssignIPCountsUsableBlocks(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.config(IPAMConfig{AutoAllocateBlocks: true, StrictAffinity: true, MaxBlocksPerHost: 1})
		old := e.pool("old", "10.1.0.0/24", 26)
		e.mustAssign4("a", "n")
		e.pool("new", "10.2.0.0/24", 26)
		_, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.2.0.200")}, Handle: "b", Node: "n"})
		require.ErrorIs(t, err, ErrBlockLimit, "the old block is usable: the node is at its limit")
		old.Disabled = true
		_, err = e.ipam.UpdatePool(e.ctx, old)
		require.NoError(t, err)
		ips, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.2.0.200")}, Handle: "b", Node: "n"})
		require.NoError(t, err)
		assert.False(t, ips[0].Borrowed, "claimed for n")
		e.checkClean()
	})
}

// TestReservationsOnlyKeepAutomaticAssignmentAway: as in Calico, an
// IPReservation stops Assign, not an explicit AssignIP (the ipAddrs
// annotation), floating IPs or ipAddrsNoIpam.
func TestReservationsOnlyKeepAutomaticAssignmentAway(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.25.0.0/24", 28)
		require.NoError(t, e.ipam.SetReservation(e.ctx, IPReservation{Name: "pin", CIDRs: []netip.Prefix{pfx("10.25.0.10/32")}}))
		require.NoError(t, e.ipam.SetReservation(e.ctx, IPReservation{Name: "whole", CIDRs: []netip.Prefix{pfx("10.25.0.32/28")}}))

		// Automatic assignment never hands out a reserved address.
		for i := range 30 {
			ip := e.mustAssign4(fmt.Sprint("auto", i), "n")
			assert.False(t, ip.Addr == addr("10.25.0.10") || pfx("10.25.0.32/28").Contains(ip.Addr), ip.Addr)
		}

		// ipAddrs: the reserved address goes to the pod that asks for it,
		// with floating IPs inside a reservation too.
		req, err := ParseAnnotations(map[string]string{
			AnnotationIPAddrs: `["10.25.0.10"]`, AnnotationFloatingIPs: `["10.25.0.33"]`}, nil)
		require.NoError(t, err)
		ips, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: req.Addrs, FloatingIPs: req.FloatingIPs, Handle: "pinned", Node: "n"})
		require.NoError(t, err)
		assert.Equal(t, addr("10.25.0.10"), ips[0].Addr)
		info, err := e.ipam.Lookup(e.ctx, addr("10.25.0.10"))
		require.NoError(t, err)
		assert.True(t, info.Allocated)
		assert.True(t, info.Reserved)
		assert.Equal(t, []netip.Addr{addr("10.25.0.33")}, info.Attribute.FloatingIPs)

		// An address in a wholly reserved block that does not exist yet.
		ips, err = e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.25.0.40")}, Handle: "pinned2", Node: "n"})
		require.NoError(t, err)
		assert.Equal(t, pfx("10.25.0.32/28"), ips[0].Block)

		// ipAddrsNoIpam bypasses IPAM whatever the reservations say.
		req, err = ParseAnnotations(map[string]string{AnnotationIPAddrsNoIPAM: `["10.25.0.10"]`}, nil)
		require.NoError(t, err)
		assert.Equal(t, []netip.Addr{addr("10.25.0.10")}, req.NoIPAMAddrs)
		e.checkClean()
	})
}
