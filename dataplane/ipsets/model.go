package ipsets

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	nlnl "github.com/vishvananda/netlink/nl"
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

// Net returns a hash:net member; host bits are cleared as the kernel does,
// and an IPv4-mapped IPv6 prefix of length 96 or more is unmapped
// (::ffff:10.0.0.0/120 is 10.0.0.0/24).
func Net(p netip.Prefix) Member {
	return Member{Prefix: unmapPrefix(p).Masked()}
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
	switch {
	case a.Is4In6():
		return fmt.Errorf("%w: %s is IPv4-mapped IPv6, which netlink sends as IPv4; use the IPv4 form (IP and Net unmap)", ErrInvalidMember, m)
	case f == IPv4 && !a.Is4():
		return fmt.Errorf("%w: %s is an IPv6 address, the set is %s", ErrInvalidMember, m, f)
	case f == IPv6 && a.Is4():
		return fmt.Errorf("%w: %s is an IPv4 address, the set is %s", ErrInvalidMember, m, f)
	case f != IPv4 && f != IPv6:
		return fmt.Errorf("%w: family %s", ErrInvalidMember, f)
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

// ParseMember parses s for a set of type t and family f, in the subset
// of `ipset add` syntax that Member.String writes and the shorthands
// `ipset add` takes for it:
//
//	hash:ip          ADDR
//	hash:net         ADDR | ADDR/LEN
//	hash:ip,port     ADDR,PORT-SPEC
//	hash:net,port    (ADDR | ADDR/LEN),PORT-SPEC
//	hash:ip,port,ip  ADDR,PORT-SPEC,ADDR
//	PORT-SPEC        PROTO:PORT | PORT (tcp, as `ipset add` assumes)
//	PROTO            tcp, udp or sctp, lower or upper case ("TCP", the
//	                 /etc/protocols alias ipset takes; not "Tcp")
//	PORT             decimal 0-65535
//
// ADDR is a literal address (netip.ParseAddr, no zone); an IPv4-mapped
// IPv6 address ("::ffff:10.0.0.1", and a mapped prefix of length 96 or
// more) is unmapped to IPv4, as IP and Net do, so it fits an IPv4 set and
// not an IPv6 one (the kernel stores it as IPv4 too). A hash:net CIDR must
// have its host bits clear and a length above 0. Not accepted, although
// `ipset add` takes them: host names, address and port ranges
// ("10.0.0.1-10.0.0.9", "80-90"), service names ("http"), protocol numbers
// and other protocols ("icmp:ping"), and options after the entry
// ("timeout 5", "nomatch"). Errors wrap ErrInvalidMember, or
// ErrInvalidType for a type or family this package does not support.
func ParseMember(t Type, f Family, s string) (Member, error) {
	if !t.valid() {
		return Member{}, fmt.Errorf("%w: %q", ErrInvalidType, t)
	}
	if f != IPv4 && f != IPv6 {
		return Member{}, fmt.Errorf("%w: family %d", ErrInvalidType, f)
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
		m.Prefix = unmapPrefix(p)
	} else {
		a, err := parseAddr(addr)
		if err != nil {
			return Member{}, fmt.Errorf("%w: %q: %v", ErrInvalidMember, s, err)
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
		a, err := parseAddr(a2)
		if err != nil {
			return Member{}, fmt.Errorf("%w: %q: %v", ErrInvalidMember, s, err)
		}
		m.Addr2 = a
	}
	if hasPort {
		ps, port, ok := strings.Cut(rest, ":")
		if !ok {
			ps, port = "tcp", rest // `ipset add` reads a bare port as tcp
		}
		if ps == strings.ToUpper(ps) {
			ps = strings.ToLower(ps)
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
		return Member{}, fmt.Errorf("%w (parsing %q)", err, s)
	}
	return m, nil
}

// parseAddr parses a literal address without zone, unmapping an
// IPv4-mapped IPv6 one.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("zone not allowed")
	}
	return a.Unmap(), nil
}

// unmapPrefix returns p with an IPv4-mapped IPv6 address unmapped when
// its length covers the mapped part (96 bits or more): ::ffff:10.0.0.0/120
// is 10.0.0.0/24. Any other prefix is returned as it is.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
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

// defaultMaxElem is the kernel's maxelem when create gives none (`ipset
// create` without maxelem). This package never creates a set with it, so
// a set that has it was made by someone else.
const defaultMaxElem = 65536

// maxElemFor returns the maxelem for a set of n members: 1.5 n rounded up
// to a multiple of MinMaxElem, never below MinMaxElem, and one step more
// where that is defaultMaxElem.
func maxElemFor(n int) uint32 {
	want := n + n/2
	if want < MinMaxElem {
		return MinMaxElem
	}
	m := uint32((want + MinMaxElem - 1) / MinMaxElem * MinMaxElem)
	if m == defaultMaxElem {
		m += MinMaxElem
	}
	return m
}

// createFlag is a create option as the kernel lists it in a set's header
// (IPSET_ATTR_CADT_FLAGS, IPSetResult.CadtFlags), with its `ipset save`
// word.
type createFlag struct {
	flag uint32
	word string
}

// createFlags returns the create options the kernel lists as flags, in
// `ipset save` order. This package creates sets with none of them.
func createFlags() [4]createFlag {
	return [4]createFlag{
		{nlnl.IPSET_FLAG_WITH_COUNTERS, "counters"},
		{nlnl.IPSET_FLAG_WITH_COMMENT, "comment"},
		{nlnl.IPSET_FLAG_WITH_SKBINFO, "skbinfo"},
		{nlnl.IPSET_FLAG_WITH_FORCEADD, "forceadd"},
	}
}

// validMaxElem reports whether maxElemFor can return m.
func validMaxElem(m uint32) bool {
	return m >= MinMaxElem && m%MinMaxElem == 0 && m != defaultMaxElem
}
