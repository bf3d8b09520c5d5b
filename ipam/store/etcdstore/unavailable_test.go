package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tabbynet/tabby/ipam/store"
)

// TestWrapMarksUnavailable: the errors of an etcd that cannot serve match
// store.ErrUnavailable (and keep the client's error); an ended context and
// a definite answer do not. Every wrapped error names the endpoints, the
// operation and the full key.
func TestWrapMarksUnavailable(t *testing.T) {
	eps := []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection lost", status.Error(codes.Unavailable, "error reading from server: EOF"), true},
		{"wrapped unavailable", fmt.Errorf("dial: %w", status.Error(codes.Unavailable, "connection refused")), true},
		{"no leader", rpctypes.ErrNoLeader, true},
		{"leader changed", rpctypes.ErrLeaderChanged, true},
		{"request timed out", rpctypes.ErrTimeout, true},
		{"timed out, connection lost", rpctypes.ErrTimeoutDueToConnectionLost, true},
		{"context deadline", context.DeadlineExceeded, false},
		{"context canceled", context.Canceled, false},
		{"compacted", rpctypes.ErrCompacted, false},
		{"other", errors.New("etcdserver: too many requests"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wrapClientErr(eps, "list", "/tabby/ipam/v1/cluster/", tc.err)
			assert.Equal(t, tc.want, errors.Is(err, store.ErrUnavailable), err)
			assert.ErrorIs(t, err, tc.err)
			assert.Equal(t, errors.Is(tc.err, rpctypes.ErrCompacted), errors.Is(err, store.ErrCompacted), err)
			assert.True(t, strings.HasPrefix(err.Error(),
				`etcd http://10.0.0.1:2379,http://10.0.0.2:2379: list "/tabby/ipam/v1/cluster/": `), err)
		})
	}
	t.Run("no endpoints", func(t *testing.T) {
		err := wrapClientErr(nil, "get", "/tabby/k", context.DeadlineExceeded)
		assert.EqualError(t, err, `etcd (no endpoints): get "/tabby/k": context deadline exceeded`)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

// TestUnreachableErrorNamesEndpointAndKey: a store whose etcd never answers
// fails with the context's error, naming the endpoint and the prefixed key.
func TestUnreachableErrorNamesEndpointAndKey(t *testing.T) {
	const ep = "http://127.0.0.1:1" // nothing listens on port 1
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	s, err := New(c, WithPrefix("/p/"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = s.List(ctx, "ipam/v1/cluster/")
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), ep)
	assert.Contains(t, err.Error(), `list "/p/ipam/v1/cluster/"`)
}
