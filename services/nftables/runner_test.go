package nftables_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/dataplane/syncrunner"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// TestRunner drives Sync from a syncrunner.Runner as a node agent does:
// events go to the tracker and Trigger; the runner applies them.
func TestRunner(t *testing.T) {
	fake, tr, p := newFake(t)
	synced := make(chan struct{}, 10)
	r, err := syncrunner.New(func(ctx context.Context) error {
		err := p.Sync(ctx)
		synced <- struct{}{}
		return err
	}, syncrunner.Config{MinInterval: time.Millisecond, MaxInterval: time.Minute, RetryMin: time.Millisecond, RetryMax: time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.20", st.Port("http", v1.ProtocolTCP, 80, 0)))
	tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", webPorts, st.Endpoint{IP: "10.244.2.8"}))
	r.Trigger()
	select {
	case <-synced:
	case <-time.After(5 * time.Second):
		t.Fatal("no sync")
	}
	assert.Equal(t, []string{"DNAT 10.244.2.8:8080"}, trace(t, fake, "10.244.3.3", "10.96.0.20", "tcp", 80, false))
}
