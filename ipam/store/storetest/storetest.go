// Package storetest is the conformance suite every store.Store backend must
// pass. A backend's test calls Run with a constructor that returns a fresh,
// empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
)

// Factory returns a new empty store; the suite closes it.
type Factory func(t *testing.T) store.Store

// Run runs every conformance test against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetMissing", testGetMissing},
		{"CreateGet", testCreateGet},
		{"CreateExists", testCreateExists},
		{"InvalidKey", testInvalidKey},
		{"Update", testUpdate},
		{"Delete", testDelete},
		{"ListPrefixOrder", testList},
		{"RevisionsMonotonic", testRevisions},
		{"ValuesAreCopied", testCopies},
		{"WatchFromNow", testWatchFromNow},
		{"WatchFromListRevision", testWatchFromList},
		{"WatchCancel", testWatchCancel},
		{"WatchNegativeRevision", testWatchNegative},
		{"ConcurrentCAS", testConcurrentCAS},
		{"ConcurrentCreate", testConcurrentCreate},
		{"StaleRevisionAfterRecreate", testStaleRevisionAfterRecreate},
		{"MissingKeyWithRevision", testMissingKeyWithRevision},
		{"RewriteSameValue", testRewriteSameValue},
		{"ListRevisionIsStoreWide", testListRevisionStoreWide},
		{"EndedContext", testEndedContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testGetMissing(t *testing.T, s store.Store) {
	_, err := s.Get(ctxT(t), "/a")
	require.ErrorIs(t, err, store.ErrNotFound)
	assert.True(t, store.IsNotFound(err))
	l, err := s.List(ctxT(t), "/")
	require.NoError(t, err)
	assert.Empty(t, l.KVs)
}

func testCreateGet(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	rev, err := s.Create(ctx, "/a", []byte("one"))
	require.NoError(t, err)
	require.Positive(t, rev)
	kv, err := s.Get(ctx, "/a")
	require.NoError(t, err)
	assert.Equal(t, store.KV{Key: "/a", Value: []byte("one"), Revision: rev}, kv)

	// Empty values are allowed and read back empty.
	rev2, err := s.Create(ctx, "/empty", nil)
	require.NoError(t, err)
	kv, err = s.Get(ctx, "/empty")
	require.NoError(t, err)
	assert.Empty(t, kv.Value)
	assert.Equal(t, rev2, kv.Revision)
}

func testCreateExists(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	rev, err := s.Create(ctx, "/a", []byte("one"))
	require.NoError(t, err)
	_, err = s.Create(ctx, "/a", []byte("two"))
	require.ErrorIs(t, err, store.ErrExists)
	assert.True(t, store.IsExists(err))
	kv, err := s.Get(ctx, "/a")
	require.NoError(t, err)
	assert.Equal(t, "one", string(kv.Value))
	assert.Equal(t, rev, kv.Revision)
}

func testInvalidKey(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, err := s.Create(ctx, "", []byte("x"))
	require.ErrorIs(t, err, store.ErrInvalidKey)
	_, err = s.Get(ctx, "")
	require.ErrorIs(t, err, store.ErrInvalidKey)
	_, err = s.Update(ctx, "", nil, 0)
	require.ErrorIs(t, err, store.ErrInvalidKey)
	require.ErrorIs(t, s.Delete(ctx, "", 0), store.ErrInvalidKey)
}

func testUpdate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, err := s.Update(ctx, "/a", []byte("x"), 0)
	require.ErrorIs(t, err, store.ErrNotFound, "update of a missing key")

	r1, err := s.Create(ctx, "/a", []byte("one"))
	require.NoError(t, err)
	r2, err := s.Update(ctx, "/a", []byte("two"), r1)
	require.NoError(t, err)
	require.Greater(t, r2, r1)

	_, err = s.Update(ctx, "/a", []byte("stale"), r1)
	require.ErrorIs(t, err, store.ErrConflict)
	assert.True(t, store.IsConflict(err))

	r3, err := s.Update(ctx, "/a", []byte("three"), 0)
	require.NoError(t, err, "ifRevision 0 is unconditional")
	require.Greater(t, r3, r2)

	kv, err := s.Get(ctx, "/a")
	require.NoError(t, err)
	assert.Equal(t, store.KV{Key: "/a", Value: []byte("three"), Revision: r3}, kv)
}

func testDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	require.ErrorIs(t, s.Delete(ctx, "/a", 0), store.ErrNotFound)
	r1, err := s.Create(ctx, "/a", []byte("one"))
	require.NoError(t, err)
	r2, err := s.Update(ctx, "/a", []byte("two"), r1)
	require.NoError(t, err)
	require.ErrorIs(t, s.Delete(ctx, "/a", r1), store.ErrConflict)
	require.NoError(t, s.Delete(ctx, "/a", r2))
	_, err = s.Get(ctx, "/a")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, "/a", 0), store.ErrNotFound)

	// A deleted key can be created again.
	_, err = s.Create(ctx, "/a", []byte("again"))
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "/a", 0), "ifRevision 0 is unconditional")
}

func testList(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, k := range []string{"/p/b", "/p/a", "/q/a", "/p/c/d", "/pa", "/o"} {
		_, err := s.Create(ctx, k, []byte(k))
		require.NoError(t, err)
	}
	l, err := s.List(ctx, "/p/")
	require.NoError(t, err)
	var keys []string
	for _, kv := range l.KVs {
		keys = append(keys, kv.Key)
		assert.Equal(t, kv.Key, string(kv.Value))
		assert.Positive(t, kv.Revision)
		assert.LessOrEqual(t, kv.Revision, l.Revision)
	}
	assert.Equal(t, []string{"/p/a", "/p/b", "/p/c/d"}, keys)

	all, err := s.List(ctx, "")
	require.NoError(t, err)
	assert.Len(t, all.KVs, 6)
	assert.Equal(t, "/o", all.KVs[0].Key)

	// ListKeys agrees with List, natively or through the fallback.
	ks, rev, err := store.ListKeys(ctx, s, "/p/")
	require.NoError(t, err)
	assert.Equal(t, keys, ks)
	assert.GreaterOrEqual(t, rev, l.Revision)
	_, native := s.(store.KeyLister)
	t.Logf("native ListKeys: %v", native)

	none, err := s.List(ctx, "/zzz")
	require.NoError(t, err)
	assert.Empty(t, none.KVs)
	assert.GreaterOrEqual(t, none.Revision, l.Revision)
}

func testRevisions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var last int64
	for i := range 20 {
		key := fmt.Sprintf("/k/%d", i%4)
		var rev int64
		var err error
		if i < 4 {
			rev, err = s.Create(ctx, key, []byte{byte(i)})
		} else {
			rev, err = s.Update(ctx, key, []byte{byte(i)}, 0)
		}
		require.NoError(t, err)
		require.Greater(t, rev, last)
		last = rev
	}
	l, err := s.List(ctx, "/k/")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, l.Revision, last)
}

func testCopies(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	v := []byte("abc")
	_, err := s.Create(ctx, "/a", v)
	require.NoError(t, err)
	v[0] = 'X'
	kv, err := s.Get(ctx, "/a")
	require.NoError(t, err)
	require.Equal(t, "abc", string(kv.Value))
	kv.Value[0] = 'Y'
	kv2, err := s.Get(ctx, "/a")
	require.NoError(t, err)
	require.Equal(t, "abc", string(kv2.Value))
	l, err := s.List(ctx, "/")
	require.NoError(t, err)
	l.KVs[0].Value[0] = 'Z'
	kv3, err := s.Get(ctx, "/a")
	require.NoError(t, err)
	require.Equal(t, "abc", string(kv3.Value))
}

// next reads one event or fails after a timeout.
func next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		require.True(t, ok, "watch channel closed early")
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a watch event")
	}
	return store.Event{}
}

func testWatchFromNow(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, err := s.Create(ctx, "/w/before", []byte("x"))
	require.NoError(t, err)
	ch, err := s.Watch(ctx, "/w/", 0)
	require.NoError(t, err)

	r1, err := s.Create(ctx, "/w/a", []byte("1"))
	require.NoError(t, err)
	_, err = s.Create(ctx, "/other", []byte("ignored"))
	require.NoError(t, err)
	r2, err := s.Update(ctx, "/w/a", []byte("2"), r1)
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "/w/a", r2))

	ev := next(t, ch)
	assert.Equal(t, store.Event{Type: store.EventPut, KV: store.KV{Key: "/w/a", Value: []byte("1"), Revision: r1}}, ev)
	ev = next(t, ch)
	assert.Equal(t, store.Event{Type: store.EventPut, KV: store.KV{Key: "/w/a", Value: []byte("2"), Revision: r2}}, ev)
	ev = next(t, ch)
	assert.Equal(t, store.EventDelete, ev.Type)
	assert.Equal(t, "/w/a", ev.KV.Key)
	assert.Nil(t, ev.KV.Value)
	assert.Greater(t, ev.KV.Revision, r2)
}

func testWatchFromList(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, err := s.Create(ctx, "/w/a", []byte("1"))
	require.NoError(t, err)
	l, err := s.List(ctx, "/w/")
	require.NoError(t, err)
	// Changes made between the List and the Watch must not be lost.
	r2, err := s.Create(ctx, "/w/b", []byte("2"))
	require.NoError(t, err)
	ch, err := s.Watch(ctx, "/w/", l.Revision)
	require.NoError(t, err)
	r3, err := s.Create(ctx, "/w/c", []byte("3"))
	require.NoError(t, err)
	ev := next(t, ch)
	assert.Equal(t, "/w/b", ev.KV.Key)
	assert.Equal(t, r2, ev.KV.Revision)
	ev = next(t, ch)
	assert.Equal(t, "/w/c", ev.KV.Key)
	assert.Equal(t, r3, ev.KV.Revision)
}

func testWatchNegative(t *testing.T, s store.Store) {
	for _, rev := range []int64{-1, -5} {
		ch, err := s.Watch(ctxT(t), "", rev)
		require.ErrorIs(t, err, store.ErrInvalidRevision, "revision %d", rev)
		assert.Nil(t, ch)
	}
}

func testWatchCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	ch, err := s.Watch(ctx, "/", 0)
	require.NoError(t, err)
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after cancel")
		}
	}
}

// testConcurrentCAS increments one counter from many goroutines with
// read-modify-CAS and checks that no increment is lost.
func testConcurrentCAS(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, err := s.Create(ctx, "/counter", []byte("0"))
	require.NoError(t, err)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for {
					kv, err := s.Get(ctx, "/counter")
					if err != nil {
						errs <- err
						return
					}
					var n int
					fmt.Sscan(string(kv.Value), &n)
					_, err = s.Update(ctx, "/counter", []byte(fmt.Sprint(n+1)), kv.Revision)
					if err == nil {
						break
					}
					if !errors.Is(err, store.ErrConflict) {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	kv, err := s.Get(ctx, "/counter")
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(workers*each), string(kv.Value))
}

// testConcurrentCreate races creates of the same keys: exactly one wins each.
func testConcurrentCreate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const workers, keys = 6, 20
	var mu sync.Mutex
	wins := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				key := fmt.Sprintf("/c/%02d", k)
				_, err := s.Create(ctx, key, []byte(fmt.Sprint(w)))
				if err == nil {
					mu.Lock()
					wins[key]++
					mu.Unlock()
				} else {
					assert.ErrorIs(t, err, store.ErrExists)
				}
			}
		}()
	}
	wg.Wait()
	require.Len(t, wins, keys)
	for k, n := range wins {
		assert.Equal(t, 1, n, k)
	}
}

// testStaleRevisionAfterRecreate: a revision read before a key was
// deleted and created again never matches the new key (IPAM compares a
// block's revision to tell whether it was released and claimed afresh).
func testStaleRevisionAfterRecreate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r1, err := s.Create(ctx, "/a", []byte("one"))
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "/a", r1))
	r2, err := s.Create(ctx, "/a", []byte("one"))
	require.NoError(t, err)
	require.Greater(t, r2, r1)
	_, err = s.Update(ctx, "/a", []byte("stale"), r1)
	require.ErrorIs(t, err, store.ErrConflict)
	require.ErrorIs(t, s.Delete(ctx, "/a", r1), store.ErrConflict)
	requireKV(t, s, "/a", "one", r2)
}

// testMissingKeyWithRevision: Update and Delete of a missing key at a
// revision say ErrNotFound, not ErrConflict (IPAM reads a block that
// vanished under a compare-and-swap as gone).
func testMissingKeyWithRevision(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r1, err := s.Create(ctx, "/a", []byte("one"))
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "/a", 0))
	for _, rev := range []int64{r1, r1 + 100} {
		_, err = s.Update(ctx, "/a", []byte("x"), rev)
		require.ErrorIs(t, err, store.ErrNotFound, "update at %d", rev)
		assert.NotErrorIs(t, err, store.ErrConflict)
		err = s.Delete(ctx, "/a", rev)
		require.ErrorIs(t, err, store.ErrNotFound, "delete at %d", rev)
		assert.NotErrorIs(t, err, store.ErrConflict)
	}
	_, err = s.Get(ctx, "/a")
	require.ErrorIs(t, err, store.ErrNotFound, "nothing written")
}

// testRewriteSameValue: writing a key's value unchanged still gives it a
// new revision, so a compare-and-swap against the old one fails (IPAM
// fences off a block write whose outcome is unknown this way).
func testRewriteSameValue(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r1, err := s.Create(ctx, "/a", []byte("same"))
	require.NoError(t, err)
	r2, err := s.Update(ctx, "/a", []byte("same"), r1)
	require.NoError(t, err)
	require.Greater(t, r2, r1)
	_, err = s.Update(ctx, "/a", []byte("late"), r1)
	require.ErrorIs(t, err, store.ErrConflict)
	requireKV(t, s, "/a", "same", r2)
}

// testListRevisionIsStoreWide: a listing's revision covers writes to
// keys outside its prefix too, so watching another prefix from it misses
// nothing either.
func testListRevisionStoreWide(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, err := s.Create(ctx, "/p/a", []byte("1"))
	require.NoError(t, err)
	r2, err := s.Create(ctx, "/q/a", []byte("2"))
	require.NoError(t, err)
	l, err := s.List(ctx, "/p/")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, l.Revision, r2)
	_, rev, err := store.ListKeys(ctx, s, "/p/")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, rev, r2)
	ch, err := s.Watch(ctx, "/q/", l.Revision)
	require.NoError(t, err)
	r3, err := s.Create(ctx, "/q/b", []byte("3"))
	require.NoError(t, err)
	ev := next(t, ch)
	assert.Equal(t, "/q/b", ev.KV.Key, "the write listed before is not seen again")
	assert.Equal(t, r3, ev.KV.Revision)
}

// testEndedContext: every operation given an ended context fails with
// the context's error, which is none of the store's sentinels (IPAM
// treats those as definite answers), and writes nothing.
func testEndedContext(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	rev, err := s.Create(ctx, "/a", []byte("one"))
	require.NoError(t, err)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	check := func(op string, err error) {
		t.Helper()
		require.ErrorIs(t, err, context.Canceled, op)
		for _, sentinel := range []error{store.ErrNotFound, store.ErrExists, store.ErrConflict, store.ErrClosed} {
			assert.NotErrorIs(t, err, sentinel, op)
		}
	}
	_, err = s.Get(ended, "/a")
	check("get", err)
	_, err = s.List(ended, "/")
	check("list", err)
	_, err = s.Create(ended, "/b", []byte("x"))
	check("create", err)
	_, err = s.Update(ended, "/a", []byte("x"), rev)
	check("update", err)
	check("delete", s.Delete(ended, "/a", rev))
	l, err := s.List(ctx, "/")
	require.NoError(t, err)
	require.Len(t, l.KVs, 1)
	assert.Equal(t, store.KV{Key: "/a", Value: []byte("one"), Revision: rev}, l.KVs[0])
}

// requireKV asserts that key holds value at revision rev.
func requireKV(t *testing.T, s store.Store, key, value string, rev int64) {
	t.Helper()
	kv, err := s.Get(ctxT(t), key)
	require.NoError(t, err)
	assert.Equal(t, store.KV{Key: key, Value: []byte(value), Revision: rev}, kv)
}
