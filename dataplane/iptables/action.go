package iptables

import (
	"net/netip"
	"strconv"
)

// Action is a rule's target (-j / -g): one of the types below.
type Action interface {
	args(b *argBuilder)
	// jumpTarget returns the chain an action jumps or goes to, if any.
	jumpTarget() string
}

// Accept is `-j ACCEPT`.
type Accept struct{}

// Drop is `-j DROP`.
type Drop struct{}

// Return is `-j RETURN`.
type Return struct{}

// Reject is `-j REJECT --reject-with With`; With defaults to
// icmp-port-unreachable (IPv4) / icmp6-port-unreachable (IPv6).
type Reject struct{ With string }

// Jump is `-j Chain` (returns to the calling chain).
type Jump struct{ Chain string }

// Goto is `-g Chain` (does not return).
type Goto struct{ Chain string }

// SetMark is `-j MARK --set-xmark Value/Mask`: clears the Mask bits, then
// sets Value & Mask.
type SetMark struct{ Value, Mask uint32 }

// Masquerade is `-j MASQUERADE`, optionally `--random-fully`.
type Masquerade struct{ RandomFully bool }

// DNAT is `-j DNAT --to-destination To` (address and port; port 0 keeps
// the packet's port).
type DNAT struct{ To netip.AddrPort }

// SNAT is `-j SNAT --to-source To`, optionally `--random-fully`.
type SNAT struct {
	To          netip.Addr
	RandomFully bool
}

// Log is `-j LOG --log-prefix "Prefix"` (at most 29 bytes).
type Log struct{ Prefix string }

func (Accept) args(b *argBuilder) { b.add("-j", "ACCEPT") }
func (Drop) args(b *argBuilder)   { b.add("-j", "DROP") }
func (Return) args(b *argBuilder) { b.add("-j", "RETURN") }
func (r Reject) args(b *argBuilder) {
	b.add("-j", "REJECT", "--reject-with", r.With)
}
func (j Jump) args(b *argBuilder) { b.add("-j", j.Chain) }
func (g Goto) args(b *argBuilder) { b.add("-g", g.Chain) }
func (m SetMark) args(b *argBuilder) {
	b.add("-j", "MARK", "--set-xmark")
	b.hexMask(m.Value&m.Mask, m.Mask)
}
func (m Masquerade) args(b *argBuilder) {
	b.add("-j", "MASQUERADE")
	if m.RandomFully {
		b.add("--random-fully")
	}
}
func (d DNAT) args(b *argBuilder) {
	b.add("-j", "DNAT", "--to-destination")
	b.sep()
	buf, a := b.AvailableBuffer(), d.To.Addr()
	switch {
	case d.To.Port() == 0:
		buf = a.AppendTo(buf)
	case a.Is6():
		buf = append(a.AppendTo(append(buf, '[')), "]:"...)
	default:
		buf = append(a.AppendTo(buf), ':')
	}
	if d.To.Port() != 0 {
		buf = strconv.AppendUint(buf, uint64(d.To.Port()), 10)
	}
	_, _ = b.Write(buf)
}
func (s SNAT) args(b *argBuilder) {
	b.add("-j", "SNAT", "--to-source")
	b.sep()
	_, _ = b.Write(s.To.AppendTo(b.AvailableBuffer()))
	if s.RandomFully {
		b.add("--random-fully")
	}
}
func (l Log) args(b *argBuilder) {
	b.add("-j", "LOG", "--log-prefix")
	b.quoted(l.Prefix)
}

func (Accept) jumpTarget() string     { return "" }
func (Drop) jumpTarget() string       { return "" }
func (Return) jumpTarget() string     { return "" }
func (Reject) jumpTarget() string     { return "" }
func (j Jump) jumpTarget() string     { return j.Chain }
func (g Goto) jumpTarget() string     { return g.Chain }
func (SetMark) jumpTarget() string    { return "" }
func (Masquerade) jumpTarget() string { return "" }
func (DNAT) jumpTarget() string       { return "" }
func (SNAT) jumpTarget() string       { return "" }
func (Log) jumpTarget() string        { return "" }
