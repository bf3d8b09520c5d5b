package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink"
)

// fakeProgrammer records learned routes per source, like RouteOwner's
// desired state.
type fakeProgrammer struct {
	mu     sync.Mutex
	routes map[netip.Prefix]netlink.Route
	syncs  int
}

var _ RouteProgrammer = (*fakeProgrammer)(nil)
var _ RouteProgrammer = (*netlink.RouteOwner)(nil)

func newFakeProgrammer() *fakeProgrammer {
	return &fakeProgrammer{routes: map[netip.Prefix]netlink.Route{}}
}

func (f *fakeProgrammer) Upsert(source string, routes ...netlink.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range routes {
		if err := r.Validate(); err != nil {
			return err
		}
		f.routes[r.Dst] = r
	}
	return nil
}

func (f *fakeProgrammer) Remove(source string, keys ...netlink.RouteKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		delete(f.routes, k.Dst)
	}
}

func (f *fakeProgrammer) sync(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	return nil
}

// nextHops returns the gateways programmed for p, sorted; nil if none.
func (f *fakeProgrammer) nextHops(p netip.Prefix) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.routes[p]
	if !ok {
		return nil
	}
	var out []string
	for _, nh := range r.NextHops {
		out = append(out, nh.Gateway.String())
	}
	slices.Sort(out)
	return out
}

func (f *fakeProgrammer) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.routes)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TABBY_BGP_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// freePort finds a TCP port free on every loopback test address.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// loopNode is the i-th in-process test node: 127.0.0.(10+i).
func loopNode(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)}) }

// startSpeaker starts a speaker on loopNode(i):port with a fake programmer.
func startSpeaker(t testing.TB, i, port int, mod func(*Config), opts ...Option) (*Speaker, *fakeProgrammer) {
	t.Helper()
	fp := newFakeProgrammer()
	cfg := Config{NodeName: fmt.Sprintf("node-%d", i), NodeIP: loopNode(i), ListenAddresses: []netip.Addr{loopNode(i)},
		ListenPort: port, StartupSyncTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, append([]Option{WithLogger(testLogger(t)), WithRouteProgrammer(fp, "", fp.sync)}, opts...)...)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(s.Stop)
	return s, fp
}

func waitEstablished(t testing.TB, s *Speaker, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		ps, err := s.Peers(context.Background())
		if err != nil {
			return false
		}
		up := 0
		for _, p := range ps {
			if p.State == StateEstablished {
				up++
			}
		}
		return up == n
	}, 30*time.Second, 50*time.Millisecond, "want %d established sessions", n)
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// gauge is a Gauge for tests.
type gauge struct {
	mu sync.Mutex
	v  float64
}

func (g *gauge) Set(v float64) { g.mu.Lock(); g.v = v; g.mu.Unlock() }

func (g *gauge) get() float64 { g.mu.Lock(); defer g.mu.Unlock(); return g.v }

// gatedProgrammer is a fakeProgrammer whose sync function, once armed,
// blocks until the gate opens: a slow kernel write. It counts how many of
// its methods run at once.
type gatedProgrammer struct {
	*fakeProgrammer
	armed    atomic.Bool
	entered  chan struct{} // one value each time sync blocks (dropped if full)
	gate     chan struct{} // closed by open
	openOnce sync.Once

	inFlight, maxInFlight atomic.Int32
}

// newGatedProgrammer returns an unarmed programmer. Tests open its gate
// in a cleanup registered after the speaker's Stop (cleanups run last
// first), so nothing blocked on it outlives the test.
func newGatedProgrammer() *gatedProgrammer {
	return &gatedProgrammer{fakeProgrammer: newFakeProgrammer(), entered: make(chan struct{}, 1), gate: make(chan struct{})}
}

func (g *gatedProgrammer) open() { g.openOnce.Do(func() { close(g.gate) }) }

func (g *gatedProgrammer) enter() func() {
	n := g.inFlight.Add(1)
	for m := g.maxInFlight.Load(); n > m && !g.maxInFlight.CompareAndSwap(m, n); m = g.maxInFlight.Load() {
	}
	return func() { g.inFlight.Add(-1) }
}

func (g *gatedProgrammer) Upsert(source string, routes ...netlink.Route) error {
	defer g.enter()()
	return g.fakeProgrammer.Upsert(source, routes...)
}

func (g *gatedProgrammer) Remove(source string, keys ...netlink.RouteKey) {
	defer g.enter()()
	g.fakeProgrammer.Remove(source, keys...)
}

func (g *gatedProgrammer) sync(ctx context.Context) error {
	defer g.enter()()
	if g.armed.Load() {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		<-g.gate // ignores ctx, as a kernel write in progress would
	}
	return g.fakeProgrammer.sync(ctx)
}

// waitEntered waits (at most 20 s) until the programmer's sync blocks.
func (g *gatedProgrammer) waitEntered(t testing.TB) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(20 * time.Second):
		require.FailNow(t, "the route programmer's sync was never called")
	}
}

// goDone runs f in a goroutine and returns a channel closed when it returns.
func goDone(f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	return done
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// prefixes returns the programmed prefixes, sorted.
func (f *fakeProgrammer) prefixes() []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Collect(maps.Keys(f.routes))
	slices.SortFunc(out, comparePrefixes)
	return out
}
