package etcdstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/ipam/store/etcdstore"
	"github.com/tabbynet/tabby/ipam/store/etcdstore/etcdtest"
	"github.com/tabbynet/tabby/ipam/store/storetest"
)

func TestConformance(t *testing.T) {
	client := etcdtest.Client(t, etcdtest.Start(t))
	n := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		n++ // a fresh prefix gives each test an empty store
		s, err := etcdstore.New(client, etcdstore.WithPrefix(fmt.Sprintf("/conformance/%d/", n)))
		require.NoError(t, err)
		return s
	})
}

func TestWatchCompacted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := etcdtest.Client(t, etcdtest.Start(t))
	s, err := etcdstore.New(client)
	require.NoError(t, err)
	var last int64
	for i := range 5 {
		var err error
		last, err = s.Create(ctx, fmt.Sprintf("/k%d", i), nil)
		require.NoError(t, err)
	}
	_, err = client.Compact(ctx, last)
	require.NoError(t, err)
	ch, err := s.Watch(ctx, "/", 1)
	require.NoError(t, err)
	ev := <-ch
	require.Equal(t, store.EventError, ev.Type)
	require.ErrorIs(t, ev.Err, store.ErrCompacted)
}

func TestNewRejectsBadOptions(t *testing.T) {
	_, err := etcdstore.New(nil)
	require.ErrorIs(t, err, etcdstore.ErrInvalidOption)
	client := etcdtest.Client(t, "http://127.0.0.1:1") // never dialled
	for name, o := range map[string]etcdstore.Option{
		"empty prefix": etcdstore.WithPrefix(""),
		"nil option":   nil,
	} {
		s, err := etcdstore.New(client, o)
		require.ErrorIs(t, err, etcdstore.ErrInvalidOption, name)
		require.Nil(t, s)
	}
}
