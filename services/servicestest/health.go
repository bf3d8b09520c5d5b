package servicestest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
