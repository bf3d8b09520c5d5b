package nftables

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ErrUnsupportedRule is wrapped by Netlink when a rule is not one of the
// forms this package writes (see compileRule), so a renderer change the
// netlink executor does not follow fails loudly instead of writing
// something else.
var ErrUnsupportedRule = errors.New("rule form not supported by the netlink executor")

// Register numbers as the kernel reads them: NFT_REG_1 is the first
// 16-byte register, NFT_REG32_00 + n the n-th 4-byte one.
const (
	regVerdict = unix.NFT_REG_VERDICT
	reg1       = unix.NFT_REG_1
	reg2       = unix.NFT_REG_2
)

// reg32 is the 4-byte register at byte offset off of the concatenation
// that starts in NFT_REG_1.
func reg32(off uint32) uint32 {
	if off == 0 {
		return reg1
	}
	return unix.NFT_REG32_00 + off/4
}

// compiler turns the textual rules this package renders (the knftables
// form, also read by Trace and by `nft`) into netlink expressions, the
// ones `nft` 1.0.6 generates for them (checked against `nft list table`
// in TestNetlinkMatchesCLI).
type compiler struct {
	ip6 bool
}

func (c compiler) ipName() string {
	if c.ip6 {
		return "ip6"
	}
	return "ip"
}

func (c compiler) addrLen() uint32 {
	if c.ip6 {
		return 16
	}
	return 4
}

// addrOffset is the offset of saddr/daddr in the network header.
func (c compiler) addrOffset(field string) (uint32, error) {
	switch {
	case field == "saddr" && c.ip6:
		return 8, nil
	case field == "daddr" && c.ip6:
		return 24, nil
	case field == "saddr":
		return 12, nil
	case field == "daddr":
		return 16, nil
	}
	return 0, fmt.Errorf("%w: address field %q", ErrUnsupportedRule, field)
}

func native32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

func protoNumber(s string) (byte, error) {
	switch s {
	case "tcp":
		return unix.IPPROTO_TCP, nil
	case "udp":
		return unix.IPPROTO_UDP, nil
	case "sctp":
		return unix.IPPROTO_SCTP, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("%w: protocol %q", ErrUnsupportedRule, s)
	}
	return byte(n), nil
}

func parseUint(s string, bits int) (uint64, error) {
	n, err := strconv.ParseUint(s, 0, bits)
	if err != nil {
		return 0, fmt.Errorf("%w: number %q", ErrUnsupportedRule, s)
	}
	return n, nil
}

// tokens walks the words of a rule.
type tokens struct {
	w []string
	i int
}

func (t *tokens) more() bool { return t.i < len(t.w) }
func (t *tokens) peek(n int) string {
	if t.i+n < len(t.w) {
		return t.w[t.i+n]
	}
	return ""
}
func (t *tokens) next() string {
	s := t.peek(0)
	t.i++
	return s
}

// comparison consumes `A == B` (32-bit numbers).
func (t *tokens) comparison() (a, b uint64, err error) {
	if a, err = parseUint(t.next(), 32); err != nil {
		return 0, 0, err
	}
	if err = t.expect("=="); err != nil {
		return 0, 0, err
	}
	b, err = parseUint(t.next(), 32)
	return a, b, err
}

// expect consumes words equal to want, or fails.
func (t *tokens) expect(want ...string) error {
	for _, w := range want {
		if got := t.next(); got != w {
			return fmt.Errorf("%w: expected %q, found %q", ErrUnsupportedRule, w, got)
		}
	}
	return nil
}

// compileRule compiles one rule. The forms understood are exactly the
// ones the renderer writes (render.go, baseObjects): ct state/status
// matches, address and address-prefix comparisons, set lookups (also
// negated), concatenated verdict-map dispatch, fib address type, numgen,
// meta l4proto and mark, transport dport, dynset update, dnat,
// masquerade, reject and verdicts.
func (c compiler) compileRule(rule string) ([]expr.Any, error) {
	t := &tokens{w: strings.Fields(rule)}
	var out []expr.Any
	for t.more() {
		ex, err := c.statement(t)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", rule, err)
		}
		out = append(out, ex...)
	}
	return out, nil
}

func (c compiler) statement(t *tokens) ([]expr.Any, error) {
	switch w := t.next(); w {
	case "ct":
		return c.ct(t)
	case "ip", "ip6":
		if w != c.ipName() {
			return nil, fmt.Errorf("%w: %s match in a %s table", ErrUnsupportedRule, w, c.ipName())
		}
		return c.ipMatch(t)
	case "meta":
		return c.meta(t)
	case "tcp", "udp", "sctp":
		return c.dport(w, t)
	case "fib":
		return c.fib(t)
	case "numgen":
		return c.numgen(t)
	case "update":
		return c.update(t)
	case "dnat":
		return c.dnat(t)
	case "masquerade":
		m := &expr.Masq{}
		if t.peek(0) == "fully-random" {
			t.next()
			m.FullyRandom = true
		}
		return []expr.Any{m}, nil
	case "reject":
		code := uint8(3) // ICMP port unreachable
		if c.ip6 {
			code = 4 // ICMPv6 port unreachable
		}
		return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code}}, nil
	case "accept":
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}, nil
	case "drop":
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}, nil
	case "return":
		return []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}, nil
	case "jump", "goto":
		v, err := verdict(w + " " + t.next())
		if err != nil {
			return nil, err
		}
		return []expr.Any{v}, nil
	default:
		return nil, fmt.Errorf("%w: statement %q", ErrUnsupportedRule, w)
	}
}

// verdict parses a verdict as written in a rule or a verdict-map value.
func verdict(s string) (*expr.Verdict, error) {
	// (The renderer's verdicts, without allocating: one per map element.)
	if kind, chain, ok := strings.Cut(s, " "); ok && chain != "" && !strings.ContainsAny(chain, " \t\n") {
		switch kind {
		case "jump":
			return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain}, nil
		case "goto":
			return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}, nil
		}
	}
	f := strings.Fields(s)
	switch {
	case len(f) == 1 && f[0] == "accept":
		return &expr.Verdict{Kind: expr.VerdictAccept}, nil
	case len(f) == 1 && f[0] == "drop":
		return &expr.Verdict{Kind: expr.VerdictDrop}, nil
	case len(f) == 1 && f[0] == "return":
		return &expr.Verdict{Kind: expr.VerdictReturn}, nil
	case len(f) == 2 && f[0] == "jump" && f[1] != "":
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: f[1]}, nil
	case len(f) == 2 && f[0] == "goto" && f[1] != "":
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: f[1]}, nil
	}
	return nil, fmt.Errorf("%w: verdict %q", ErrUnsupportedRule, s)
}

// ct: `ct state new`, `ct status dnat` (bit tests, as nft writes them).
func (c compiler) ct(t *tokens) ([]expr.Any, error) {
	var key expr.CtKey
	var bit uint32
	switch k, v := t.next(), t.next(); {
	case k == "state" && v == "new":
		key, bit = expr.CtKeySTATE, 1<<3 // NF_CT_STATE_BIT(IP_CT_NEW)
	case k == "status" && v == "dnat":
		key, bit = expr.CtKeySTATUS, 1<<5 // IPS_DST_NAT
	default:
		return nil, fmt.Errorf("%w: ct %s %s", ErrUnsupportedRule, k, v)
	}
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: key},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(bit), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(0)},
	}, nil
}

// field is one component of a concatenation: a payload or meta load.
type field struct {
	load []expr.Any
	len  uint32 // bytes
}

// selector parses `ip saddr`, `ip daddr`, `meta l4proto`, `th dport`
// (the first word already consumed into w) and loads it into reg.
func (c compiler) selector(w string, t *tokens, reg uint32) (field, error) {
	switch w {
	case "ip", "ip6":
		if w != c.ipName() {
			return field{}, fmt.Errorf("%w: %s in a %s table", ErrUnsupportedRule, w, c.ipName())
		}
		off, err := c.addrOffset(t.next())
		if err != nil {
			return field{}, err
		}
		return field{[]expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: c.addrLen()}}, c.addrLen()}, nil
	case "meta":
		if err := t.expect("l4proto"); err != nil {
			return field{}, err
		}
		return field{[]expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}}, 1}, nil
	case "th", "tcp", "udp", "sctp":
		// (In a concatenation `tcp dport` loads the port only: the
		// renderer matches `meta l4proto tcp` earlier in the rule, and
		// nft then adds no protocol check of its own.)
		if err := t.expect("dport"); err != nil {
			return field{}, err
		}
		return field{[]expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}}, 2}, nil
	case "numgen":
		if err := t.expect("random", "mod"); err != nil {
			return field{}, err
		}
		mod, err := parseUint(t.next(), 32)
		if err != nil {
			return field{}, err
		}
		var offset uint64
		if t.peek(0) == "offset" {
			t.next()
			if offset, err = parseUint(t.next(), 32); err != nil {
				return field{}, err
			}
		}
		return field{[]expr.Any{&expr.Numgen{Register: reg, Modulus: uint32(mod), Type: unix.NFT_NG_RANDOM, Offset: uint32(offset)}}, 4}, nil
	}
	return field{}, fmt.Errorf("%w: selector %q", ErrUnsupportedRule, w)
}

// loads parses the selectors `A . B [. C]` (first word in w) into loads
// to consecutive registers from NFT_REG_1, each field padded to 4 bytes.
func (c compiler) loads(w string, t *tokens) ([]expr.Any, error) {
	var out []expr.Any
	var off uint32
	for {
		f, err := c.selector(w, t, reg32(off))
		if err != nil {
			return nil, err
		}
		out = append(out, f.load...)
		off += (f.len + 3) / 4 * 4
		if t.peek(0) != "." {
			return out, nil
		}
		t.next()
		w = t.next()
	}
}

// concat parses `A . B [. C]` (first word in w) into consecutive
// registers and then `@set` (lookup) or `vmap @map` (verdict lookup).
func (c compiler) concat(w string, t *tokens) ([]expr.Any, error) {
	out, err := c.loads(w, t)
	if err != nil {
		return nil, err
	}
	lookup := &expr.Lookup{SourceRegister: reg1}
	if t.peek(0) == "vmap" {
		t.next()
		lookup.DestRegister, lookup.IsDestRegSet = regVerdict, true
	}
	name, ok := strings.CutPrefix(t.next(), "@")
	if !ok || name == "" {
		return nil, fmt.Errorf("%w: concatenation without a named set", ErrUnsupportedRule)
	}
	lookup.SetName = name
	return append(out, lookup), nil
}

// ipMatch: `ip saddr|daddr` followed by `. …` (concatenation), `@set`,
// `!= @set`, `ADDR`, `!= ADDR` or a prefix.
func (c compiler) ipMatch(t *tokens) ([]expr.Any, error) {
	if t.peek(1) == "." {
		return c.concat(c.ipName(), t)
	}
	off, err := c.addrOffset(t.next())
	if err != nil {
		return nil, err
	}
	op := expr.CmpOpEq
	invert := false
	if t.peek(0) == "!=" {
		t.next()
		op, invert = expr.CmpOpNeq, true
	}
	arg := t.next()
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		return []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: c.addrLen()},
			&expr.Lookup{SourceRegister: reg1, SetName: name, Invert: invert},
		}, nil
	}
	pfx, err := c.prefix(arg)
	if err != nil {
		return nil, err
	}
	addr := pfx.Addr().AsSlice()
	bits := uint32(pfx.Bits())
	if bits%8 == 0 {
		// Byte-aligned prefix (or a full address): load only its bytes.
		n := bits / 8
		return []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Cmp{Op: op, Register: reg1, Data: addr[:n]},
		}, nil
	}
	m := make([]byte, len(addr))
	for i := range m {
		switch {
		case uint32(i+1)*8 <= bits:
			m[i] = 0xff
		case uint32(i)*8 < bits:
			m[i] = byte(0xff << (8 - (bits - uint32(i)*8)))
		}
	}
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: c.addrLen()},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: c.addrLen(), Mask: m, Xor: make([]byte, len(m))},
		&expr.Cmp{Op: op, Register: reg1, Data: addr},
	}, nil
}

// parsePrefix parses a prefix or an address (as a full-length prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	return netip.PrefixFrom(a, a.BitLen()), err
}

// prefix parses an address or prefix of the table's family.
func (c compiler) prefix(s string) (netip.Prefix, error) {
	p, err := parsePrefix(s)
	if err != nil || p.Addr().Is6() != c.ip6 || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%w: %s address %q", ErrUnsupportedRule, c.ipName(), s)
	}
	return p.Masked(), nil
}

// meta: `meta l4proto PROTO`, `meta l4proto . th dport vmap @m`,
// `meta mark set meta mark or|xor X`, `meta mark & X == V`.
func (c compiler) meta(t *tokens) ([]expr.Any, error) {
	switch t.peek(0) {
	case "l4proto":
		if t.peek(1) == "." {
			return c.concat("meta", t)
		}
		t.next()
		p, err := protoNumber(t.next())
		if err != nil {
			return nil, err
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
		}, nil
	case "mark":
		t.next()
		load := &expr.Meta{Key: expr.MetaKeyMARK, Register: reg1}
		switch t.next() {
		case "set":
			if err := t.expect("meta", "mark"); err != nil {
				return nil, err
			}
			how := t.next()
			v, err := parseUint(t.next(), 32)
			if err != nil {
				return nil, err
			}
			var b *expr.Bitwise
			switch how {
			case "or":
				b = &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(^uint32(v)), Xor: native32(uint32(v))}
			case "xor":
				b = &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(0xffffffff), Xor: native32(uint32(v))}
			default:
				return nil, fmt.Errorf("%w: meta mark set … %s", ErrUnsupportedRule, how)
			}
			return []expr.Any{load, b, &expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1}}, nil
		case "&":
			m, v, err := t.comparison()
			if err != nil {
				return nil, err
			}
			return []expr.Any{load,
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(uint32(m)), Xor: native32(0)},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(uint32(v))},
			}, nil
		}
	}
	return nil, fmt.Errorf("%w: meta %s", ErrUnsupportedRule, t.peek(0))
}

// dport: `tcp dport N` (nft adds the l4proto check).
func (c compiler) dport(proto string, t *tokens) ([]expr.Any, error) {
	if err := t.expect("dport"); err != nil {
		return nil, err
	}
	p, _ := protoNumber(proto)
	port, err := parseUint(t.next(), 16)
	if err != nil {
		return nil, err
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
	}, nil
}

// fib: `fib saddr|daddr type local`.
func (c compiler) fib(t *tokens) ([]expr.Any, error) {
	f := &expr.Fib{Register: reg1, ResultADDRTYPE: true}
	switch t.next() {
	case "saddr":
		f.FlagSADDR = true
	case "daddr":
		f.FlagDADDR = true
	default:
		return nil, fmt.Errorf("%w: fib key", ErrUnsupportedRule)
	}
	if err := t.expect("type", "local"); err != nil {
		return nil, err
	}
	return []expr.Any{f, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(unix.RTN_LOCAL)}}, nil
}

// numgen: `numgen random mod N == V`.
func (c compiler) numgen(t *tokens) ([]expr.Any, error) {
	if err := t.expect("random", "mod"); err != nil {
		return nil, err
	}
	mod, v, err := t.comparison()
	if err != nil {
		return nil, err
	}
	return []expr.Any{
		&expr.Numgen{Register: reg1, Modulus: uint32(mod), Type: unix.NFT_NG_RANDOM},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(uint32(v))},
	}, nil
}

// update: `update @set { ip saddr }`.
func (c compiler) update(t *tokens) ([]expr.Any, error) {
	name, ok := strings.CutPrefix(t.next(), "@")
	if !ok || name == "" {
		return nil, fmt.Errorf("%w: update without a named set", ErrUnsupportedRule)
	}
	if err := t.expect("{"); err != nil {
		return nil, err
	}
	f, err := c.selector(t.next(), t, reg1)
	if err != nil {
		return nil, err
	}
	if err := t.expect("}"); err != nil {
		return nil, err
	}
	return append(f.load, &expr.Dynset{SrcRegKey: reg1, SetName: name, Operation: unix.NFT_DYNSET_OP_UPDATE}), nil
}

// dnat: `dnat to ADDR:PORT` ([v6]:port for IPv6), or
// `dnat ip addr . port to [ip daddr .] tcp dport . numgen random mod N
// [offset B] map @m` (the endpoint-map form: destination and slot look
// up address . port).
func (c compiler) dnat(t *tokens) ([]expr.Any, error) {
	fam := uint32(unix.NFPROTO_IPV4)
	if c.ip6 {
		fam = unix.NFPROTO_IPV6
	}
	if t.peek(0) == c.ipName() {
		// dnat ip addr . port to <concatenation> map @m
		t.next()
		if err := t.expect("addr", ".", "port", "to"); err != nil {
			return nil, err
		}
		out, err := c.loads(t.next(), t)
		if err != nil {
			return nil, err
		}
		if err := t.expect("map"); err != nil {
			return nil, err
		}
		name, ok := strings.CutPrefix(t.next(), "@")
		if !ok || name == "" {
			return nil, fmt.Errorf("%w: dnat map without a named map", ErrUnsupportedRule)
		}
		return append(out,
			&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: name},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: reg1, RegProtoMin: reg32(c.addrLen())},
		), nil
	}
	if err := t.expect("to"); err != nil {
		return nil, err
	}
	arg := t.next()
	ap, err := netip.ParseAddrPort(arg)
	if err != nil || ap.Addr().Is6() != c.ip6 || ap.Addr().Is4In6() {
		return nil, fmt.Errorf("%w: dnat target %q", ErrUnsupportedRule, arg)
	}
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: ap.Addr().AsSlice()},
		&expr.Immediate{Register: reg2, Data: binaryutil.BigEndian.PutUint16(ap.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: reg1, RegProtoMin: reg2, Specified: true},
	}, nil
}
