package services

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

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
	// nodeName are Local, and node hints (hints.forNodes) naming it
	// select the Cluster endpoints (see Categorize).
	NodeName string
	// Zone is the node's topology.kubernetes.io/zone label, which
	// kube-proxy reads from its Node: zone hints (hints.forZones)
	// naming it select the Cluster endpoints (topology-aware routing,
	// see Categorize). Empty: zone hints are never used. It is read
	// when a slice is recorded, so a node changing zone needs a new
	// Tracker.
	Zone string
	// NodePorts is the node-port range (default 30000-32767). NewTracker
	// logs an invalid one (Validate) as an error and uses the default.
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
// while the sync goroutine calls Changes. The zero value is not usable;
// make one with NewTracker (a zero or nil Tracker ignores events and its
// Changes and All return nil; no method of it returns an error).
//
// Log lines: skipped Services, endpoints and destinations at Warn;
// topology hints a service port's endpoints have but Categorize ignores
// at Info, once per port and family each time the reason changes (see
// the package doc). Two Trackers fed the same events (a dual-stack node)
// both log them.
type Tracker struct {
	cfg TrackerConfig
	log *slog.Logger

	mu sync.Mutex
	// ports is the ServicePorts result of the latest object of every
	// Service.
	ports  map[types.NamespacedName]parsedService
	slices map[types.NamespacedName]map[string]map[sliceKey][]Endpoint // service → slice name → endpoints
	// sliceOwner is the Service each tracked slice (by namespace/name)
	// is recorded under.
	sliceOwner map[types.NamespacedName]types.NamespacedName
	// claims holds, per destination (address, protocol, port; a node
	// port has no address), the claims of the valid Services' ports on
	// it, the owner first (compareClaims). owned is each Service's claims.
	claims map[claimKey][]claim
	owned  map[types.NamespacedName][]keyedClaim
	// current is the resolved state of every valid service port.
	current map[types.NamespacedName]map[ServicePortName]*Resolved
	dirty   map[types.NamespacedName]bool
	// hintsIgnored is, per service port of current, why its IPv4 [0]
	// and IPv6 [1] topology hints are ignored (topologyIgnored), as last
	// logged; ports with none are left out.
	hintsIgnored map[ServicePortName][2]string
	synced       bool
}

// parsedService is what ServicePorts made of a Service.
type parsedService struct {
	ports []*ServicePort
	err   error
}

// Validate returns an error wrapping ErrInvalidConfig for an invalid
// NodePorts range. Call it before NewTracker to refuse a bad
// configuration; NewTracker itself cannot fail.
func (c TrackerConfig) Validate() error { return c.NodePorts.Validate() }

// NewTracker returns an empty Tracker. log may be nil (slog.Default()).
// An invalid cfg.NodePorts (a swapped range would make every node port
// invalid) is logged as an error and replaced by the default range.
func NewTracker(cfg TrackerConfig, log *slog.Logger) *Tracker {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		log.Error("using the default node port range", "err", err)
		cfg.NodePorts = NodePortRange{}
	}
	if cfg.NodePorts == (NodePortRange{}) {
		cfg.NodePorts = NodePortRange{DefaultNodePortMin, DefaultNodePortMax}
	}
	return &Tracker{
		cfg: cfg, log: log,
		slices:     map[types.NamespacedName]map[string]map[sliceKey][]Endpoint{},
		ports:      map[types.NamespacedName]parsedService{},
		sliceOwner: map[types.NamespacedName]types.NamespacedName{},
		claims:     map[claimKey][]claim{},
		owned:      map[types.NamespacedName][]keyedClaim{},
		current:    map[types.NamespacedName]map[ServicePortName]*Resolved{},
		dirty:      map[types.NamespacedName]bool{},

		hintsIgnored: map[ServicePortName][2]string{},
	}
}

// made reports whether NewTracker made t: only it sets the slice map,
// never replaced afterwards, so reading it needs no lock.
func (t *Tracker) made() bool { return t != nil && t.slices != nil }

func nsName(m interface {
	GetNamespace() string
	GetName() string
}) types.NamespacedName {
	return types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}
}

// OnServiceUpdate records the new state of a Service (add or update).
// A nil svc is logged and ignored.
func (t *Tracker) OnServiceUpdate(svc *v1.Service) {
	if !t.made() {
		return
	}
	if svc == nil {
		t.log.Warn("ignoring nil service update")
		return
	}
	ports, err := ServicePorts(svc, t.cfg.NodePorts)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := nsName(svc)
	if err != nil {
		ports = nil // an invalid Service claims nothing
	}
	t.setClaims(n, ports, svc.CreationTimestamp.Time)
	t.ports[n] = parsedService{ports, err}
	t.dirty[n] = true
	t.changed()
}

// OnServiceDelete records that a Service is gone.
// A nil svc is logged and ignored.
func (t *Tracker) OnServiceDelete(svc *v1.Service) {
	if !t.made() {
		return
	}
	if svc == nil {
		t.log.Warn("ignoring nil service delete")
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := nsName(svc)
	t.setClaims(n, nil, time.Time{})
	delete(t.ports, n)
	t.dirty[n] = true
	t.changed()
}

func (t *Tracker) changed() {
	if t.cfg.OnChange != nil {
		t.cfg.OnChange()
	}
}

// claimKey is a destination a service port takes: an address, protocol
// and port. The zero addr stands for every node address: a node port.
type claimKey struct {
	addr  netip.Addr
	proto Protocol
	port  uint16
}

// claimKind is how a service port reaches a destination; a lower kind
// wins a destination claimed by several ports.
type claimKind uint8

const (
	claimClusterIP claimKind = iota
	claimNodePort
	claimLoadBalancerIP
	claimExternalIP
)

// claim is one service port's claim on a destination.
type claim struct {
	svc     types.NamespacedName
	created time.Time
	port    string // the service port's name
	kind    claimKind
}

// compareClaims orders the claims on one destination, the owner first:
// by kind (cluster IP, load-balancer IP, external IP; node ports only
// meet node ports), then
// oldest creationTimestamp, then namespace, name and port name.
func compareClaims(a, b claim) int {
	return cmp.Or(cmp.Compare(a.kind, b.kind), a.created.Compare(b.created),
		cmp.Compare(a.svc.Namespace, b.svc.Namespace), cmp.Compare(a.svc.Name, b.svc.Name), cmp.Compare(a.port, b.port))
}

// keyedClaim is a claim with its destination.
type keyedClaim struct {
	key claimKey
	claim
}

// setClaims replaces n's claims with those of ports (nil: none); every
// Service sharing a changed destination is marked dirty, so a loser
// gets the destination back on the next Changes once the owner goes.
func (t *Tracker) setClaims(n types.NamespacedName, ports []*ServicePort, created time.Time) {
	for _, c := range t.owned[n] {
		t.claims[c.key] = slices.DeleteFunc(t.claims[c.key], func(x claim) bool { return x == c.claim })
		for _, o := range t.claims[c.key] {
			t.dirty[o.svc] = true
		}
		if len(t.claims[c.key]) == 0 {
			delete(t.claims, c.key)
		}
	}
	delete(t.owned, n)
	cs := claimsOf(n, created, ports)
	if len(cs) == 0 {
		return
	}
	t.owned[n] = cs
	for _, c := range cs {
		l := append(t.claims[c.key], c.claim)
		slices.SortFunc(l, compareClaims)
		t.claims[c.key] = l
		for _, o := range l {
			t.dirty[o.svc] = true
		}
	}
}

// claimsOf lists the destinations the ports of a valid Service n ask
// for: each node port, and each cluster, load-balancer and external IP
// with the port's protocol and port. A destination a port asks for twice
// (an external IP that is also its cluster IP, an address listed twice)
// is claimed once, with the lowest kind.
func claimsOf(n types.NamespacedName, created time.Time, ports []*ServicePort) []keyedClaim {
	var out []keyedClaim
	type portClaim struct {
		key  claimKey
		port string // the service port's name
	}
	seen := map[portClaim]bool{}
	add := func(p *ServicePort, a netip.Addr, port uint16, kind claimKind) {
		k := claimKey{a, p.Name.Protocol, port}
		if seen[portClaim{k, p.Name.Port}] {
			return // a lower kind of the same port came first
		}
		seen[portClaim{k, p.Name.Port}] = true
		out = append(out, keyedClaim{k, claim{svc: n, created: created, port: p.Name.Port, kind: kind}})
	}
	for _, p := range ports {
		for _, a := range p.ClusterIPs {
			add(p, a, p.Port, claimClusterIP)
		}
		if p.NodePort != 0 {
			add(p, netip.Addr{}, p.NodePort, claimNodePort)
		}
		for _, a := range p.LoadBalancerIPs {
			add(p, a, p.Port, claimLoadBalancerIP)
		}
		for _, a := range p.ExternalIPs {
			add(p, a, p.Port, claimExternalIP)
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
// slice are used. Slices are tracked by namespace/name: one whose
// kubernetes.io/service-name label changes moves to the new Service, one
// that loses the label is dropped. A nil s is logged and ignored.
func (t *Tracker) OnEndpointSliceUpdate(s *discovery.EndpointSlice) {
	if !t.made() {
		return
	}
	if s == nil {
		t.log.Warn("ignoring nil endpointslice update")
		return
	}
	n, ok := serviceOf(s)
	var eps map[sliceKey][]Endpoint
	if ok {
		var errs []error
		eps, errs = sliceEndpoints(s, t.cfg.NodeName, t.cfg.Zone)
		for _, err := range errs {
			t.log.Warn("skipping endpoint", "err", err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.dropSlice(nsName(s)) && !ok {
		return // never tracked, still no Service
	}
	if ok {
		m := t.slices[n]
		if m == nil {
			m = map[string]map[sliceKey][]Endpoint{}
			t.slices[n] = m
		}
		m[s.Name] = eps
		t.sliceOwner[nsName(s)] = n
		t.dirty[n] = true
	}
	t.changed()
}

// OnEndpointSliceDelete records that an EndpointSlice is gone, from
// whichever Service it was recorded under (its labels are not read). A
// nil s is logged and ignored.
func (t *Tracker) OnEndpointSliceDelete(s *discovery.EndpointSlice) {
	if !t.made() {
		return
	}
	if s == nil {
		t.log.Warn("ignoring nil endpointslice delete")
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dropSlice(nsName(s)) {
		t.changed()
	}
}

// dropSlice forgets the slice named sn and marks its Service dirty; false
// when the slice was not tracked. The caller holds t.mu.
func (t *Tracker) dropSlice(sn types.NamespacedName) bool {
	n, ok := t.sliceOwner[sn]
	if !ok {
		return false
	}
	delete(t.sliceOwner, sn)
	delete(t.slices[n], sn.Name)
	if len(t.slices[n]) == 0 {
		delete(t.slices, n)
	}
	t.dirty[n] = true
	return true
}

// Changes returns the service ports whose Service or endpoints changed
// since the previous call: the new state, or nil for a port that is gone
// (deleted, renamed, or its Service became invalid or headless). Each
// changed Service's old ports are all listed, so a backend can drop them.
// The first call after NewTracker returns every valid port.
//
// Each change is handed out once: a second caller sees only what
// happened after the first one's call. So a Tracker feeds exactly one
// consumer of Changes, normally one backend Proxier. A backend Proxier
// serves one family (services/nftables and services/iptables render
// only their Config.Family), so a dual-stack node runs two Proxiers,
// each with its own Tracker fed the same informer events (the Trackers
// share nothing; both resolve both families, each Proxier renders its
// own). All, in contrast, may be called by anyone (Announce, a full
// resync).
func (t *Tracker) Changes() map[ServicePortName]*Resolved {
	if !t.made() {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[ServicePortName]*Resolved{}
	for n := range t.dirty {
		old := t.current[n]
		for name := range old {
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
		for name := range old {
			if ports[name] == nil {
				delete(t.hintsIgnored, name)
			}
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
	if !t.made() {
		return nil
	}
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
	parsed, ok := t.ports[n]
	if !ok {
		return nil
	}
	if parsed.err != nil {
		t.log.Warn("skipping service", "service", n.String(), "err", parsed.err)
		return nil
	}
	owner := func(c keyedClaim) claim { return t.claims[c.key][0] }
	for _, c := range t.owned[n] {
		if o := owner(c); c.kind == claimNodePort && o.svc != n {
			t.log.Warn("skipping service", "service", n.String(),
				"err", fmt.Errorf("%w: nodePort %d/%s owned by %s", ErrNodePortClash, c.key.port, c.key.proto, o.svc),
				"nodePort", c.key.port, "protocol", c.key.proto, "owner", o.svc.String())
			return nil
		}
	}
	out := map[ServicePortName]*Resolved{}
	for _, p := range parsed.ports {
		eps := t.endpoints(n, sliceKey{p.Name.Port, p.Name.Protocol}, p.ClusterIPs)
		p = t.ownedDestinations(n, p)
		out[p.Name] = &Resolved{Port: p, Endpoints: Categorize(eps)}
		t.reportHintsIgnored(p.Name, eps)
	}
	return out
}

// reportHintsIgnored logs, at Info, why Categorize ignores the topology
// hints of a service port's ready endpoints of a family (as kube-proxy's
// topologyModeFromHints does at V(2)), and when they are used again;
// only when the reason changed since the port's last report, so a
// Service re-resolved at every sync with the same hints logs once.
func (t *Tracker) reportHintsIgnored(name ServicePortName, eps []Endpoint) {
	prev := t.hintsIgnored[name]
	var now [2]string
	for i, fam := range [2]string{"IPv4", "IPv6"} {
		now[i] = topologyIgnored(eps, i == 1, t.cfg.Zone)
		switch {
		case now[i] == prev[i]:
		case now[i] != "":
			t.log.Info("ignoring topology hints", "service", name.String(), "family", fam,
				"reason", now[i], "node", t.cfg.NodeName, "zone", t.cfg.Zone)
		default:
			t.log.Info("topology hints no longer ignored", "service", name.String(), "family", fam)
		}
	}
	if now == ([2]string{}) {
		delete(t.hintsIgnored, name)
	} else {
		t.hintsIgnored[name] = now
	}
}

// ownedDestinations returns p without the cluster, load-balancer and
// external IPs whose destination another claim owns (p itself when it
// owns them all); each loss to another Service is logged.
func (t *Tracker) ownedDestinations(n types.NamespacedName, p *ServicePort) *ServicePort {
	lost := false
	keep := func(addrs []netip.Addr, kind claimKind) []netip.Addr {
		var out []netip.Addr
		for _, a := range addrs {
			k := claimKey{a, p.Name.Protocol, p.Port}
			o := t.claims[k][0]
			if o.svc == n && o.port == p.Name.Port && o.kind == kind && !slices.Contains(out, a) {
				out = append(out, a)
				continue
			}
			lost = true
			if o.svc != n {
				t.log.Warn("dropping service destination", "service", p.Name.String(), "destination", netip.AddrPortFrom(a, p.Port).String(),
					"protocol", p.Name.Protocol, "err", fmt.Errorf("%w: %s owned by %s", ErrDestinationClash, netip.AddrPortFrom(a, p.Port), o.svc),
					"owner", ServicePortName{Namespace: o.svc.Namespace, Name: o.svc.Name, Port: o.port, Protocol: p.Name.Protocol}.String())
			}
		}
		return out
	}
	cluster, lb, ext := keep(p.ClusterIPs, claimClusterIP), keep(p.LoadBalancerIPs, claimLoadBalancerIP), keep(p.ExternalIPs, claimExternalIP)
	if !lost {
		return p
	}
	c := *p
	c.ClusterIPs, c.LoadBalancerIPs, c.ExternalIPs = cluster, lb, ext
	return &c
}

// endpoints merges the endpoints for port k of Service n's slices. An
// address:port in several slices (an endpoint moving between slices, or
// a new pod reusing a terminating pod's IP) is kept once, as kube-proxy's
// EndpointSliceCache does: a later copy replaces the kept one unless it
// is terminating. kube-proxy walks the slices in map order, so which
// copy wins varies between its syncs; here the slices are walked by name,
// so the result is deterministic: the last non-terminating copy by slice
// name, or the first copy when all are terminating. Endpoints of a
// family none of clusterIPs (the Service's spec.clusterIPs) has are left
// out: kube-proxy's per-family proxiers never see them, so they count
// neither as endpoints nor as local ones for the health check.
func (t *Tracker) endpoints(n types.NamespacedName, k sliceKey, clusterIPs []netip.Addr) []Endpoint {
	var has4, has6 bool
	for _, a := range clusterIPs {
		has4, has6 = has4 || a.Is4(), has6 || a.Is6()
	}
	var eps []Endpoint
	at := map[netip.AddrPort]int{}
	for _, name := range slices.Sorted(maps.Keys(t.slices[n])) {
		for _, e := range t.slices[n][name][k] {
			if e.Addr.Is4() && !has4 || e.Addr.Is6() && !has6 {
				continue
			}
			i, ok := at[e.AddrPort()]
			switch {
			case !ok:
				at[e.AddrPort()] = len(eps)
				eps = append(eps, e)
			case !e.Terminating:
				eps[i] = e
			}
		}
	}
	return eps
}
