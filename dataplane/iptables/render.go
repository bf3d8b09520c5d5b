package iptables

import (
	"cmp"
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
		if !tokenByte(rune(s[i])) {
			return false
		}
	}
	return true
}

// tokenByte reports whether c may appear in an unquoted restore argument.
func tokenByte(c rune) bool {
	return c > ' ' && c <= '~' && c != '"' && c != '\'' && c != '\\'
}

// ValidInterfaceName reports whether s can name a network device in an
// -i or -o match: a name the kernel accepts (1 to 15 bytes, not "." or
// "..", no '/', ':' or white space: dev_valid_name) that is also one
// restore argument (printable ASCII, no quotes or backslash, not starting
// with '-' or '!'). A trailing '+' is iptables' prefix wildcard.
func ValidInterfaceName(s string) bool {
	return validToken(s) && len(s) <= 15 && s != "." && s != ".." && !strings.ContainsAny(s, "/:")
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

// validChainName reports whether s can name a chain (checkChainName says
// why not).
func validChainName(s string) bool { return checkChainName(s) == nil }

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRule, fmt.Sprintf(format, a...))
}

// validate checks r for family f (the checks that do not depend on the
// table; validateIn adds those).
func (r Rule) validate(f Family) error {
	var proto protoMatch // the last protocol match; p == "" when none
	var seen [5]bool     // builtin flags: -s, -d, -i, -o, -p
	for _, p := range r.Match.parts {
		if p.base() {
			// iptables refuses a builtin flag given twice ("multiple -p
			// flags not allowed"); ! -s and -s count as the same flag.
			rank := baseRank(p)
			if seen[rank] {
				return invalid("%s given twice", baseFlags[rank])
			}
			seen[rank] = true
		}
		switch m := p.(type) {
		case netMatch:
			if !m.prefix.IsValid() || m.prefix.Addr().Zone() != "" || m.prefix.Addr().Is4() != (f == IPv4) {
				return invalid("%s %v is not an %s prefix", m.flag, m.prefix, f)
			}
		case ifaceMatch:
			if !ValidInterfaceName(m.name) {
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
		if a.With != "" && rejectTypes[f][a.With] == "" {
			return invalid("reject-with %q is not an %s REJECT type (%s)", a.With, f, rejectTypeNames(f))
		}
		if a.With == "tcp-reset" && (proto.p == "" || proto.not || proto.p != TCP) {
			// The kernel refuses it at commit time (EINVAL).
			return invalid("REJECT --reject-with tcp-reset needs Protocol(tcp)")
		}
	case Jump:
		if err := checkJumpTarget("jump", a.Chain); err != nil {
			return err
		}
	case Goto:
		if err := checkJumpTarget("goto", a.Chain); err != nil {
			return err
		}
	case SetMark:
		if a.Mask == 0 {
			return invalid("set-mark with a zero mask")
		}
	case DNAT:
		if !a.To.Addr().IsValid() || a.To.Addr().Zone() != "" || a.To.Addr().Is4() != (f == IPv4) {
			return invalid("DNAT to %v in %s", a.To, f)
		}
		if a.To.Port() != 0 && (proto.not || (proto.p != TCP && proto.p != UDP && proto.p != SCTP)) {
			// iptables: "Need TCP, UDP, SCTP or DCCP with port specification".
			return invalid("DNAT to port %d needs a preceding Protocol(tcp|udp|sctp)", a.To.Port())
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
	if rj, ok := r.Action.(Reject); ok {
		// The default, and an alias as its canonical name: the text
		// iptables-save prints back.
		rj.With = cmp.Or(rejectTypes[b.family][rj.With], rj.With)
		if rj.With == "" {
			rj.With = "icmp-port-unreachable"
			if b.family == IPv6 {
				rj.With = "icmp6-port-unreachable"
			}
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

// renderedChain is a chain's rendered rules: text holds the rule hashes
// (hashLen bytes each, in order) and then the rule specs (without
// "-A CHAIN "), back to back; ends[i] is where spec i ends in text (spec
// 0 starts after the hashes). Two allocations per chain, neither holding
// a pointer per rule, keep the desired state of ~100,000 chains cheap for
// the garbage collector. A chain read from the kernel has only hashes;
// foreign marks one holding a rule without a well-formed owned hash, so
// that it equals no desired chain.
type renderedChain struct {
	text    string
	ends    []uint32
	foreign bool
}

// rules returns the number of rules.
func (rc renderedChain) rules() int { return len(rc.ends) }

// hashes returns the rules' hashes, concatenated.
func (rc renderedChain) hashes() string { return rc.text[:hashLen*len(rc.ends)] }

// hash returns rule i's hash.
func (rc renderedChain) hash(i int) string { return rc.text[i*hashLen : (i+1)*hashLen] }

// spec returns rule i's spec.
func (rc renderedChain) spec(i int) string {
	start := uint32(hashLen * len(rc.ends))
	if i > 0 {
		start = rc.ends[i-1]
	}
	return rc.text[start:rc.ends[i]]
}

// specList returns every spec, in order.
func (rc renderedChain) specList() []string {
	out := make([]string, rc.rules())
	for i := range out {
		out[i] = rc.spec(i)
	}
	return out
}

// sameRules reports whether desired d and dataplane k hold the same rules
// (by hash).
func sameRules(d, k renderedChain) bool {
	return !k.foreign && len(d.ends) == len(k.ends) && d.hashes() == k.hashes()
}

// savedChain returns the renderedChain of an owned chain read from the
// kernel: its rules' hashes only.
func savedChain(rules []SavedRule, hashPrefix string) renderedChain {
	text := make([]byte, 0, hashLen*len(rules))
	foreign := false
	for _, r := range rules {
		h := hashOf(r, hashPrefix)
		foreign = foreign || len(h) != hashLen
		text = append(text, h...)
	}
	if foreign {
		return renderedChain{ends: make([]uint32, len(rules)), foreign: true}
	}
	ends := make([]uint32, len(rules))
	for i := range ends {
		ends[i] = uint32(len(text))
	}
	return renderedChain{text: string(text), ends: ends}
}

// renderScratch holds the buffers renderChain reuses between calls.
type renderScratch struct {
	b      argBuilder
	body   []byte // the rules' texts without hash comments, back to back
	spans  []int  // per rule: start, split (where the hash comment goes), end in body
	hashes []byte
	hashIn []byte // ruleHash's input
	out    []byte
}

// renderChain validates and renders the rules of chain for family f;
// hashPrefix starts every hash comment ("tabby:"). sc (nil for fresh
// buffers) is reused scratch; the result shares none of it.
func renderChain(chain string, rules []Rule, f Family, hashPrefix string, sc *renderScratch) (renderedChain, error) {
	for i, r := range rules {
		if err := r.validate(f); err != nil {
			return renderedChain{}, fmt.Errorf("chain %s rule %d: %w", chain, i, err)
		}
	}
	if len(rules) == 0 {
		return renderedChain{}, nil
	}
	if sc == nil {
		sc = &renderScratch{}
	}
	sc.b.family = f
	sc.body, sc.spans, sc.hashes = sc.body[:0], sc.spans[:0], sc.hashes[:0]
	for i, r := range rules {
		sc.b.Reset()
		split := renderRuleParts(&sc.b, r)
		rule := sc.b.Bytes()
		start := len(sc.body)
		sc.body = append(sc.body, rule...)
		sc.spans = append(sc.spans, start, start+split, len(sc.body))
		var prev []byte
		if i > 0 {
			prev = sc.hashes[(i-1)*hashLen:]
		}
		sc.hashes, sc.hashIn = ruleHash(sc.hashes, sc.hashIn, chain, prev, rule[:split], rule[split:])
	}
	out := append(sc.out[:0], sc.hashes...)
	ends := make([]uint32, len(rules))
	for i := range rules {
		start, split, end := sc.spans[3*i], sc.spans[3*i+1], sc.spans[3*i+2]
		out = append(out, sc.body[start:split]...)
		out = appendQuoted(out, hashPrefix, string(sc.hashes[i*hashLen:(i+1)*hashLen]))
		out = append(out, sc.body[split:end]...)
		ends[i] = uint32(len(out))
	}
	sc.out = out
	return renderedChain{text: string(out), ends: ends}, nil
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
