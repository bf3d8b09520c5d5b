package services_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// freePort is a TCP port on 127.0.0.1 nothing listened on a moment ago.
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

type healthAnswer struct {
	Status int
	Body   map[string]any
}

// get fetches http://127.0.0.1:port/path with dial (nil: the default).
func get(port uint16, path string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (healthAnswer, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return healthAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return healthAnswer{}, err
	}
	a := healthAnswer{Status: resp.StatusCode}
	if err := json.Unmarshal(b, &a.Body); err != nil {
		return a, fmt.Errorf("body %q: %w", b, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return a, fmt.Errorf("content type %q", ct)
	}
	return a, nil
}

func mustGet(t *testing.T, port uint16, path string) healthAnswer {
	t.Helper()
	a, err := get(port, path, nil)
	require.NoError(t, err)
	return a
}

func serviceAnswer(status int, ns, name string, local int, healthy bool) healthAnswer {
	return healthAnswer{Status: status, Body: map[string]any{
		"service":        map[string]any{"namespace": ns, "name": name},
		"localEndpoints": float64(local), "serviceProxyHealthy": healthy,
	}}
}

// healthEnv is a Tracker feeding a running HealthServer on 127.0.0.1,
// with a fake clock.
type healthEnv struct {
	tr      *services.Tracker
	hs      *services.HealthServer
	clk     *clocktesting.FakeClock
	healthz uint16
}

const healthRetry = time.Second

func newHealthEnv(t *testing.T, cfg services.HealthConfig) *healthEnv {
	t.Helper()
	e := &healthEnv{clk: clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	if !cfg.BindAddress.IsValid() {
		cfg.BindAddress = netip.MustParseAddr("127.0.0.1")
	}
	if cfg.HealthzAddress == "" {
		e.healthz = freePort(t)
		cfg.HealthzAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(e.healthz)))
	}
	cfg.Clock, cfg.RetryInterval = e.clk, healthRetry
	e.hs = services.NewHealthServer(cfg, nil)
	e.tr = services.NewTracker(services.TrackerConfig{NodeName: "node-a", OnChange: e.hs.QueuedUpdate}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.hs.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return e
}

// sync hands the tracker's changes to the health server, as a backend's
// successful Sync does.
func (e *healthEnv) sync() {
	e.hs.Update(e.tr.Changes())
	e.hs.Updated()
}

func refused(t *testing.T, port uint16) {
	t.Helper()
	_, err := get(port, "/", nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
}

func TestHealthServerServices(t *testing.T) {
	twoPorts := []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}, {Name: "dns", Proto: v1.ProtocolUDP, Port: 5353}}
	local := func(ip string) st.Endpoint { return st.Endpoint{IP: ip, Node: "node-a"} }
	remote := func(ip string) st.Endpoint { return st.Endpoint{IP: ip, Node: "node-b"} }
	tests := []struct {
		name      string
		twoPorts  bool
		eps       []st.Endpoint
		wantCode  int
		wantLocal int
	}{
		{"ready local endpoints", false, []st.Endpoint{local("10.244.1.1"), local("10.244.1.2"), remote("10.244.2.1")}, 200, 2},
		{"only remote endpoints", false, []st.Endpoint{remote("10.244.2.1")}, 503, 0},
		{"no endpoints", false, nil, 503, 0},
		{"terminating local endpoint does not count", false, []st.Endpoint{{IP: "10.244.1.1", Node: "node-a", Terminating: true}, remote("10.244.2.1")}, 503, 0},
		{"not ready local endpoint does not count", false, []st.Endpoint{{IP: "10.244.1.1", Node: "node-a", NotReady: true}}, 503, 0},
		{"one local endpoint with two ports counts once (distinct IPs, as kube-proxy)", true, []st.Endpoint{local("10.244.1.1")}, 200, 1},
		{"two local endpoints with two ports count twice", true, []st.Endpoint{local("10.244.1.1"), local("10.244.1.2")}, 200, 2},
		{"a local endpoint of a family the Service lacks does not count", false, []st.Endpoint{local("fd00:244::1")}, 503, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newHealthEnv(t, services.HealthConfig{})
			hp := freePort(t)
			mods := []func(*v1.Service){st.Port("http", v1.ProtocolTCP, 80, 30080), st.LocalHealthCheck(int32(hp))}
			ports := tcp80
			if tc.twoPorts {
				mods = append(mods, st.Port("dns", v1.ProtocolUDP, 53, 30053))
				ports = twoPorts
			}
			e.tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.10", mods...))
			slice := st.Slice("default", "web", "web-1", ports, tc.eps...)
			if len(tc.eps) > 0 && netip.MustParseAddr(tc.eps[0].IP).Is6() {
				slice.AddressType = discovery.AddressTypeIPv6
			}
			e.tr.OnEndpointSliceUpdate(slice)
			e.sync()
			require.Eventually(t, func() bool { _, err := get(hp, "/", nil); return err == nil }, 5*time.Second, 10*time.Millisecond)
			assert.Equal(t, serviceAnswer(tc.wantCode, "default", "web", tc.wantLocal, true), mustGet(t, hp, "/"))
		})
	}
}

func TestHealthServerLifecycle(t *testing.T) {
	e := newHealthEnv(t, services.HealthConfig{})
	require.Eventually(t, func() bool { _, err := get(e.healthz, "/healthz", nil); return err == nil }, 5*time.Second, 10*time.Millisecond)
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)
	lb := func(hp uint16, etp v1.ServiceExternalTrafficPolicy) *v1.Service {
		return st.Service("default", "web", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 30080), st.LocalHealthCheck(int32(hp)),
			func(s *v1.Service) { s.Spec.ExternalTrafficPolicy = etp })
	}
	e.tr.OnServiceUpdate(lb(p1, v1.ServiceExternalTrafficPolicyLocal))
	e.tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", tcp80, st.Endpoint{IP: "10.244.1.1", Node: "node-a"}))
	// A Cluster-policy Service gets no listener.
	e.tr.OnServiceUpdate(st.Service("default", "cluster", "10.96.0.11", st.Port("http", v1.ProtocolTCP, 80, 30081)))
	e.sync()
	assert.Equal(t, serviceAnswer(200, "default", "web", 1, true), mustGet(t, p1, "/"))

	// The port moves: the old listener closes, the new one opens.
	e.tr.OnServiceUpdate(lb(p2, v1.ServiceExternalTrafficPolicyLocal))
	e.sync()
	refused(t, p1)
	assert.Equal(t, serviceAnswer(200, "default", "web", 1, true), mustGet(t, p2, "/"))

	// The last local endpoint goes: 503.
	e.tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", tcp80, st.Endpoint{IP: "10.244.2.1", Node: "node-b"}))
	e.sync()
	assert.Equal(t, serviceAnswer(503, "default", "web", 0, true), mustGet(t, p2, "/"))

	// A second Service asking for the same port: the first by name keeps it.
	e.tr.OnServiceUpdate(st.Service("default", "zzz", "10.96.0.12", st.Port("http", v1.ProtocolTCP, 80, 30082), st.LocalHealthCheck(int32(p2))))
	e.tr.OnServiceUpdate(st.Service("default", "other", "10.96.0.13", st.Port("http", v1.ProtocolTCP, 80, 30083), st.LocalHealthCheck(int32(p3))))
	e.sync()
	assert.Equal(t, serviceAnswer(503, "default", "web", 0, true), mustGet(t, p2, "/"))
	assert.Equal(t, serviceAnswer(503, "default", "other", 0, true), mustGet(t, p3, "/"))

	// Cluster policy: no health check; the port passes to zzz.
	e.tr.OnServiceUpdate(lb(p2, v1.ServiceExternalTrafficPolicyCluster))
	e.sync()
	assert.Equal(t, serviceAnswer(503, "default", "zzz", 0, true), mustGet(t, p2, "/"))

	// Deleted Services close their listeners.
	for _, n := range []string{"zzz", "other"} {
		e.tr.OnServiceDelete(st.Service("default", n, ""))
	}
	e.sync()
	refused(t, p2)
	refused(t, p3)
	assert.Empty(t, e.hs.ListenErrors())
}

// TestHealthServerBindFailure: a port that is taken is logged and
// retried; the other listeners work meanwhile.
func TestHealthServerBindFailure(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	pTaken, pFree := uint16(taken.Addr().(*net.TCPAddr).Port), freePort(t)

	e := newHealthEnv(t, services.HealthConfig{})
	require.Eventually(t, func() bool { _, err := get(e.healthz, "/healthz", nil); return err == nil }, 5*time.Second, 10*time.Millisecond)
	for i, p := range []uint16{pTaken, pFree} {
		name := fmt.Sprintf("svc-%d", i)
		e.tr.OnServiceUpdate(st.Service("default", name, fmt.Sprintf("10.96.0.%d", 10+i), st.Port("http", v1.ProtocolTCP, 80, int32(30080+i)), st.LocalHealthCheck(int32(p))))
		e.tr.OnEndpointSliceUpdate(st.Slice("default", name, name+"-1", tcp80, st.Endpoint{IP: fmt.Sprintf("10.244.1.%d", i+1), Node: "node-a"}))
	}
	e.sync()
	assert.Equal(t, serviceAnswer(200, "default", "svc-1", 1, true), mustGet(t, pFree, "/"))
	errs := e.hs.ListenErrors()
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[pTaken], services.ErrHealthListen)

	require.NoError(t, taken.Close())
	e.clk.Step(healthRetry)
	require.Eventually(t, func() bool { _, err := get(pTaken, "/", nil); return err == nil }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, serviceAnswer(200, "default", "svc-0", 1, true), mustGet(t, pTaken, "/"))
	assert.Empty(t, e.hs.ListenErrors())
}

func TestHealthServerHealthz(t *testing.T) {
	e := newHealthEnv(t, services.HealthConfig{HealthTimeout: time.Minute})
	require.Eventually(t, func() bool { _, err := get(e.healthz, "/healthz", nil); return err == nil }, 5*time.Second, 10*time.Millisecond)
	t0 := e.clk.Now()
	ts := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	// Starting up: healthy, never synced.
	assert.Equal(t, healthAnswer{200, map[string]any{"lastUpdated": ts(time.Time{}), "currentTime": ts(t0)}}, mustGet(t, e.healthz, "/healthz"))

	hp := freePort(t)
	e.tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 30080), st.LocalHealthCheck(int32(hp))))
	e.tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", tcp80, st.Endpoint{IP: "10.244.1.1", Node: "node-a"}))
	e.sync()
	assert.Equal(t, healthAnswer{200, map[string]any{"lastUpdated": ts(t0), "currentTime": ts(t0)}}, mustGet(t, e.healthz, "/healthz"))

	// A change waits for a sync: healthy within the timeout, not after.
	e.tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", tcp80, st.Endpoint{IP: "10.244.1.2", Node: "node-a"}))
	e.clk.Step(59 * time.Second)
	assert.Equal(t, 200, mustGet(t, e.healthz, "/healthz").Status)
	e.clk.Step(time.Second)
	t1 := e.clk.Now()
	assert.Equal(t, healthAnswer{503, map[string]any{"lastUpdated": ts(t0), "currentTime": ts(t1)}}, mustGet(t, e.healthz, "/healthz"))
	// The service check follows the proxy's health.
	assert.Equal(t, serviceAnswer(503, "default", "web", 1, false), mustGet(t, hp, "/"))

	e.sync()
	assert.Equal(t, healthAnswer{200, map[string]any{"lastUpdated": ts(t1), "currentTime": ts(t1)}}, mustGet(t, e.healthz, "/healthz"))
	assert.Equal(t, serviceAnswer(200, "default", "web", 1, true), mustGet(t, hp, "/"))
}

// TestHealthServerInNetns: the listeners open in a network namespace
// (through HealthConfig.Listen) and answer there, on the bind address.
func TestHealthServerInNetns(t *testing.T) {
	ns := nettest.NewNetns(t, "svchealth") // skips unless root
	inNS := func(f func() error) {
		require.NoError(t, ns.Do(f))
	}
	listen := func(network, addr string) (ln net.Listener, err error) {
		inNS(func() error { ln, err = net.Listen(network, addr); return nil })
		return ln, err
	}
	dial := func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		inNS(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return nil })
		return c, err
	}
	// Ports chosen inside the namespace, where nothing listens.
	hp, hz := uint16(31000), uint16(10256)
	e := newHealthEnv(t, services.HealthConfig{Listen: listen, HealthzAddress: "127.0.0.1:10256"})
	e.tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 30080), st.LocalHealthCheck(int32(hp))))
	e.tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", tcp80, st.Endpoint{IP: "10.244.1.1", Node: "node-a"}))
	e.sync()
	var a healthAnswer
	require.Eventually(t, func() bool {
		var err error
		a, err = get(hz, "/healthz", dial)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 200, a.Status)
	a, err := get(hp, "/", dial)
	require.NoError(t, err)
	assert.Equal(t, serviceAnswer(200, "default", "web", 1, true), a)
	assert.Empty(t, e.hs.ListenErrors())
}

// TestHealthServerRunOwnsListeners: nothing listens before Run, Run
// opens what Update asked for, a second Run is refused, and the
// listeners close when Run's context ends.
func TestHealthServerRunOwnsListeners(t *testing.T) {
	hp := freePort(t)
	hs := services.NewHealthServer(services.HealthConfig{BindAddress: netip.MustParseAddr("127.0.0.1")}, nil)
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 30080), st.LocalHealthCheck(int32(hp))))
	hs.Update(tr.Changes())
	refused(t, hp)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hs.Run(ctx) }()
	require.Eventually(t, func() bool { _, err := get(hp, "/", nil); return err == nil }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, serviceAnswer(503, "default", "web", 0, true), mustGet(t, hp, "/"))
	require.Error(t, hs.Run(ctx), "already running")
	cancel()
	require.NoError(t, <-done)
	refused(t, hp)
}

// loopbackPair listens on 127.0.0.1 and [::1] at the port of addr, as
// one listener: a dual-stack health-check listener that stays on the
// loopback addresses.
type loopbackPair struct {
	lns   [2]net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func listenLoopbackPair(_, addr string) (net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	l := &loopbackPair{conns: make(chan net.Conn), done: make(chan struct{})}
	for i, host := range []string{"127.0.0.1", "::1"} {
		if l.lns[i], err = net.Listen("tcp", net.JoinHostPort(host, port)); err != nil {
			if i == 1 {
				l.lns[0].Close()
			}
			return nil, err
		}
	}
	for _, ln := range l.lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				select {
				case l.conns <- c:
				case <-l.done:
					c.Close()
					return
				}
			}
		}()
	}
	return l, nil
}

func (l *loopbackPair) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *loopbackPair) Close() error {
	l.once.Do(func() { close(l.done) })
	return errors.Join(l.lns[0].Close(), l.lns[1].Close())
}

func (l *loopbackPair) Addr() net.Addr { return l.lns[0].Addr() }

// A dual-stack Service's health check counts the local endpoints of the
// family the probe came over only, as kube-proxy's per-family proxiers
// each serve their own family's count (kubernetes/kubernetes#137370):
// a probe to 127.0.0.1 counts the IPv4 ones, one to [::1] the IPv6 ones.
func TestHealthServerPerFamily(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	local := func(ip string) st.Endpoint { return st.Endpoint{IP: ip, Node: "node-a"} }
	remote := func(ip string) st.Endpoint { return st.Endpoint{IP: ip, Node: "node-b"} }
	tests := []struct {
		name         string
		singleStack  bool
		v4, v6       []st.Endpoint
		code4, code6 int
		want4, want6 int
	}{
		{"local endpoints of both families", false, []st.Endpoint{local("10.244.1.1"), local("10.244.1.2")}, []st.Endpoint{local("fd00:244::1")}, 200, 200, 2, 1},
		{"a pod with an address of each family counts once per family", false, []st.Endpoint{local("10.244.1.1")}, []st.Endpoint{local("fd00:244::1")}, 200, 200, 1, 1},
		{"IPv4 local endpoints only", false, []st.Endpoint{local("10.244.1.1")}, []st.Endpoint{remote("fd00:244::2")}, 200, 503, 1, 0},
		{"IPv6 local endpoints only", false, []st.Endpoint{remote("10.244.2.1")}, []st.Endpoint{local("fd00:244::1"), local("fd00:244::2")}, 503, 200, 0, 2},
		{"single-stack IPv4 Service probed over IPv6", true, []st.Endpoint{local("10.244.1.1")}, nil, 200, 503, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newHealthEnv(t, services.HealthConfig{Listen: listenLoopbackPair})
			hp := freePort(t)
			mods := []func(*v1.Service){st.Port("http", v1.ProtocolTCP, 80, 30080), st.LocalHealthCheck(int32(hp))}
			if !tc.singleStack {
				mods = append(mods, func(s *v1.Service) { s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, "fd00::10") })
			}
			e.tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.10", mods...))
			e.tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-4", tcp80, tc.v4...))
			if tc.v6 != nil {
				s6 := st.Slice("default", "web", "web-6", tcp80, tc.v6...)
				s6.AddressType = discovery.AddressTypeIPv6
				e.tr.OnEndpointSliceUpdate(s6)
			}
			e.sync()
			over6 := func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort("::1", strconv.Itoa(int(hp))))
			}
			require.Eventually(t, func() bool { _, err := get(hp, "/", nil); return err == nil }, 5*time.Second, 10*time.Millisecond)
			assert.Equal(t, serviceAnswer(tc.code4, "default", "web", tc.want4, true), mustGet(t, hp, "/"), "over IPv4")
			a, err := get(hp, "/", over6)
			require.NoError(t, err)
			assert.Equal(t, serviceAnswer(tc.code6, "default", "web", tc.want6, true), a, "over IPv6")
		})
	}
}
