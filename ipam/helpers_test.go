package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/ipam/store/bboltstore"
	"github.com/tabbynet/tabby/ipam/store/etcdstore"
	"github.com/tabbynet/tabby/ipam/store/etcdstore/embedetcd"
)

// sharedEtcd is one embedded etcd for every test of the binary that
// needs one (started on first use, stopped by TestMain); each store gets
// its own key prefix.
var sharedEtcd struct {
	once sync.Once
	srv  *embedetcd.Server
	err  error
	n    atomic.Int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedEtcd.srv != nil {
		_ = sharedEtcd.srv.Close()
	}
	os.Exit(code)
}

// backend opens a fresh, empty store.
type backend struct {
	name string
	open func(tb testing.TB) store.Store
}

// backends are the three stores every allocation table test runs on.
func backends() []backend {
	return []backend{
		{"memory", func(tb testing.TB) store.Store { return newMemory(tb) }},
		{"bbolt", func(tb testing.TB) store.Store {
			s, err := bboltstore.Open(filepath.Join(tb.TempDir(), "ipam.db"), bboltstore.WithNoSync())
			require.NoError(tb, err)
			tb.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"etcd", func(tb testing.TB) store.Store {
			sharedEtcd.once.Do(func() {
				sharedEtcd.srv, sharedEtcd.err = embedetcd.Start(context.Background())
			})
			require.NoError(tb, sharedEtcd.err)
			c, err := sharedEtcd.srv.Client()
			require.NoError(tb, err)
			tb.Cleanup(func() { _ = c.Close() })
			s, err := etcdstore.New(c, etcdstore.WithPrefix(fmt.Sprintf("/test/%d/", sharedEtcd.n.Add(1))))
			require.NoError(tb, err)
			return s
		}},
	}
}

// onEveryBackend runs f as a subtest per backend, each with a fresh env.
func onEveryBackend(t *testing.T, f func(t *testing.T, e *env)) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) { f(t, newEnvOn(t, be.open(t))) })
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t     *testing.T
	ctx   context.Context
	s     store.Store
	clock *fakeClock
	ipam  *IPAM
}

func newEnv(t *testing.T) *env {
	return newEnvOn(t, newMemory(t))
}

func newEnvOn(t *testing.T, s store.Store) *env {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c := newClock()
	return &env{t: t, ctx: ctx, s: s, clock: c, ipam: mustNew(t, s, WithClock(c.Now))}
}

// newMemory is store.NewMemory for tests.
func newMemory(tb testing.TB) *store.Memory {
	tb.Helper()
	m, err := store.NewMemory()
	require.NoError(tb, err)
	return m
}

// mustNew is New for tests.
func mustNew(tb testing.TB, s store.Store, opts ...Option) *IPAM {
	tb.Helper()
	a, err := New(s, opts...)
	require.NoError(tb, err)
	return a
}

func (e *env) pool(name, cidr string, blockSize int, mods ...func(*IPPool)) IPPool {
	e.t.Helper()
	p := IPPool{Name: name, CIDR: netip.MustParsePrefix(cidr), BlockSize: blockSize}
	for _, m := range mods {
		m(&p)
	}
	p, err := e.ipam.CreatePool(e.ctx, p)
	require.NoError(e.t, err)
	return p
}

func (e *env) config(c IPAMConfig) {
	e.t.Helper()
	require.NoError(e.t, e.ipam.SetConfig(e.ctx, c))
}

func (e *env) assign4(handle, node string) (AssignedIP, error) {
	r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: handle, Node: node, Num4: 1})
	if err != nil {
		return AssignedIP{}, err
	}
	return r.IPv4[0], nil
}

func (e *env) mustAssign4(handle, node string) AssignedIP {
	e.t.Helper()
	ip, err := e.assign4(handle, node)
	require.NoError(e.t, err)
	return ip
}

// requireHolds asserts that handle holds n addresses.
func (e *env) requireHolds(handle string, n int) {
	e.t.Helper()
	got, err := e.ipam.IPsByHandle(e.ctx, handle)
	require.NoError(e.t, err)
	require.Len(e.t, got, n, "%s holds %v", handle, got)
}

// releaseAndCheck releases handle (a CNI DEL) and asserts Check is clean.
func (e *env) releaseAndCheck(handle string) {
	e.t.Helper()
	_, err := e.ipam.ReleaseByHandle(e.ctx, handle)
	require.NoError(e.t, err)
	e.checkClean()
}

// checkClean asserts that Check finds nothing wrong.
func (e *env) checkClean() CheckReport {
	e.t.Helper()
	r, err := e.ipam.Check(e.ctx, CheckOptions{})
	require.NoError(e.t, err)
	require.True(e.t, r.OK(), "check: %s", r)
	return r
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
