package services

import (
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Resolved is one service port with the endpoints it balances over, as
// a backend renders it.
type Resolved struct {
	Port      *ServicePort
	Endpoints EndpointSets
}

// TrackerConfig configures a Tracker.
type TrackerConfig struct {
	// NodeName is the node the backends run on; endpoints with this
	// nodeName are Local.
	NodeName string
	// NodePorts is the node-port range (default 30000-32767).
	NodePorts NodePortRange
	// OnChange, when set, is called after every On* event is recorded
	// (kube-proxy calls its health server's QueuedUpdate there; pass
	// HealthServer.QueuedUpdate). It must not call the Tracker.
	OnChange func()
}

// Tracker gathers Service and EndpointSlice events between syncs, as
// kube-proxy's ServiceChangeTracker and EndpointsChangeTracker do, and
// hands a backend only the service ports that changed (Changes).
// It is safe for concurrent use: informer handlers call the On* methods
// while the sync goroutine calls Changes.
type Tracker struct {
	cfg TrackerConfig
	log *slog.Logger

	mu       sync.Mutex
	services map[types.NamespacedName]*v1.Service
	slices   map[types.NamespacedName]map[string]map[sliceKey][]Endpoint // service → slice name → endpoints
	// claims holds, per node port and protocol, the Services whose spec
	// asks for it; the owner is the first by namespace/name, the others
	// are skipped as clashing.
	claims map[nodePortKey][]types.NamespacedName
	// current is the resolved state of every valid service port.
	current map[types.NamespacedName]map[ServicePortName]*Resolved
	dirty   map[types.NamespacedName]bool
	synced  bool
}

type nodePortKey struct {
	proto Protocol
	port  int32
}

// NewTracker returns an empty Tracker. log may be nil (slog.Default()).
func NewTracker(cfg TrackerConfig, log *slog.Logger) *Tracker {
	if cfg.NodePorts == (NodePortRange{}) {
		cfg.NodePorts = NodePortRange{DefaultNodePortMin, DefaultNodePortMax}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Tracker{
		cfg: cfg, log: log,
		services: map[types.NamespacedName]*v1.Service{},
		slices:   map[types.NamespacedName]map[string]map[sliceKey][]Endpoint{},
		claims:   map[nodePortKey][]types.NamespacedName{},
		current:  map[types.NamespacedName]map[ServicePortName]*Resolved{},
		dirty:    map[types.NamespacedName]bool{},
	}
}

func nsName(m interface {
	GetNamespace() string
	GetName() string
}) types.NamespacedName {
	return types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}
}

// OnServiceUpdate records the new state of a Service (add or update).
// A nil svc is logged and ignored.
func (t *Tracker) OnServiceUpdate(svc *v1.Service) {
	if svc == nil {
		t.log.Warn("ignoring nil service update")
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := nsName(svc)
	t.setClaims(n, svc)
	t.services[n] = svc
	t.dirty[n] = true
	t.changed()
}

// OnServiceDelete records that a Service is gone.
// A nil svc is logged and ignored.
func (t *Tracker) OnServiceDelete(svc *v1.Service) {
	if svc == nil {
		t.log.Warn("ignoring nil service delete")
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := nsName(svc)
	t.setClaims(n, nil)
	delete(t.services, n)
	t.dirty[n] = true
	t.changed()
}

func (t *Tracker) changed() {
	if t.cfg.OnChange != nil {
		t.cfg.OnChange()
	}
}

// setClaims replaces n's node-port claims; every Service sharing a
// changed claim is marked dirty, so a clash resolves when its owner goes.
func (t *Tracker) setClaims(n types.NamespacedName, svc *v1.Service) {
	drop := func(k nodePortKey) {
		t.claims[k] = slices.DeleteFunc(t.claims[k], func(x types.NamespacedName) bool { return x == n })
		for _, o := range t.claims[k] {
			t.dirty[o] = true
		}
		if len(t.claims[k]) == 0 {
			delete(t.claims, k)
		}
	}
	if old := t.services[n]; old != nil {
		for _, k := range claimsOf(old) {
			drop(k)
		}
	}
	if svc == nil {
		return
	}
	for _, k := range claimsOf(svc) {
		c := t.claims[k]
		if !slices.Contains(c, n) {
			c = append(c, n)
			slices.SortFunc(c, func(a, b types.NamespacedName) int {
				if a.Namespace != b.Namespace {
					if a.Namespace < b.Namespace {
						return -1
					}
					return 1
				}
				if a.Name < b.Name {
					return -1
				} else if a.Name > b.Name {
					return 1
				}
				return 0
			})
			t.claims[k] = c
		}
		for _, o := range c {
			t.dirty[o] = true
		}
	}
}

func claimsOf(svc *v1.Service) []nodePortKey {
	if !proxied(svc) || (svc.Spec.Type != v1.ServiceTypeNodePort && svc.Spec.Type != v1.ServiceTypeLoadBalancer) {
		return nil
	}
	var out []nodePortKey
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			proto := p.Protocol
			if proto == "" {
				proto = v1.ProtocolTCP
			}
			out = append(out, nodePortKey{proto, p.NodePort})
		}
	}
	return out
}

// serviceOf is the Service an EndpointSlice belongs to (its
// kubernetes.io/service-name label); ok is false for slices without one.
func serviceOf(s *discovery.EndpointSlice) (types.NamespacedName, bool) {
	name := s.Labels[discovery.LabelServiceName]
	return types.NamespacedName{Namespace: s.Namespace, Name: name}, name != ""
}

// OnEndpointSliceUpdate records the new state of an EndpointSlice (add
// or update). Invalid endpoints are logged and skipped; the others of the
// slice are used. A nil s is logged and ignored.
func (t *Tracker) OnEndpointSliceUpdate(s *discovery.EndpointSlice) {
	if s == nil {
		t.log.Warn("ignoring nil endpointslice update")
		return
	}
	n, ok := serviceOf(s)
	if !ok {
		return
	}
	eps, errs := sliceEndpoints(s, t.cfg.NodeName)
	for _, err := range errs {
		t.log.Warn("skipping endpoint", "err", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.slices[n]
	if m == nil {
		m = map[string]map[sliceKey][]Endpoint{}
		t.slices[n] = m
	}
	m[s.Name] = eps
	t.dirty[n] = true
	t.changed()
}

// OnEndpointSliceDelete records that an EndpointSlice is gone. A nil s
// is logged and ignored.
func (t *Tracker) OnEndpointSliceDelete(s *discovery.EndpointSlice) {
	if s == nil {
		t.log.Warn("ignoring nil endpointslice delete")
		return
	}
	n, ok := serviceOf(s)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.slices[n], s.Name)
	if len(t.slices[n]) == 0 {
		delete(t.slices, n)
	}
	t.dirty[n] = true
	t.changed()
}

// Changes returns the service ports whose Service or endpoints changed
// since the previous call: the new state, or nil for a port that is gone
// (deleted, renamed, or its Service became invalid or headless). Each
// changed Service's old ports are all listed, so a backend can drop them.
// The first call after NewTracker returns every valid port.
func (t *Tracker) Changes() map[ServicePortName]*Resolved {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[ServicePortName]*Resolved{}
	for n := range t.dirty {
		for name := range t.current[n] {
			out[name] = nil
		}
		delete(t.current, n)
		ports := t.resolve(n)
		if len(ports) > 0 {
			t.current[n] = ports
		}
		for name, r := range ports {
			out[name] = r
		}
	}
	clear(t.dirty)
	return out
}

// All returns every valid service port as of the last Changes call: the
// state a backend has been handed, for a full resync or for Announce after
// a sync. Updates received since then appear only after the next Changes
// (call Changes first to include them). The values must not be modified.
func (t *Tracker) All() map[ServicePortName]*Resolved {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[ServicePortName]*Resolved{}
	for _, m := range t.current {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func (t *Tracker) resolve(n types.NamespacedName) map[ServicePortName]*Resolved {
	svc := t.services[n]
	if svc == nil {
		return nil
	}
	ports, err := ServicePorts(svc, t.cfg.NodePorts)
	if err != nil {
		t.log.Warn("skipping service", "service", n.String(), "err", err)
		return nil
	}
	for _, k := range claimsOf(svc) {
		if owner := t.claims[k][0]; owner != n {
			t.log.Warn("skipping service", "service", n.String(), "err", ErrNodePortClash, "nodePort", k.port, "protocol", k.proto, "owner", owner.String())
			return nil
		}
	}
	out := map[ServicePortName]*Resolved{}
	for _, p := range ports {
		var eps []Endpoint
		seen := map[netip.AddrPort]bool{}
		for _, s := range t.slices[n] {
			for _, e := range s[sliceKey{p.Name.Port, p.Name.Protocol}] {
				k := e.AddrPort()
				if !seen[k] {
					seen[k] = true
					eps = append(eps, e)
				}
			}
		}
		out[p.Name] = &Resolved{Port: p, Endpoints: Categorize(eps)}
	}
	return out
}
