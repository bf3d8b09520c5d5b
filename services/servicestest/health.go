package servicestest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/services"
)

// HealthServer runs a services.HealthServer on 127.0.0.1 for the test
// and returns it, a free port for a Service's healthCheckNodePort, and a
// function that GETs that port and returns the HTTP status (an error
// while nothing listens there).
func HealthServer(t *testing.T) (*services.HealthServer, int32, func() (int, error)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	hs := services.NewHealthServer(services.HealthConfig{BindAddress: netip.MustParseAddr("127.0.0.1")}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hs.Run(ctx) }()
	t.Cleanup(func() { cancel(); assert.NoError(t, <-done) })
	status := func() (int, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	return hs, int32(port), status
}

// HealthChecks drives a backend whose WithHealthServer is the server
// behind status, through tr and sync: a Local LoadBalancer Service
// default/hc with healthCheckNodePort hp (from HealthServer) and one ready
// endpoint on node-a. Before a successful Sync nothing listens (when
// failNext is not nil it makes the first Sync fail, which must hand the
// server nothing); after it the port answers 200; once the endpoint
// moves to node-b, 503.
func HealthChecks(t *testing.T, tr *services.Tracker, sync func(context.Context) error, hp int32, status func() (int, error), failNext func()) {
	t.Helper()
	ctx := context.Background()
	Scenario(tr)
	tr.OnServiceUpdate(Service("default", "hc", "10.96.0.80", Port("http", v1.ProtocolTCP, 80, 30120), LocalHealthCheck(hp)))
	tr.OnEndpointSliceUpdate(Slice("default", "hc", "hc-1", WebPorts, Endpoint{IP: "10.244.1.20", Node: "node-a"}))
	if failNext != nil {
		failNext()
		require.Error(t, sync(ctx))
	}
	_, err := status()
	require.Error(t, err, "nothing applied yet")
	require.NoError(t, sync(ctx))
	require.Eventually(t, func() bool { c, err := status(); return err == nil && c == http.StatusOK }, 5*time.Second, 10*time.Millisecond)

	tr.OnEndpointSliceUpdate(Slice("default", "hc", "hc-1", WebPorts, Endpoint{IP: "10.244.2.20", Node: "node-b"}))
	require.NoError(t, sync(ctx))
	c, err := status()
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, c)
}
