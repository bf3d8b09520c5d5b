package ipam

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRequestedPoolOrder checks that requested pools are tried in the
// order listed, as Calico does (libcalico-go determinePools keeps the
// request's order; findUsableBlock and the borrowing loop walk it), at
// each step of an assignment, and that Priority orders only the pools
// Assign picks by itself. Each case runs on memory, bbolt and etcd.
func TestRequestedPoolOrder(t *testing.T) {
	// A step is one Assign of one IPv4 address.
	type step struct {
		node  string
		pools []string // requested; nil: automatic
		want  string   // the pool the address comes from
		err   error    // or the error it fails with
		tried []string // the *AllocationError's Pools, when err is one
	}
	// b outranks c by Priority; blocks are /28 (16 addresses).
	bc := func(e *env) {
		e.pool("b", "10.1.0.0/24", 28, func(p *IPPool) { p.Priority = 10 })
		e.pool("c", "10.2.0.0/24", 28)
	}
	tests := []struct {
		name  string
		setup func(e *env)
		steps []step
	}{
		{"the order listed wins over Priority", bc, []step{
			{node: "n1", pools: []string{"c", "b"}, want: "c"},
			{node: "n2", pools: []string{"b", "c"}, want: "b"},
		}},
		{"Priority still orders automatic assignment", bc, []step{
			{node: "n1", want: "b"},
		}},
		{"names and CIDRs mixed, the first mention counts", bc, []step{
			{node: "n1", pools: []string{"10.2.0.0/24", "b"}, want: "c"},
			{node: "n2", pools: []string{"c", "b", "c"}, want: "c"},
			{node: "n3", pools: []string{"10.1.0.0/24", "c", "b"}, want: "b"},
		}},
		{"the node's affine blocks follow the request, not the last block used", bc, []step{
			// As in Calico, the node's blocks in any requested pool come
			// before a new block, even one from the first listed pool.
			{node: "n", pools: []string{"b"}, want: "b"},
			{node: "n", pools: []string{"c", "b"}, want: "b"},
			{node: "n", pools: []string{"c"}, want: "c"},
			// n has a block in each pool, and used c's last.
			{node: "n", pools: []string{"b", "c"}, want: "b"},
			{node: "n", pools: []string{"c", "b"}, want: "c"},
			{node: "n", want: "b"},
			{node: "n", pools: []string{"c", "b"}, want: "c"},
		}},
		{"a new block comes from the next listed pool when the first has none", func(e *env) {
			e.pool("tiny", "10.3.0.0/30", 30)
			bc(e)
		}, []step{
			{node: "n", pools: []string{"tiny", "c", "b"}, want: "tiny"},
			{node: "n", pools: []string{"tiny", "c", "b"}, want: "tiny"},
			{node: "n", pools: []string{"tiny", "c", "b"}, want: "tiny"},
			{node: "n", pools: []string{"tiny", "c", "b"}, want: "tiny"},
			{node: "n", pools: []string{"tiny", "c", "b"}, want: "c"},
		}},
		{"borrowing follows the order listed", func(e *env) {
			// One block per pool.
			e.pool("b", "10.1.0.0/28", 28, func(p *IPPool) { p.Priority = 10 })
			e.pool("c", "10.2.0.0/28", 28)
		}, []step{
			{node: "owner", pools: []string{"b"}, want: "b"},
			{node: "owner", pools: []string{"c"}, want: "c"},
			// Neither pool has a block left to claim: n borrows.
			{node: "n", pools: []string{"c", "b"}, want: "c"},
			{node: "n", pools: []string{"b", "c"}, want: "b"},
		}},
		{"the error lists the pools in the order tried", func(e *env) {
			bc(e)
			e.config(IPAMConfig{StrictAffinity: true})
		}, []step{
			{node: "n", pools: []string{"c", "b"}, err: ErrBlockLimit, tried: []string{"c", "b"}},
			{node: "n", err: ErrBlockLimit, tried: []string{"b", "c"}},
		}},
		{"a requested pool's nodeSelector is ignored", func(e *env) {
			e.pool("b", "10.1.0.0/28", 28, func(p *IPPool) { p.Priority = 10 })
			e.pool("c", "10.2.0.0/28", 28, func(p *IPPool) { p.NodeSelector = "has(never)" })
		}, []step{
			{node: "n", pools: []string{"c", "b"}, want: "c"},
			{node: "m", want: "b"},
		}},
		{"a requested pool that does not allow the use is skipped", func(e *env) {
			e.pool("b", "10.1.0.0/28", 28)
			e.pool("c", "10.2.0.0/28", 28, func(p *IPPool) { p.AllowedUses = []Use{UseTunnel} })
		}, []step{
			{node: "n", pools: []string{"c", "b"}, want: "b"},
		}},
		{"a disabled requested pool fails the request wherever it is listed", func(e *env) {
			e.pool("b", "10.1.0.0/28", 28)
			e.pool("c", "10.2.0.0/28", 28, func(p *IPPool) { p.Disabled = true })
		}, []step{
			{node: "n", pools: []string{"c", "b"}, err: ErrInvalid},
			{node: "n", pools: []string{"b", "c"}, err: ErrInvalid},
		}},
		{"an unknown requested pool fails the request", bc, []step{
			{node: "n", pools: []string{"b", "nope"}, err: ErrUnknownPool},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			onEveryBackend(t, func(t *testing.T, e *env) {
				tc.setup(e)
				for i, s := range tc.steps {
					r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: fmt.Sprint("h", i), Node: s.node, Num4: 1, IPv4Pools: s.pools})
					if s.err != nil {
						require.ErrorIs(t, err, s.err, "step %d", i)
						var ae *AllocationError
						if s.tried != nil && assert.True(t, errors.As(err, &ae), "step %d: %v", i, err) {
							assert.Equal(t, s.tried, ae.Pools, "step %d", i)
						}
						e.requireHolds(fmt.Sprint("h", i), 0)
						continue
					}
					require.NoError(t, err, "step %d", i)
					require.Len(t, r.IPv4, 1)
					assert.Equal(t, s.want, r.IPv4[0].Pool, "step %d: %v", i, r.IPv4[0].Addr)
				}
				e.checkClean()
			})
		})
	}
}
