package bgp

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// SessionState is a BGP session's FSM state (RFC 4271 section 8).
type SessionState string

const (
	StateUnknown     SessionState = "Unknown"
	StateIdle        SessionState = "Idle"
	StateConnect     SessionState = "Connect"
	StateActive      SessionState = "Active"
	StateOpenSent    SessionState = "OpenSent"
	StateOpenConfirm SessionState = "OpenConfirm"
	StateEstablished SessionState = "Established"
)

func sessionState(s api.PeerState_SessionState) SessionState {
	switch s {
	case api.PeerState_IDLE:
		return StateIdle
	case api.PeerState_CONNECT:
		return StateConnect
	case api.PeerState_ACTIVE:
		return StateActive
	case api.PeerState_OPENSENT:
		return StateOpenSent
	case api.PeerState_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_ESTABLISHED:
		return StateEstablished
	}
	return StateUnknown
}

// PeerStatus is one session as a node status command shows it (the
// equivalent of `birdc show protocols` / `calicoctl node status`).
type PeerStatus struct {
	Peer
	State SessionState
	// Uptime is how long the session has been Established (0 otherwise).
	Uptime time.Duration
	// Received, Accepted and Sent count prefixes of the peer's family.
	Received, Accepted, Sent uint64
}

// Peers returns the state of every configured peer, sorted by address.
// Before Start (or after Stop) every peer is Idle. Errors: the context's
// error, a failure of GoBGP's ListPeer, or ErrInvalidConfig for a Speaker
// not made by New.
func (s *Speaker) Peers(ctx context.Context) ([]PeerStatus, error) {
	if err := s.begin(ctx, "list BGP peers"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	srv := s.srv
	conf := maps.Collect(s.peers.Desired().All())
	s.mu.Unlock()
	out := make([]PeerStatus, 0, len(conf))
	byAddr := map[netip.Addr]*api.Peer{}
	if srv != nil {
		err := srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
				byAddr[a] = p
			}
		})
		if err != nil {
			return nil, fmt.Errorf("list BGP peers: %w", err)
		}
	}
	for addr, p := range conf {
		st := PeerStatus{Peer: p, State: StateIdle}
		if ap := byAddr[addr]; ap != nil {
			st.State = sessionState(ap.GetState().GetSessionState())
			if up := ap.GetTimers().GetState().GetUptime(); up != nil && st.State == StateEstablished {
				st.Uptime = time.Since(up.AsTime()).Truncate(time.Second)
			}
			eor := grNegotiated(ap)
			for _, af := range ap.GetAfiSafis() {
				if ss := af.GetState(); ss != nil {
					st.Received += ss.Received
					st.Accepted += ss.Accepted
					st.Sent += ss.Advertised
					if eor && ss.Advertised > 0 {
						// GoBGP counts the End-of-RIB marker it sends a
						// graceful-restart peer as an advertised path.
						st.Sent--
					}
				}
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return out, nil
}

// Explanation says why a prefix is or is not advertised, and whether and
// how it is programmed from what peers sent.
type Explanation struct {
	Prefix netip.Prefix
	// Advertised is true when the node advertises the prefix; Sources are
	// the sources that want it, Communities what is attached.
	Advertised  bool
	Sources     []string
	Communities []Community
	// NotAdvertised explains a prefix some source wants that is not
	// advertised (export filter, service CIDR, missing address family).
	NotAdvertised string
	// Learned is true when a peer sent the prefix and the node programs it,
	// through NextHops. NotProgrammed says why a received prefix is not.
	Learned       bool
	NextHops      []netip.Addr
	NotProgrammed string
}

// Why explains p. For a prefix no source wants and no peer sent, every
// field but Prefix is zero.
func (s *Speaker) Why(p netip.Prefix) Explanation {
	e := Explanation{Prefix: p}
	if !s.made() {
		return e
	}
	s.mu.Lock()
	for _, name := range slices.Sorted(maps.Keys(s.sources)) {
		if _, ok := s.sources[name][p]; ok {
			e.Sources = append(e.Sources, name)
		}
	}
	if pa, ok := s.adv.Desired().Get(p); ok {
		e.Advertised, e.Communities = true, slices.Clone(pa.list)
	}
	e.NotAdvertised = s.advWhy[p]
	s.mu.Unlock()
	s.lmu.Lock()
	if nh, ok := s.learned.Desired().Get(p); ok {
		e.Learned, e.NextHops = true, nh.addrs()
	}
	e.NotProgrammed = s.learnedWhy[p]
	s.lmu.Unlock()
	return e
}

// Learned returns every learned route the speaker currently selects,
// sorted by prefix (what it hands, or will hand after the startup sync, to
// the RouteProgrammer).
func (s *Speaker) Learned() []LearnedRoute {
	if !s.made() {
		return nil
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	out := make([]LearnedRoute, 0, s.learned.Desired().Len())
	for p, nh := range s.learned.Desired().All() {
		out = append(out, LearnedRoute{Prefix: p, NextHops: nh.addrs()})
	}
	slices.SortFunc(out, func(a, b LearnedRoute) int { return comparePrefixes(a.Prefix, b.Prefix) })
	return out
}

// Advertised returns every prefix the node advertises, sorted.
func (s *Speaker) Advertised() []netip.Prefix {
	if !s.made() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Keys(maps.Collect(s.adv.Desired().All())))
	slices.SortFunc(out, comparePrefixes)
	return out
}

// comparePrefixes orders by address, then prefix length.
func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// grNegotiated reports whether graceful restart is on for the session: this
// end has it configured and the peer's OPEN carried the capability.
func grNegotiated(p *api.Peer) bool {
	if !p.GetGracefulRestart().GetEnabled() {
		return false
	}
	for _, c := range p.GetState().GetRemoteCap() {
		if c.MessageIs(&api.GracefulRestartCapability{}) {
			return true
		}
	}
	return false
}
