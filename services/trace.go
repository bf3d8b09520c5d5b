package services

import "net/netip"

// TracePacket is a new connection's first packet, for the backends'
// packet tracers (services/nftables.Trace, services/iptables.Trace).
type TracePacket struct {
	Src, Dst netip.Addr
	Protocol string // "tcp", "udp", "sctp"
	DstPort  uint16
	// FromHost is true for a packet the node itself sends (output hooks),
	// false for one arriving on an interface (prerouting, then input or
	// forward).
	FromHost bool
}

// TraceOutcome is one way a traced packet can go: Verdict is "DNAT" (to
// DNAT), "ACCEPT" (not a service: left alone), "REJECT" or "DROP";
// Masquerade tells whether postrouting rewrites the source.
type TraceOutcome struct {
	Verdict    string
	DNAT       netip.AddrPort
	Masquerade bool
}

// String is "DNAT addr:port", "ACCEPT", "REJECT" or "DROP", with " masq"
// appended when the source is masqueraded.
func (o TraceOutcome) String() string {
	s := o.Verdict
	if o.Verdict == "DNAT" {
		s += " " + o.DNAT.String()
	}
	if o.Masquerade {
		s += " masq"
	}
	return s
}
