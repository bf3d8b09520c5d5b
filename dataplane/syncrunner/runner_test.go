package syncrunner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// harness runs a Runner on a fake clock. The sync function reports each
// call on runs and returns the next value of results (nil when empty).
type harness struct {
	t       *testing.T
	clk     *clocktesting.FakeClock
	r       *Runner
	runs    chan time.Time
	waits   chan time.Time
	results chan error
	block   chan struct{} // when not nil, each sync waits for a receive
	done    chan error
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{
		t: t, clk: clocktesting.NewFakeClock(t0),
		runs: make(chan time.Time, 100), waits: make(chan time.Time, 100), results: make(chan error, 100),
		done: make(chan error, 1),
	}
	r, err := New(func(ctx context.Context) error {
		h.runs <- h.clk.Now()
		if h.block != nil {
			<-h.block
		}
		select {
		case err := <-h.results:
			return err
		default:
			return nil
		}
	}, cfg, WithClock(h.clk), WithName("test"))
	require.NoError(t, err)
	r.onWait = func(next time.Time) { h.waits <- next }
	h.r = r
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.ErrorIs(t, <-h.done, context.Canceled)
	})
	return h
}

// idleAt waits until the runner waits with its next sync planned at want
// (zero: none planned). It fails the test after 10 s of real time, which
// only a deadlock would need.
func (h *harness) idleAt(want time.Time) {
	h.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-h.waits:
			if got.Equal(want) {
				return
			}
		case <-timeout:
			h.t.Fatalf("runner never waited for %s", want)
		}
	}
}

// ran waits for the next sync and checks its (fake) start time.
func (h *harness) ran(want time.Time) {
	h.t.Helper()
	select {
	case got := <-h.runs:
		require.Equal(h.t, want, got)
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no sync at %s", want)
	}
}

func (h *harness) noRuns() {
	h.t.Helper()
	require.Empty(h.t, h.runs, "unexpected sync")
}

func TestNothingRunsUntilAsked(t *testing.T) {
	h := start(t, Config{MinInterval: time.Second})
	h.idleAt(time.Time{})
	h.clk.Step(time.Hour)
	h.noRuns()
}

func TestTriggersCoalesceWithinMinInterval(t *testing.T) {
	h := start(t, Config{MinInterval: time.Second})
	h.idleAt(time.Time{})
	h.r.Trigger()
	h.ran(t0)
	h.idleAt(time.Time{})
	for range 5 {
		h.r.Trigger()
	}
	h.idleAt(t0.Add(time.Second))
	h.noRuns()
	h.clk.Step(time.Second)
	h.ran(t0.Add(time.Second))
	h.idleAt(time.Time{})
	h.noRuns()
}

func TestPeriodicResync(t *testing.T) {
	h := start(t, Config{MinInterval: time.Second, MaxInterval: 10 * time.Second})
	h.idleAt(t0.Add(10 * time.Second))
	h.clk.Step(10 * time.Second)
	h.ran(t0.Add(10 * time.Second))
	h.idleAt(t0.Add(20 * time.Second))
	// A triggered sync restarts the resync period.
	h.clk.Step(5 * time.Second)
	h.r.Trigger()
	h.ran(t0.Add(15 * time.Second))
	h.idleAt(t0.Add(25 * time.Second))
}

func TestRetryBackoff(t *testing.T) {
	h := start(t, Config{RetryMin: time.Second, RetryMax: 4 * time.Second})
	h.idleAt(time.Time{})
	boom := errors.New("boom")
	for range 4 {
		h.results <- boom
	}
	h.r.Trigger()
	now := t0
	h.ran(now)
	for _, d := range []time.Duration{1, 2, 4, 4} {
		h.idleAt(now.Add(d * time.Second))
		h.clk.Step(d * time.Second)
		now = now.Add(d * time.Second)
		h.ran(now)
	}
	// The fifth run succeeded: no retry planned.
	h.idleAt(time.Time{})
	h.noRuns()
}

func TestRetryAfter(t *testing.T) {
	h := start(t, Config{MinInterval: time.Second})
	h.idleAt(time.Time{})
	h.r.RetryAfter(5 * time.Second)
	h.idleAt(t0.Add(5 * time.Second))
	h.r.RetryAfter(3 * time.Second) // the earliest wins
	h.idleAt(t0.Add(3 * time.Second))
	h.noRuns()
	h.clk.Step(3 * time.Second)
	h.ran(t0.Add(3 * time.Second))
	h.idleAt(time.Time{})
	// Served by any sync that starts after the call.
	h.r.RetryAfter(time.Minute)
	h.idleAt(t0.Add(3*time.Second + time.Minute))
	h.clk.Step(time.Second)
	h.r.Trigger()
	h.ran(t0.Add(4 * time.Second))
	h.idleAt(time.Time{})
}

// A trigger that arrives while a sync runs causes one more sync after it.
func TestTriggerDuringSync(t *testing.T) {
	h := start(t, Config{})
	h.block = make(chan struct{})
	h.idleAt(time.Time{})
	h.r.Trigger()
	h.ran(t0)
	h.r.Trigger()
	h.r.Trigger()
	h.block <- struct{}{}
	h.ran(t0)
	h.block <- struct{}{}
	h.idleAt(time.Time{})
	h.noRuns()
}

func TestRunOnce(t *testing.T) {
	h := start(t, Config{})
	h.idleAt(time.Time{})
	require.ErrorIs(t, h.r.Run(context.Background()), ErrAlreadyRunning)
}

func TestConfig(t *testing.T) {
	sync := func(context.Context) error { return nil }
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"kube-proxy like", Config{MinInterval: time.Second, MaxInterval: time.Hour}, true},
		{"negative min", Config{MinInterval: -1}, false},
		{"negative retry", Config{RetryMin: -time.Second}, false},
		{"max below min", Config{MinInterval: time.Minute, MaxInterval: time.Second}, false},
		{"retry max below min", Config{RetryMin: time.Minute, RetryMax: time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(sync, tt.cfg)
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrInvalidConfig)
			}
		})
	}
	_, err := New(nil, Config{})
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, err = New(sync, Config{}, WithClock(nil))
	require.ErrorIs(t, err, ErrInvalidConfig)
	// A nil Option (an optional one left unset by the caller) is ignored
	// rather than called; before, New panicked.
	_, err = New(sync, Config{}, nil, WithLogger(nil))
	require.NoError(t, err)
	r, err := New(sync, Config{MinInterval: 2 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, r.cfg.RetryMin)
	require.Equal(t, 64*time.Second, r.cfg.RetryMax)
}
