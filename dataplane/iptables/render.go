package iptables

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Chain is an owned chain: a name with the owner's prefix and its rules in order.
type Chain struct {
	Name  string
	Rules []Rule
}

// validToken reports whether s can be one restore argument without
// quoting: printable ASCII without quotes or backslashes, not starting
// with '-' or '!'.
func validToken(s string) bool {
	if s == "" || s[0] == '-' || s[0] == '!' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || c == '"' || c == '\'' || c == '\\' {
			return false
		}
	}
	return true
}

// validText reports whether s can be a quoted restore argument.
func validText(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// validProtocol accepts the named protocols below and numbers 0-255.
func validProtocol(p Protocol) bool {
	switch p {
	case TCP, UDP, SCTP, ICMP, ICMPv6, "udplite", "gre", "esp", "ah", "ipip", "all":
		return true
	}
	n, err := strconv.Atoi(string(p))
	return err == nil && n >= 0 && n <= 255 && strconv.Itoa(n) == string(p)
}

func validChainName(s string) bool { return validToken(s) && len(s) <= MaxChainNameLen }

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRule, fmt.Sprintf(format, a...))
}

// validate checks r for family f.
func (r Rule) validate(f Family) error {
	var proto protoMatch // the last protocol match; p == "" when none
	for _, p := range r.Match.parts {
		switch m := p.(type) {
		case netMatch:
			if !m.prefix.IsValid() || m.prefix.Addr().Zone() != "" || m.prefix.Addr().Is4() != (f == IPv4) {
				return invalid("%s %v is not an %s prefix", m.flag, m.prefix, f)
			}
		case ifaceMatch:
			if !validToken(m.name) || len(m.name) > 15 {
				return invalid("bad interface name %q", m.name)
			}
		case protoMatch:
			if !validProtocol(m.p) {
				return invalid("bad protocol %q", m.p)
			}
			if (m.p == ICMP && f == IPv6) || (m.p == ICMPv6 && f == IPv4) {
				return invalid("protocol %s in %s", m.p, f)
			}
			proto = m
		case portMatch:
			if proto.p == "" || proto.not || (proto.p != TCP && proto.p != UDP && proto.p != SCTP) {
				return invalid("port match needs a preceding Protocol(tcp|udp|sctp)")
			}
			slots := 0
			for _, pr := range m.ranges {
				if pr.First > pr.Last {
					return invalid("port range %d:%d is reversed", pr.First, pr.Last)
				}
				slots++
				if pr.First != pr.Last {
					slots++
				}
			}
			if len(m.ranges) == 0 || slots > 15 {
				return invalid("a port match takes 1 to 15 ports (a range counts 2), got %d", slots)
			}
		case setMatch:
			if !validToken(m.name) || len(m.name) > 31 {
				return invalid("bad ipset name %q", m.name)
			}
		case markMatch:
			if m.mask == 0 {
				return invalid("mark match with a zero mask")
			}
		case ctMatch:
			if len(m.states) == 0 {
				return invalid("conntrack match without states")
			}
			for _, s := range m.states {
				switch s {
				case StateNew, StateEstablished, StateRelated, StateInvalid, StateUntracked, StateDNAT:
				default:
					return invalid("bad conntrack state %q", s)
				}
			}
		case addrTypeMatch:
		case icmpMatch:
			if proto.p == "" || proto.not || (proto.p != ICMP && proto.p != ICMPv6) {
				return invalid("icmp type match needs a preceding Protocol(icmp|ipv6-icmp)")
			}
			if m.typ < 0 || m.typ > 255 || m.code < -1 || m.code > 255 {
				return invalid("icmp type %d code %d out of range", m.typ, m.code)
			}
		case statisticMatch:
			if m.fixed == 0 {
				return invalid("statistic probability must be in (0, 1]")
			}
		case recentMatch:
			if !validToken(m.name) || len(m.name) > RecentNameMaxLen {
				return invalid("bad recent list name %q", m.name)
			}
			if !m.set && m.seconds == 0 {
				return invalid("recent check of %s needs seconds > 0", m.name)
			}
		default:
			return invalid("unknown match %T", p)
		}
	}
	if !validText(r.Comment, 200) {
		return invalid("comment %q: at most 200 printable bytes without quotes or backslashes", r.Comment)
	}
	switch a := r.Action.(type) {
	case nil:
		return invalid("rule without action")
	case Accept, Drop, Return, Masquerade:
	case Reject:
		if a.With != "" && !validToken(a.With) {
			return invalid("bad reject-with %q", a.With)
		}
		if a.With == "tcp-reset" && (proto.p == "" || proto.not || proto.p != TCP) {
			// The kernel refuses it at commit time (EINVAL).
			return invalid("REJECT --reject-with tcp-reset needs Protocol(tcp)")
		}
	case Jump:
		if !validChainName(a.Chain) {
			return invalid("bad jump target %q", a.Chain)
		}
	case Goto:
		if !validChainName(a.Chain) {
			return invalid("bad goto target %q", a.Chain)
		}
	case SetMark:
		if a.Mask == 0 {
			return invalid("set-mark with a zero mask")
		}
	case DNAT:
		if !a.To.Addr().IsValid() || a.To.Addr().Zone() != "" || a.To.Addr().Is4() != (f == IPv4) {
			return invalid("DNAT to %v in %s", a.To, f)
		}
	case SNAT:
		if !a.To.IsValid() || a.To.Zone() != "" || a.To.Is4() != (f == IPv4) {
			return invalid("SNAT to %v in %s", a.To, f)
		}
	case NFLOG:
		if !validText(a.Prefix, 63) || a.Prefix == "" {
			return invalid("nflog prefix %q: 1 to 63 printable bytes", a.Prefix)
		}
	case Log:
		if !validText(a.Prefix, 29) || a.Prefix == "" {
			return invalid("log prefix %q: 1 to 29 printable bytes", a.Prefix)
		}
	default:
		return invalid("unknown action %T", a)
	}
	return nil
}

// renderRule renders r (valid for f) with its hash comment, in
// iptables-save's order: builtin matches, the hash comment, the human
// comment, extension matches, then the target.
func renderRule(r Rule, f Family, hashComment string) string {
	b := argBuilder{family: f}
	split := renderRuleParts(&b, r)
	out := slices.Concat(b.Bytes()[:split], appendQuoted(nil, hashComment), b.Bytes()[split:])
	return string(out)
}

// renderRuleParts renders r into b (empty) around its hash comment's
// value, which goes at the returned offset.
func renderRuleParts(b *argBuilder, r Rule) (split int) {
	r.Match.render(b)
	b.add("-m", "comment", "--comment")
	b.WriteByte(' ')
	split = b.Len()
	if r.Comment != "" {
		b.add("-m", "comment", "--comment")
		b.quoted(r.Comment)
	}
	r.Match.renderExt(b)
	if rj, ok := r.Action.(Reject); ok && rj.With == "" {
		rj.With = "icmp-port-unreachable"
		if b.family == IPv6 {
			rj.With = "icmp6-port-unreachable"
		}
		r.Action = rj
	}
	r.Action.args(b)
	return split
}

// hashLen is the length of a rule hash.
const hashLen = 16

// ruleHash chains hashes along a chain, as Felix does: each rule's hash
// covers the chain name, the previous rule's hash and the rule's own text
// with an empty hash comment (head + `""` + tail), so a rule's hash
// changes when anything before it does. A hash is 16 characters of
// URL-safe base64 of SHA-256. scratch is reused for the hashed bytes; the
// hash is appended to dst.
func ruleHash(dst, scratch []byte, chain string, prev, head, tail []byte) ([]byte, []byte) {
	scratch = append(scratch[:0], chain...)
	scratch = append(scratch, 0)
	scratch = append(scratch, prev...)
	scratch = append(scratch, 0)
	scratch = append(scratch, head...)
	scratch = append(scratch, `""`...)
	scratch = append(scratch, tail...)
	sum := sha256.Sum256(scratch)
	var enc [44]byte
	base64.RawURLEncoding.Encode(enc[:], sum[:])
	return append(dst, enc[:hashLen]...), scratch
}

// renderedChain is a chain's rule specs (without "-A CHAIN ") and hashes.
type renderedChain struct {
	specs  []string
	hashes []string
}

// renderChain validates and renders the rules of chain for family f;
// hashPrefix starts every hash comment ("tabby:"). The specs share one
// string, and so do the hashes (one allocation each for a whole chain).
func renderChain(chain string, rules []Rule, f Family, hashPrefix string) (renderedChain, error) {
	for i, r := range rules {
		if err := r.validate(f); err != nil {
			return renderedChain{}, fmt.Errorf("chain %s rule %d: %w", chain, i, err)
		}
	}
	rc := renderedChain{specs: make([]string, len(rules)), hashes: make([]string, len(rules))}
	if len(rules) == 0 {
		return rc, nil
	}
	b := argBuilder{family: f}
	var scratch []byte
	hashes := make([]byte, 0, hashLen*len(rules))
	var text strings.Builder // its String() does not copy
	ends := make([]int, len(rules))
	for i, r := range rules {
		b.Reset()
		split := renderRuleParts(&b, r)
		rule := b.Bytes()
		var prev []byte
		if i > 0 {
			prev = hashes[(i-1)*hashLen:]
		}
		hashes, scratch = ruleHash(hashes, scratch, chain, prev, rule[:split], rule[split:])
		if i == 0 {
			// A guess from the first rule, with room for longer ones.
			text.Grow(len(rules) * (len(rule) + len(hashPrefix) + hashLen + 8) * 5 / 4)
		}
		text.Write(rule[:split])
		text.Write(appendQuoted(scratch[:0], hashPrefix, string(hashes[i*hashLen:])))
		text.Write(rule[split:])
		ends[i] = text.Len()
	}
	allText, allHashes := text.String(), string(hashes)
	start := 0
	for i := range rules {
		rc.specs[i] = allText[start:ends[i]]
		rc.hashes[i] = allHashes[i*hashLen : (i+1)*hashLen]
		start = ends[i]
	}
	return rc, nil
}

// hashOf returns the owned hash in a saved rule's comments, or "".
func hashOf(r SavedRule, hashPrefix string) string {
	for _, c := range r.Comments {
		if h, ok := strings.CutPrefix(c, hashPrefix); ok {
			return h
		}
	}
	return ""
}
