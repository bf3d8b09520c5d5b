package ipam

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
)

// TestNodeAgentWatch is the node agent's loop: list affine blocks, then
// watch from the listing's revision, and see claims and releases.
func TestNodeAgentWatch(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.config(IPAMConfig{AutoAllocateBlocks: true, ReleaseEmptyBlocksAtOnce: true, ReleaseLastBlock: true})
		e.pool("p", "10.0.0.0/24", 28)
		first := e.mustAssign4("h0", "n")
		blocks, rev, err := e.ipam.AffineBlocks(e.ctx, "n")
		require.NoError(t, err)
		require.Equal(t, []netip.Prefix{first.Block}, blocks)

		affs, err := e.ipam.WatchAffinities(e.ctx, rev)
		require.NoError(t, err)
		bl, err := e.ipam.WatchBlocks(e.ctx, rev)
		require.NoError(t, err)

		borrowed, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.200")}, Handle: "h1", Node: "m"})
		require.NoError(t, err)
		require.False(t, borrowed[0].Borrowed, "m claimed the block")
		ip, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.201")}, Handle: "h2", Node: "n"})
		require.NoError(t, err)
		require.True(t, ip[0].Borrowed)
		_, err = e.ipam.ReleaseByHandle(e.ctx, "h0")
		require.NoError(t, err)
		_, err = e.ipam.ReleaseEmptyBlocks(e.ctx, "n")
		require.NoError(t, err)

		next := func() AffinityEvent {
			select {
			case ev := <-affs:
				require.NoError(t, ev.Err)
				return ev
			case <-time.After(5 * time.Second):
				t.Fatal("no affinity event")
			}
			return AffinityEvent{}
		}
		// m's claim: pending, confirmed; then n's release: pendingDeletion, deleted.
		var states []string
		for range 4 {
			ev := next()
			s := ev.Node + ":" + string(ev.State)
			if ev.Deleted {
				s = ev.Node + ":deleted"
			}
			states = append(states, s)
		}
		assert.Equal(t, []string{"m:pending", "m:confirmed", "n:pendingDeletion", "n:deleted"}, states)

		// The block stream shows n's borrowed address in m's block.
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ev := <-bl:
				require.NoError(t, ev.Err)
				if ev.Block != nil && len(ev.Block.BorrowedBy("n")) == 1 {
					assert.Equal(t, []netip.Addr{addr("10.0.0.201")}, ev.Block.BorrowedBy("n"))
					assert.Equal(t, "m", ev.Block.Affinity)
					assert.Equal(t, 16, ev.Block.Size)
					got, _, err := e.ipam.BorrowedAddrs(e.ctx, "n")
					require.NoError(t, err)
					assert.Equal(t, []netip.Addr{addr("10.0.0.201")}, got)
					return
				}
			case <-deadline:
				t.Fatal("no block event with the borrowed address")
			}
		}
	})
}

// TestWatchPools: list the pools, watch from the listing's revision, and
// see every change as the complete pool list.
func TestWatchPools(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		none, rev0, err := e.ipam.ListPools(e.ctx)
		require.NoError(t, err)
		assert.Empty(t, none)
		p := e.pool("p", "10.0.0.0/24", 28, func(p *IPPool) { p.NATOutgoing = true })
		pools, rev, err := e.ipam.ListPools(e.ctx)
		require.NoError(t, err)
		require.Equal(t, []IPPool{p}, pools)
		assert.Greater(t, rev, rev0)

		ch, err := e.ipam.WatchPools(e.ctx, rev)
		require.NoError(t, err)
		next := func() PoolsEvent {
			t.Helper()
			select {
			case ev := <-ch:
				require.NoError(t, ev.Err)
				return ev
			case <-time.After(5 * time.Second):
				t.Fatal("no pools event")
			}
			return PoolsEvent{}
		}
		p.NATOutgoing = false
		_, err = e.ipam.UpdatePool(e.ctx, p)
		require.NoError(t, err)
		ev := next()
		assert.Equal(t, []IPPool{p}, ev.Pools)
		assert.Greater(t, ev.Revision, rev)

		q := e.pool("q", "10.1.0.0/24", 28, func(p *IPPool) { p.NATOutgoing = true })
		assert.Equal(t, []IPPool{p, q}, next().Pools)

		require.NoError(t, e.ipam.DeletePool(e.ctx, "p"))
		assert.Equal(t, []IPPool{q}, next().Pools)

		// Pools equal what Pools returns.
		all, err := e.ipam.Pools(e.ctx)
		require.NoError(t, err)
		assert.Equal(t, all, []IPPool{q})
	})
}

func TestWatchPoolsBadValue(t *testing.T) {
	e := newEnvOn(t, newMemory(t))
	ch, err := e.ipam.WatchPools(e.ctx, 0)
	require.NoError(t, err)
	_, err = e.s.Create(e.ctx, keyPools, []byte(`{not json`))
	require.NoError(t, err)
	select {
	case ev := <-ch:
		require.Error(t, ev.Err)
		assert.Contains(t, ev.Err.Error(), "decode pools")
	case <-time.After(5 * time.Second):
		t.Fatal("no pools event")
	}
	_, _, err = e.ipam.ListPools(e.ctx)
	assert.Error(t, err)
}

// TestWatchFromCompactedRevision: a watch from a revision the store no
// longer keeps ends with one event whose Err matches store.ErrCompacted,
// and the channel closes, as the Watch* docs say; the caller lists again.
func TestWatchFromCompactedRevision(t *testing.T) {
	m, err := store.NewMemory(store.WithHistory(1))
	require.NoError(t, err)
	e := newEnvOn(t, m)
	e.pool("p", "10.0.0.0/24", 28)
	e.mustAssign4("h0", "n")
	e.mustAssign4("h1", "n")

	ends := func(t *testing.T, errs []error) {
		t.Helper()
		require.Len(t, errs, 1, "one event, then the channel closes")
		require.ErrorIs(t, errs[0], store.ErrCompacted)
	}
	bl, err := e.ipam.WatchBlocks(e.ctx, 1)
	require.NoError(t, err)
	ends(t, eventErrs(bl, func(ev BlockEvent) error { return ev.Err }))
	af, err := e.ipam.WatchAffinities(e.ctx, 1)
	require.NoError(t, err)
	ends(t, eventErrs(af, func(ev AffinityEvent) error { return ev.Err }))
	po, err := e.ipam.WatchPools(e.ctx, 1)
	require.NoError(t, err)
	ends(t, eventErrs(po, func(ev PoolsEvent) error { return ev.Err }))
}

// eventErrs drains ch and returns each event's error.
func eventErrs[T any](ch <-chan T, errOf func(T) error) []error {
	var errs []error
	for ev := range ch {
		errs = append(errs, errOf(ev))
	}
	return errs
}
