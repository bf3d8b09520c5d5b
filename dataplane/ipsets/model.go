package ipsets

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Type is an ipset type (the TYPENAME of `ipset create NAME TYPENAME`).
// Only the five hash types below are supported: the four Calico Felix
// uses for selectors, CIDRs and named ports (felix/ipsets/ipset_defs.go),
// and hash:ip,port,ip, kube-proxy IPVS mode's hairpin set.
type Type string

// The supported set types.
const (
	// HashIP holds single addresses ("10.0.0.1").
	HashIP Type = "hash:ip"
	// HashNet holds CIDRs ("10.0.0.0/24"); a host address is a full-length prefix.
	HashNet Type = "hash:net"
	// HashIPPort holds address, protocol and port ("10.0.0.1,tcp:80").
	HashIPPort Type = "hash:ip,port"
	// HashNetPort holds CIDR, protocol and port ("10.0.0.0/24,udp:53").
	HashNetPort Type = "hash:net,port"
	// HashIPPortIP holds address, protocol, port and a second address
	// ("10.0.0.1,tcp:80,10.0.0.1"); services/iptables matches it
	// `dst,dst,src` for hairpin connections, as kube-proxy's IPVS mode
	// does with its KUBE-LOOP-BACK set.
	HashIPPortIP Type = "hash:ip,port,ip"
)

func (t Type) valid() bool {
	switch t {
	case HashIP, HashNet, HashIPPort, HashNetPort, HashIPPortIP:
		return true
	}
	return false
}

func (t Type) hasPort() bool { return t == HashIPPort || t == HashNetPort || t == HashIPPortIP }
func (t Type) hasIP2() bool  { return t == HashIPPortIP }
func (t Type) isNet() bool   { return t == HashNet || t == HashNetPort }

// Family is the address family of a set (`family inet|inet6`).
type Family uint8

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "inet" or "inet6", as `ipset create ... family` spells it.
func (f Family) String() string {
	switch f {
	case IPv4:
		return "inet"
	case IPv6:
		return "inet6"
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

func (f Family) bits() int {
	if f == IPv6 {
		return 128
	}
	return 32
}

// Protocol is the layer-4 protocol of a port member.
type Protocol uint8

// Protocols accepted in port members (IANA numbers).
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

// String returns "tcp", "udp" or "sctp".
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

func parseProtocol(s string) (Protocol, bool) {
	switch s {
	case "tcp":
		return TCP, true
	case "udp":
		return UDP, true
	case "sctp":
		return SCTP, true
	}
	return 0, false
}

// Member is one entry of a set. It is comparable and canonical: two
// members that the kernel stores as one entry are ==.
//
// Prefix holds the address as a full-length prefix for hash:ip and
// hash:ip,port, and a masked CIDR for hash:net and hash:net,port. Protocol
// and Port are zero for the types without a port. Addr2 is the second
// address of hash:ip,port,ip and the zero Addr for the other types.
type Member struct {
	Prefix   netip.Prefix
	Protocol Protocol
	Port     uint16
	Addr2    netip.Addr
}

// IP returns a hash:ip member.
func IP(a netip.Addr) Member { return Member{Prefix: netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())} }

// Net returns a hash:net member; host bits are cleared as the kernel does.
func Net(p netip.Prefix) Member {
	return Member{Prefix: netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()}
}

// IPPort returns a hash:ip,port member.
func IPPort(a netip.Addr, proto Protocol, port uint16) Member {
	m := IP(a)
	m.Protocol, m.Port = proto, port
	return m
}

// IPPortIP returns a hash:ip,port,ip member.
func IPPortIP(a netip.Addr, proto Protocol, port uint16, a2 netip.Addr) Member {
	m := IPPort(a, proto, port)
	m.Addr2 = a2.Unmap()
	return m
}

// NetPort returns a hash:net,port member.
func NetPort(p netip.Prefix, proto Protocol, port uint16) Member {
	m := Net(p)
	m.Protocol, m.Port = proto, port
	return m
}

// String renders the member in `ipset add` syntax for its type:
// "10.0.0.1", "10.0.0.0/24", "10.0.0.1,tcp:80", "fd00::/64,udp:53".
// A full-length prefix is written as a bare address.
func (m Member) String() string {
	var b strings.Builder
	if m.Prefix.IsSingleIP() {
		b.WriteString(m.Prefix.Addr().String())
	} else {
		b.WriteString(m.Prefix.String())
	}
	if m.Protocol != 0 {
		b.WriteByte(',')
		b.WriteString(m.Protocol.String())
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(m.Port)))
	}
	if m.Addr2.IsValid() {
		b.WriteByte(',')
		b.WriteString(m.Addr2.String())
	}
	return b.String()
}

// validate checks m against a set of type t and family f, returning an
// error wrapping ErrInvalidMember.
func (m Member) validate(t Type, f Family) error {
	if !m.Prefix.IsValid() {
		return fmt.Errorf("%w: no address", ErrInvalidMember)
	}
	a := m.Prefix.Addr()
	if a.Is4In6() || (f == IPv4) != a.Is4() {
		return fmt.Errorf("%w: %s is not %s", ErrInvalidMember, m, f)
	}
	if t.isNet() {
		if m.Prefix.Bits() == 0 {
			return fmt.Errorf("%w: %s: prefix length 0 is not allowed in %s", ErrInvalidMember, m, t)
		}
		if m.Prefix.Masked() != m.Prefix {
			return fmt.Errorf("%w: %s has host bits set", ErrInvalidMember, m)
		}
	} else if !m.Prefix.IsSingleIP() {
		return fmt.Errorf("%w: %s is not a single address, as %s needs", ErrInvalidMember, m, t)
	}
	if t.hasPort() {
		if _, ok := parseProtocol(m.Protocol.String()); !ok {
			return fmt.Errorf("%w: %s: protocol must be tcp, udp or sctp", ErrInvalidMember, m)
		}
	} else if m.Protocol != 0 || m.Port != 0 {
		return fmt.Errorf("%w: %s: %s has no port", ErrInvalidMember, m, t)
	}
	if t.hasIP2() {
		if !m.Addr2.IsValid() || m.Addr2.Is4In6() || m.Addr2.Zone() != "" || (f == IPv4) != m.Addr2.Is4() {
			return fmt.Errorf("%w: %s: %s needs a second %s address", ErrInvalidMember, m, t, f)
		}
	} else if m.Addr2.IsValid() {
		return fmt.Errorf("%w: %s: %s has no second address", ErrInvalidMember, m, t)
	}
	return nil
}

// ParseMember parses s in `ipset add` syntax for a set of type t and
// family f (see Member.String). Errors wrap ErrInvalidMember.
func ParseMember(t Type, f Family, s string) (Member, error) {
	if !t.valid() {
		return Member{}, fmt.Errorf("%w: %q", ErrInvalidType, t)
	}
	addr, rest, hasPort := strings.Cut(s, ",")
	if hasPort != t.hasPort() {
		return Member{}, fmt.Errorf("%w: %q: wrong shape for %s", ErrInvalidMember, s, t)
	}
	var m Member
	if strings.Contains(addr, "/") {
		if !t.isNet() {
			return Member{}, fmt.Errorf("%w: %q: %s takes no prefix length", ErrInvalidMember, s, t)
		}
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return Member{}, fmt.Errorf("%w: %q: %v", ErrInvalidMember, s, err)
		}
		m.Prefix = p
	} else {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return Member{}, fmt.Errorf("%w: %q: %v", ErrInvalidMember, s, err)
		}
		if a.Zone() != "" {
			return Member{}, fmt.Errorf("%w: %q: zone not allowed", ErrInvalidMember, s)
		}
		m.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if t.hasIP2() {
		var a2 string
		var ok bool
		rest, a2, ok = strings.Cut(rest, ",")
		if !ok {
			return Member{}, fmt.Errorf("%w: %q: want addr,proto:port,addr", ErrInvalidMember, s)
		}
		a, err := netip.ParseAddr(a2)
		if err != nil {
			return Member{}, fmt.Errorf("%w: %q: %v", ErrInvalidMember, s, err)
		}
		m.Addr2 = a
	}
	if hasPort {
		ps, port, ok := strings.Cut(rest, ":")
		if !ok {
			return Member{}, fmt.Errorf("%w: %q: want proto:port", ErrInvalidMember, s)
		}
		proto, ok := parseProtocol(ps)
		if !ok {
			return Member{}, fmt.Errorf("%w: %q: protocol must be tcp, udp or sctp", ErrInvalidMember, s)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return Member{}, fmt.Errorf("%w: %q: port: %v", ErrInvalidMember, s, err)
		}
		m.Protocol, m.Port = proto, uint16(n)
	}
	if err := m.validate(t, f); err != nil {
		return Member{}, err
	}
	return m, nil
}

// SetSpec names and shapes one set.
type SetSpec struct {
	// Name is the kernel name: the owner's prefix followed by at least one
	// byte, at most MaxNameLen bytes in all, of printable ASCII other than
	// space, '~' (reserved for temporary sets), quotes and backslash (so
	// that `ipset save` prints it on one line and iptables-restore takes it
	// as one argument). SetMembers rejects any other name with
	// ErrInvalidName.
	Name   string
	Type   Type
	Family Family
}

// MaxNameLen is the longest set name the kernel accepts (IPSET_MAXNAMELEN - 1).
const MaxNameLen = 31

// MinMaxElem is the smallest maxelem tabby creates a set with.
const MinMaxElem = 1024

// maxElemFor returns the maxelem for a set of n members: 1.5 n rounded up
// to a multiple of MinMaxElem, never below MinMaxElem.
func maxElemFor(n int) uint32 {
	want := n + n/2
	if want < MinMaxElem {
		return MinMaxElem
	}
	return uint32((want + MinMaxElem - 1) / MinMaxElem * MinMaxElem)
}
