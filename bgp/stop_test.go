package bgp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stoppingSpeaker returns a started speaker whose learned-route runner is
// stuck in its programmer's sync (a slow kernel write) and a Stop of it in
// progress: the Stop has stopped BGP and waits for the runner, without
// the speaker's lock. stopped is closed when that Stop returns; opening
// gp's gate lets it finish.
func stoppingSpeaker(t *testing.T) (s *Speaker, gp *gatedProgrammer, stopped <-chan struct{}) {
	t.Helper()
	gp = newGatedProgrammer()
	gp.armed.Store(true)
	port := freePort(t)
	s, err := New(Config{NodeName: "node-1", NodeIP: loopNode(1), ListenAddresses: []netip.Addr{loopNode(1)},
		ListenPort: port, StartupSyncTimeout: 100 * time.Millisecond},
		WithLogger(testLogger(t)), WithRouteProgrammer(gp, "", gp.sync))
	require.NoError(t, err)
	ctx := context.Background()
	// A peer nobody answers for: the runner has something to look at, and
	// after the startup sync times out it syncs the programmer once.
	require.NoError(t, s.SetPeers(ctx, []Peer{{Name: "nobody", Address: loopNode(2), Port: port, ASNumber: DefaultASNumber}}))
	require.NoError(t, s.Start(ctx))
	t.Cleanup(s.Stop)
	t.Cleanup(gp.open) // runs first
	gp.waitEntered(t)

	stopped = goDone(s.Stop)
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.srv == nil
	}, 10*time.Second, 10*time.Millisecond)
	return s, gp, stopped
}

// TestConcurrentStop: while a Stop waits for the learned-route runner (its
// programmer's sync is stuck in a slow kernel write), a second Stop and a
// Start wait for it to finish instead of returning at once or starting a
// second runner beside the old one.
func TestConcurrentStop(t *testing.T) {
	s, gp, stop1 := stoppingSpeaker(t)
	stop2 := goDone(s.Stop)
	var startErr error
	start := goDone(func() { startErr = s.Start(context.Background()) })
	assert.Never(t, func() bool { return isClosed(stop1) || isClosed(stop2) || isClosed(start) },
		300*time.Millisecond, 10*time.Millisecond, "a Stop or Start returned while the first Stop was still stopping")

	gp.open()
	require.Eventually(t, func() bool { return isClosed(stop1) && isClosed(stop2) && isClosed(start) },
		20*time.Second, 10*time.Millisecond)
	require.NoError(t, startErr)
	s.Stop()
	assert.LessOrEqual(t, gp.maxInFlight.Load(), int32(1), "programmer calls from two runners at once")
}

// TestStartWaitsForStopContext: a Start waiting for a Stop gives up when
// its context ends, with the context's error.
func TestStartWaitsForStopContext(t *testing.T) {
	s, gp, stopped := stoppingSpeaker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Start(ctx), context.DeadlineExceeded)
	assert.False(t, isClosed(stopped))
	gp.open()
	require.Eventually(t, func() bool { return isClosed(stopped) }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, s.Start(context.Background()), "Start after Stop")
}
