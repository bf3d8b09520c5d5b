package syncrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// ErrInvalidConfig: a Config duration is negative or the durations are
// inconsistent (MaxInterval below MinInterval, RetryMax below RetryMin, a
// nil sync function, a nil clock), or Run on a Runner that New did not make
// (nil or a zero value).
var ErrInvalidConfig = errors.New("invalid sync runner config")

// ErrAlreadyRunning: Run was called on a runner that is running or has run.
var ErrAlreadyRunning = errors.New("sync runner already started")

// Config bounds how often the sync function runs.
type Config struct {
	// MinInterval is the least time between the starts of two syncs; zero
	// means no bound.
	MinInterval time.Duration
	// MaxInterval is the most time between the starts of two syncs (the
	// periodic resync); zero means no periodic resync. Not below MinInterval.
	MaxInterval time.Duration
	// RetryMin is the delay before retrying a failed sync, doubled after
	// each consecutive failure up to RetryMax. Zero means MinInterval (and
	// at least one second when MinInterval is zero too).
	RetryMin time.Duration
	// RetryMax caps the retry delay; zero means 32 × RetryMin.
	RetryMax time.Duration
}

func (c Config) validate() (Config, error) {
	switch {
	case c.MinInterval < 0, c.MaxInterval < 0, c.RetryMin < 0, c.RetryMax < 0:
		return c, fmt.Errorf("%w: negative duration in %+v", ErrInvalidConfig, c)
	case c.MaxInterval != 0 && c.MaxInterval < c.MinInterval:
		return c, fmt.Errorf("%w: MaxInterval %s below MinInterval %s", ErrInvalidConfig, c.MaxInterval, c.MinInterval)
	}
	if c.RetryMin == 0 {
		c.RetryMin = max(c.MinInterval, time.Second)
	}
	if c.RetryMax == 0 {
		c.RetryMax = 32 * c.RetryMin
	}
	if c.RetryMax < c.RetryMin {
		return c, fmt.Errorf("%w: RetryMax %s below RetryMin %s", ErrInvalidConfig, c.RetryMax, c.RetryMin)
	}
	return c, nil
}

// Option configures a Runner. A nil Option is ignored, as in the other
// dataplane packages.
type Option func(*Runner)

// WithClock sets the clock (default: the real one); New returns an error
// wrapping ErrInvalidConfig for a nil c.
func WithClock(c clock.Clock) Option { return func(r *Runner) { r.clock = c } }

// WithLogger sets the logger (default, and when l is nil: discard). Failed syncs are logged at
// Warn, each sync at Debug.
func WithLogger(l *slog.Logger) Option { return func(r *Runner) { r.log = l } }

// WithName names the runner in its log lines (default "sync").
func WithName(name string) Option { return func(r *Runner) { r.name = name } }

// Runner runs a sync function with bounded frequency; see the package doc.
// The zero value is not usable; make one with New (Run returns
// ErrInvalidConfig, Trigger and RetryAfter do nothing).
type Runner struct {
	sync  func(context.Context) error
	cfg   Config
	clock clock.Clock
	log   *slog.Logger
	name  string

	trigger chan struct{} // the one slot
	wake    chan struct{} // RetryAfter changed retryAt: plan again

	mu      sync.Mutex
	started bool
	retryAt time.Time // earliest RetryAfter request not yet served

	// onWait, when set (tests), is called before each wait with the time
	// of the next planned sync (zero: none planned).
	onWait func(next time.Time)
}

// New returns a runner for sync. It does nothing until Run.
func New(sync func(ctx context.Context) error, cfg Config, opts ...Option) (*Runner, error) {
	if sync == nil {
		return nil, fmt.Errorf("%w: nil sync function", ErrInvalidConfig)
	}
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	r := &Runner{sync: sync, cfg: cfg, clock: clock.RealClock{}, name: "sync", trigger: make(chan struct{}, 1), wake: make(chan struct{}, 1)}
	for _, o := range opts {
		if o != nil {
			o(r)
		}
	}
	if r.clock == nil {
		return nil, fmt.Errorf("%w: nil clock", ErrInvalidConfig)
	}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r, nil
}

// made reports whether New made r: only New sets the sync function, never
// changed afterwards, so reading it needs no lock.
func (r *Runner) made() bool { return r != nil && r.sync != nil }

// Trigger asks for a sync as soon as MinInterval allows. It never blocks;
// triggers before the sync starts coalesce into one.
func (r *Runner) Trigger() {
	if !r.made() {
		return
	}
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// RetryAfter asks for a sync no later than d from now (still at least
// MinInterval after the previous one); any sync that starts after the call
// serves it. Requests coalesce to the earliest. It may be called from
// within the sync function.
func (r *Runner) RetryAfter(d time.Duration) {
	if !r.made() {
		return
	}
	at := r.clock.Now().Add(d)
	r.mu.Lock()
	if r.retryAt.IsZero() || at.Before(r.retryAt) {
		r.retryAt = at
	}
	r.mu.Unlock()
	select { // wake the loop so that it plans the new time
	case r.wake <- struct{}{}:
	default:
	}
}

// Run calls the sync function as configured until ctx ends, then returns
// ctx's error. The context is passed to each sync. A second call returns
// ErrAlreadyRunning.
func (r *Runner) Run(ctx context.Context) error {
	if !r.made() {
		return fmt.Errorf("run: syncrunner.Runner has no sync function (make it with New): %w", ErrInvalidConfig)
	}
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return ErrAlreadyRunning
	}
	r.started = true
	r.mu.Unlock()

	var (
		lastStart time.Time // zero before the first sync
		periodic  time.Time // next periodic resync; zero: none
		backoffAt time.Time // retry of a failed sync; zero: none
		failures  int
		pending   bool // a trigger not yet served
	)
	if r.cfg.MaxInterval > 0 {
		periodic = r.clock.Now().Add(r.cfg.MaxInterval)
	}
	for {
		now := r.clock.Now()
		next := r.plan(now, pending, periodic, backoffAt, lastStart)
		if !next.IsZero() && !next.After(now) {
			pending = false
			select { // a trigger waiting in the slot is served by this sync
			case <-r.trigger:
			default:
			}
			r.mu.Lock()
			r.retryAt = time.Time{} // served by this sync
			r.mu.Unlock()
			lastStart = now
			err := r.sync(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if r.cfg.MaxInterval > 0 {
				periodic = lastStart.Add(r.cfg.MaxInterval)
			}
			if err != nil {
				failures++
				delay := r.backoff(failures)
				backoffAt = r.clock.Now().Add(delay)
				r.log.Warn(r.name+" failed", "error", err, "failures", failures, "retry_in", delay)
			} else {
				failures, backoffAt = 0, time.Time{}
				r.log.Debug(r.name+" done", "took", r.clock.Since(lastStart))
			}
			continue
		}
		var timerC <-chan time.Time
		var timer clock.Timer
		if !next.IsZero() {
			timer = r.clock.NewTimer(next.Sub(now))
			timerC = timer.C()
		}
		if r.onWait != nil {
			r.onWait(next)
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return ctx.Err()
		case <-r.trigger:
			pending = true
		case <-r.wake:
		case <-timerC:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// plan returns when the next sync should start (zero: nothing asked for):
// the earliest request, but not before lastStart + MinInterval.
func (r *Runner) plan(now time.Time, pending bool, periodic, backoffAt, lastStart time.Time) time.Time {
	var want time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (want.IsZero() || t.Before(want)) {
			want = t
		}
	}
	if pending {
		earliest(now)
	}
	earliest(periodic)
	earliest(backoffAt)
	r.mu.Lock()
	earliest(r.retryAt)
	r.mu.Unlock()
	if want.IsZero() {
		return want
	}
	if !lastStart.IsZero() {
		if allowed := lastStart.Add(r.cfg.MinInterval); want.Before(allowed) {
			want = allowed
		}
	}
	return want
}

// backoff returns the delay after the n-th consecutive failure (n ≥ 1).
func (r *Runner) backoff(n int) time.Duration {
	d := r.cfg.RetryMin
	for i := 1; i < n && d < r.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, r.cfg.RetryMax)
}
