// Package etcdstore is the store.Store backend for clusters: etcd v3.
//
// # Design
//
//  1. The Store borrows a *clientv3.Client that the caller owns (and closes);
//     all keys live under a prefix (default "/tabby/") so one etcd can host
//     several clusters or other data.
//  2. Revisions are etcd's: KV.Revision is the key's ModRevision and
//     ListResult.Revision the response header's revision, so a List followed
//     by Watch(afterRevision) misses nothing.
//  3. Create, Update and Delete are single etcd transactions comparing
//     CreateRevision or ModRevision; the else branch reads the key back so
//     the error says "not found" or "conflict" precisely.
//  4. Watch uses etcd's watch with WithRev; a compacted start revision ends
//     the stream with store.ErrCompacted.
//  5. An etcd that cannot serve the request (unreachable, no leader, a
//     server-side timeout) gives errors matching store.ErrUnavailable; the
//     client waits for a connection until the context ends, which comes
//     back as the context's error. Every error from the etcd client names
//     the client's endpoints and the full etcd key or prefix (the store's
//     prefix included), e.g. `etcd http://10.0.0.1:2379: list
//     "/tabby/ipam/v1/cluster/": context deadline exceeded`.
//
// All methods are safe for concurrent use.
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tabbynet/tabby/ipam/store"
)

// Store is a store.Store on etcd v3.
type Store struct {
	c      *clientv3.Client
	prefix string
}

var (
	_ store.Store     = (*Store)(nil)
	_ store.KeyLister = (*Store)(nil)
)

// Option configures New. An option given a bad value makes New fail with
// an error wrapping ErrInvalidOption.
type Option func(*Store) error

// ErrInvalidOption: a nil client, or an option given a bad value.
var ErrInvalidOption = errors.New("invalid etcd store option")

// WithPrefix puts every key under prefix (default "/tabby/"). It must not
// be empty: the store would then share, and list, the whole key space.
func WithPrefix(p string) Option {
	return func(s *Store) error {
		if p == "" {
			return fmt.Errorf("%w: WithPrefix(\"\")", ErrInvalidOption)
		}
		s.prefix = p
		return nil
	}
}

// New returns a Store using c. Close does not close c.
func New(c *clientv3.Client, opts ...Option) (*Store, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	s := &Store{c: c, prefix: "/tabby/"}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := o(s); err != nil {
			return nil, fmt.Errorf("etcd store: %w", err)
		}
	}
	return s, nil
}

func (s *Store) full(key string) string { return s.prefix + key }

func (s *Store) kv(k []byte, v []byte, rev int64) store.KV {
	return store.KV{Key: strings.TrimPrefix(string(k), s.prefix), Value: store.Clone(v), Revision: rev}
}

// wrap wraps an error of the etcd client for op on key (relative to the
// prefix); see wrapClientErr.
func (s *Store) wrap(op, key string, err error) error {
	return wrapClientErr(s.c.Endpoints(), op, s.full(key), err)
}

// wrapClientErr names the client's endpoints, op and fullKey (the etcd key,
// prefix included) in err, and marks err with store.ErrCompacted or
// store.ErrUnavailable when it says so; err itself (a context's error
// included) stays matchable with errors.Is.
func wrapClientErr(endpoints []string, op, fullKey string, err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		err = errors.Join(store.ErrCompacted, err)
	case unavailable(err):
		err = errors.Join(store.ErrUnavailable, err)
	}
	eps := strings.Join(endpoints, ",")
	if eps == "" {
		eps = "(no endpoints)"
	}
	return fmt.Errorf("etcd %s: %s %q: %w", eps, op, fullKey, err)
}

// unavailable reports whether err says etcd could not serve the request:
// unreachable (gRPC Unavailable), no leader, or a server-side timeout. An
// ended context is left as it is.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	for _, e := range []error{rpctypes.ErrNoLeader, rpctypes.ErrLeaderChanged, rpctypes.ErrTimeout,
		rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrTimeoutDueToLeaderFail} {
		if errors.Is(err, e) {
			return true
		}
	}
	return status.Code(err) == codes.Unavailable
}

func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.KV{}, fmt.Errorf("etcd: get: %w", err)
	}
	resp, err := s.c.Get(ctx, s.full(key))
	if err != nil {
		return store.KV{}, s.wrap("get", key, err)
	}
	if len(resp.Kvs) == 0 {
		return store.KV{}, fmt.Errorf("etcd: get %q: %w", key, store.ErrNotFound)
	}
	kv := resp.Kvs[0]
	return s.kv(kv.Key, kv.Value, kv.ModRevision), nil
}

func (s *Store) List(ctx context.Context, prefix string) (store.ListResult, error) {
	resp, err := s.c.Get(ctx, s.full(prefix), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return store.ListResult{}, s.wrap("list", prefix, err)
	}
	res := store.ListResult{Revision: resp.Header.Revision}
	for _, kv := range resp.Kvs {
		res.KVs = append(res.KVs, s.kv(kv.Key, kv.Value, kv.ModRevision))
	}
	return res, nil
}

func (s *Store) ListKeys(ctx context.Context, prefix string) ([]string, int64, error) {
	resp, err := s.c.Get(ctx, s.full(prefix), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, s.wrap("list keys", prefix, err)
	}
	keys := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		keys[i] = strings.TrimPrefix(string(kv.Key), s.prefix)
	}
	return keys, resp.Header.Revision, nil
}

func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	if err := store.ValidateKey(key); err != nil {
		return 0, fmt.Errorf("etcd: create: %w", err)
	}
	k := s.full(key)
	resp, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(value))).Commit()
	if err != nil {
		return 0, s.wrap("create", key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcd: create %q: %w", key, store.ErrExists)
	}
	return resp.Header.Revision, nil
}

// cas runs then if key exists (at ifRevision when non-zero) and reports
// ErrNotFound or ErrConflict otherwise.
func (s *Store) cas(ctx context.Context, op, key string, ifRevision int64, then clientv3.Op) (int64, error) {
	k := s.full(key)
	cmp := clientv3.Compare(clientv3.ModRevision(k), "=", ifRevision)
	if ifRevision == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(k), ">", 0)
	}
	resp, err := s.c.Txn(ctx).If(cmp).Then(then).Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return 0, s.wrap(op, key, err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return 0, fmt.Errorf("etcd: %s %q: %w", op, key, store.ErrNotFound)
	}
	return 0, fmt.Errorf("etcd: %s %q at revision %d (now %d): %w", op, key, ifRevision, kvs[0].ModRevision, store.ErrConflict)
}

func (s *Store) Update(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error) {
	if err := store.ValidateKey(key); err != nil {
		return 0, fmt.Errorf("etcd: update: %w", err)
	}
	return s.cas(ctx, "update", key, ifRevision, clientv3.OpPut(s.full(key), string(value)))
}

func (s *Store) Delete(ctx context.Context, key string, ifRevision int64) error {
	if err := store.ValidateKey(key); err != nil {
		return fmt.Errorf("etcd: delete: %w", err)
	}
	_, err := s.cas(ctx, "delete", key, ifRevision, clientv3.OpDelete(s.full(key)))
	return err
}

func (s *Store) Watch(ctx context.Context, prefix string, afterRevision int64) (<-chan store.Event, error) {
	if err := store.CheckWatchRevision(afterRevision); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if afterRevision > 0 {
		opts = append(opts, clientv3.WithRev(afterRevision+1))
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.c.Watch(wctx, s.full(prefix), opts...)
	out := make(chan store.Event, 64)
	go func() {
		defer close(out)
		defer cancel()
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if ctx.Err() != nil {
					return
				}
				if resp.CompactRevision != 0 {
					err = errors.Join(store.ErrCompacted, err)
				}
				send(ctx, out, store.Event{Type: store.EventError, Err: s.wrap("watch", prefix, err)})
				return
			}
			for _, ev := range resp.Events {
				e := store.Event{Type: store.EventPut, KV: s.kv(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)}
				if ev.Type == clientv3.EventTypeDelete {
					e.Type, e.KV.Value = store.EventDelete, nil
				}
				if !send(ctx, out, e) {
					return
				}
			}
		}
	}()
	return out, nil
}

func send(ctx context.Context, ch chan<- store.Event, ev store.Event) bool {
	select {
	case ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close is a no-op: the client belongs to the caller.
func (s *Store) Close() error { return nil }
