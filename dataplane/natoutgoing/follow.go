package natoutgoing

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tabbynet/tabby/dataplane/syncrunner"
	"github.com/tabbynet/tabby/ipam"
)

// PoolSource is where Run reads pools. *ipam.IPAM implements it
// (ListPools, WatchPools).
type PoolSource interface {
	// ListPools returns every pool and the store revision of the listing.
	ListPools(ctx context.Context) ([]ipam.IPPool, int64, error)
	// WatchPools streams the complete pool list after each change made
	// after revision, until ctx ends or the watch fails (an event with Err
	// set, then the channel is closed).
	WatchPools(ctx context.Context, afterRevision int64) (<-chan ipam.PoolsEvent, error)
}

var _ PoolSource = (*ipam.IPAM)(nil)

// relistDelay is how long Run waits before listing again after a failed
// list or watch.
const relistDelay = time.Second

// Run follows src until ctx ends, then returns ctx's error: it lists the
// pools and applies them, then applies the latest list again after every
// pool event (a pool created, deleted or updated, natOutgoing flipped),
// so outgoing NAT follows pool changes without a restart. Applies go
// through a syncrunner.Runner built from cfg: bursts of events coalesce
// into one Apply at most every cfg.MinInterval, a failed Apply is retried
// with backoff (cfg.RetryMin..RetryMax), and cfg.MaxInterval, when not
// zero, re-applies periodically (with the iptables RefreshInterval and the
// ipsets WithRefreshInterval, that repairs drift of the rules and of the
// sets' members). A watch that fails (the store compacted the revision,
// etcd went away) is logged and followed by a new listing after one
// second; an event whose pools do not decode is logged and skipped.
func (a *Applier) Run(ctx context.Context, src PoolSource, cfg syncrunner.Config) error {
	if err := a.check("run"); err != nil {
		return err
	}
	var (
		mu     sync.Mutex
		latest []ipam.IPPool
		listed bool
	)
	r, err := syncrunner.New(func(ctx context.Context) error {
		mu.Lock()
		pools, ok := latest, listed
		mu.Unlock()
		if !ok {
			return nil
		}
		return a.Apply(ctx, pools)
	}, cfg, syncrunner.WithLogger(a.log), syncrunner.WithName("nat outgoing "+a.cfg.Family.String()))
	if err != nil {
		return fmt.Errorf("nat outgoing: %w", err)
	}
	set := func(pools []ipam.IPPool) {
		mu.Lock()
		latest, listed = pools, true
		mu.Unlock()
		r.Trigger()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for ctx.Err() == nil {
		if err := a.follow(ctx, src, set); err != nil && ctx.Err() == nil {
			a.log.Warn("nat outgoing: pool watch failed; listing again", "family", a.cfg.Family, "error", err, "in", relistDelay)
			select {
			case <-ctx.Done():
			case <-time.After(relistDelay):
			}
		}
	}
	<-done
	return ctx.Err()
}

// follow lists the pools, hands them to set, then hands it every event's
// pools until the watch ends; it returns why it ended.
func (a *Applier) follow(ctx context.Context, src PoolSource, set func([]ipam.IPPool)) error {
	pools, rev, err := src.ListPools(ctx)
	if err != nil {
		return fmt.Errorf("list pools: %w", err)
	}
	set(pools)
	ch, err := src.WatchPools(ctx, rev)
	if err != nil {
		return fmt.Errorf("watch pools after revision %d: %w", rev, err)
	}
	var last error
	for ev := range ch {
		if ev.Err != nil {
			last = ev.Err
			a.log.Warn("nat outgoing: pool event", "family", a.cfg.Family, "revision", ev.Revision, "error", ev.Err)
			continue
		}
		set(ev.Pools)
	}
	if last == nil {
		last = fmt.Errorf("watch pools after revision %d: stream closed", rev)
	}
	return last
}
