package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"

	"github.com/tabbynet/tabby/dataplane/deltatracker"
	"github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/syncrunner"
)

// RouteProgrammer receives learned routes. *netlink.RouteOwner satisfies it;
// the speaker only ever touches the routes of its own source name.
type RouteProgrammer interface {
	// Upsert adds or replaces routes of source, by key.
	Upsert(source string, routes ...netlink.Route) error
	// Remove drops routes of source by key; unknown keys are ignored.
	Remove(source string, keys ...netlink.RouteKey)
}

// DefaultSource is the advertisement source that Speaker.Advertise,
// Withdraw and SetAdvertisements act on, and the default route source name
// given to the RouteProgrammer.
const DefaultSource = "bgp"

// Option configures a Speaker.
type Option func(*options)

type options struct {
	log     *slog.Logger
	rp      RouteProgrammer
	rpSync  func(context.Context) error
	rpName  string
	minSync time.Duration
	metrics Metrics
}

// WithLogger sets the logger (default, and for nil: slog.Default()).
// GoBGP's own log lines go to it too, filtered by Config.LogLevel.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRouteProgrammer hands learned routes to rp, under route source name
// source (empty means DefaultSource). After each batch of changes, and at
// least once a minute, the speaker calls sync (may be nil) from a
// bounded-frequency runner (at most every 100 ms, retried with backoff).
// For a RouteOwner use its Apply: it writes only the changes and dumps the
// kernel only on its resync interval or after a failure; Reconcile dumps
// the kernel's routes every time (ten times slower for 10,000 routes
// streaming in, see README.md).
func WithRouteProgrammer(rp RouteProgrammer, source string, sync func(context.Context) error) Option {
	return func(o *options) { o.rp, o.rpName, o.rpSync = rp, source, sync }
}

// Speaker is an embedded BGP speaker. It is safe for concurrent use. All
// methods may be called before Start: configuration and advertisements are
// kept and applied when the speaker starts, so the first UPDATE a peer sees
// is already complete.
type Speaker struct {
	o     options
	level *slog.LevelVar

	mu      sync.Mutex
	cfg     *resolved
	srv     *server.BgpServer  // non-nil while started
	gobgp   *server.BgpServer  // created by the first Start, kept
	cancel  context.CancelFunc // the learned-route runner and startup sync
	unwatch context.CancelFunc // GoBGP's event stream, ended after the sessions
	done    chan struct{}
	// stopping is closed (and set to nil) when the Stop in progress has
	// stopped everything; nil when no Stop is in progress. Stop releases
	// mu while it waits for the learned-route runner: Start and a second
	// Stop wait on stopping meanwhile.
	stopping chan struct{}
	sources  map[string]map[netip.Prefix]Advertisement
	adv      *deltatracker.Tracker[netip.Prefix, path]
	advWhy   map[netip.Prefix]string // why a known prefix is not advertised
	peers    *deltatracker.Tracker[netip.Addr, Peer]
	// peerKeys holds, per peer GoBGP has, the session it was given
	// (sessionKey): Config fields such as RestartTime shape a session
	// without being part of Peer, so a change of them is seen here.
	peerKeys map[netip.Addr]string
	// topo is the topology of the last SetTopology (nil after SetPeers).
	topo *Topology
	// mptcp: GoBGP's listeners are Multipath TCP (listenersAreMPTCP, read
	// once by New); a test sets it.
	mptcp bool

	lmu        sync.Mutex
	learned    *deltatracker.Tracker[netip.Prefix, nextHops]
	learnedWhy map[netip.Prefix]string
	synced     chan struct{}
	eor        map[netip.Addr]bool
	// established holds the peers in state Established (for metrics).
	established map[netip.Addr]bool
	runner      atomic.Pointer[syncrunner.Runner]
	// needSync and lastRPSync belong to syncLearned (one run at a time)
	// and are read and written without lmu.
	needSync   bool // the route programmer's sync failed; retry
	lastRPSync time.Time
	// keepInstalled is the key of the policies GoBGP has (keepOriginalNextHop
	// and peer filters; nil: none installed yet, e.g. after Start).
	keepInstalled *string
}

// New validates cfg and returns a stopped speaker. Errors wrap
// ErrInvalidConfig, ErrInvalidCommunity or ErrInvalidFilter. Nil options
// are skipped.
func New(cfg Config, opts ...Option) (*Speaker, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	o := options{log: slog.Default(), rpName: DefaultSource, minSync: 100 * time.Millisecond}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if o.rpName == "" {
		o.rpName = DefaultSource
	}
	s := &Speaker{
		o: o, level: new(slog.LevelVar), cfg: r,
		sources:     map[string]map[netip.Prefix]Advertisement{},
		adv:         deltatracker.NewFunc[netip.Prefix, path](pathEqual),
		advWhy:      map[netip.Prefix]string{},
		peers:       deltatracker.NewFunc[netip.Addr, Peer](Peer.equal),
		peerKeys:    map[netip.Addr]string{},
		learned:     deltatracker.New[netip.Prefix, nextHops](),
		learnedWhy:  map[netip.Prefix]string{},
		synced:      make(chan struct{}),
		eor:         map[netip.Addr]bool{},
		established: map[netip.Addr]bool{},
		mptcp:       listenersAreMPTCP(),
	}
	s.level.Set(r.LogLevel)
	s.setConfigSourceLocked()
	s.recomputeLocked(nil)
	return s, nil
}

// begin is the first step of every method that takes a context: it refuses
// a Speaker not made by New (ErrInvalidConfig: it has no configuration)
// and a context that is already done (its error), naming op, before
// anything changes.
func (s *Speaker) begin(ctx context.Context, op string) error {
	if !s.made() {
		return fmt.Errorf("%s: speaker has no configuration (make it with New): %w", op, ErrInvalidConfig)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// made reports whether New made s. The trackers are set only by New, so
// reading them needs no lock.
func (s *Speaker) made() bool { return s != nil && s.adv != nil }

// Start starts the BGP server: it listens (unless ListenPort is -1),
// installs every advertisement, then adds the peers. GoBGP opens its
// sockets in the network namespace of the calling process's threads, so
// run the process (or the child process holding the speaker) inside the
// node's namespace; several speakers in one namespace need distinct
// NodeIP/ListenAddresses. Start after Stop starts the speaker again; a
// Start during a Stop (from another goroutine) first waits for that Stop
// to finish, or returns ctx's error (wrapped) if ctx ends first.
func (s *Speaker) Start(ctx context.Context) error {
	if err := s.begin(ctx, "start BGP speaker"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.waitStopLocked(ctx); err != nil {
		return fmt.Errorf("start BGP speaker: waiting for Stop: %w", err)
	}
	if s.srv != nil {
		return ErrAlreadyStarted
	}
	if s.gobgp == nil {
		// GoBGP's Serve loop never returns, so the speaker makes one
		// server for its whole life and restarts BGP on it.
		s.gobgp = server.NewBgpServer(server.LoggerOption(slogAdapter{l: s.o.log, level: s.level}))
		go s.gobgp.Serve()
	}
	srv := s.gobgp
	g := &api.Global{Asn: s.cfg.asn, RouterId: s.cfg.routerID.String(), ListenPort: s.cfg.port}
	for _, a := range s.cfg.ListenAddresses {
		g.ListenAddresses = append(g.ListenAddresses, a.String())
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		_ = srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		return fmt.Errorf("start BGP (AS %d, router ID %s, port %d): %w", s.cfg.asn, s.cfg.routerID, s.cfg.port, err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	runner, err := syncrunner.New(s.syncLearned, syncrunner.Config{MinInterval: s.o.minSync, MaxInterval: programmerResync},
		syncrunner.WithLogger(s.o.log), syncrunner.WithName("bgp learned routes"))
	if err != nil {
		cancel()
		_ = srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		return err
	}
	wctx, unwatch := context.WithCancel(context.Background())
	s.srv, s.cancel, s.unwatch, s.done = srv, cancel, unwatch, nil
	s.lmu.Lock()
	select {
	case <-s.synced: // a previous run: hold learned routes again
		s.synced = make(chan struct{})
	default:
	}
	clear(s.eor)
	clear(s.established)
	s.lmu.Unlock()
	s.runner.Store(runner)
	watch := &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}, Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST}, {Type: api.WatchEventRequest_Table_Filter_EOR}}}}
	if err := srv.WatchEvent(wctx, watch, s.onEvent); err != nil {
		s.stopLocked()
		return fmt.Errorf("watch BGP events: %w", err)
	}
	if err := s.flushAdvertisementsLocked(ctx); err != nil {
		s.stopLocked()
		return err
	}
	if err := s.flushPeersLocked(ctx); err != nil {
		s.stopLocked()
		return err
	}
	done := make(chan struct{})
	s.done = done
	go func() {
		defer close(done)
		_ = runner.Run(rctx)
	}()
	startPeers := slices.Collect(maps.Keys(maps.Collect(s.peers.Desired().All())))
	// The timeout is read here, under s.mu: SetConfig may replace s.cfg
	// while the startup sync runs.
	go s.startupSync(rctx, startPeers, s.cfg.startup)
	return nil
}

// Stop stops the learned-route runner, sends a Cease to every peer and
// waits until GoBGP has ended the sessions (at most 5 s), then closes the
// listener. Learned routes stay in the kernel: a restarted
// speaker reconciles them after its startup sync instead of flushing them.
// Stop returns once the speaker is stopped, runner included: a Stop while
// another Stop is in progress waits for it. Stop on a stopped speaker does
// nothing.
func (s *Speaker) Stop() {
	if !s.made() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.waitStopLocked(context.Background())
	s.stopLocked()
}

// waitStopLocked waits until no Stop is in progress, or until ctx ends
// (its error). s.mu is held on entry and on return, released while
// waiting.
func (s *Speaker) waitStopLocked(ctx context.Context) error {
	for s.stopping != nil {
		stopping := s.stopping
		s.mu.Unlock()
		var err error
		select {
		case <-stopping:
		case <-ctx.Done():
			err = ctx.Err()
		}
		s.mu.Lock()
		if err != nil {
			return err
		}
	}
	return nil
}

// stopLocked stops a running speaker. It may release s.mu to wait for the
// learned-route runner; s.stopping tells Start and Stop to wait meanwhile.
func (s *Speaker) stopLocked() {
	if s.srv == nil {
		return
	}
	stopping := make(chan struct{})
	s.stopping = stopping
	defer func() { // s.mu is held again here
		s.stopping = nil
		close(stopping)
	}()
	srv, done := s.srv, s.done
	s.srv, s.done, s.keepInstalled = nil, nil, nil
	s.cancel() // no learned route is programmed from here on
	s.dropSessions(srv)
	s.unwatch()
	_ = srv.StopBgp(context.Background(), &api.StopBgpRequest{})
	// What GoBGP holds is gone; forget it so a later Start re-adds all.
	s.adv.Dataplane().ReplaceAll(maps.All(map[netip.Prefix]path{}))
	s.peers.Dataplane().ReplaceAll(maps.All(map[netip.Addr]Peer{}))
	clear(s.peerKeys)
	if done != nil { // the learned-route runner is running
		s.mu.Unlock()
		<-done
		s.mu.Lock()
	}
}

// sessionDrainTime bounds how long Stop waits for GoBGP to end the
// sessions of the peers it deletes.
const sessionDrainTime = 5 * time.Second

// dropSessions deletes every peer from srv (each established session gets
// a Cease) and waits, at most sessionDrainTime, until GoBGP has reported
// each established one down, which it does only once the session's
// goroutines have ended. StopBgp deletes the peers too, but in the same
// step it zeroes the global configuration that a session's receive loop
// still reads for every UPDATE: a data race inside GoBGP v3.37.0 when a
// peer sends while the speaker stops.
func (s *Speaker) dropSessions(srv *server.BgpServer) {
	ctx := context.Background()
	for addr := range s.peers.Dataplane().All() {
		_ = srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()})
	}
	for deadline := time.Now().Add(sessionDrainTime); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		s.lmu.Lock()
		n := len(s.established)
		s.lmu.Unlock()
		if n == 0 {
			return
		}
	}
}

// Synced is closed once, after Start, every peer configured at Start has
// sent End-of-RIB (or Config.StartupSyncTimeout passed). Until then learned
// routes are not handed to the RouteProgrammer, so routes a previous run
// left in the kernel keep forwarding; callers that reconcile the same
// RouteOwner for other sources should wait for it too.
func (s *Speaker) Synced() <-chan struct{} {
	if !s.made() {
		return nil
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.synced
}

func (s *Speaker) startupSync(ctx context.Context, peers []netip.Addr, timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.lmu.Lock()
		all := true
		for _, p := range peers {
			all = all && s.eor[p]
		}
		s.lmu.Unlock()
		if all {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			s.o.log.Info("BGP startup sync timed out; programming learned routes", "timeout", timeout)
			goto done
		case <-tick.C:
		}
	}
done:
	s.lmu.Lock()
	select {
	case <-s.synced:
	default:
		close(s.synced)
	}
	s.lmu.Unlock()
	s.trigger()
}

func (s *Speaker) trigger() {
	if r := s.runner.Load(); r != nil {
		r.Trigger()
	}
}

func (s *Speaker) onEvent(ev *api.WatchEventResponse) {
	if t := ev.GetTable(); t != nil {
		for _, p := range t.Paths {
			if p.Nlri == nil { // End-of-RIB
				if a, err := netip.ParseAddr(p.NeighborIp); err == nil {
					s.lmu.Lock()
					s.eor[a.Unmap()] = true
					s.lmu.Unlock()
				}
			}
		}
	}
	if pe := ev.GetPeer(); pe != nil {
		st := pe.GetPeer().GetState()
		if a, err := netip.ParseAddr(st.GetNeighborAddress()); err == nil {
			s.noteSession(a.Unmap(), sessionState(st.GetSessionState()))
		}
		s.o.log.Info("BGP peer", "peer", st.GetNeighborAddress(), "state", sessionState(st.GetSessionState()), "event", pe.GetType().String())
	}
	s.trigger()
}

// SetConfig changes the global configuration at run time. AS number,
// router ID, listen addresses and port need a restart (Stop, Start): a
// running speaker refuses to change them with ErrInvalidConfig. Service
// CIDRs, communities, prefix advertisements, filters, mesh password and
// log level apply at once; after SetTopology the speaker resolves the
// peers of that topology again with cfg (mesh password, mesh on or off,
// route-reflector clients), and a cfg the topology does not resolve with
// (ResolvePeers' errors) is refused and changes nothing. After SetPeers
// the peers are the caller's: re-resolve them and call SetPeers.
// RestartTime, NodeMeshMaxRestartTime and RouteReflectorClusterID are
// part of the sessions: a running session whose announced restart time
// or cluster ID they change is reset (added again), the others stay up.
func (s *Speaker) SetConfig(ctx context.Context, cfg Config) error {
	if err := s.begin(ctx, "set BGP configuration"); err != nil {
		return err
	}
	r, err := cfg.resolve()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil && (r.asn != s.cfg.asn || r.routerID != s.cfg.routerID || r.port != s.cfg.port ||
		!slices.Equal(r.ListenAddresses, s.cfg.ListenAddresses) || r.NodeIP != s.cfg.NodeIP || r.NodeIPv6 != s.cfg.NodeIPv6) {
		return fmt.Errorf("AS number, router ID, node addresses and listen settings cannot change while running: %w", ErrInvalidConfig)
	}
	var peers []Peer
	if s.topo != nil {
		// The peers came from SetTopology: resolve them again, so mesh
		// password, mesh on/off, listen port and cluster ID apply, before
		// anything changes.
		if peers, err = ResolvePeers(cfg, *s.topo); err != nil {
			return fmt.Errorf("set BGP configuration: topology of the last SetTopology: %w", err)
		}
	}
	old := s.cfg
	s.cfg = r
	if s.topo != nil {
		if err := s.checkPeersLocked(peers); err != nil {
			s.cfg = old
			return fmt.Errorf("set BGP configuration: topology of the last SetTopology: %w", err)
		}
	}
	s.level.Set(r.LogLevel)
	s.setConfigSourceLocked()
	s.recomputeLocked(nil)
	var errs []error
	if err := s.flushAdvertisementsLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	// Restart times and the cluster ID are part of the sessions.
	if s.topo != nil {
		if err := s.setPeersLocked(ctx, peers, s.topo); err != nil {
			errs = append(errs, err)
		}
	} else if err := s.flushPeersLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	s.trigger() // the import filter may have changed
	return joinErrs(errs)
}

// setConfigSourceLocked makes the service CIDRs an advertisement source.
func (s *Speaker) setConfigSourceLocked() {
	m := map[netip.Prefix]Advertisement{}
	for _, set := range [][]netip.Prefix{s.cfg.ServiceClusterIPs, s.cfg.ServiceExternalIPs, s.cfg.ServiceLoadBalancerIPs} {
		for _, p := range set {
			m[p] = Advertisement{Prefix: p}
		}
	}
	s.sources[serviceCIDRSource] = m
}

// SetPeers replaces the set of peers (as ResolvePeers computes them, or
// hand-written). Only the difference is applied: unchanged sessions stay
// up, changed ones are reset. Errors wrap ErrInvalidPeer (also for a
// peer at one of the node's own addresses, which ResolvePeers skips as
// Calico does) or ErrDuplicatePeer, and then nothing changes. It ends
// what an earlier SetTopology set up: the speaker forgets that topology.
func (s *Speaker) SetPeers(ctx context.Context, peers []Peer) error {
	if err := s.begin(ctx, "set BGP peers"); err != nil {
		return err
	}
	if err := validatePeers(peers); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setPeersLocked(ctx, peers, nil)
}

// checkPeersLocked refuses peers the node has no address of the family
// for, and peers at one of the node's own addresses.
func (s *Speaker) checkPeersLocked(peers []Peer) error {
	for _, p := range peers {
		if (p.Address.Is4() && !s.cfg.NodeIP.IsValid()) || (p.Address.Is6() && !s.cfg.NodeIPv6.IsValid()) {
			return fmt.Errorf("peer %s (%s): the node has no address of that family: %w", p.Name, p.Address, ErrInvalidPeer)
		}
		if p.Address == s.cfg.NodeIP || p.Address == s.cfg.NodeIPv6 {
			return fmt.Errorf("peer %s (%s) is this node: %w", p.Name, p.Address, ErrInvalidPeer)
		}
	}
	return nil
}

// setPeersLocked checks peers against the node's addresses, makes them the
// desired peers, remembers topo (nil: the peers were given by hand), and
// applies the difference. On an error from the checks nothing changes.
func (s *Speaker) setPeersLocked(ctx context.Context, peers []Peer, topo *Topology) error {
	if err := s.checkPeersLocked(peers); err != nil {
		return err
	}
	m := make(map[netip.Addr]Peer, len(peers))
	for _, p := range peers {
		if len(p.Filters) > 0 { // copied: the caller may reuse its slices
			fs := make([]BGPFilter, len(p.Filters))
			for i, f := range p.Filters {
				fs[i] = f.clone()
			}
			p.Filters = fs
		}
		m[p.Address] = p
	}
	s.topo = topo
	s.peers.Desired().ReplaceAll(maps.All(m))
	setGauge(s.o.metrics.Peers, len(m))
	return s.flushPeersLocked(ctx)
}

// SetTopology is ResolvePeers for this speaker's config followed by
// SetPeers. The speaker keeps a copy of topo: the local node's
// routeReflectorClusterID is the cluster ID of its client sessions when
// Config.RouteReflectorClusterID is empty.
func (s *Speaker) SetTopology(ctx context.Context, topo Topology) error {
	if err := s.begin(ctx, "set BGP topology"); err != nil {
		return err
	}
	topo = topo.clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	peers, err := ResolvePeers(s.cfg.Config, topo)
	if err != nil {
		return err
	}
	return s.setPeersLocked(ctx, peers, &topo)
}

func (s *Speaker) flushPeersLocked(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	var errs []error
	// The policies go first, so a new peer's first UPDATE has them.
	if err := s.setPoliciesLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	for addr := range s.peers.PendingDeletions() {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("delete peer %s: %w", addr, err))
			continue
		}
		s.peers.Dataplane().Delete(addr)
		delete(s.peerKeys, addr)
	}
	updates := maps.Collect(s.peers.PendingUpdates())
	for addr, p := range s.peers.Desired().All() {
		// An unchanged Peer whose session the configuration now renders
		// differently (SetConfig) is re-added too.
		if _, pending := updates[addr]; pending {
			continue
		}
		if key, had := s.peerKeys[addr]; had && key != s.sessionKey(p) {
			updates[addr] = p
		}
	}
	var refilter []netip.Addr
	for _, addr := range slices.SortedFunc(maps.Keys(updates), netip.Addr.Compare) {
		p := updates[addr]
		key := s.sessionKey(p)
		if old, had := s.peers.Dataplane().Get(addr); had && old.sameSession(p) && s.peerKeys[addr] == key && !s.exportTightenedLocked(old, p) {
			// Only the filters changed, and nothing sent is now rejected:
			// the policies have them already; a soft reset re-applies them
			// without dropping the session.
			s.peers.Dataplane().Set(addr, p)
			refilter = append(refilter, addr)
			continue
		}
		if _, had := s.peers.Dataplane().Get(addr); had {
			if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
				errs = append(errs, fmt.Errorf("replace peer %s: %w", addr, err))
				continue
			}
			s.peers.Dataplane().Delete(addr)
			delete(s.peerKeys, addr)
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s (%s): %w", p.Name, addr, err))
			continue
		}
		s.peers.Dataplane().Set(addr, p)
		s.peerKeys[addr] = key
		s.warnListenerLocked(p)
	}
	for _, addr := range refilter {
		if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Soft: true, Direction: api.ResetPeerRequest_BOTH}); err != nil {
			errs = append(errs, fmt.Errorf("re-apply filters to peer %s: %w", addr, err))
		}
	}
	return joinErrs(errs)
}

func (s *Speaker) apiPeer(p Peer) *api.Peer {
	local := s.cfg.NodeIP
	if p.Address.Is6() {
		local = s.cfg.NodeIPv6
	}
	if p.SourceAddress.IsValid() {
		local = p.SourceAddress
	}
	fam := familyOf(p.Address)
	restart := p.MaxRestartTime
	if restart == 0 {
		restart = s.cfg.restart
		if p.Name != "" && len(p.Name) > 5 && p.Name[:5] == "mesh/" && s.cfg.NodeMeshMaxRestartTime > 0 {
			restart = s.cfg.NodeMeshMaxRestartTime
		}
	}
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASNumber, AuthPassword: p.Password, Description: p.Name,
			AllowOwnAsn: uint32(p.NumAllowedLocalASNumbers)},
		Transport: &api.Transport{LocalAddress: local.String(), RemotePort: uint32(p.port()), PassiveMode: p.Passive},
		Timers: &api.Timers{Config: &api.TimersConfig{ConnectRetry: 5, HoldTime: 90, KeepaliveInterval: 30,
			IdleHoldTimeAfterReset: 1}},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}},
	}
	if p.SourceAddressMode == SourceAddressNone {
		ap.Transport.LocalAddress = "" // GoBGP binds the unspecified address
	}
	if s.cfg.port == -1 {
		ap.Transport.LocalPort = 0
	}
	if p.EBGPMultihopTTL > 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihopTTL)}
	}
	if p.TTLSecurity > 0 {
		ap.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: uint32(256 - p.TTLSecurity)}
	}
	if p.RouteReflectorClient {
		ap.RouteReflector = &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: s.clusterID()}
	}
	if restart > 0 {
		ap.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(restart / time.Second)}
		ap.AfiSafis[0].MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	return ap
}

// sessionKey is the session GoBGP gets for p under the current
// configuration, in a comparable form.
func (s *Speaker) sessionKey(p Peer) string {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(s.apiPeer(p))
	if err != nil { // cannot happen for the messages apiPeer builds
		return ""
	}
	return string(raw)
}

// clusterID is the route-reflector cluster ID of client sessions: the
// node's routeReflectorClusterID (Config's, else the local node's in the
// topology of SetTopology, as Calico renders BIRD's "rr cluster id"), else
// the router ID (GoBGP needs one per client; hand-written client peers
// without either).
func (s *Speaker) clusterID() string {
	if s.cfg.RouteReflectorClusterID != "" {
		return s.cfg.RouteReflectorClusterID
	}
	if s.topo != nil {
		for _, n := range s.topo.Nodes {
			if n.Name == s.cfg.NodeName && n.RouteReflectorClusterID != "" {
				return n.RouteReflectorClusterID
			}
		}
	}
	return s.cfg.routerID.String()
}

func joinErrs(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return fmt.Errorf("%w (and %d more errors)", errs[0], len(errs)-1)
}
