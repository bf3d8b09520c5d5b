package iptables

import "strconv"

// NFLOG is `-j NFLOG --nflog-prefix "Prefix" --nflog-group Group`: the
// packet is copied to userspace on netlink group Group (nfnetlink_log) with
// Prefix attached, and continues to the next rule (like LOG). Prefix is 1 to
// 63 printable bytes.
type NFLOG struct {
	Group  uint16
	Prefix string
}

func (l NFLOG) args(b *argBuilder) {
	b.add("-j", "NFLOG", "--nflog-prefix")
	b.quoted(l.Prefix)
	b.add("--nflog-group", strconv.Itoa(int(l.Group)))
}

func (NFLOG) jumpTarget() string { return "" }

type icmpMatch struct {
	typ, code int // code -1: any
	not       bool
	proto     Protocol // the preceding Protocol match, set when validating
}

func (i icmpMatch) base() bool { return false }
func (i icmpMatch) args(b *argBuilder) {
	v := strconv.Itoa(i.typ)
	if i.code >= 0 {
		v += "/" + strconv.Itoa(i.code)
	}
	if i.proto == ICMPv6 {
		b.add("-m", "icmp6")
		b.not(i.not)
		b.add("--icmpv6-type", v)
		return
	}
	b.add("-m", "icmp")
	b.not(i.not)
	b.add("--icmp-type", v)
}

// ICMPType matches an ICMP (or, after Protocol(ICMPv6), ICMPv6) type and
// code (`-m icmp --icmp-type T/C`); code -1 matches any code. It needs a
// preceding Protocol(icmp|ipv6-icmp); type and code are 0-255.
func (m MatchCriteria) ICMPType(typ, code int) MatchCriteria {
	return m.with(icmpMatch{typ: typ, code: code})
}

// NotICMPType negates ICMPType.
func (m MatchCriteria) NotICMPType(typ, code int) MatchCriteria {
	return m.with(icmpMatch{typ: typ, code: code, not: true})
}

// NotDestPortRanges matches a destination port in none of the ranges.
func (m MatchCriteria) NotDestPortRanges(r ...PortRange) MatchCriteria {
	return m.with(portMatch{dest: true, ranges: r, not: true})
}

// SourcePortRanges is SourcePorts with ranges.
func (m MatchCriteria) SourcePortRanges(r ...PortRange) MatchCriteria {
	return m.with(portMatch{ranges: r})
}

// NotSourcePortRanges matches a source port in none of the ranges.
func (m MatchCriteria) NotSourcePortRanges(r ...PortRange) MatchCriteria {
	return m.with(portMatch{ranges: r, not: true})
}

// NotDestIPPortSet matches a destination address and port not in the set
// (`! --match-set NAME dst,dst`).
func (m MatchCriteria) NotDestIPPortSet(name string) MatchCriteria {
	return m.with(setMatch{name, "dst,dst", true})
}

// NotSourceIPPortSet matches a source address and port not in the set
// (`! --match-set NAME src,src`).
func (m MatchCriteria) NotSourceIPPortSet(name string) MatchCriteria {
	return m.with(setMatch{name, "src,src", true})
}

// HairpinIPPortIPSet matches a packet whose destination address and port
// and source address are a member of a hash:ip,port,ip set
// (`-m set --match-set NAME dst,dst,src`): with members (EP, proto:port,
// EP), a connection DNATed back to its own client, the hairpin test of
// kube-proxy's IPVS mode (KUBE-LOOP-BACK).
func (m MatchCriteria) HairpinIPPortIPSet(name string) MatchCriteria {
	return m.with(setMatch{name, "dst,dst,src", false})
}
