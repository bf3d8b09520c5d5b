package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
)

func live(handles ...string) func(string) bool {
	m := map[string]bool{}
	for _, h := range handles {
		m[h] = true
	}
	return func(h string) bool { return m[h] }
}

func TestCheckAndGCLeaks(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 28)
		e.mustAssign4("k8s-pod-network.live", "n1")
		dead := e.mustAssign4("k8s-pod-network.dead", "n1")
		e.mustAssign4("k8s-pod-network.other-node", "n2")
		e.mustAssign4("tunnel.n1", "n1")

		opts := CheckOptions{LiveHandles: live("k8s-pod-network.live"), HandlePrefix: "k8s-pod-network.", Node: "n1"}
		r, err := e.ipam.Check(e.ctx, opts)
		require.NoError(t, err)
		require.Len(t, r.Leaked, 1, r.String())
		assert.Equal(t, dead.Addr, r.Leaked[0].Addr)
		assert.Equal(t, 4, r.Allocations)

		// Within the grace period nothing is released.
		rep, err := e.ipam.GC(e.ctx, GCOptions{CheckOptions: opts, GracePeriod: time.Minute})
		require.NoError(t, err)
		assert.Empty(t, rep.Released)
		e.clock.Advance(time.Minute)
		rep, err = e.ipam.GC(e.ctx, GCOptions{CheckOptions: opts, GracePeriod: time.Minute})
		require.NoError(t, err)
		assert.Equal(t, []netip.Addr{dead.Addr}, rep.Released)
		r, err = e.ipam.Check(e.ctx, opts)
		require.NoError(t, err)
		assert.True(t, r.OK(), r.String())
		assert.Equal(t, 3, r.Allocations, "other nodes, other prefixes and live handles untouched")
	})
}

func TestCheckFindsAndGCRepairsDamage(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 28)
		ip := e.mustAssign4("h1", "n")
		e.mustAssign4("h2", "n")

		// Damage: a handle over-counting, a missing handle record, a pending
		// affinity with no block, a block with a bad free list, and a block
		// affine to a node with no affinity record.
		_, err := e.s.Update(e.ctx, handleKey("h1"), []byte(`{"blocks":{"`+ip.Block.String()+`":3}}`), 0)
		require.NoError(t, err)
		require.NoError(t, e.s.Delete(e.ctx, handleKey("h2"), 0))
		_, err = e.s.Create(e.ctx, affinityKey("n", pfx("10.0.0.240/28")), []byte(`{"node":"n","cidr":"10.0.0.240/28","state":"pending"}`))
		require.NoError(t, err)
		require.NoError(t, e.ipam.modifyBlock(e.ctx, ip.Block, func(b *allocBlock) bool {
			b.Unallocated = append(b.Unallocated, b.Unallocated[0])
			return true
		}))
		orphan := newBlock(pfx("10.0.0.128/28"), "ghost", e.clock.Now())
		_, err = e.s.Create(e.ctx, blockKey(orphan.CIDR), encodeBlock(orphan))
		require.NoError(t, err)

		r, err := e.ipam.Check(e.ctx, CheckOptions{})
		require.NoError(t, err)
		assert.Len(t, r.Handles, 2, r.String())
		assert.Len(t, r.Affinities, 1, r.String())
		assert.Len(t, r.BlockIssues, 2, r.String())

		rep, err := e.ipam.GC(e.ctx, GCOptions{})
		require.NoError(t, err)
		assert.Equal(t, 2, rep.HandlesFixed)
		assert.Equal(t, 1, rep.BlocksRepaired)
		assert.Equal(t, 2, rep.AffinitiesFixed)
		e.checkClean()
		ips, err := e.ipam.IPsByHandle(e.ctx, "h2")
		require.NoError(t, err)
		assert.Len(t, ips, 1, "the handle record was rebuilt from the block")
		_, err = e.ipam.ReleaseByHandle(e.ctx, "h2")
		require.NoError(t, err)
		e.checkClean()
	})
}

// faultyStore fails every write from the Nth on, like a process killed
// half-way through an operation (later writes never happen).
type faultyStore struct {
	store.Store
	mu     sync.Mutex
	writes int
	failAt int // 0: never
}

var errInjected = errors.New("injected failure")

func (f *faultyStore) write() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.failAt > 0 && f.writes >= f.failAt {
		return errInjected
	}
	return nil
}

func (f *faultyStore) Create(ctx context.Context, k string, v []byte) (int64, error) {
	if err := f.write(); err != nil {
		return 0, err
	}
	return f.Store.Create(ctx, k, v)
}

func (f *faultyStore) Update(ctx context.Context, k string, v []byte, rev int64) (int64, error) {
	if err := f.write(); err != nil {
		return 0, err
	}
	return f.Store.Update(ctx, k, v, rev)
}

func (f *faultyStore) Delete(ctx context.Context, k string, rev int64) error {
	if err := f.write(); err != nil {
		return err
	}
	return f.Store.Delete(ctx, k, rev)
}

func (f *faultyStore) arm(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes, f.failAt = 0, n
}

func (f *faultyStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// TestFaultInjection interrupts each operation at every one of its writes
// and checks that Check sees any damage, GC repairs it, and nothing is
// handed out twice afterwards.
func TestFaultInjection(t *testing.T) {
	scenarios := []struct {
		name  string
		setup func(e *env)
		op    func(e *env) error
		live  []string // handles still in use after the operation failed
	}{
		{"dual-stack assign on a new node", nil, func(e *env) error {
			_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "pod", Node: "n", Num4: 1, Num6: 1})
			return err
		}, nil},
		{"assign into an existing block", func(e *env) { e.mustAssign4("first", "n") }, func(e *env) error {
			_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "pod", Node: "n", Num4: 1, Num6: 1})
			return err
		}, []string{"first"}},
		{"borrow", func(e *env) {
			_, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.250")}, Handle: "b0", Node: "b"})
			require.NoError(e.t, err)
		}, func(e *env) error {
			// An address in b's block, so node a borrows it.
			ips, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.251")}, Handle: "pod", Node: "a"})
			if err == nil && !ips[0].Borrowed {
				return errors.New("not borrowed")
			}
			return err
		}, []string{"b0"}},
		{"release by handle", func(e *env) {
			_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "pod", Node: "n", Num4: 1, Num6: 1})
			require.NoError(e.t, err)
		}, func(e *env) error {
			_, err := e.ipam.ReleaseByHandle(e.ctx, "pod")
			return err
		}, nil},
		{"release empty blocks", func(e *env) {
			e.config(IPAMConfig{AutoAllocateBlocks: true, ReleaseEmptyBlocksAtOnce: true, ReleaseLastBlock: true})
			e.mustAssign4("x", "n")
			_, err := e.ipam.ReleaseByHandle(e.ctx, "x")
			require.NoError(e.t, err)
		}, func(e *env) error {
			_, err := e.ipam.ReleaseEmptyBlocks(e.ctx, "n")
			return err
		}, nil},
		{"release node", func(e *env) {
			e.mustAssign4("x", "n")
			e.mustAssign4("y", "n")
			_, err := e.ipam.ReleaseByHandle(e.ctx, "x")
			require.NoError(e.t, err)
		}, func(e *env) error {
			_, err := e.ipam.ReleaseNode(e.ctx, "n")
			return err
		}, []string{"y"}},
	}
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					// Count the writes of an undisturbed run.
					total := func() int {
						e, fs := faultEnv(t, be)
						if sc.setup != nil {
							sc.setup(e)
						}
						fs.arm(0)
						require.NoError(t, sc.op(e))
						return fs.count()
					}()
					require.Positive(t, total)
					detected := 0
					defer func() {
						assert.Positive(t, detected, "some interruption must leave damage that Check reports")
					}()
					for n := 1; n <= total; n++ {
						t.Run(fmt.Sprintf("fail at write %d of %d", n, total), func(t *testing.T) {
							e, fs := faultEnv(t, be)
							if sc.setup != nil {
								sc.setup(e)
							}
							fs.arm(n)
							err := sc.op(e)
							require.ErrorIs(t, err, errInjected)
							fs.arm(0) // the process is gone; a healthy one runs GC

							opts := CheckOptions{LiveHandles: live(sc.live...)}
							r, err := e.ipam.Check(e.ctx, opts)
							require.NoError(t, err)
							t.Logf("after failure: %s", r)
							if !r.OK() {
								detected++
							}
							_, err = e.ipam.GC(e.ctx, GCOptions{CheckOptions: opts})
							require.NoError(t, err)
							r, err = e.ipam.Check(e.ctx, opts)
							require.NoError(t, err)
							require.True(t, r.OK(), "after GC: %s", r)

							// Everything still works and nothing is handed out twice.
							seen := map[netip.Addr]string{}
							u, err := e.ipam.Usage(e.ctx)
							require.NoError(t, err)
							for _, b := range u.Blocks {
								sb, err := e.ipam.getBlock(e.ctx, b.CIDR)
								require.NoError(t, err)
								for o, idx := range sb.block.Allocations {
									if idx >= 0 {
										seen[sb.block.Addr(o)] = sb.block.Attributes[idx].Handle
									}
								}
							}
							for i := range 6 {
								r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: fmt.Sprintf("new%d", i), Node: "n", Num4: 1, Num6: 1})
								require.NoError(t, err)
								for _, ip := range r.All() {
									require.NotContains(t, seen, ip.Addr)
									seen[ip.Addr] = "new"
								}
							}
							e.checkClean()
						})
					}
				})
			}
		})
	}
}

func faultEnv(t *testing.T, be backend) (*env, *faultyStore) {
	fs := &faultyStore{Store: be.open(t)}
	e := newEnvOn(t, fs)
	e.pool("v4", "10.0.0.0/24", 28)
	e.pool("v6", "fd00::/120", 124)
	return e, fs
}
