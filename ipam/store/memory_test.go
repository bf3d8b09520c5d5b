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
