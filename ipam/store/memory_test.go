package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/ipam/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewMemory() })
}

func TestMemoryWatchCompacted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := store.NewMemory(store.WithHistory(4))
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

	// Within the retained history, a watch replays it.
	ch, err = m.Watch(ctx, "/", 7)
	require.NoError(t, err)
	require.Equal(t, int64(8), (<-ch).KV.Revision)
}

func TestMemoryClosed(t *testing.T) {
	m := store.NewMemory()
	ctx := context.Background()
	ch, err := m.Watch(ctx, "/", 0)
	require.NoError(t, err)
	require.NoError(t, m.Close())
	_, ok := <-ch
	require.False(t, ok)
	_, err = m.Get(ctx, "/a")
	require.ErrorIs(t, err, store.ErrClosed)
}

func TestMemoryViewsAndStringWrites(t *testing.T) {
	m := store.NewMemory()
	ctx := context.Background()
	rev, err := store.CreateString(ctx, m, "/a", "abc")
	require.NoError(t, err)
	v, err := store.GetView(ctx, m, "/a")
	require.NoError(t, err)
	require.Equal(t, store.KVView{Key: "/a", Value: "abc", Revision: rev}, v)
	kv, err := m.Get(ctx, "/a")
	require.NoError(t, err)
	kv.Value[0] = 'X' // a copy
	rev, err = store.UpdateString(ctx, m, "/a", "def", rev)
	require.NoError(t, err)
	require.Equal(t, "abc", v.Value, "a view does not change with later writes")
	l, lrev, err := store.ListView(ctx, m, "/")
	require.NoError(t, err)
	require.Equal(t, []store.KVView{{Key: "/a", Value: "def", Revision: rev}}, l)
	require.Equal(t, rev, lrev)
	_, err = store.UpdateString(ctx, m, "/a", "ghi", rev-1)
	require.ErrorIs(t, err, store.ErrConflict)
	_, err = store.CreateString(ctx, m, "/a", "ghi")
	require.ErrorIs(t, err, store.ErrExists)
	_, err = store.GetView(ctx, m, "/b")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.EqualError(t, err, `memory: get "/b": key not found`)
}
