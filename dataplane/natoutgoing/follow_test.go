package natoutgoing_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/natoutgoing"
	"github.com/tabbynet/tabby/dataplane/syncrunner"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/store"
)

// newIPAM returns an ipam on a fresh memory store holding pools.
func newIPAM(t *testing.T, pools ...ipam.IPPool) *ipam.IPAM {
	t.Helper()
	mem, err := store.NewMemory()
	require.NoError(t, err)
	a, err := ipam.New(mem)
	require.NoError(t, err)
	for _, p := range pools {
		_, err := a.CreatePool(context.Background(), p)
		require.NoError(t, err)
	}
	return a
}

// runFollowing starts a.Run on src and stops it in t.Cleanup, checking it
// returns the context's error.
func runFollowing(t *testing.T, a *natoutgoing.Applier, src natoutgoing.PoolSource) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, src, syncrunner.Config{RetryMin: 10 * time.Millisecond}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.ErrorIs(t, err, context.Canceled)
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// TestRunFollowsPools: Run applies the listed pools, then every change
// made through ipam (natOutgoing flipped, a pool created, a pool deleted).
func TestRunFollowsPools(t *testing.T) {
	ctx := context.Background()
	im := newIPAM(t, ipam.IPPool{Name: "nat", CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true})

	f := newFakes()
	runFollowing(t, f.applier(t, natoutgoing.Config{}), im)
	masq := func(cidr string) string { return "add tabby-v4-masq-ipam-pools " + cidr + "\n" }
	eventually := func(what string, ok func(dump string) bool) {
		t.Helper()
		require.Eventually(t, func() bool { return ok(f.dump()) }, 5*time.Second, 5*time.Millisecond, "%s:\n%s", what, f.dump())
	}
	eventually("listed pool applied", func(d string) bool {
		return containsAll(d, masq("10.244.0.0/16"), "-j MASQUERADE")
	})

	p, err := im.Pool(ctx, "nat")
	require.NoError(t, err)
	p.NATOutgoing = false
	_, err = im.UpdatePool(ctx, p)
	require.NoError(t, err)
	eventually("natOutgoing off: no NAT pool, empty chain", func(d string) bool {
		return !containsAll(d, masq("10.244.0.0/16")) && !containsAll(d, "MASQUERADE")
	})

	_, err = im.CreatePool(ctx, ipam.IPPool{Name: "new", CIDR: netip.MustParsePrefix("10.250.0.0/16"), NATOutgoing: true})
	require.NoError(t, err)
	eventually("new NAT pool", func(d string) bool {
		return containsAll(d, masq("10.250.0.0/16"), "add tabby-v4-all-ipam-pools 10.250.0.0/16\n", "-j MASQUERADE")
	})

	require.NoError(t, im.DeletePool(ctx, "nat"))
	eventually("pool deleted", func(d string) bool { return !containsAll(d, "10.244.0.0/16") })
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// flakySource fails its first listing and ends its first watch with an
// error, as a store that compacted the revision does.
type flakySource struct {
	natoutgoing.PoolSource
	lists, watches atomic.Int32
}

func (s *flakySource) ListPools(ctx context.Context) ([]ipam.IPPool, int64, error) {
	if s.lists.Add(1) == 1 {
		return nil, 0, errors.New("store unavailable")
	}
	return s.PoolSource.ListPools(ctx)
}

func (s *flakySource) WatchPools(ctx context.Context, rev int64) (<-chan ipam.PoolsEvent, error) {
	if s.watches.Add(1) == 1 {
		ch := make(chan ipam.PoolsEvent, 1)
		ch <- ipam.PoolsEvent{Err: store.ErrCompacted}
		close(ch)
		return ch, nil
	}
	return s.PoolSource.WatchPools(ctx, rev)
}

// TestRunRelistsAfterFailures: a failed listing and a failed watch are
// followed by a new listing; changes made meanwhile are not lost.
func TestRunRelistsAfterFailures(t *testing.T) {
	ctx := context.Background()
	im := newIPAM(t, ipam.IPPool{Name: "nat", CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true})
	src := &flakySource{PoolSource: im}
	f := newFakes()
	runFollowing(t, f.applier(t, natoutgoing.Config{}), src)
	require.Eventually(t, func() bool { return src.watches.Load() >= 2 }, 10*time.Second, 10*time.Millisecond)
	_, err := im.CreatePool(ctx, ipam.IPPool{Name: "b", CIDR: netip.MustParsePrefix("10.251.0.0/16"), NATOutgoing: true})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(f.dump(), "add tabby-v4-masq-ipam-pools 10.251.0.0/16\n")
	}, 5*time.Second, 5*time.Millisecond, f.dump())
	assert.GreaterOrEqual(t, src.lists.Load(), int32(3), "list failed, listed, watch failed, listed again")
}
