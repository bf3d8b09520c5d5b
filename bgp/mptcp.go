package bgp

import (
	"net"
	"strings"
)

// mptcpFix is what the warning from listenerRefuses tells the operator to do.
const mptcpFix = "run the program with GODEBUG=multipathtcp=0, or put //go:debug multipathtcp=0 in its main package (godebug multipathtcp=0 in its go.mod)"

// listenersAreMPTCP reports whether GoBGP's listening sockets are Multipath
// TCP. GoBGP listens through a net.ListenConfig without choosing, so Go's
// default decides: MPTCP for a program whose main module says go 1.24 or
// later, unless GODEBUG has multipathtcp=0 (or 3).
func listenersAreMPTCP() bool {
	var lc net.ListenConfig
	return lc.MultipathTCP()
}

// listenerRefuses lists what of p's session the kernel refuses to set on an
// MPTCP listening socket (TCP_MD5SIG: "protocol not available"; IP_TTL:
// "operation not supported"), so that a connection the peer opens to this
// node fails: its TCP MD5 password (the SYN is signed, the listener has no
// key: the kernel drops it; between two tabby speakers, which both listen,
// the session never comes up) and ttlSecurity (the listener answers with
// the default TTL, not 255, which the peer's minimum TTL drops). Nothing
// when the speaker does not listen (port -1) or listens on plain TCP.
func listenerRefuses(p Peer, port int32, mptcp bool) []string {
	if port == -1 || !mptcp {
		return nil
	}
	var what []string
	if p.Password != "" {
		what = append(what, "password (TCP MD5)")
	}
	if p.TTLSecurity > 0 {
		what = append(what, "ttlSecurity")
	}
	return what
}

// warnListenerLocked logs, once per session added, what of p the
// speaker's MPTCP listener cannot honour, and how to fix it.
func (s *Speaker) warnListenerLocked(p Peer) {
	what := listenerRefuses(p, s.cfg.port, s.mptcp)
	if len(what) == 0 {
		return
	}
	s.o.log.Warn("BGP peer: connections it opens to this node will fail: Go made the speaker's listening socket Multipath TCP, which cannot carry "+
		strings.Join(what, " or "), "peer", p.Name, "address", p.Address.String(), "fix", mptcpFix)
}
