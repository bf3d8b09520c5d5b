package servicestest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/dataplane/syncrunner"
	"github.com/tabbynet/tabby/services"
)

// RunnerDrivesSync drives a backend's sync from a syncrunner.Runner as a
// node agent does: events go to tr and Trigger, the runner calls sync,
// and tracer (over the backend's fake) then sees the Service DNATed to
// its endpoint. Both backends' TestRunner call it.
func RunnerDrivesSync(t *testing.T, tr *services.Tracker, sync func(context.Context) error, tracer Tracer) {
	t.Helper()
	synced := make(chan struct{}, 10)
	r, err := syncrunner.New(func(ctx context.Context) error {
		err := sync(ctx)
		synced <- struct{}{}
		return err
	}, syncrunner.Config{MinInterval: time.Millisecond, MaxInterval: time.Minute, RetryMin: time.Millisecond, RetryMax: time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	tr.OnServiceUpdate(Service("default", "web", "10.96.0.20", Port("http", v1.ProtocolTCP, 80, 0)))
	tr.OnEndpointSliceUpdate(Slice("default", "web", "web-1", WebPorts, Endpoint{IP: "10.244.2.8"}))
	r.Trigger()
	select {
	case <-synced:
	case <-time.After(5 * time.Second):
		t.Fatal("no sync")
	}
	assert.Equal(t, []string{"DNAT 10.244.2.8:8080"}, Trace(t, tracer, "10.244.3.3", "10.96.0.20", "tcp", 80, false))
}
