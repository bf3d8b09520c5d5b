package main

import (
	"context"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStopSignalsCancel sends the lab process each signal that ends an
// interactive run (Ctrl-C, kill or timeout, the terminal closing): each
// must cancel the lab's context, so that it removes what it built, and not
// kill the process (a missing one kills this test binary).
func TestStopSignalsCancel(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, stop := signal.NotifyContext(context.Background(), stopSignals()...)
			defer stop()
			require.NoError(t, syscall.Kill(syscall.Getpid(), sig))
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("%v did not stop the lab", sig)
			}
		})
	}
}
