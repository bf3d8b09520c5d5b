package bgp

import "net/netip"

// Gauge is the one method of a gauge the speaker needs;
// prometheus.Gauge satisfies it.
type Gauge interface{ Set(float64) }

// Metrics are the gauges the speaker keeps current; nil ones are skipped.
// Suggested Prometheus names: tabby_bgp_peers,
// tabby_bgp_peers_established, tabby_bgp_advertised_prefixes,
// tabby_bgp_learned_routes.
type Metrics struct {
	// Peers is the number of configured sessions.
	Peers Gauge
	// PeersEstablished is the number of sessions in state Established.
	PeersEstablished Gauge
	// Advertised is the number of prefixes GoBGP holds for advertisement.
	Advertised Gauge
	// Learned is the number of learned routes handed to the programmer.
	Learned Gauge
}

// WithMetrics makes the speaker keep m's gauges current.
func WithMetrics(m Metrics) Option { return func(o *options) { o.metrics = m } }

func setGauge(g Gauge, v int) {
	if g != nil {
		g.Set(float64(v))
	}
}

// noteSession records a session state change for PeersEstablished.
func (s *Speaker) noteSession(addr netip.Addr, st SessionState) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if st == StateEstablished {
		s.established[addr] = true
	} else {
		delete(s.established, addr)
	}
	setGauge(s.o.metrics.PeersEstablished, len(s.established))
}
