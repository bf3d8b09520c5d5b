package store

import (
	"context"
	"errors"
	"strings"
)

// LogReader returns the changes after revision rev in order, and a channel
// that is closed when more may be available. It fails with ErrCompacted when
// rev is older than the retained history, and with ErrClosed when the store
// is closed (which ends the watch quietly).
type LogReader func(rev int64) ([]Event, <-chan struct{}, error)

// WatchLog implements Store.Watch for backends that keep an ordered change
// log: it follows the log from afterRevision, filters by prefix, and ends
// when ctx is done, the store closes, or the log reports an error (sent as
// an EventError first).
func WatchLog(ctx context.Context, prefix string, afterRevision int64, read LogReader) <-chan Event {
	ch := make(chan Event, 64)
	go func() {
		defer close(ch)
		next := afterRevision
		for {
			evs, more, err := read(next)
			if errors.Is(err, ErrClosed) {
				return
			}
			if err != nil {
				sendEvent(ctx, ch, Event{Type: EventError, Err: err})
				return
			}
			for _, ev := range evs {
				next = ev.KV.Revision
				if !strings.HasPrefix(ev.KV.Key, prefix) {
					continue
				}
				if ev.Type == EventDelete {
					ev.KV.Value = nil
				} else {
					ev.KV.Value = Clone(ev.KV.Value)
				}
				if !sendEvent(ctx, ch, ev) {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-more:
			}
		}
	}()
	return ch
}

// sendEvent delivers ev unless ctx ends first.
func sendEvent(ctx context.Context, ch chan<- Event, ev Event) bool {
	select {
	case ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
