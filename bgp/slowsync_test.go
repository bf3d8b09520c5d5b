package bgp

import (
	"context"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSlowKernelSync: while the route programmer's sync is stuck in a slow
// kernel write, Synced, Why, Learned and GoBGP's event handler still
// answer, and once the write finishes the programmer ends with what the
// RIB holds last, not what it held when the write began.
func TestSlowKernelSync(t *testing.T) {
	gp := newGatedProgrammer()
	port := freePort(t)
	a, _ := startSpeaker(t, 1, port, nil, WithRouteProgrammer(gp, "", gp.sync))
	t.Cleanup(gp.open)
	b, _ := startSpeaker(t, 2, port, nil)
	ctx := context.Background()
	require.NoError(t, a.SetPeers(ctx, []Peer{{Name: "b", Address: loopNode(2), Port: port, ASNumber: DefaultASNumber}}))
	require.NoError(t, b.SetPeers(ctx, []Peer{{Name: "a", Address: loopNode(1), Port: port, ASNumber: DefaultASNumber, Passive: true}}))
	require.NoError(t, b.SetAdvertisements(ctx, []Advertisement{{Prefix: pfx("10.244.2.0/26")}, {Prefix: pfx("10.244.3.0/26")}}))
	require.Eventually(t, func() bool { return gp.len() == 2 }, 20*time.Second, 20*time.Millisecond)

	// The next change blocks in the programmer's sync.
	gp.armed.Store(true)
	require.NoError(t, b.SetAdvertisements(ctx, []Advertisement{{Prefix: pfx("10.244.3.0/26")}, {Prefix: pfx("10.244.4.0/26")}}))
	gp.waitEntered(t)

	answered := goDone(func() {
		<-a.Synced()
		_ = a.Why(pfx("10.244.3.0/26"))
		_ = a.Learned()
		// A session event as GoBGP's watch delivers it.
		a.onEvent(&api.WatchEventResponse{Event: &api.WatchEventResponse_Peer{Peer: &api.WatchEventResponse_PeerEvent{
			Type: api.WatchEventResponse_PeerEvent_STATE,
			Peer: &api.Peer{State: &api.PeerState{NeighborAddress: loopNode(2).String(), SessionState: api.PeerState_ESTABLISHED}},
		}}})
	})
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "Synced, Why, Learned or the event handler blocked behind the programmer's sync")
	}

	// The RIB moves on while the write is stuck.
	require.NoError(t, b.SetAdvertisements(ctx, []Advertisement{{Prefix: pfx("10.244.4.0/26")}, {Prefix: pfx("10.244.5.0/26")}}))
	gp.armed.Store(false)
	gp.open()
	want := []string{"10.244.4.0/26", "10.244.5.0/26"}
	require.Eventually(t, func() bool {
		var got []string
		for _, r := range a.Learned() {
			got = append(got, r.Prefix.String())
		}
		return assert.ObjectsAreEqual(want, got) && gp.len() == 2 &&
			gp.nextHops(pfx("10.244.4.0/26")) != nil && gp.nextHops(pfx("10.244.5.0/26")) != nil
	}, 20*time.Second, 20*time.Millisecond, "programmer: %v", gp.prefixes())
	assert.LessOrEqual(t, gp.maxInFlight.Load(), int32(1), "programmer calls at once")
}
