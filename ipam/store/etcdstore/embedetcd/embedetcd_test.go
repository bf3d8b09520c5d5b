package embedetcd_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/ipam/store/etcdstore"
	"github.com/tabbynet/tabby/ipam/store/etcdstore/embedetcd"
)

func TestStartServesTheEtcdStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedetcd.Start(ctx)
	require.NoError(t, err)
	dir := srv.Dir()
	c, err := srv.Client()
	require.NoError(t, err)
	s, err := etcdstore.New(c)
	require.NoError(t, err)
	rev, err := s.Create(ctx, "k", []byte("v"))
	require.NoError(t, err)
	kv, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, store.KV{Key: "k", Value: []byte("v"), Revision: rev}, kv)
	require.NoError(t, c.Close())
	require.NoError(t, srv.Close())
	require.NoDirExists(t, dir, "a temporary data directory is removed")
}

func TestBadOptions(t *testing.T) {
	for name, o := range map[string]embedetcd.Option{
		"empty dir":    embedetcd.WithDir(""),
		"empty name":   embedetcd.WithName(""),
		"zero timeout": embedetcd.WithReadyTimeout(0),
		"nil logger":   embedetcd.WithLogger(nil),
		"nil option":   nil,
	} {
		_, err := embedetcd.Start(context.Background(), o)
		require.ErrorIs(t, err, embedetcd.ErrInvalidOption, name)
	}
}
