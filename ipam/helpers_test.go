package ipam

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
)

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
	return newEnvOn(t, store.NewMemory())
}

func newEnvOn(t *testing.T, s store.Store) *env {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c := newClock()
	return &env{t: t, ctx: ctx, s: s, clock: c, ipam: New(s, WithClock(c.Now))}
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
