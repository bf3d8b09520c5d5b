package iptables_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	sipt "github.com/tabbynet/tabby/services/iptables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// TestHairpinSetConcurrentFullSyncs: full syncs, whose hairpin members are
// counted and written on a goroutine beside the restore, run while
// informer events, QueueResync, HairpinSet and finally Close come from
// other goroutines, over an IPSets that re-lists the kernel's sets at
// every Apply (WithRefreshInterval of 1 ns, so a listing falls between the
// creation and the fill). Run with -race; afterwards the set holds what a
// fresh Proxier of the same services writes.
func TestHairpinSetConcurrentFullSyncs(t *testing.T) {
	sf := ipsets.NewFake()
	sets := ipsets.New(sf, ipsets.WithPrefix(setPrefix), ipsets.WithRefreshInterval(time.Nanosecond))
	_, tr, p := newFakeWith(t, sipt.WithHairpinSet(sets))
	st.Scenario(tr)
	ctx := context.Background()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	go func() { // informer events: a service's endpoints change
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			eps := []st.Endpoint{{IP: "10.244.2.8"}}
			if i%2 == 0 {
				eps = append(eps, st.Endpoint{IP: fmt.Sprintf("10.244.2.%d", 20+i%50)})
			}
			tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", st.WebPorts, eps...))
		}
	}()
	go func() { // a resync requester and a reader
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.QueueResync()
			_ = p.HairpinSet()
		}
	}()
	for range 50 {
		p.QueueResync()
		require.NoError(t, p.Sync(ctx))
	}
	close(stop)
	wg.Wait()
	p.QueueResync()
	require.NoError(t, p.Sync(ctx))
	got, ok := sets.Members(p.HairpinSet())
	require.True(t, ok)
	assert.True(t, sets.InSync())

	// A fresh Proxier over the same tracker renders everything on its
	// first Sync.
	sf2 := ipsets.NewFake()
	sets2 := ipsets.New(sf2, ipsets.WithPrefix(setPrefix))
	table, err := sipt.NewIPTables(ipt.IPv4, ipt.BackendNFT, ipt.WithExecer(ipt.NewFake()))
	require.NoError(t, err)
	p2, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4, ClusterCIDRs: []netip.Prefix{podCIDR},
		NodeIPs: []netip.Addr{netip.MustParseAddr(st.NodeIP)}},
		sipt.WithSysctl(func(string, string) error { return nil }), sipt.WithHairpinSet(sets2))
	require.NoError(t, err)
	require.NoError(t, p2.Sync(ctx))
	want, ok := sets2.Members(p2.HairpinSet())
	require.True(t, ok)
	assert.NotEmpty(t, want)
	assert.Equal(t, want, got)
	assert.Equal(t, sf2.Dump(), sf.Dump())

	// Close beside a full Sync: the Sync either ends before Close or
	// returns ErrClosed, and every later one returns ErrClosed.
	p.QueueResync()
	done := make(chan error, 1)
	go func() { done <- p.Sync(ctx) }()
	require.NoError(t, p.Close())
	if err := <-done; err != nil {
		assert.ErrorIs(t, err, sipt.ErrClosed)
	}
	assert.True(t, errors.Is(p.Sync(ctx), sipt.ErrClosed))
}
