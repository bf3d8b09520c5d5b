package ipam

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// holdings tracks which handle holds each address across all workers, and
// fails on an address handed out while someone still holds it.
type holdings struct {
	mu   sync.Mutex
	held map[netip.Addr]string
	dups []string
}

func (h *holdings) take(a netip.Addr, handle string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if prev, ok := h.held[a]; ok {
		h.dups = append(h.dups, fmt.Sprintf("%s given to %s while %s holds it", a, handle, prev))
	}
	h.held[a] = handle
}

func (h *holdings) drop(a netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.held, a)
}

// churn runs nodes goroutines that together assign total addresses,
// releasing every third handle as they go, and checks that no address is
// ever held twice, that every release is visible, and that the store ends
// consistent with exactly the addresses still held.
func churn(t *testing.T, ctx context.Context, a *IPAM, nodes, total int) {
	h := &holdings{held: map[netip.Addr]string{}}
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	for n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := fmt.Sprintf("node-%02d", n)
			for i := n; i < total; i += nodes {
				handle := fmt.Sprintf("k8s-pod-network.%s-%d", node, i)
				r, err := a.Assign(ctx, AssignArgs{Handle: handle, Node: node, Num4: 1})
				if err != nil {
					errs <- fmt.Errorf("%s: %w", handle, err)
					return
				}
				ip := r.IPv4[0].Addr
				h.take(ip, handle)
				if i%3 != 0 {
					continue
				}
				h.drop(ip)
				got, err := a.ReleaseByHandle(ctx, handle)
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(got, []netip.Addr{ip}) {
					errs <- fmt.Errorf("release %s freed %v, want %s", handle, got, ip)
					return
				}
				if info, err := a.Lookup(ctx, ip); err != nil || (info.Allocated && info.Attribute.Handle == handle) {
					errs <- fmt.Errorf("release of %s by %s not visible (%v)", ip, handle, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Empty(t, h.dups)

	want := 0
	for i := range total {
		if i%3 != 0 {
			want++
		}
	}
	require.Len(t, h.held, want)
	r, err := a.Check(ctx, CheckOptions{LiveHandles: func(string) bool { return true }})
	require.NoError(t, err)
	require.True(t, r.OK(), r.String())
	assert.Equal(t, want, r.Allocations)
	for ip, handle := range h.held {
		if rand.IntN(20) != 0 { // spot-check a sample against the store
			continue
		}
		info, err := a.Lookup(ctx, ip)
		require.NoError(t, err)
		require.True(t, info.Allocated, ip)
		require.Equal(t, handle, info.Attribute.Handle)
	}
}

// TestConcurrentNodes: 16 goroutine nodes on one memory store, in a pool
// small enough that blocks run out and nodes borrow from each other.
func TestConcurrentNodes(t *testing.T) {
	e := newEnvOn(t, newMemory(t))
	// Two thirds of the addresses stay held. The pool has 8 blocks for 16
	// nodes, so half the nodes borrow from the others' blocks throughout.
	total, cidr, block := 10000, "10.0.0.0/19", 22 // 8192 addresses for 6667 held
	if testing.Short() {
		total, cidr, block = 2000, "10.0.0.0/21", 24 // 2048 for 1333
	}
	e.pool("p", cidr, block)
	churn(t, e.ctx, e.ipam, 16, total)
	u, err := e.ipam.Usage(e.ctx)
	require.NoError(t, err)
	t.Logf("blocks %d, used %d, borrowed %d", u.Pools[0].Blocks, u.Pools[0].Used, u.Borrowed())
}

// TestPropertyAgainstReference drives the allocator and a trivial
// reference allocator (a set of free addresses) with the same random
// operations. Without strict affinity the allocator must succeed exactly
// when the reference has a free address, give out only free addresses,
// and release exactly what the reference says a handle holds.
func TestPropertyAgainstReference(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			e := newEnv(t)
			e.pool("p", "10.0.0.0/27", 29) // 32 addresses, 4 blocks of 8
			reserved := netip.MustParsePrefix("10.0.0.12/30")
			require.NoError(t, e.ipam.SetReservation(e.ctx, IPReservation{Name: "r", CIDRs: []netip.Prefix{reserved}}))
			free := map[netip.Addr]bool{}
			for i := range 32 {
				a := addrAt(pfx("10.0.0.0/27"), i)
				if !reserved.Contains(a) {
					free[a] = true
				}
			}
			byHandle := map[string][]netip.Addr{}
			nodes := []string{"a", "b", "c", "d", "e", "f"}
			for step := range 300 {
				switch op := rng.IntN(10); {
				case op < 6: // assign
					handle := fmt.Sprintf("h%d", step)
					n := 1 + rng.IntN(2)
					r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: handle, Node: nodes[rng.IntN(len(nodes))], Num4: n})
					if len(free) < n {
						require.ErrorIs(t, err, ErrPoolExhausted, "step %d: %d free, asked %d", step, len(free), n)
						continue
					}
					require.NoError(t, err, "step %d: %d free", step, len(free))
					for _, ip := range r.IPv4 {
						require.True(t, free[ip.Addr], "step %d: %s is not free", step, ip.Addr)
						delete(free, ip.Addr)
						byHandle[handle] = append(byHandle[handle], ip.Addr)
					}
				case op < 9: // release a handle
					for handle, addrs := range byHandle {
						got, err := e.ipam.ReleaseByHandle(e.ctx, handle)
						require.NoError(t, err)
						slices.SortFunc(addrs, netip.Addr.Compare)
						require.Equal(t, addrs, got)
						for _, a := range addrs {
							free[a] = true
						}
						delete(byHandle, handle)
						break
					}
				default: // release one address
					for handle, addrs := range byHandle {
						got, err := e.ipam.ReleaseIPs(e.ctx, addrs[0])
						require.NoError(t, err)
						require.Equal(t, addrs[:1], got)
						free[addrs[0]] = true
						if byHandle[handle] = addrs[1:]; len(addrs) == 1 {
							delete(byHandle, handle)
						}
						break
					}
				}
				if step%50 == 0 {
					e.clock.Advance(DefaultEmptyBlockGracePeriod)
					_, err := e.ipam.ReleaseEmptyBlocks(e.ctx, "")
					require.NoError(t, err)
				}
			}
			for handle, addrs := range byHandle {
				got, err := e.ipam.IPsByHandle(e.ctx, handle)
				require.NoError(t, err)
				slices.SortFunc(addrs, netip.Addr.Compare)
				require.Equal(t, addrs, got)
			}
			u, err := e.ipam.Usage(e.ctx)
			require.NoError(t, err)
			require.Equal(t, 28-len(free), u.Pools[0].Used)
			e.checkClean()
		})
	}
}
