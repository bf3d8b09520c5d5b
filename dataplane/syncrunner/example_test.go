package syncrunner_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tabbynet/tabby/dataplane/syncrunner"
)

// An applier whose first sync fails once: the runner retries it after
// RetryMin; an event during a sync causes one more sync after it.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var r *syncrunner.Runner
	calls := 0
	sync := func(ctx context.Context) error {
		calls++
		switch calls {
		case 1:
			fmt.Println("sync 1: kernel busy")
			return errors.New("EBUSY")
		case 2:
			fmt.Println("sync 2: applied; an event arrives meanwhile")
			r.Trigger()
		default:
			fmt.Println("sync 3: applied the event")
			cancel()
		}
		return nil
	}
	r, _ = syncrunner.New(sync, syncrunner.Config{
		MinInterval: time.Millisecond,
		MaxInterval: time.Minute,
		RetryMin:    10 * time.Millisecond,
	})
	r.Trigger() // the initial state is listed: allow the first sync
	err := r.Run(ctx)
	fmt.Println(err)
	// Output:
	// sync 1: kernel busy
	// sync 2: applied; an event arrives meanwhile
	// sync 3: applied the event
	// context canceled
}
