package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	tabbyASN = 64512
	birdASN  = 65001
)

func birdStatic(v4, v6 string) string {
	return "protocol static s4 { ipv4; route " + v4 + " blackhole; }\nprotocol static s6 { ipv6; route " + v6 + " blackhole; }"
}

// TestBIRDInterop: sessions establish over v4 and v6; tabby's prefixes reach
// BIRD with next hop and communities; BIRD's prefixes become kernel routes
// (one ECMP route when both BIRDs announce the same prefix); withdraws and
// session loss remove them; a restarted peer restores them.
func TestBIRDInterop(t *testing.T) {
	b1, b2, s := twoBIRDs(t, birdASN)
	ctx := context.Background()
	require.NoError(t, s.Advertise(ctx,
		Advertisement{Prefix: pfx("10.244.7.0/26"), Communities: []Community{{A: 64512, B: 100}, {Large: true, A: 64512, B: 7, C: 9}}},
		Advertisement{Prefix: pfx("fd00:244:7::/122"), Communities: []Community{{A: 64512, B: 200}}}))
	require.NoError(t, s.Start(ctx))
	t.Cleanup(s.Stop)

	require.Eventually(t, func() bool {
		return b1.established("tabby4") && b1.established("tabby6") && b2.established("tabby4") && b2.established("tabby6")
	}, 30*time.Second, 100*time.Millisecond, "BIRD sessions")

	// tabby -> BIRD, with next hop self and communities.
	require.Eventually(t, func() bool { return b1.route("10.244.7.0/26") != "" && b1.route("fd00:244:7::/122") != "" }, 15*time.Second, 100*time.Millisecond)
	r4 := b1.route("10.244.7.0/26")
	assert.Contains(t, r4, "via 10.123.1.1")
	assert.Contains(t, r4, "(64512,100)")
	assert.Contains(t, r4, "(64512, 7, 9)")
	r6 := b1.route("fd00:244:7::/122")
	assert.Contains(t, r6, "via fd00:123:1::1")
	assert.Contains(t, r6, "(64512,200)")
	assert.Contains(t, b2.route("10.244.7.0/26"), "via 10.123.2.1")

	// BIRD -> kernel, ECMP across the two BIRDs.
	require.Eventually(t, func() bool {
		k := kernelRoute(t, "10.55.0.0/24")
		return strings.Contains(k, "nexthop via 10.123.1.2") && strings.Contains(k, "nexthop via 10.123.2.2")
	}, 15*time.Second, 100*time.Millisecond, "ECMP route: %s", kernelRoute(t, "10.55.0.0/24"))
	require.Eventually(t, func() bool {
		k := kernelRoute(t, "fd55::/64")
		return strings.Contains(k, "fd00:123:1::2") && strings.Contains(k, "fd00:123:2::2")
	}, 15*time.Second, 100*time.Millisecond, "v6 ECMP route: %s", kernelRoute(t, "fd55::/64"))
	assert.Contains(t, kernelRoute(t, "10.66.1.0/24"), "via 10.123.1.2")

	// Withdraw on the tabby side.
	require.NoError(t, s.Withdraw(ctx, pfx("10.244.7.0/26")))
	require.Eventually(t, func() bool { return b1.route("10.244.7.0/26") == "" }, 15*time.Second, 100*time.Millisecond)

	// Withdraw on the BIRD side: disable the static protocol.
	_, err := b1.birdc("disable", "only1")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return kernelRoute(t, "10.66.1.0/24") == "" }, 15*time.Second, 100*time.Millisecond)
	_, err = b1.birdc("enable", "only1")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return kernelRoute(t, "10.66.1.0/24") != "" }, 15*time.Second, 100*time.Millisecond)

	// Session loss (BIRD shuts the sessions down with a Cease): the ECMP
	// route shrinks to the remaining BIRD and b1's own prefix goes.
	_, err = b1.birdc("disable", "tabby4")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		k := kernelRoute(t, "10.55.0.0/24")
		return k != "" && !strings.Contains(k, "10.123.1.2") && strings.Contains(k, "via 10.123.2.2")
	}, 15*time.Second, 100*time.Millisecond, "route after session loss: %s", kernelRoute(t, "10.55.0.0/24"))
	require.Eventually(t, func() bool { return kernelRoute(t, "10.66.1.0/24") == "" }, 15*time.Second, 100*time.Millisecond)

	// Peer restart restores them.
	_, err = b1.birdc("enable", "tabby4")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		k := kernelRoute(t, "10.55.0.0/24")
		return strings.Contains(k, "10.123.1.2") && strings.Contains(k, "10.123.2.2") && kernelRoute(t, "10.66.1.0/24") != ""
	}, 30*time.Second, 100*time.Millisecond)

	ps, err := s.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 4)
	for _, p := range ps {
		assert.Equal(t, StateEstablished, p.State, p.Name)
	}
	why := s.Why(pfx("10.55.0.0/24"))
	assert.True(t, why.Learned)
	assert.Len(t, why.NextHops, 2)
}

// TestRestartKeepsKernelRoutes: a speaker (and its RouteOwner) go away as
// in a process restart; the kernel keeps the learned routes meanwhile, the
// new speaker advertises at once (no restart-timer deferral) and, after its
// startup sync, reconciles: still-announced routes stay without a gap, a
// route no longer announced is removed.
func TestRestartKeepsKernelRoutes(t *testing.T) {
	requireBIRD(t)
	b := newBIRD(t, 3, birdASN)
	b.static = []string{birdStatic("10.55.0.0/24", "fd55::/64") + "\nprotocol static gone { ipv4; route 10.66.3.0/24 blackhole; }"}
	b.start(tabbyASN)
	ctx := context.Background()

	s1, _ := kernelSpeaker(t, tabbyASN, b)
	require.NoError(t, s1.Advertise(ctx, Advertisement{Prefix: pfx("10.244.7.0/26")}))
	require.NoError(t, s1.Start(ctx))
	require.Eventually(t, func() bool {
		return kernelRoute(t, "10.55.0.0/24") != "" && kernelRoute(t, "10.66.3.0/24") != "" && b.route("10.244.7.0/26") != ""
	}, 30*time.Second, 100*time.Millisecond)
	s1.Stop()
	_, err := b.birdc("disable", "gone")
	require.NoError(t, err)

	// The "process" is gone: its routes are still in the kernel.
	assert.Contains(t, kernelRoute(t, "10.55.0.0/24"), "via 10.123.3.2")
	assert.NotEmpty(t, kernelRoute(t, "10.66.3.0/24"))

	s2, _ := kernelSpeaker(t, tabbyASN, b)
	require.NoError(t, s2.Advertise(ctx, Advertisement{Prefix: pfx("10.244.7.0/26")}))
	start := time.Now()
	require.NoError(t, s2.Start(ctx))
	t.Cleanup(s2.Stop)
	synced := false
	for !synced {
		require.Contains(t, kernelRoute(t, "10.55.0.0/24"), "via 10.123.3.2", "learned route missing during restart")
		select {
		case <-s2.Synced():
			synced = true
		case <-time.After(20 * time.Millisecond):
		}
		require.Less(t, time.Since(start), 20*time.Second, "startup sync")
	}
	require.Eventually(t, func() bool { return kernelRoute(t, "10.66.3.0/24") == "" }, 10*time.Second, 50*time.Millisecond,
		"route no longer announced is reconciled away")
	assert.Contains(t, kernelRoute(t, "10.55.0.0/24"), "via 10.123.3.2")
	require.Eventually(t, func() bool { return b.route("10.244.7.0/26") != "" }, 20*time.Second, 100*time.Millisecond)
	t.Logf("BIRD had the prefix again %s after Start (graceful-restart time %s)", time.Since(start).Round(time.Millisecond), DefaultRestartTime)
}

// TestBIRDGracefulRestartHelper: BIRD (graceful restart on) dies without a
// Cease; tabby keeps its routes in the kernel as stale meanwhile and
// refreshes them when BIRD is back, without a gap.
func TestBIRDGracefulRestartHelper(t *testing.T) {
	requireBIRD(t)
	if raceEnabled {
		// Two data races inside GoBGP v3.37.0, both between ListPath,
		// which converts RIB paths outside GoBGP's management loop
		// (grpc_server.go toPathAPI), and code that mutates what stale
		// paths point to: (1) on session loss, adj.go StaleAll marks the
		// paths stale by writing the shared origin info of paths already
		// in the RIB (with v4 and v6 sessions dropping together, tabby's
		// read for the first overlaps the marking for the second); (2) on
		// reconnection, fsm.go opensent rewrites the peer's PeerInfo (AS,
		// ID), which the stale paths still in the RIB use as their source.
		// Running only one session avoids (1) but not (2). Both are
		// unordered plain-field accesses inside GoBGP that no caller can
		// order (the class of osrg/gobgp#2705, open), so the test runs
		// without -race only.
		t.Skip("GoBGP races between ListPath and graceful-restart stale marking / peer reconnection; run without -race")
	}
	b := newBIRD(t, 4, birdASN)
	b.static = []string{birdStatic("10.55.0.0/24", "fd55::/64")}
	b.start(tabbyASN)
	s, _ := kernelSpeaker(t, tabbyASN, b)
	ctx := context.Background()
	require.NoError(t, s.Start(ctx))
	t.Cleanup(s.Stop)
	require.Eventually(t, func() bool { return kernelRoute(t, "10.55.0.0/24") != "" && kernelRoute(t, "fd55::/64") != "" },
		30*time.Second, 100*time.Millisecond)

	b.kill()
	require.Eventually(t, func() bool {
		ps, err := s.Peers(ctx)
		return err == nil && ps[0].State != StateEstablished
	}, 10*time.Second, 50*time.Millisecond, "tabby notices the session is gone")
	for range 20 { // 2 s of BIRD being away
		require.Contains(t, kernelRoute(t, "10.55.0.0/24"), "via 10.123.4.2", "stale route kept during peer restart")
		require.Contains(t, kernelRoute(t, "fd55::/64"), "via fd00:123:4::2")
		time.Sleep(100 * time.Millisecond)
	}
	b.start(tabbyASN)
	require.Eventually(t, func() bool { return b.established("tabby4") && b.established("tabby6") }, 30*time.Second, 100*time.Millisecond)
	for range 20 {
		require.Contains(t, kernelRoute(t, "10.55.0.0/24"), "via 10.123.4.2", "route kept after the peer is back")
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBIRDPassword: a TCP MD5 session (BGPPeer.password) with BIRD comes up
// and carries routes; changing the password at run time drops it.
func TestBIRDPassword(t *testing.T) {
	requireBIRD(t)
	b := newBIRD(t, 5, birdASN)
	b.passwd = "s3cret"
	b.static = []string{birdStatic("10.55.0.0/24", "fd55::/64")}
	b.start(tabbyASN)
	s, err := New(Config{NodeIP: b.local4(), ListenAddresses: []netip.Addr{b.local4()}}, WithLogger(testLogger(t)))
	require.NoError(t, err)
	ctx := context.Background()
	peer := Peer{Name: "bird", Address: b.addr4(), ASNumber: birdASN, Password: "s3cret"}
	require.NoError(t, s.SetPeers(ctx, []Peer{peer}))
	require.NoError(t, s.Start(ctx))
	t.Cleanup(s.Stop)
	require.Eventually(t, func() bool { return b.established("tabby4") }, 30*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool { return len(s.Learned()) == 1 }, 10*time.Second, 50*time.Millisecond)

	peer.Password = "wrong"
	require.NoError(t, s.SetPeers(ctx, []Peer{peer}))
	require.Eventually(t, func() bool { return !b.established("tabby4") }, 10*time.Second, 100*time.Millisecond)
	time.Sleep(3 * time.Second)
	assert.False(t, b.established("tabby4"), "a wrong MD5 password never establishes")
}

// helperSpeakerEnv makes TestHelperSpeakerProcess run a speaker: it holds
// "nodeIP birdIP prefix".
const helperSpeakerEnv = "TABBY_BGP_HELPER_SPEAKER"

// TestHelperSpeakerProcess is not a test: TestBIRDProcessRestart runs the
// test binary with helperSpeakerEnv set to get a speaker in a process of
// its own, which it then kills.
func TestHelperSpeakerProcess(t *testing.T) {
	args := strings.Fields(os.Getenv(helperSpeakerEnv))
	if len(args) != 3 {
		t.Skip("helper process for TestBIRDProcessRestart")
	}
	node, bird, prefix := netip.MustParseAddr(args[0]), netip.MustParseAddr(args[1]), netip.MustParsePrefix(args[2])
	s, err := New(Config{NodeIP: node, ListenAddresses: []netip.Addr{node}}, WithLogger(testLogger(t)))
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.SetPeers(ctx, []Peer{{Name: "bird", Address: bird, ASNumber: birdASN}}))
	require.NoError(t, s.Advertise(ctx, Advertisement{Prefix: prefix}))
	require.NoError(t, s.Start(ctx))
	select {} // until killed
}

// TestBIRDProcessRestart: the process embedding the speaker dies (no
// Cease: a crash, or exiting without Stop on a rolling update). BIRD, as
// graceful-restart helper, keeps the node's prefix meanwhile; when the new
// process's session comes up BIRD drops it and the first UPDATE, right
// behind, brings it back.
func TestBIRDProcessRestart(t *testing.T) {
	requireBIRD(t)
	b := newBIRD(t, 6, birdASN)
	b.start(tabbyASN)
	const prefix = "10.244.6.0/26"
	run := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSpeakerProcess$", "-test.v")
		cmd.Env = append(os.Environ(), helperSpeakerEnv+"="+b.local4().String()+" "+b.addr4().String()+" "+prefix)
		cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	child := run()
	require.Eventually(t, func() bool { return b.route(prefix) != "" }, 30*time.Second, 100*time.Millisecond)
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()
	require.Eventually(t, func() bool { return !b.established("tabby4") }, 10*time.Second, 50*time.Millisecond)
	for range 20 { // 2 s without a speaker
		require.NotEmpty(t, b.route(prefix), "BIRD keeps the prefix while the speaker restarts")
		time.Sleep(100 * time.Millisecond)
	}
	run()
	start := time.Now()
	require.Eventually(t, func() bool { return b.established("tabby4") }, 30*time.Second, 100*time.Millisecond)
	// The new OPEN does not set the forwarding-state bit, so BIRD drops the
	// stale prefix as the session comes up (RFC 4724 4.2) and learns it
	// again from the first UPDATE, sent right after: a gap of a few
	// milliseconds, which a poll sometimes sees.
	require.Eventually(t, func() bool { return b.route(prefix) != "" }, 10*time.Second, 10*time.Millisecond,
		"the new process re-sends the prefix")
	for range 20 {
		require.NotEmpty(t, b.route(prefix), "and after it is back")
		time.Sleep(100 * time.Millisecond)
	}
	out, _ := b.birdc("show", "route", prefix, "all")
	assert.NotContains(t, out, "stale", "refreshed by the new process")
	t.Logf("session back %s after the new process started", time.Since(start).Round(time.Millisecond))
}

// TestStopWhileReceiving: Stop while a peer is sending UPDATEs. GoBGP's
// StopBgp zeroes the global configuration while a session's receive loop
// still reads it for each UPDATE (a data race under -race); Stop ends the
// sessions first.
func TestStopWhileReceiving(t *testing.T) {
	requireBIRD(t)
	b := newBIRD(t, 7, birdASN)
	var routes strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&routes, "route 10.77.%d.%d/32 blackhole; ", i/250, i%250)
	}
	b.static = []string{"protocol static flap { ipv4; " + routes.String() + "}"}
	b.start(tabbyASN)
	for range 5 {
		s, _ := kernelSpeaker(t, tabbyASN, b)
		require.NoError(t, s.Start(context.Background()))
		require.Eventually(t, func() bool { return b.established("tabby4") }, 30*time.Second, 50*time.Millisecond)
		_, err := b.birdc("disable", "flap")
		require.NoError(t, err)
		_, err = b.birdc("enable", "flap")
		require.NoError(t, err)
		s.Stop()
		require.Eventually(t, func() bool { return !b.established("tabby4") }, 10*time.Second, 50*time.Millisecond)
	}
}
