package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/ipam/store/storetest"
)

// newMemory is NewMemory for tests.
func newMemory(t *testing.T, opts ...store.MemoryOption) *store.Memory {
	t.Helper()
	m, err := store.NewMemory(opts...)
	require.NoError(t, err)
	return m
}

func TestNewMemoryRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]store.MemoryOption{
		"zero history":     store.WithHistory(0),
		"negative history": store.WithHistory(-1),
		"nil option":       nil,
	} {
		m, err := store.NewMemory(o)
		require.ErrorIs(t, err, store.ErrInvalidOption, name)
		require.Nil(t, m)
	}
}

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newMemory(t) })
}

func TestMemoryWatchCompacted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := newMemory(t, store.WithHistory(4))
	for i := range 10 {
		_, err := m.Create(ctx, fmt.Sprintf("/k%d", i), nil)
		require.NoError(t, err)
	}
	ch, err := m.Watch(ctx, "/", 2)
	require.NoError(t, err)
	ev := <-ch
	require.Equal(t, store.EventError, ev.Type)
	require.ErrorIs(t, ev.Err, store.ErrCompacted)
	_, ok := <-ch
	require.False(t, ok)

	// The ring keeps revisions 7-10: a watch after 5 has lost 6, a watch
	// after 6 replays all four in order.
	ch, err = m.Watch(ctx, "/", 5)
	require.NoError(t, err)
	require.ErrorIs(t, (<-ch).Err, store.ErrCompacted)
	ch, err = m.Watch(ctx, "/", 6)
	require.NoError(t, err)
	for want := int64(7); want <= 10; want++ {
		require.Equal(t, want, (<-ch).KV.Revision)
	}
}

func TestMemoryClosed(t *testing.T) {
	m := newMemory(t)
	ctx := context.Background()
	ch, err := m.Watch(ctx, "/", 0)
	require.NoError(t, err)
	require.NoError(t, m.Close())
	_, ok := <-ch
	require.False(t, ok)
	_, err = m.Get(ctx, "/a")
	require.ErrorIs(t, err, store.ErrClosed)
}

// TestMemoryCopiesValues: values are copied on the way in and out.
func TestMemoryCopiesValues(t *testing.T) {
	m := newMemory(t)
	ctx := context.Background()
	in := []byte("abc")
	rev, err := m.Create(ctx, "/a", in)
	require.NoError(t, err)
	in[0] = 'X'
	kv, err := m.Get(ctx, "/a")
	require.NoError(t, err)
	require.Equal(t, store.KV{Key: "/a", Value: []byte("abc"), Revision: rev}, kv)
	kv.Value[0] = 'Y'
	l, err := m.List(ctx, "/")
	require.NoError(t, err)
	require.Equal(t, []store.KV{{Key: "/a", Value: []byte("abc"), Revision: rev}}, l.KVs)
	l.KVs[0].Value[0] = 'Z'
	kv, err = m.Get(ctx, "/a")
	require.NoError(t, err)
	require.Equal(t, []byte("abc"), kv.Value)
	_, err = m.Get(ctx, "/b")
	require.EqualError(t, err, `memory: get "/b": key not found`)
}

// Writers on many keys race a List and a Watch from its revision: the
// listing plus the watched changes must rebuild exactly the final state,
// and nothing listed may be newer than the listing's revision. This is
// what the sharded locking must keep.
func TestMemoryListWatchUnderConcurrentWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := newMemory(t, store.WithHistory(1<<20))
	const writers, ops = 8, 600
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range ops {
				key := fmt.Sprintf("/k/%d/%d", w, i%16)
				switch i % 3 {
				case 0, 1:
					if _, err := m.Create(ctx, key, []byte{byte(i)}); errors.Is(err, store.ErrExists) {
						_, err = m.Update(ctx, key, []byte{byte(i)}, 0)
						require.NoError(t, err)
					}
				case 2:
					if err := m.Delete(ctx, key, 0); err != nil {
						require.ErrorIs(t, err, store.ErrNotFound)
					}
				}
			}
		}()
	}
	close(start)
	time.Sleep(time.Millisecond) // list mid-way
	listed, err := m.List(ctx, "/k/")
	require.NoError(t, err)
	state := map[string]string{}
	for _, kv := range listed.KVs {
		require.LessOrEqual(t, kv.Revision, listed.Revision)
		state[kv.Key] = string(kv.Value)
	}
	ch, err := m.Watch(ctx, "/k/", listed.Revision)
	require.NoError(t, err)
	wg.Wait()
	final := m.Revision()
	for rev := listed.Revision; rev < final; {
		ev := <-ch
		require.NoError(t, ev.Err)
		require.Greater(t, ev.KV.Revision, rev, "events in order, none twice")
		rev = ev.KV.Revision
		if ev.Type == store.EventDelete {
			delete(state, ev.KV.Key)
		} else {
			state[ev.KV.Key] = string(ev.KV.Value)
		}
	}
	end, err := m.List(ctx, "/k/")
	require.NoError(t, err)
	want := map[string]string{}
	for _, kv := range end.KVs {
		want[kv.Key] = string(kv.Value)
	}
	require.Equal(t, want, state)
}
