// Package parallel runs the independent iterations of a loop on every CPU,
// for the dataplane packages' full renders (chains, policies).
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For runs f(0..n-1) on up to GOMAXPROCS goroutines, handing out indexes
// in blocks of block, so that inputs of at most one block stay on the
// calling goroutine. f must be safe to call concurrently for different
// indexes; For returns when every call has.
func For(n, block int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), (n+block-1)/block)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				lo := int(next.Add(int64(block))) - block
				if lo >= n {
					return
				}
				for i := lo; i < min(lo+block, n); i++ {
					f(i)
				}
			}
		})
	}
	wg.Wait()
}
