package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
)

// errLost is what hookStore returns for a write it failed: like a lost
// connection, it says nothing about whether the write was applied.
var errLost = errors.New("injected: connection lost")

// hookStore wraps a store with hooks around each write. before may fail
// the write unapplied; after runs once the write is applied and may fail
// it anyway (the response was lost). read may fail reads.
type hookStore struct {
	store.Store
	mu     sync.Mutex
	before func(op, key string) error
	after  func(op, key string) error
	read   func(key string) error
}

func (h *hookStore) hooks() (before, after func(op, key string) error, read func(string) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.before, h.after, h.read
}

func (h *hookStore) set(before, after func(op, key string) error, read func(string) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.before, h.after, h.read = before, after, read
}

func (h *hookStore) write(op, key string, do func() error) error {
	before, after, _ := h.hooks()
	if before != nil {
		if err := before(op, key); err != nil {
			return err
		}
	}
	if err := do(); err != nil {
		return err
	}
	if after != nil {
		return after(op, key)
	}
	return nil
}

func (h *hookStore) Get(ctx context.Context, k string) (store.KV, error) {
	if _, _, read := h.hooks(); read != nil {
		if err := read(k); err != nil {
			return store.KV{}, err
		}
	}
	return h.Store.Get(ctx, k)
}

func (h *hookStore) List(ctx context.Context, p string) (store.ListResult, error) {
	if _, _, read := h.hooks(); read != nil {
		if err := read(p); err != nil {
			return store.ListResult{}, err
		}
	}
	return h.Store.List(ctx, p)
}

func (h *hookStore) Create(ctx context.Context, k string, v []byte) (rev int64, err error) {
	err = h.write("create", k, func() (err error) { rev, err = h.Store.Create(ctx, k, v); return err })
	return rev, err
}

func (h *hookStore) Update(ctx context.Context, k string, v []byte, r int64) (rev int64, err error) {
	err = h.write("update", k, func() (err error) { rev, err = h.Store.Update(ctx, k, v, r); return err })
	return rev, err
}

func (h *hookStore) Delete(ctx context.Context, k string, r int64) error {
	return h.write("delete", k, func() error { return h.Store.Delete(ctx, k, r) })
}

// flaky makes each write fail with probability p, half of the failures
// before the write is applied and half after.
func (h *hookStore) flaky(p float64, seed uint64) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 1))
	roll := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.Float64() < p/2
	}
	h.set(func(string, string) error {
		if roll() {
			return errLost
		}
		return nil
	}, func(string, string) error {
		if roll() {
			return errLost
		}
		return nil
	}, nil)
}

// blockUpdate reports whether a write is an update of a block.
func blockUpdate(op, key string) bool { return op == "update" && strings.HasPrefix(key, keyBlocks) }

func hookEnv(t *testing.T, s store.Store) (*env, *hookStore) {
	hs := &hookStore{Store: s}
	return newEnvOn(t, hs), hs
}

// TestLostResponseOnBlockWrite: the block write is applied but its
// response is lost. Read back, the outcome is known and Assign succeeds;
// when the read fails too, Assign says the outcome is unknown and never
// undoes the handle count, so ReleaseByHandle (a CNI DEL) frees the
// address.
func TestLostResponseOnBlockWrite(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e, hs := hookEnv(t, e.s)
		e.pool("p", "10.0.0.0/24", 28)
		e.mustAssign4("first", "n") // the block exists
		lose := func(op, key string) error {
			if blockUpdate(op, key) {
				return errLost
			}
			return nil
		}

		hs.set(nil, lose, nil)
		ip, err := e.assign4("settled", "n")
		hs.set(nil, nil, nil)
		require.NoError(t, err, "read back, the write is known to be applied")
		got, err := e.ipam.IPsByHandle(e.ctx, "settled")
		require.NoError(t, err)
		assert.Equal(t, []netip.Addr{ip.Addr}, got)
		e.checkClean()

		down := false
		hs.set(nil, func(op, key string) error {
			if err := lose(op, key); err != nil {
				down = true // the connection is gone: reads fail too
				return err
			}
			return nil
		}, func(string) error {
			if down {
				return errLost
			}
			return nil
		})
		_, err = e.assign4("unknown", "n")
		hs.set(nil, nil, nil)
		require.ErrorIs(t, err, ErrOutcomeUnknown)
		assert.Contains(t, err.Error(), `handle "unknown"`)
		require.ErrorIs(t, err, errLost)
		r, err := e.ipam.Check(e.ctx, CheckOptions{})
		require.NoError(t, err)
		assert.Empty(t, r.Handles, "the handle never under-counts: %s", r)
		freed, err := e.ipam.ReleaseByHandle(e.ctx, "unknown")
		require.NoError(t, err)
		assert.Len(t, freed, 1, "a CNI DEL frees the address")
		e.checkClean()
	})
}

// TestWriteThatDidNotLandIsSettled: a block write fails without being
// applied. Read back, the block is unchanged, so Assign fences the write
// off (rewrites the block as read, so a write still in flight can never
// land) and knows it failed: nothing is assigned, the handle count is
// undone, and the error does not match ErrOutcomeUnknown. When the fence
// fails too, the outcome stays unknown, and a CNI DEL cleans up.
func TestWriteThatDidNotLandIsSettled(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e, hs := hookEnv(t, e.s)
		e.pool("p", "10.0.0.0/24", 28)
		e.mustAssign4("first", "n")
		failed := false
		hs.set(func(op, key string) error {
			if blockUpdate(op, key) && !failed {
				failed = true
				return errLost
			}
			return nil
		}, nil, nil)
		_, err := e.assign4("h", "n")
		hs.set(nil, nil, nil)
		require.ErrorIs(t, err, errLost)
		require.NotErrorIs(t, err, ErrOutcomeUnknown, "fenced off, the write is known not to have landed")
		e.requireHolds("h", 0)
		e.checkClean()

		hs.set(func(op, key string) error {
			if blockUpdate(op, key) {
				return errLost // the fence fails too
			}
			return nil
		}, nil, nil)
		_, err = e.assign4("h2", "n")
		hs.set(nil, nil, nil)
		require.ErrorIs(t, err, ErrOutcomeUnknown)
		e.requireHolds("h2", 0) // it did not land, though Assign cannot know
		e.releaseAndCheck("h2")
	})
}

// TestFailedRollbackIsReported: a dual-stack Assign whose IPv6 half finds
// no address rolls back its IPv4 address; when that rollback fails the
// error says so (ErrOutcomeUnknown joined to ErrPoolExhausted), and when
// it succeeds nothing stays assigned.
func TestFailedRollbackIsReported(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e, hs := hookEnv(t, e.s)
		e.pool("v4", "10.0.0.0/24", 28)
		e.pool("v6", "fd00::/124", 124)
		_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "fill", Node: "m", Num6: 16})
		require.NoError(t, err)

		_, err = e.ipam.Assign(e.ctx, AssignArgs{Handle: "clean", Node: "n", Num4: 1, Num6: 1})
		require.ErrorIs(t, err, ErrPoolExhausted)
		require.NotErrorIs(t, err, ErrOutcomeUnknown)
		e.requireHolds("clean", 0)
		e.checkClean()

		var v4Written bool
		hs.set(func(op, key string) error {
			// Once the IPv4 address is written the store goes away.
			if v4Written && op != "" {
				return errLost
			}
			return nil
		}, func(op, key string) error {
			if op == "update" && strings.HasPrefix(key, keyBlocks+"10.") {
				v4Written = true
			}
			return nil
		}, nil)
		_, err = e.ipam.Assign(e.ctx, AssignArgs{Handle: "dirty", Node: "n", Num4: 1, Num6: 1})
		hs.set(nil, nil, nil)
		require.ErrorIs(t, err, ErrPoolExhausted)
		require.ErrorIs(t, err, ErrOutcomeUnknown)
		var ae *AllocationError
		require.ErrorAs(t, err, &ae)
		e.requireHolds("dirty", 1) // the IPv4 address stayed, as the error says
		e.releaseAndCheck("dirty")
	})
}

// TestRacingClaimConfirmation: between a claim's block write and its
// confirmation, someone else (GC, another Assign for the node) confirms
// the affinity; the claim still succeeds.
func TestRacingClaimConfirmation(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e, hs := hookEnv(t, e.s)
		e.pool("p", "10.0.0.0/24", 28)
		hs.set(nil, func(op, key string) error {
			if op != "create" || !strings.HasPrefix(key, keyBlocks) {
				return nil
			}
			hs.set(nil, nil, nil)
			affs, err := e.ipam.listAffinities(e.ctx, "n")
			require.NoError(t, err)
			require.Len(t, affs, 1)
			af := affs[0]
			af.State = AffinityConfirmed
			val, _ := json.Marshal(af.Affinity)
			_, err = e.s.Update(e.ctx, affinityKey("n", af.CIDR), val, af.rev)
			require.NoError(t, err)
			return nil
		}, nil)
		e.mustAssign4("h", "n")
		e.checkClean()
	})
}

// TestGCLeavesYoungPendingAffinities: a pending affinity (a claim in
// flight) is confirmed by GC only after the grace period.
func TestGCLeavesYoungPendingAffinities(t *testing.T) {
	e := newEnv(t)
	e.pool("p", "10.0.0.0/24", 28)
	cidr := pfx("10.0.0.16/28")
	val, _ := json.Marshal(Affinity{Node: "n", CIDR: cidr, State: AffinityPending, Updated: e.clock.Now()})
	_, err := e.s.Create(e.ctx, affinityKey("n", cidr), val)
	require.NoError(t, err)
	_, err = e.s.Create(e.ctx, blockKey(cidr), encodeBlock(newBlock(cidr, "n", e.clock.Now())))
	require.NoError(t, err)
	rep, err := e.ipam.GC(e.ctx, GCOptions{GracePeriod: time.Minute})
	require.NoError(t, err)
	assert.Zero(t, rep.AffinitiesFixed)
	affs, err := e.ipam.listAffinities(e.ctx, "n")
	require.NoError(t, err)
	assert.Equal(t, AffinityPending, affs[0].State)
	e.clock.Advance(time.Minute)
	rep, err = e.ipam.GC(e.ctx, GCOptions{GracePeriod: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, 1, rep.AffinitiesFixed)
	e.checkClean()
}

// TestGCBetweenReleaseIPsWrites: GC rebuilds a handle's record between
// ReleaseIPs' block write and its handle update; the handle keeps its
// other address, which ReleaseByHandle then frees.
func TestGCBetweenReleaseIPsWrites(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e, hs := hookEnv(t, e.s)
		e.pool("p", "10.0.0.0/24", 28)
		r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num4: 2})
		require.NoError(t, err)
		e.clock.Advance(time.Hour)
		hs.set(nil, func(op, key string) error {
			if blockUpdate(op, key) {
				hs.set(nil, nil, nil)
				_, err := e.ipam.GC(e.ctx, GCOptions{GracePeriod: time.Minute})
				require.NoError(t, err)
			}
			return nil
		}, nil)
		released, err := e.ipam.ReleaseIPs(e.ctx, r.IPv4[0].Addr)
		hs.set(nil, nil, nil)
		require.NoError(t, err)
		require.Equal(t, []netip.Addr{r.IPv4[0].Addr}, released)
		e.checkClean()
		freed, err := e.ipam.ReleaseByHandle(e.ctx, "h")
		require.NoError(t, err)
		assert.Equal(t, []netip.Addr{r.IPv4[1].Addr}, freed, "the other address is not leaked")
		e.checkClean()
	})
}

// TestOneGCPassConverges: a dead handle that over-counts in one block and
// holds a leaked address in another is fully repaired by one GC pass.
func TestOneGCPassConverges(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 28)
		leak := e.mustAssign4("dead", "a")
		other := e.mustAssign4("x", "b")
		// The record also counts an address in b's block that is not there.
		require.NoError(t, e.ipam.incrementHandle(e.ctx, "dead", other.Block, 1))
		e.clock.Advance(time.Hour)
		opts := CheckOptions{LiveHandles: live("x")}
		rep, err := e.ipam.GC(e.ctx, GCOptions{CheckOptions: opts, GracePeriod: time.Minute})
		require.NoError(t, err)
		assert.Equal(t, []netip.Addr{leak.Addr}, rep.Released)
		r, err := e.ipam.Check(e.ctx, opts)
		require.NoError(t, err)
		require.True(t, r.OK(), "after one pass: %s", r)
	})
}

// TestWritesWithUnknownOutcome runs allocation, release and GC on every
// backend through a store whose writes fail at random (15% and 40% of
// them), half before and half after they are applied, with GC running alongside. Callers follow
// the errors: a definite failure means nothing stays assigned; an
// outcome-unknown one leaves the handle to GC (the orchestrator calls it
// dead). Afterwards: no address was ever held twice, none a caller was
// told it holds is lost, one GC leaves nothing behind, and Check is clean.
func TestWritesWithUnknownOutcome(t *testing.T) {
	ops := 80
	if testing.Short() {
		ops = 30
	}
	for _, be := range backends() {
		for _, p := range []float64{0.15, 0.4} {
			t.Run(fmt.Sprintf("%s/p=%v", be.name, p), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				hs := &hookStore{Store: be.open(t)}
				a := mustNew(t, hs)
				_, err := a.CreatePool(ctx, IPPool{Name: "v4", CIDR: pfx("10.0.0.0/25"), BlockSize: 29})
				require.NoError(t, err)
				_, err = a.CreatePool(ctx, IPPool{Name: "v6", CIDR: pfx("fd00::/121"), BlockSize: 125})
				require.NoError(t, err)
				require.NoError(t, a.SetConfig(ctx, IPAMConfig{AutoAllocateBlocks: true, ReleaseEmptyBlocksAtOnce: true}))
				seed := rand.Uint64()
				t.Logf("fault seed %d", seed)
				hs.flaky(p, seed)

				var mu sync.Mutex
				held := map[netip.Addr]string{}    // address → handle, as callers were told
				holds := map[string][]netip.Addr{} // handle → addresses
				inFlight := map[string]bool{}      // handles being assigned
				var clean, dups, failures []string // definite failures; duplicates; unexpected errors
				unknown := 0
				live := func(h string) bool {
					mu.Lock()
					defer mu.Unlock()
					return inFlight[h] || holds[h] != nil
				}
				take := func(h string, ips []AssignedIP) {
					mu.Lock()
					defer mu.Unlock()
					delete(inFlight, h)
					for _, ip := range ips {
						if prev, ok := held[ip.Addr]; ok {
							dups = append(dups, fmt.Sprintf("%s to %s while %s holds it", ip.Addr, h, prev))
						}
						held[ip.Addr] = h
						holds[h] = append(holds[h], ip.Addr)
					}
				}
				drop := func(h string) {
					mu.Lock()
					defer mu.Unlock()
					for _, ip := range holds[h] {
						delete(held, ip)
					}
					delete(holds, h)
				}
				fail := func(h string, err error) {
					mu.Lock()
					defer mu.Unlock()
					delete(inFlight, h)
					if !errors.Is(err, ErrOutcomeUnknown) && !errors.Is(err, errLost) && !errors.Is(err, ErrPoolExhausted) &&
						!errors.Is(err, ErrBlockLimit) && !errors.Is(err, ErrAddressInUse) {
						failures = append(failures, fmt.Sprintf("%s: %v", h, err))
					}
					if !errors.Is(err, ErrOutcomeUnknown) {
						clean = append(clean, h)
					} else {
						unknown++
					}
				}

				stopGC := make(chan struct{})
				gcDone := make(chan struct{})
				go func() { // GC alongside, with a grace period longer than any operation
					defer close(gcDone)
					for {
						select {
						case <-stopGC:
							return
						case <-time.After(20 * time.Millisecond):
						}
						_, _ = a.GC(ctx, GCOptions{CheckOptions: CheckOptions{LiveHandles: live}, GracePeriod: 20 * time.Second})
					}
				}()
				var wg sync.WaitGroup
				for w := range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						node := fmt.Sprintf("node-%d", w)
						rng := rand.New(rand.NewPCG(uint64(w), 9))
						var mine []string
						for i := range ops {
							h := fmt.Sprintf("k8s-pod-network.%s-%d", node, i)
							mu.Lock()
							inFlight[h] = true
							mu.Unlock()
							switch {
							case rng.IntN(4) == 0 && len(mine) > 0: // CNI DEL
								mu.Lock()
								delete(inFlight, h)
								mu.Unlock()
								victim := mine[0]
								mine = mine[1:]
								// Dropped first: once released, the addresses
								// may go to another pod at once. On error the
								// pod is gone all the same; what stays
								// assigned is for GC.
								drop(victim)
								_, _ = a.ReleaseByHandle(ctx, victim)
							case rng.IntN(6) == 0 && len(mine) > 0: // release one address
								mu.Lock()
								delete(inFlight, h)
								victim := mine[0]
								ips := holds[victim]
								mu.Unlock()
								mine = mine[1:]
								// As above, the handle is dead from here on: its
								// other addresses are for GC.
								drop(victim)
								_, _ = a.ReleaseIPs(ctx, ips[0])
							case rng.IntN(10) == 0: // the node agent's periodic sweep
								mu.Lock()
								delete(inFlight, h)
								mu.Unlock()
								_, _ = a.ReleaseEmptyBlocks(ctx, node)
							case rng.IntN(8) == 0: // ipAddrs
								ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(128))})
								ips, err := a.AssignIP(ctx, AssignIPArgs{Addrs: []netip.Addr{ip}, Handle: h, Node: node})
								if err != nil {
									fail(h, err)
									continue
								}
								take(h, ips)
								mine = append(mine, h)
							default:
								r, err := a.Assign(ctx, AssignArgs{Handle: h, Node: node, Num4: 1, Num6: rng.IntN(2)})
								if err != nil {
									fail(h, err)
									continue
								}
								take(h, r.All())
								mine = append(mine, h)
							}
						}
					}()
				}
				wg.Wait()
				close(stopGC)
				<-gcDone
				hs.set(nil, nil, nil) // the store is healthy again
				require.Empty(t, dups, "no address held twice")
				require.Empty(t, failures, "only injected failures and their consequences")

				// Nothing stays assigned after a definite failure.
				seq, _, err := a.Allocations(ctx)
				require.NoError(t, err)
				inStore := map[netip.Addr]string{}
				for al, err := range seq {
					require.NoError(t, err)
					inStore[al.Addr] = al.Attribute.Handle
					require.NotContains(t, clean, al.Attribute.Handle, "%s stays assigned after a definite failure", al.Addr)
				}
				// Nothing a caller holds is lost.
				for ip, h := range held {
					require.Equal(t, h, inStore[ip], "%s held by %s", ip, h)
				}

				// One GC leaves nothing behind and Check clean.
				opts := CheckOptions{LiveHandles: live}
				_, err = a.GC(ctx, GCOptions{CheckOptions: opts})
				require.NoError(t, err)
				r, err := a.Check(ctx, opts)
				require.NoError(t, err)
				require.True(t, r.OK(), "after one GC: %s", r)
				require.Equal(t, len(held), r.Allocations, "0 addresses left behind")
				hseq, _, err := a.Handles(ctx)
				require.NoError(t, err)
				for hi, err := range hseq {
					require.NoError(t, err)
					require.Contains(t, holds, hi.Handle)
					n := 0
					for _, c := range hi.Blocks {
						n += c
					}
					require.Equal(t, len(holds[hi.Handle]), n, hi.Handle)
				}
				t.Logf("%d addresses held, %d definite failures, %d with an unknown outcome", len(held), len(clean), unknown)
			})
		}
	}
}
