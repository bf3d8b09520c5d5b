package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tabbynet/tabby/ipam/store"
)

// TestWrapMarksUnavailable: the errors of an etcd that cannot serve match
// store.ErrUnavailable (and keep the client's error); an ended context and
// a definite answer do not.
func TestWrapMarksUnavailable(t *testing.T) {
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
			err := wrap("get", "k", tc.err)
			assert.Equal(t, tc.want, errors.Is(err, store.ErrUnavailable), err)
			assert.ErrorIs(t, err, tc.err)
		})
	}
}
