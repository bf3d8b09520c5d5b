package bboltstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/ipam/store/bboltstore"
	"github.com/tabbynet/tabby/ipam/store/storetest"
)

func TestConformanceShared(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := bboltstore.Open(filepath.Join(t.TempDir(), "ipam.db"), bboltstore.WithPollInterval(10*time.Millisecond))
		require.NoError(t, err)
		return s
	})
}

func TestConformanceExclusive(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := bboltstore.Open(filepath.Join(t.TempDir(), "ipam.db"), bboltstore.WithExclusive())
		require.NoError(t, err)
		return s
	})
}

// Two Store values on one file stand in for two processes: each takes the
// file lock in turn, and a watch on one sees the other's writes by polling.
func TestTwoOpenersShareTheFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "ipam.db")
	a, err := bboltstore.Open(path, bboltstore.WithPollInterval(5*time.Millisecond))
	require.NoError(t, err)
	defer a.Close()
	b, err := bboltstore.Open(path)
	require.NoError(t, err)
	defer b.Close()

	ch, err := a.Watch(ctx, "/", 0)
	require.NoError(t, err)
	rev, err := b.Create(ctx, "/x", []byte("from b"))
	require.NoError(t, err)
	kv, err := a.Get(ctx, "/x")
	require.NoError(t, err)
	require.Equal(t, rev, kv.Revision)
	_, err = a.Update(ctx, "/x", []byte("from a"), rev)
	require.NoError(t, err)
	_, err = b.Update(ctx, "/x", []byte("stale"), rev)
	require.ErrorIs(t, err, store.ErrConflict)
	ev := <-ch
	require.Equal(t, "from b", string(ev.KV.Value))
	ev = <-ch
	require.Equal(t, "from a", string(ev.KV.Value))
}

func TestWatchCompacted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := bboltstore.Open(filepath.Join(t.TempDir(), "ipam.db"), bboltstore.WithHistory(3))
	require.NoError(t, err)
	defer s.Close()
	for _, k := range []string{"/a", "/b", "/c", "/d", "/e"} {
		_, err := s.Create(ctx, k, nil)
		require.NoError(t, err)
	}
	ch, err := s.Watch(ctx, "/", 1)
	require.NoError(t, err)
	ev := <-ch
	require.ErrorIs(t, ev.Err, store.ErrCompacted)
	ch, err = s.Watch(ctx, "/", 3)
	require.NoError(t, err)
	require.Equal(t, "/d", (<-ch).KV.Key)
}

func TestOpenRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]bboltstore.Option{
		"zero lock timeout": bboltstore.WithLockTimeout(0),
		"negative poll":     bboltstore.WithPollInterval(-time.Second),
		"zero history":      bboltstore.WithHistory(0),
		"negative linger":   bboltstore.WithLinger(-1),
		"zero max hold":     bboltstore.WithMaxHold(0),
		"nil option":        nil,
	} {
		path := filepath.Join(t.TempDir(), "ipam.db")
		s, err := bboltstore.Open(path, o)
		require.ErrorIs(t, err, bboltstore.ErrInvalidOption, name)
		require.Nil(t, s)
		require.NoFileExists(t, path, "nothing opened")
	}
}

// Opening an existing store reads, it does not commit: a CNI plugin opens
// the file once per call, and every bbolt commit costs two fdatasyncs.
func TestReopenDoesNotCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.db")
	txid := func() int {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
		require.NoError(t, err)
		defer db.Close()
		tx, err := db.Begin(false)
		require.NoError(t, err)
		defer tx.Rollback()
		return tx.ID()
	}
	s, err := bboltstore.Open(path)
	require.NoError(t, err)
	_, err = s.Create(context.Background(), "/x", []byte("v"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	before := txid()
	for range 3 {
		s, err := bboltstore.Open(path)
		require.NoError(t, err)
		kv, err := s.Get(context.Background(), "/x")
		require.NoError(t, err)
		require.Equal(t, "v", string(kv.Value))
		require.NoError(t, s.Close())
	}
	require.Equal(t, before, txid())
}

// While another Store holds the file (WithExclusive, standing in for another
// process), every operation gives up when its context ends rather than at
// the lock timeout, with the context's error; writes given up that way were
// not written. A write sharing a batch with a given-up one still lands once
// the file is free.
func TestContextEndsWaitForTheFileLock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ipam.db")
	b, err := bboltstore.Open(path, bboltstore.WithLinger(0), bboltstore.WithLockTimeout(10*time.Minute))
	require.NoError(t, err)
	defer b.Close()
	rev, err := b.Create(ctx, "k", []byte("v"))
	require.NoError(t, err)
	a, err := bboltstore.Open(path, bboltstore.WithExclusive())
	require.NoError(t, err)

	ops := map[string]func(context.Context) error{
		"get":       func(c context.Context) error { _, err := b.Get(c, "k"); return err },
		"list":      func(c context.Context) error { _, err := b.List(c, ""); return err },
		"list keys": func(c context.Context) error { _, _, err := b.ListKeys(c, ""); return err },
		"create":    func(c context.Context) error { _, err := b.Create(c, "new", []byte("x")); return err },
		"update":    func(c context.Context) error { _, err := b.Update(c, "k", []byte("x"), rev); return err },
		"delete":    func(c context.Context) error { return b.Delete(c, "k", rev) },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			c, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			require.ErrorIs(t, op(c), context.DeadlineExceeded)
		})
	}

	// Two writes queued together: one gives up, the other waits on.
	patient := make(chan error, 1)
	go func() { _, err := b.Create(ctx, "patient", []byte("p")); patient <- err }()
	c, cancel := context.WithCancel(ctx)
	impatient := make(chan error, 1)
	go func() { _, err := b.Create(c, "impatient", []byte("i")); impatient <- err }()
	cancel()
	require.ErrorIs(t, <-impatient, context.Canceled)
	require.NoError(t, a.Close()) // the file is free
	require.NoError(t, <-patient)

	for key, want := range map[string]bool{"patient": true, "impatient": false, "new": false} {
		_, err := b.Get(ctx, key)
		if want {
			require.NoError(t, err, key)
		} else {
			require.ErrorIs(t, err, store.ErrNotFound, key)
		}
	}
	kv, err := b.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, rev, kv.Revision, "the given-up update and delete were not written")
}

// A lock not obtained within the lock timeout is store.ErrUnavailable, for
// Open and for every operation.
func TestLockTimeoutIsUnavailable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ipam.db")
	b, err := bboltstore.Open(path, bboltstore.WithLinger(0), bboltstore.WithLockTimeout(20*time.Millisecond))
	require.NoError(t, err)
	defer b.Close()
	a, err := bboltstore.Open(path, bboltstore.WithExclusive())
	require.NoError(t, err)
	defer a.Close()

	_, err = bboltstore.Open(path, bboltstore.WithLockTimeout(20*time.Millisecond))
	require.ErrorIs(t, err, store.ErrUnavailable)
	_, err = b.Get(ctx, "k")
	require.ErrorIs(t, err, store.ErrUnavailable)
	_, err = b.Create(ctx, "k", []byte("v"))
	require.ErrorIs(t, err, store.ErrUnavailable)
}
