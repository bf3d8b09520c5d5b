// Package syncrunner drives an applier's sync function the way kube-proxy
// drives its proxier (the BoundedFrequencyRunner of
// kubernetes pkg/proxy/runner): event handlers record changes and call
// Trigger; one goroutine runs the sync function, never more often than
// MinInterval, at least every MaxInterval (the periodic resync that repairs
// drift), and again after a failure with exponential backoff.
//
//	r, err := syncrunner.New(applier.Sync, syncrunner.Config{
//		MinInterval: time.Second, MaxInterval: time.Minute,
//		RetryMin: time.Second, RetryMax: 30 * time.Second,
//	})
//	go r.Run(ctx)
//	// in event handlers:
//	r.Trigger()
//
// # Design
//
//  1. One slot. Trigger never blocks and never queues more than one
//     request: any number of triggers before the next sync starts coalesce
//     into that one sync (kube-proxy's one-element channel). A trigger that
//     arrives while a sync runs causes exactly one more sync after it, so no
//     change is lost.
//  2. Bounded frequency. Two syncs start at least MinInterval apart, whatever
//     asked for them (trigger, retry or resync); a burst of triggers costs
//     at most one sync per MinInterval.
//  3. Periodic resync. When MaxInterval is not zero, a sync starts at the
//     latest MaxInterval after the previous one started, even without a
//     trigger.
//  4. Retry with backoff. When the sync function returns an error, the
//     runner retries after RetryMin, doubling after each consecutive
//     failure up to RetryMax; a success resets the backoff. RetryAfter asks
//     for a sync no later than a given delay (kube-proxy's RetryAfter), for
//     a sync function that knows a partial failure will clear soon.
//  5. Nothing runs until asked: Run waits for the first Trigger, RetryAfter
//     or the first MaxInterval, so a caller can list its initial state
//     before anything is written (kube-proxy waits for its informers).
//  6. Injected clock (k8s.io/utils/clock, WithClock) and logger (WithLogger);
//     tests use k8s.io/utils/clock/testing.FakeClock.
//
// Durations in Config are time.Duration values; zero MinInterval means no
// lower bound and zero MaxInterval no periodic resync. New returns an error
// wrapping ErrInvalidConfig for negative or inconsistent durations.
//
// Thread safety: Trigger and RetryAfter are safe to call from any goroutine,
// before, during and after Run. Run must be called at most once; the sync
// function is only ever called from Run's goroutine, never concurrently.
package syncrunner
