package bgp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTwoSpeakersAdvertiseWithdraw(t *testing.T) {
	port := freePort(t)
	m := Metrics{Peers: &gauge{}, PeersEstablished: &gauge{}, Advertised: &gauge{}, Learned: &gauge{}}
	a, fa := startSpeaker(t, 1, port, func(c *Config) { c.ASNumber = 64512 }, WithMetrics(m))
	b, fb := startSpeaker(t, 2, port, func(c *Config) { c.ASNumber = 64513 })
	ctx := context.Background()
	require.NoError(t, a.SetPeers(ctx, []Peer{{Name: "b", Address: loopNode(2), Port: port, ASNumber: 64513}}))
	require.NoError(t, b.SetPeers(ctx, []Peer{{Name: "a", Address: loopNode(1), Port: port, ASNumber: 64512, Passive: true}}))
	waitEstablished(t, a, 1)

	comm := []Community{{A: 64512, B: 100}, {Large: true, A: 64512, B: 1, C: 2}}
	require.NoError(t, a.Advertise(ctx, Advertisement{Prefix: pfx("10.244.1.0/26"), Communities: comm}))
	require.NoError(t, b.SetAdvertisements(ctx, []Advertisement{{Prefix: pfx("10.244.2.0/26")}, {Prefix: pfx("10.244.9.0/24")}}))

	require.Eventually(t, func() bool { return fb.nextHops(pfx("10.244.1.0/26")) != nil }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, []string{"127.0.0.11"}, fb.nextHops(pfx("10.244.1.0/26")))
	require.Eventually(t, func() bool { return fa.len() == 2 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, []string{"127.0.0.12"}, fa.nextHops(pfx("10.244.9.0/24")))
	assert.Equal(t, 1.0, m.Peers.(*gauge).get())
	assert.Equal(t, 1.0, m.PeersEstablished.(*gauge).get())
	assert.Equal(t, 1.0, m.Advertised.(*gauge).get())
	assert.Equal(t, 2.0, m.Learned.(*gauge).get())

	why := a.Why(pfx("10.244.1.0/26"))
	assert.True(t, why.Advertised)
	assert.Equal(t, []string{DefaultSource}, why.Sources)
	assert.Equal(t, comm, why.Communities)
	why = a.Why(pfx("10.244.2.0/26"))
	assert.True(t, why.Learned)
	assert.Equal(t, "127.0.0.12", why.NextHops[0].String())

	// SetAdvertisements applies only the difference.
	require.NoError(t, b.SetAdvertisements(ctx, []Advertisement{{Prefix: pfx("10.244.2.0/26")}}))
	require.Eventually(t, func() bool { return fa.len() == 1 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, a.Withdraw(ctx, pfx("10.244.1.0/26")))
	require.Eventually(t, func() bool { return fb.len() == 0 }, 10*time.Second, 20*time.Millisecond)

	ps, err := a.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 1)
	assert.Equal(t, StateEstablished, ps[0].State)
	assert.Equal(t, uint64(1), ps[0].Received)

	// Session loss removes what the peer sent.
	b.Stop()
	require.Eventually(t, func() bool { return fa.len() == 0 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, 0.0, m.PeersEstablished.(*gauge).get())

	// The same speaker starts again with its peers and advertisements.
	require.NoError(t, b.Start(ctx))
	require.ErrorIs(t, b.Start(ctx), ErrAlreadyStarted)
	require.Eventually(t, func() bool { return fa.len() == 1 }, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, []string{"127.0.0.12"}, fa.nextHops(pfx("10.244.2.0/26")))
}

func TestStartFailsCleanly(t *testing.T) {
	// 192.0.2.0/24 is TEST-NET-1: no interface has it, so listening fails.
	s, err := New(Config{NodeIP: loopNode(1), ListenAddresses: []netip.Addr{netip.MustParseAddr("192.0.2.99")}, ListenPort: freePort(t)},
		WithLogger(testLogger(t)))
	require.NoError(t, err)
	require.Error(t, s.Start(context.Background()))
	s.Stop() // no-op
	_, err = s.Peers(context.Background())
	require.NoError(t, err)
}

// TestImportFilterAtRunTime: SetConfig with an import filter removes a
// learned route from the programmer and says why; removing the filter
// brings it back.
func TestImportFilterAtRunTime(t *testing.T) {
	port := freePort(t)
	var cfgA Config
	a, fa := startSpeaker(t, 1, port, func(c *Config) { cfgA = *c })
	b, _ := startSpeaker(t, 2, port, nil)
	ctx := context.Background()
	require.NoError(t, a.SetPeers(ctx, []Peer{{Name: "b", Address: loopNode(2), Port: port, ASNumber: DefaultASNumber}}))
	require.NoError(t, b.SetPeers(ctx, []Peer{{Name: "a", Address: loopNode(1), Port: port, ASNumber: DefaultASNumber, Passive: true}}))
	require.NoError(t, b.Advertise(ctx, Advertisement{Prefix: pfx("10.244.2.0/26")}, Advertisement{Prefix: pfx("10.99.0.0/24")}))
	require.Eventually(t, func() bool { return fa.len() == 2 }, 20*time.Second, 20*time.Millisecond)

	cfgA.Import = Filter{V4: []FilterRule{{Action: Reject, CIDR: pfx("10.99.0.0/16"), MatchOperator: In}}}
	require.NoError(t, a.SetConfig(ctx, cfgA))
	require.Eventually(t, func() bool { return fa.len() == 1 }, 10*time.Second, 20*time.Millisecond)
	assert.Contains(t, a.Why(pfx("10.99.0.0/24")).NotProgrammed, "import filter rule 0")

	cfgA.ASNumber = 65999
	require.ErrorIs(t, a.SetConfig(ctx, cfgA), ErrInvalidConfig, "AS cannot change while running")
	cfgA.ASNumber = 0
	cfgA.Import = Filter{}
	require.NoError(t, a.SetConfig(ctx, cfgA))
	require.Eventually(t, func() bool { return fa.len() == 2 }, 10*time.Second, 20*time.Millisecond)
}

// TestNilOptions: a nil Option and WithLogger(nil) are not a panic, in New
// or later on GoBGP's goroutines (its listener logs a warning at Start).
func TestNilOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"nil option", []Option{nil}},
		{"nil logger", []Option{WithLogger(nil)}},
		{"nil logger and programmer", []Option{WithLogger(nil), WithRouteProgrammer(nil, "", nil), nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{NodeName: "node-1", NodeIP: loopNode(1), ListenAddresses: []netip.Addr{loopNode(1)},
				ListenPort: freePort(t)}, tc.opts...)
			require.NoError(t, err)
			require.NoError(t, s.Start(context.Background()))
			require.NoError(t, s.Advertise(context.Background(), Advertisement{Prefix: pfx("10.244.1.0/26")}))
			s.Stop()
		})
	}
}
