package services

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// DefaultHealthzAddress is kube-proxy's default healthzBindAddress, where
// the node-wide /healthz is served.
const DefaultHealthzAddress = "0.0.0.0:10256"

// Defaults of HealthConfig.
const (
	// DefaultHealthTimeout is how long a queued update may wait for a
	// sync before /healthz turns 503: twice kube-proxy's default
	// syncPeriod (30 s), as kube-proxy computes its own.
	DefaultHealthTimeout = 60 * time.Second
	// DefaultHealthRetryInterval is how often Run retries listeners that
	// failed to bind.
	DefaultHealthRetryInterval = 5 * time.Second
)

// ErrHealthListen is wrapped by the errors HealthServer logs and
// ListenErrors returns for a listener that failed to bind.
var ErrHealthListen = errors.New("health check listen")

// HealthConfig configures a HealthServer.
type HealthConfig struct {
	// BindAddress is the address the service health-check node ports
	// listen on; the zero Addr listens on every address of both families
	// (kube-proxy's behaviour without nodePortAddresses).
	BindAddress netip.Addr
	// HealthzAddress is the host:port of the node-wide /healthz
	// (kube-proxy's healthzBindAddress; DefaultHealthzAddress is its
	// default). Empty: no /healthz listener.
	HealthzAddress string
	// HealthTimeout: /healthz answers 503 once an update queued by
	// QueuedUpdate has waited this long for Updated (default
	// DefaultHealthTimeout).
	HealthTimeout time.Duration
	// RetryInterval is how often Run retries listeners that failed to
	// bind (default DefaultHealthRetryInterval).
	RetryInterval time.Duration
	// Listen opens a listener (default net.Listen, in the caller's
	// network namespace). To serve inside a node's namespace, pass a
	// function that opens the socket from an OS thread in that namespace
	// (runtime.LockOSThread, then setns; a socket keeps the namespace it
	// was created in).
	Listen func(network, address string) (net.Listener, error)
	// Clock is the clock for /healthz times and the retry ticker
	// (default the real one).
	Clock clock.WithTicker
}

// HealthServer serves kube-proxy's health checks: for every Service with
// externalTrafficPolicy Local and a healthCheckNodePort, HTTP on that port
// answering 200 when the node has at least one ready local endpoint of
// the Service and 503 otherwise (cloud load balancers use it to skip
// nodes without endpoints), and the node-wide /healthz on HealthzAddress.
//
// A backend feeds it the tracker changes it applied (Update) and the
// success of each sync (Updated); the tracker's OnChange calls
// QueuedUpdate. Run owns the listeners: it opens them, retries those that
// fail to bind every RetryInterval (a failure is logged and never affects
// other listeners), and closes them all when its context ends.
// Methods are safe for concurrent use.
//
// Service health-check answers (Content-Type application/json):
//
//	{"service":{"namespace":"ns","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}
//
// localEndpoints counts the distinct addresses of the ready node-local
// endpoints over all the Service's ports (one pod serving two ports
// counts once), as kube-proxy's EndpointsMap.LocalReadyEndpoints does;
// terminating ones do not count, so a draining node answers 503.
// Only the endpoints of the family of the address the probe reached
// count (the listener's local address; both families when it is not a
// TCP address): kube-proxy runs one proxier per family, each with its
// own health server counting its own family's endpoints, which since
// kubernetes/kubernetes#137370 listen on an IPv4 and an IPv6 socket
// (before, both bound the same dual-stack socket and the first to bind
// answered probes of both families with its family's count, #114702).
// So a dual-stack Service with local endpoints of one family only
// answers 200 over that family and 503 over the other. Where kube-proxy
// has no listener of a family (a single-stack Service, probed over the
// other family), tabby answers 503 with localEndpoints 0 instead of
// refusing the connection. The status is 200 only when
// that count is positive and the proxy is healthy (as /healthz).
//
// /healthz answers 200, or 503 when an update has been queued for longer
// than HealthTimeout without a sync, with
//
//	{"lastUpdated":"2006-01-02T15:04:05.999999999Z","currentTime":"..."}
//
// lastUpdated is the time of the last successful sync (zero before the
// first). Differences from kube-proxy: it reports currentTime as
// lastUpdated when healthy (tabby reports the real sync time), adds
// "nodeEligible" and answers 503 for a Node being deleted or tainted
// ToBeDeletedByClusterAutoscaler (HealthServer knows no Node), and also
// serves /livez.
//
// The zero value is not usable; make one with NewHealthServer (Run returns
// ErrInvalidConfig, the other methods do nothing and return zero values).
type HealthServer struct {
	cfg HealthConfig
	log *slog.Logger

	mu        sync.Mutex
	ports     map[types.NamespacedName]map[ServicePortName]*Resolved
	services  map[types.NamespacedName]healthService
	listeners map[uint16]*healthListener // by health-check node port
	healthz   *healthListener
	running   bool

	lastUpdated time.Time
	queued      time.Time // oldest update not yet synced; zero when none
}

type healthService struct {
	port uint16
	// local is the number of distinct ready node-local endpoint
	// addresses of the IPv4 [0] and IPv6 [1] family.
	local [2]int
}

// healthListener is one bound (srv != nil) or failed (err != nil) port.
type healthListener struct {
	svc types.NamespacedName
	srv *http.Server
	err error
}

// NewHealthServer returns a HealthServer with no listener open until Run.
// log may be nil (slog.Default()).
func NewHealthServer(cfg HealthConfig, log *slog.Logger) *HealthServer {
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultHealthRetryInterval
	}
	if cfg.Listen == nil {
		cfg.Listen = net.Listen
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &HealthServer{
		cfg: cfg, log: log,
		ports:     map[types.NamespacedName]map[ServicePortName]*Resolved{},
		services:  map[types.NamespacedName]healthService{},
		listeners: map[uint16]*healthListener{},
	}
}

// made reports whether NewHealthServer made h: only it sets the listener
// map, never replaced afterwards, so reading it needs no lock.
func (h *HealthServer) made() bool { return h != nil && h.listeners != nil }

// Update applies tracker changes (Tracker.Changes or Tracker.All: nil
// for a port that is gone; an entry with a nil Port counts as gone) and
// opens or closes the health-check listeners they call for, when Run is
// running.
func (h *HealthServer) Update(changes map[ServicePortName]*Resolved) {
	if !h.made() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	touched := map[types.NamespacedName]bool{}
	for name, r := range changes {
		n := types.NamespacedName{Namespace: name.Namespace, Name: name.Name}
		touched[n] = true
		if r == nil || r.Port == nil {
			delete(h.ports[n], name)
			if len(h.ports[n]) == 0 {
				delete(h.ports, n)
			}
			continue
		}
		if h.ports[n] == nil {
			h.ports[n] = map[ServicePortName]*Resolved{}
		}
		h.ports[n][name] = r
	}
	for n := range touched {
		if s, ok := healthOf(h.ports[n]); ok {
			h.services[n] = s
		} else {
			delete(h.services, n)
		}
	}
	h.reconcile()
}

// healthOf is the health-check port and local endpoint count of a
// Service's ports; ok is false when it has no health-check port.
func healthOf(ports map[ServicePortName]*Resolved) (healthService, bool) {
	var s healthService
	var local [2]map[netip.Addr]bool
	local[0], local[1] = map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, r := range ports {
		if r == nil || r.Port == nil {
			continue
		}
		if r.Port.ExternalPolicyLocal && r.Port.HealthCheckNodePort != 0 {
			s.port = r.Port.HealthCheckNodePort
		}
		for _, e := range r.Endpoints.Local {
			if e.Ready {
				local[family(e.Addr)][e.Addr] = true
			}
		}
	}
	s.local = [2]int{len(local[0]), len(local[1])}
	return s, s.port != 0
}

// family is 0 for an IPv4 (or IPv4-mapped IPv6) address, 1 for IPv6.
func family(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 0
	}
	return 1
}

// QueuedUpdate records that a change is waiting for a sync (wire it to
// TrackerConfig.OnChange).
func (h *HealthServer) QueuedUpdate() {
	if !h.made() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.queued.IsZero() {
		h.queued = h.cfg.Clock.Now()
	}
}

// Updated records a successful sync: every queued update is applied.
func (h *HealthServer) Updated() {
	if !h.made() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastUpdated = h.cfg.Clock.Now()
	h.queued = time.Time{}
}

// healthy reports the proxy's health: no update queued for longer than
// HealthTimeout. The caller holds h.mu.
func (h *HealthServer) healthy(now time.Time) bool {
	return h.queued.IsZero() || now.Sub(h.queued) < h.cfg.HealthTimeout
}

// ListenErrors returns, per health-check node port whose listener failed
// to bind (and is waiting for a retry), the error (wrapping
// ErrHealthListen); port 0 is the /healthz listener.
func (h *HealthServer) ListenErrors() map[uint16]error {
	if !h.made() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[uint16]error{}
	for p, l := range h.listeners {
		if l.err != nil {
			out[p] = l.err
		}
	}
	if h.healthz != nil && h.healthz.err != nil {
		out[0] = h.healthz.err
	}
	return out
}

// Run opens the listeners, retries failed ones every RetryInterval and
// closes them all when ctx ends; it returns nil then. It returns an
// error only when called while already running.
func (h *HealthServer) Run(ctx context.Context) error {
	if !h.made() {
		return fmt.Errorf("health server: services.HealthServer has no configuration (make it with NewHealthServer): %w", ErrInvalidConfig)
	}
	h.mu.Lock()
	if h.running {
		h.mu.Unlock()
		return errors.New("health server: already running")
	}
	h.running = true
	h.reconcile()
	h.mu.Unlock()
	tick := h.cfg.Clock.NewTicker(h.cfg.RetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			defer h.mu.Unlock()
			h.running = false
			for p, l := range h.listeners {
				l.close()
				delete(h.listeners, p)
			}
			h.healthz.close()
			h.healthz = nil
			return nil
		case <-tick.C():
			h.mu.Lock()
			h.reconcile()
			h.mu.Unlock()
		}
	}
}

func (l *healthListener) close() {
	if l != nil && l.srv != nil {
		_ = l.srv.Close()
	}
}

// reconcile opens the missing or failed listeners and closes unwanted
// ones. Several Services asking for one port: the first by
// namespace/name gets it, the others are logged. The caller holds h.mu.
func (h *HealthServer) reconcile() {
	if !h.running {
		return
	}
	owners := map[uint16]types.NamespacedName{}
	names := slices.SortedFunc(func(yield func(types.NamespacedName) bool) {
		for n := range h.services {
			if !yield(n) {
				return
			}
		}
	}, func(a, b types.NamespacedName) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, n := range names {
		p := h.services[n].port
		if o, ok := owners[p]; ok {
			h.log.Warn("health check node port already served", "service", n.String(), "port", p, "owner", o.String())
			continue
		}
		owners[p] = n
	}
	for p, l := range h.listeners {
		if _, ok := owners[p]; !ok {
			l.close()
			delete(h.listeners, p)
		}
	}
	for p, n := range owners {
		l := h.listeners[p]
		if l != nil && l.srv != nil {
			l.svc = n // the handler reads the owner on every request
			continue
		}
		addr := ""
		if h.cfg.BindAddress.IsValid() {
			addr = h.cfg.BindAddress.String()
		}
		port := p
		h.listeners[p] = h.listen(net.JoinHostPort(addr, strconv.Itoa(int(p))), n.String(),
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serveService(w, r, port) }), n)
	}
	if h.cfg.HealthzAddress != "" && (h.healthz == nil || h.healthz.srv == nil) {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", h.serveHealthz)
		h.healthz = h.listen(h.cfg.HealthzAddress, "healthz", mux, types.NamespacedName{})
	}
}

// listen binds addr and serves handler on it; a failure is logged and
// kept in the result for the next retry.
func (h *HealthServer) listen(addr, what string, handler http.Handler, svc types.NamespacedName) *healthListener {
	ln, err := h.cfg.Listen("tcp", addr)
	if err != nil {
		err = errors.Join(ErrHealthListen, err)
		h.log.Error("health check listener failed; will retry", "for", what, "address", addr, "err", err)
		return &healthListener{svc: svc, err: err}
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("health check listener stopped", "for", what, "address", addr, "err", err)
		}
	}()
	h.log.Debug("health check listening", "for", what, "address", ln.Addr().String())
	return &healthListener{svc: svc, srv: srv}
}

type healthServiceBody struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (h *HealthServer) serveService(w http.ResponseWriter, r *http.Request, port uint16) {
	h.mu.Lock()
	l := h.listeners[port]
	if l == nil {
		h.mu.Unlock()
		http.Error(w, "health check closed", http.StatusServiceUnavailable)
		return
	}
	var body healthServiceBody
	body.Service.Namespace, body.Service.Name = l.svc.Namespace, l.svc.Name
	local := h.services[l.svc].local
	body.LocalEndpoints = local[0] + local[1]
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		body.LocalEndpoints = local[family(a.AddrPort().Addr())]
	}
	body.ServiceProxyHealthy = h.healthy(h.cfg.Clock.Now())
	h.mu.Unlock()
	status := http.StatusOK
	if body.LocalEndpoints == 0 || !body.ServiceProxyHealthy {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

type healthzBody struct {
	LastUpdated time.Time `json:"lastUpdated"`
	CurrentTime time.Time `json:"currentTime"`
}

func (h *HealthServer) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	now := h.cfg.Clock.Now()
	body := healthzBody{LastUpdated: h.lastUpdated, CurrentTime: now}
	ok := h.healthy(now)
	h.mu.Unlock()
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // plain structs: cannot happen
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
