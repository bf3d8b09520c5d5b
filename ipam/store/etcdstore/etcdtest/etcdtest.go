// Package etcdtest starts a real single-member etcd in-process for tests and
// benchmarks (package embedetcd, stopped when the test ends), listening on
// free loopback ports with its data in the test's temporary directory.
package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tabbynet/tabby/ipam/store/etcdstore/embedetcd"
)

// Start runs an etcd server for the life of tb and returns its client URL.
func Start(tb testing.TB) string {
	tb.Helper()
	s, err := embedetcd.Start(context.Background(), embedetcd.WithDir(tb.TempDir()), embedetcd.WithName("tabby-test"))
	if err != nil {
		tb.Fatalf("start etcd: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s.Endpoint()
}

// Client returns a client of the etcd at endpoint, closed when tb ends.
func Client(tb testing.TB, endpoint string) *clientv3.Client {
	tb.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
