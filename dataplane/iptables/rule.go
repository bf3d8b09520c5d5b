package iptables

import (
	"bytes"
	"math"
	"net/netip"
	"slices"
	"strconv"
)

// Family is the IP family a chain is written for: IPv4 (iptables) or IPv6
// (ip6tables).
type Family uint8

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// Table is a netfilter table name.
type Table string

// The tables tabby writes to.
const (
	Filter Table = "filter"
	NAT    Table = "nat"
	Mangle Table = "mangle"
	Raw    Table = "raw"
)

// builtinChains lists each table's kernel chains, in iptables-save order.
var builtinChains = map[Table][]string{
	Filter: {"INPUT", "FORWARD", "OUTPUT"},
	NAT:    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	Mangle: {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	Raw:    {"PREROUTING", "OUTPUT"},
}

func isBuiltin(t Table, chain string) bool {
	for _, c := range builtinChains[t] {
		if c == chain {
			return true
		}
	}
	return false
}

// MaxChainNameLen is the longest chain name iptables accepts
// (XT_EXTENSION_MAXNAMELEN - 1).
const MaxChainNameLen = 28

// Rule is one iptables rule: matches (all must hold) and one action.
// Build it with Match() and an Action value:
//
//	iptables.Rule{
//		Match:  iptables.Match().Protocol(iptables.TCP).DestPorts(80, 443).SourceIPSet("tabby-s-web"),
//		Action: iptables.Accept{},
//	}
type Rule struct {
	Match  MatchCriteria
	Action Action
	// Comment is an optional human comment, written as a second
	// `-m comment` after the hash comment (at most 200 bytes, no quotes,
	// backslashes or control characters).
	Comment string
}

// Protocol is an IP protocol for -p.
type Protocol string

// Protocols with port matches.
const (
	TCP    Protocol = "tcp"
	UDP    Protocol = "udp"
	SCTP   Protocol = "sctp"
	ICMP   Protocol = "icmp"
	ICMPv6 Protocol = "ipv6-icmp"
)

// matchPart is one typed match; args renders it in iptables-save's
// canonical syntax.
type matchPart interface {
	args(b *argBuilder)
	// base reports whether the match is a builtin (-s, -d, -i, -o, -p),
	// which iptables-save prints before the -m extensions.
	base() bool
}

// MatchCriteria is an ordered list of typed matches built with Match().
// Methods return a new value; the receiver is never modified.
type MatchCriteria struct{ parts []matchPart }

// Match starts an empty MatchCriteria (matches every packet).
func Match() MatchCriteria { return MatchCriteria{} }

func (m MatchCriteria) with(p matchPart) MatchCriteria {
	parts := make([]matchPart, len(m.parts), len(m.parts)+1)
	copy(parts, m.parts)
	return MatchCriteria{parts: append(parts, p)}
}

type netMatch struct {
	flag   string
	prefix netip.Prefix
	not    bool
}

func (n netMatch) base() bool { return true }
func (n netMatch) args(b *argBuilder) {
	b.not(n.not)
	b.add(n.flag)
	b.sep()
	_, _ = b.Write(n.prefix.AppendTo(b.AvailableBuffer()))
}

// SourceNet matches the source address in prefix (-s).
func (m MatchCriteria) SourceNet(p netip.Prefix) MatchCriteria {
	return m.with(netMatch{"-s", p.Masked(), false})
}

// NotSourceNet matches a source address outside prefix (! -s).
func (m MatchCriteria) NotSourceNet(p netip.Prefix) MatchCriteria {
	return m.with(netMatch{"-s", p.Masked(), true})
}

// DestNet matches the destination address in prefix (-d).
func (m MatchCriteria) DestNet(p netip.Prefix) MatchCriteria {
	return m.with(netMatch{"-d", p.Masked(), false})
}

// NotDestNet matches a destination address outside prefix (! -d).
func (m MatchCriteria) NotDestNet(p netip.Prefix) MatchCriteria {
	return m.with(netMatch{"-d", p.Masked(), true})
}

type ifaceMatch struct {
	flag, name string
	not        bool
}

func (i ifaceMatch) base() bool { return true }
func (i ifaceMatch) args(b *argBuilder) {
	b.not(i.not)
	b.add(i.flag, i.name)
}

// InInterface matches the input interface (-i); a trailing '+' is a
// prefix wildcard ("cali+").
func (m MatchCriteria) InInterface(name string) MatchCriteria {
	return m.with(ifaceMatch{"-i", name, false})
}

// NotInInterface matches any other input interface (! -i).
func (m MatchCriteria) NotInInterface(name string) MatchCriteria {
	return m.with(ifaceMatch{"-i", name, true})
}

// OutInterface matches the output interface (-o).
func (m MatchCriteria) OutInterface(name string) MatchCriteria {
	return m.with(ifaceMatch{"-o", name, false})
}

// NotOutInterface matches any other output interface (! -o).
func (m MatchCriteria) NotOutInterface(name string) MatchCriteria {
	return m.with(ifaceMatch{"-o", name, true})
}

type protoMatch struct {
	p   Protocol
	not bool
}

func (p protoMatch) base() bool { return true }
func (p protoMatch) args(b *argBuilder) {
	b.not(p.not)
	b.add("-p", string(p.p))
}

// Protocol matches the IP protocol (-p). Port matches need it first.
func (m MatchCriteria) Protocol(p Protocol) MatchCriteria { return m.with(protoMatch{p, false}) }

// NotProtocol matches any other protocol (! -p).
func (m MatchCriteria) NotProtocol(p Protocol) MatchCriteria { return m.with(protoMatch{p, true}) }

// PortRange is an inclusive port range; First == Last for one port.
type PortRange struct{ First, Last uint16 }

func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + ":" + strconv.Itoa(int(r.Last))
}

type portMatch struct {
	dest   bool
	ranges []PortRange
	not    bool
	proto  Protocol // the preceding Protocol match, set when rendering
}

func (p portMatch) base() bool { return false }
func (p portMatch) args(b *argBuilder) {
	flag := "--sport"
	if p.dest {
		flag = "--dport"
	}
	if len(p.ranges) == 1 {
		b.add("-m", string(p.proto))
		b.not(p.not)
	} else {
		b.add("-m", "multiport")
		b.not(p.not)
		flag += "s"
	}
	b.add(flag)
	b.sep()
	buf := b.AvailableBuffer()
	for i, r := range p.ranges {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendUint(buf, uint64(r.First), 10)
		if r.Last != r.First {
			buf = append(buf, ':')
			buf = strconv.AppendUint(buf, uint64(r.Last), 10)
		}
	}
	_, _ = b.Write(buf)
}

func portsToRanges(ports []uint16) []PortRange {
	rs := make([]PortRange, len(ports))
	for i, p := range ports {
		rs[i] = PortRange{p, p}
	}
	return rs
}

// DestPorts matches destination ports (`-m tcp --dport` for one,
// `-m multiport --dports` for up to 15); needs Protocol tcp, udp or sctp.
func (m MatchCriteria) DestPorts(ports ...uint16) MatchCriteria {
	return m.with(portMatch{dest: true, ranges: portsToRanges(ports)})
}

// DestPortRanges is DestPorts with ranges (a range counts as two of the 15 multiport slots).
func (m MatchCriteria) DestPortRanges(r ...PortRange) MatchCriteria {
	return m.with(portMatch{dest: true, ranges: r})
}

// NotDestPorts matches any destination port but these.
func (m MatchCriteria) NotDestPorts(ports ...uint16) MatchCriteria {
	return m.with(portMatch{dest: true, ranges: portsToRanges(ports), not: true})
}

// SourcePorts matches source ports, as DestPorts.
func (m MatchCriteria) SourcePorts(ports ...uint16) MatchCriteria {
	return m.with(portMatch{ranges: portsToRanges(ports)})
}

type setMatch struct {
	name, dir string
	not       bool
}

func (s setMatch) base() bool { return false }
func (s setMatch) args(b *argBuilder) {
	b.add("-m", "set")
	b.not(s.not)
	b.add("--match-set", s.name, s.dir)
}

// SourceIPSet matches a source address in the named ipset
// (`-m set --match-set NAME src`); the set must exist when applied.
func (m MatchCriteria) SourceIPSet(name string) MatchCriteria {
	return m.with(setMatch{name, "src", false})
}

// NotSourceIPSet matches a source address not in the set.
func (m MatchCriteria) NotSourceIPSet(name string) MatchCriteria {
	return m.with(setMatch{name, "src", true})
}

// DestIPSet matches a destination address in the named ipset.
func (m MatchCriteria) DestIPSet(name string) MatchCriteria {
	return m.with(setMatch{name, "dst", false})
}

// NotDestIPSet matches a destination address not in the set.
func (m MatchCriteria) NotDestIPSet(name string) MatchCriteria {
	return m.with(setMatch{name, "dst", true})
}

// DestIPPortSet matches destination address and port in a hash:ip,port or
// hash:net,port set (`--match-set NAME dst,dst`).
func (m MatchCriteria) DestIPPortSet(name string) MatchCriteria {
	return m.with(setMatch{name, "dst,dst", false})
}

// SourceIPPortSet matches source address and port in a port set (`src,src`).
func (m MatchCriteria) SourceIPPortSet(name string) MatchCriteria {
	return m.with(setMatch{name, "src,src", false})
}

type markMatch struct {
	value, mask uint32
	not         bool
}

func (k markMatch) base() bool { return false }
func (k markMatch) args(b *argBuilder) {
	b.add("-m", "mark")
	b.not(k.not)
	b.add("--mark")
	b.hexMask(k.value, k.mask)
}

// MarkMatchesWithMask matches packets whose mark & mask == value & mask.
func (m MatchCriteria) MarkMatchesWithMask(value, mask uint32) MatchCriteria {
	return m.with(markMatch{value & mask, mask, false})
}

// MarkClear matches packets with all mask bits clear.
func (m MatchCriteria) MarkClear(mask uint32) MatchCriteria {
	return m.with(markMatch{0, mask, false})
}

// MarkNotMatchesWithMask negates MarkMatchesWithMask.
func (m MatchCriteria) MarkNotMatchesWithMask(value, mask uint32) MatchCriteria {
	return m.with(markMatch{value & mask, mask, true})
}

// ConntrackState is a conntrack state for ConntrackState.
type ConntrackState string

// Conntrack states.
const (
	StateNew         ConntrackState = "NEW"
	StateEstablished ConntrackState = "ESTABLISHED"
	StateRelated     ConntrackState = "RELATED"
	StateInvalid     ConntrackState = "INVALID"
	StateUntracked   ConntrackState = "UNTRACKED"
	StateDNAT        ConntrackState = "DNAT"
)

type ctMatch struct {
	states []ConntrackState
	not    bool
}

func (c ctMatch) base() bool { return false }

// ctOrder is the order iptables-save prints conntrack states in.
var ctOrder = []ConntrackState{StateInvalid, StateNew, StateRelated, StateEstablished, StateUntracked, StateDNAT}

func (c ctMatch) args(b *argBuilder) {
	b.add("-m", "conntrack")
	b.not(c.not)
	b.add("--ctstate")
	b.sep()
	buf := b.AvailableBuffer()
	for _, s := range ctOrder {
		if slices.Contains(c.states, s) {
			if len(buf) > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, s...)
		}
	}
	_, _ = b.Write(buf)
}

// ConntrackState matches any of the conntrack states (`-m conntrack
// --ctstate`); they are rendered in iptables-save's order, once each.
func (m MatchCriteria) ConntrackState(states ...ConntrackState) MatchCriteria {
	return m.with(ctMatch{states: states})
}

// NotConntrackState matches none of the states.
func (m MatchCriteria) NotConntrackState(states ...ConntrackState) MatchCriteria {
	return m.with(ctMatch{states: states, not: true})
}

type addrTypeMatch struct {
	dest bool
	typ  string
	not  bool
}

func (a addrTypeMatch) base() bool { return false }
func (a addrTypeMatch) args(b *argBuilder) {
	b.add("-m", "addrtype")
	b.not(a.not)
	if a.dest {
		b.add("--dst-type", a.typ)
	} else {
		b.add("--src-type", a.typ)
	}
}

// DestAddrTypeLocal matches packets to a local address (`-m addrtype --dst-type LOCAL`),
// as kube-proxy's NodePort jump does.
func (m MatchCriteria) DestAddrTypeLocal() MatchCriteria {
	return m.with(addrTypeMatch{dest: true, typ: "LOCAL"})
}

// NotDestAddrTypeLocal negates DestAddrTypeLocal.
func (m MatchCriteria) NotDestAddrTypeLocal() MatchCriteria {
	return m.with(addrTypeMatch{dest: true, typ: "LOCAL", not: true})
}

// String renders the criteria alone, for logs.
func (m MatchCriteria) String() string {
	var b argBuilder
	m.render(&b)
	return b.String()
}

// baseRank orders builtin matches as iptables-save prints them.
func baseRank(p matchPart) int {
	switch p := p.(type) {
	case netMatch:
		if p.flag == "-d" {
			return 1
		}
		return 0
	case ifaceMatch:
		if p.flag == "-o" {
			return 3
		}
		return 2
	}
	return 4
}

// render writes the builtin matches, stably ordered by baseRank.
func (m MatchCriteria) render(b *argBuilder) {
	for rank := range 5 {
		for _, p := range m.parts {
			if p.base() && baseRank(p) == rank {
				p.args(b)
			}
		}
	}
}

func (m MatchCriteria) renderExt(b *argBuilder) {
	var proto Protocol
	for _, p := range m.parts {
		switch p := p.(type) {
		case protoMatch:
			proto = p.p
		case portMatch:
			p.proto = proto
			p.args(b)
		case icmpMatch:
			p.proto = proto
			p.args(b)
		default:
			if !p.base() {
				p.args(b)
			}
		}
	}
}

// hexMask adds value/mask as one argument, as %#x/%#x renders it.
func (b *argBuilder) hexMask(value, mask uint32) {
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	buf := append(b.AvailableBuffer(), "0x"...)
	buf = strconv.AppendUint(buf, uint64(value), 16)
	buf = append(buf, "/0x"...)
	buf = strconv.AppendUint(buf, uint64(mask), 16)
	_, _ = b.Write(buf)
}

// argBuilder accumulates space-separated, quoted-as-needed arguments.
type argBuilder struct {
	bytes.Buffer
	// family selects family-dependent syntax (the recent mask).
	family Family
}

// sep writes the space before a next argument.
func (b *argBuilder) sep() {
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
}

func (b *argBuilder) add(args ...string) {
	for _, a := range args {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a)
	}
}

func (b *argBuilder) not(n bool) {
	if n {
		b.add("!")
	}
}

// quoted adds a free-text argument as appendQuoted renders it.
func (b *argBuilder) quoted(s string) {
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	_, _ = b.Write(appendQuoted(b.AvailableBuffer(), s))
}

// appendQuoted appends the free-text argument made of parts (joined) as
// iptables-save (1.8) prints it: bare when it is all letters and digits,
// else in double quotes.
func appendQuoted(dst []byte, parts ...string) []byte {
	bare := false
	for _, s := range parts {
		for i := 0; i < len(s); i++ {
			c := s[i]
			bare = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
			if !bare {
				break
			}
		}
		if !bare && s != "" {
			break
		}
	}
	if !bare {
		dst = append(dst, '"')
	}
	for _, s := range parts {
		dst = append(dst, s...)
	}
	if !bare {
		dst = append(dst, '"')
	}
	return dst
}

// SourceAddrTypeLocal matches packets from a local address (`-m addrtype
// --src-type LOCAL`), as kube-proxy's externalTrafficPolicy Local chains
// do to send the node's own traffic to every endpoint.
func (m MatchCriteria) SourceAddrTypeLocal() MatchCriteria {
	return m.with(addrTypeMatch{typ: "LOCAL"})
}

// probabilityScale is the fixed point the kernel's statistic match keeps
// a probability in (xt_statistic: u32 of probability × 2^31).
const probabilityScale = 1 << 31

type statisticMatch struct{ fixed uint32 }

func (s statisticMatch) base() bool { return false }
func (s statisticMatch) args(b *argBuilder) {
	b.add("-m", "statistic", "--mode", "random", "--probability")
	b.sep()
	_, _ = b.Write(strconv.AppendFloat(b.AvailableBuffer(), float64(s.fixed)/probabilityScale, 'f', 11, 64))
}

// RandomProbability matches each packet independently with probability
// p, 0 < p <= 1 (`-m statistic --mode random --probability P`). The kernel
// keeps p as round(p × 2^31) / 2^31 and iptables-save prints it with 11
// decimals (1/3 is "0.33333333349"); the rule renders that form, so it
// round-trips. Balancing over n endpoints, as kube-proxy does, gives rule
// i (0-based) the probability 1/(n-i) and the last endpoint no match.
// p outside (0, 1] or NaN is ErrInvalidRule when the rule is set.
func (m MatchCriteria) RandomProbability(p float64) MatchCriteria {
	f := uint32(0)
	if p > 0 && p <= 1 {
		f = uint32(math.Round(p * probabilityScale))
	}
	return m.with(statisticMatch{fixed: f})
}

// RecentNameMaxLen is the longest list name the recent match accepts
// (XT_RECENT_NAME_LEN - 1).
const RecentNameMaxLen = 199

type recentMatch struct {
	name    string
	seconds uint32 // 0: --set, else --rcheck --seconds N --reap
	set     bool
}

func (r recentMatch) base() bool { return false }
func (r recentMatch) args(b *argBuilder) {
	b.add("-m", "recent")
	if r.set {
		b.add("--set")
	} else {
		b.add("--rcheck", "--seconds", strconv.FormatUint(uint64(r.seconds), 10), "--reap")
	}
	mask := "255.255.255.255"
	if b.family == IPv6 {
		mask = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	}
	b.add("--name", r.name, "--mask", mask, "--rsource")
}

// RecentSet adds or refreshes the packet's source address in the kernel
// list name (`-m recent --set --name NAME --mask <all ones> --rsource`);
// it always matches. kube-proxy's ClientIP affinity marks the endpoint a
// client was sent to this way. The list lives in
// /proc/net/xt_recent/NAME while a rule uses it; names are 1 to
// RecentNameMaxLen printable bytes.
func (m MatchCriteria) RecentSet(name string) MatchCriteria {
	return m.with(recentMatch{name: name, set: true})
}

// RecentCheck matches packets whose source address is in list name and
// was seen less than seconds ago, and removes older entries of the list
// (`-m recent --rcheck --seconds S --reap --name NAME --mask <all ones>
// --rsource`). seconds is 1 or more (kube-proxy passes the affinity
// timeout, at most 86400).
func (m MatchCriteria) RecentCheck(name string, seconds uint32) MatchCriteria {
	return m.with(recentMatch{name: name, seconds: seconds})
}
