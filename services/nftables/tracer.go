package nftables

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/services"
)

// Packet is a new connection's first packet, for Trace.
type Packet = services.TracePacket

// Outcome is one way a packet can go through the rules, for Trace.
type Outcome = services.TraceOutcome

// Trace answers "where would this packet go" against the table held by a
// knftables.Fake into which a Proxier rendered (kube-proxy's
// nftablesTracer): it walks the pre-DNAT filter chain of the packet's
// path (loadBalancerSourceRanges), the NAT chains, then the filter
// chains, and returns every possible outcome, sorted (a numgen
// balancing rule yields one outcome per endpoint). nodeIPs are the node's
// addresses (for `fib daddr type local`; loopback is always local).
// Affinity sets are dynamic in the kernel and empty in the fake, so
// affinity rules never match here. A nil fake, or one without table, is
// an error.
//
// It understands exactly the rule forms this package writes and returns
// an error for anything else, so a renderer change that the tracer does
// not follow fails the tests instead of passing silently.
func Trace(fake *knftables.Fake, table string, nodeIPs []netip.Addr, pkt Packet) ([]Outcome, error) {
	if fake == nil {
		return nil, errors.New("trace: nil knftables.Fake")
	}
	var t *knftables.FakeTable
	for _, tables := range fake.Tables {
		if x := tables[table]; x != nil {
			t = x
		}
	}
	if t == nil {
		return nil, fmt.Errorf("trace: no table %s", table)
	}
	tr := &tracer{t: t, nodeIPs: nodeIPs, pkt: pkt}
	natChain, filterChain := "nat-prerouting", "filter-forward"
	if pkt.FromHost {
		natChain, filterChain = "nat-output", "filter-output-post-dnat"
	} else if tr.local(pkt.Dst) {
		filterChain = "filter-input"
	}
	var out []Outcome
	// The pre-DNAT filter chain (loadBalancerSourceRanges) first.
	pre := "filter-prerouting"
	if pkt.FromHost {
		pre = "filter-output-pre-dnat"
	}
	preStates, err := tr.run(pre, state{})
	if err != nil {
		return nil, err
	}
	var states []state
	for _, s := range preStates {
		if s.verdict == "drop" || s.verdict == "reject" {
			out = append(out, Outcome{Verdict: strings.ToUpper(s.verdict)})
			continue
		}
		more, err := tr.run(natChain, state{})
		if err != nil {
			return nil, err
		}
		states = append(states, more...)
	}
	for _, s := range states {
		o := Outcome{Verdict: "ACCEPT", Masquerade: s.mark}
		switch {
		case s.verdict == "drop" || s.verdict == "reject":
			o.Verdict = strings.ToUpper(s.verdict)
		case s.dnat.IsValid():
			o.Verdict, o.DNAT = "DNAT", s.dnat
			// Postrouting sees the DNATed packet.
			post := &tracer{t: tr.t, nodeIPs: tr.nodeIPs, pkt: pkt, dnatted: true}
			post.pkt.Dst, post.pkt.DstPort = s.dnat.Addr(), s.dnat.Port()
			ps, err := post.run("nat-postrouting", state{mark: s.mark})
			if err != nil {
				return nil, err
			}
			o.Masquerade = false
			for _, p := range ps {
				o.Masquerade = o.Masquerade || p.masq
			}
		default:
			// No NAT: the filter chains may reject or drop it.
			fs, err := tr.run(filterChain, state{})
			if err != nil {
				return nil, err
			}
			for _, f := range fs {
				if f.verdict == "drop" || f.verdict == "reject" {
					// (A mark set on the way is moot: the packet
					// never reaches postrouting.)
					o.Verdict, o.Masquerade = strings.ToUpper(f.verdict), false
				}
			}
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b Outcome) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out), nil
}

type tracer struct {
	t       *knftables.FakeTable
	nodeIPs []netip.Addr
	pkt     Packet
	dnatted bool // in postrouting: the packet was DNATed
}

// pairIn reports whether "saddr . daddr" is an element of the named set.
func (tr *tracer) pairIn(set string) (bool, error) {
	st := tr.t.Sets[set]
	if st == nil {
		return false, fmt.Errorf("no set %s", set)
	}
	return st.FindElement(tr.pkt.Src.String(), tr.pkt.Dst.String()) != nil, nil
}

type state struct {
	mark    bool
	masq    bool
	dnat    netip.AddrPort
	verdict string // "", accept, drop, reject, return
}

func (tr *tracer) local(a netip.Addr) bool {
	return a.IsLoopback() || slices.Contains(tr.nodeIPs, a)
}

var (
	reAddrMatch   = regexp.MustCompile(`^ip6? (saddr|daddr) (!= )?(\{ [^}]* \}|@\S+|[0-9a-fA-F:]\S*) `)
	rePortMatch   = regexp.MustCompile(`^(tcp|udp|sctp|th) dport (\d+) `)
	reVMap3       = regexp.MustCompile(`^ip6? daddr \. meta l4proto \. th dport vmap @(\S+)$`)
	reVMap2       = regexp.MustCompile(`^meta l4proto \. th dport vmap @(\S+)$`)
	reNumgen      = regexp.MustCompile(`^numgen random mod (\d+) == 0 (.*)$`)
	reDNAT        = regexp.MustCompile(`^dnat to (\S+)$`)
	reMetaProto   = regexp.MustCompile(`^meta l4proto (tcp|udp|sctp) `)
	reUpdate      = regexp.MustCompile(`^update @\S+ \{ ip6? saddr \} `)
	reConcatMatch = regexp.MustCompile(`^ip6? saddr \. ip6? daddr @(\S+) `)
	reJump        = regexp.MustCompile(`^(jump|goto) (\S+)$`)
	reSet3        = regexp.MustCompile(`^ip6? daddr \. meta l4proto \. th dport @(\S+) `)
	reSet2        = regexp.MustCompile(`^meta l4proto \. th dport @(\S+) `)
	reDNATMap     = regexp.MustCompile(`^dnat ip6? addr \. port to (ip6? daddr \. )?(?:tcp|udp|sctp) dport \. numgen random mod (\d+)(?: offset (\d+))? map @(\S+)$`)
)

// run executes chain and returns every end state.
func (tr *tracer) run(chain string, s state) ([]state, error) {
	c := tr.t.Chains[chain]
	if c == nil {
		return nil, fmt.Errorf("trace: no chain %s", chain)
	}
	states := []state{s}
	var done []state
	for _, r := range c.Rules {
		var next []state
		for _, s := range states {
			outs, err := tr.rule(r.Rule, s)
			if err != nil {
				return nil, fmt.Errorf("trace: chain %s rule %q: %w", chain, r.Rule, err)
			}
			for _, o := range outs {
				if o.verdict != "" {
					done = append(done, o)
				} else {
					next = append(next, o)
				}
			}
		}
		states = next
	}
	out := append(done, states...)
	for i := range out {
		if out[i].verdict == "return" {
			out[i].verdict = ""
		}
	}
	return out, nil
}

// rule applies one rule; states with a verdict end the chain.
func (tr *tracer) rule(rule string, s state) ([]state, error) {
	rest := rule
	for {
		if m := reAddrMatch.FindStringSubmatch(rest); m != nil {
			a := tr.pkt.Src
			if m[1] == "daddr" {
				a = tr.pkt.Dst
			}
			in, err := tr.addrIn(a, m[3])
			if err != nil {
				return nil, err
			}
			if in == (m[2] != "") {
				return []state{s}, nil
			}
			rest = rest[len(m[0]):]
			continue
		}
		if m := rePortMatch.FindStringSubmatch(rest); m != nil {
			if (m[1] != "th" && m[1] != tr.pkt.Protocol) || m[2] != strconv.Itoa(int(tr.pkt.DstPort)) {
				return []state{s}, nil
			}
			rest = rest[len(m[0]):]
			continue
		}
		if p, ok := strings.CutPrefix(rest, "fib daddr type local "); ok {
			if !tr.local(tr.pkt.Dst) {
				return []state{s}, nil
			}
			rest = p
			continue
		}
		if p, ok := strings.CutPrefix(rest, "fib saddr type local "); ok {
			if !tr.pkt.FromHost && !tr.local(tr.pkt.Src) {
				return []state{s}, nil
			}
			rest = p
			continue
		}
		if p, ok := strings.CutPrefix(rest, "ct state new "); ok {
			rest = p // Trace follows a connection's first packet
			continue
		}
		if p, ok := strings.CutPrefix(rest, "ct status dnat "); ok {
			if !tr.dnatted {
				return []state{s}, nil
			}
			rest = p
			continue
		}
		if m := reMetaProto.FindStringSubmatch(rest); m != nil {
			if m[1] != tr.pkt.Protocol {
				return []state{s}, nil
			}
			rest = rest[len(m[0]):]
			continue
		}
		if m := reUpdate.FindStringSubmatch(rest); m != nil {
			rest = rest[len(m[0]):] // affinity sets are not simulated
			continue
		}
		if m := reConcatMatch.FindStringSubmatch(rest); m != nil {
			in, err := tr.pairIn(m[1])
			if err != nil {
				return nil, err
			}
			if !in {
				return []state{s}, nil
			}
			rest = rest[len(m[0]):]
			continue
		}
		if m := reSet3.FindStringSubmatch(rest); m != nil {
			in, err := tr.setHas(m[1], tr.pkt.Dst.String(), tr.pkt.Protocol, strconv.Itoa(int(tr.pkt.DstPort)))
			if err != nil || !in {
				return []state{s}, err
			}
			rest = rest[len(m[0]):]
			continue
		}
		if m := reSet2.FindStringSubmatch(rest); m != nil {
			in, err := tr.setHas(m[1], tr.pkt.Protocol, strconv.Itoa(int(tr.pkt.DstPort)))
			if err != nil || !in {
				return []state{s}, err
			}
			rest = rest[len(m[0]):]
			continue
		}
		if m := reNumgen.FindStringSubmatch(rest); m != nil {
			// Random: the rule may match (the rest of it runs) or not.
			out, err := tr.rule(m[2], s)
			if err != nil {
				return nil, err
			}
			return append(out, s), nil
		}
		break
	}
	switch {
	case reVMap3.MatchString(rest):
		m := reVMap3.FindStringSubmatch(rest)
		return tr.vmap(m[1], []string{tr.pkt.Dst.String(), tr.pkt.Protocol, strconv.Itoa(int(tr.pkt.DstPort))}, s)
	case reVMap2.MatchString(rest):
		m := reVMap2.FindStringSubmatch(rest)
		return tr.vmap(m[1], []string{tr.pkt.Protocol, strconv.Itoa(int(tr.pkt.DstPort))}, s)
	case reDNATMap.MatchString(rest):
		m := reDNATMap.FindStringSubmatch(rest)
		return tr.dnatMap(m[4], m[1] != "", m[2], m[3], s)
	case reDNAT.MatchString(rest):
		m := reDNAT.FindStringSubmatch(rest)
		ap, err := netip.ParseAddrPort(m[1])
		if err != nil {
			return nil, err
		}
		s.dnat, s.verdict = ap, "accept"
		return []state{s}, nil
	case strings.HasPrefix(rest, "meta mark set meta mark or "):
		s.mark = true
		return []state{s}, nil
	case strings.HasPrefix(rest, "meta mark set meta mark xor "):
		return []state{s}, nil
	case strings.HasPrefix(rest, "meta mark & ") && strings.HasSuffix(rest, " == 0 return"):
		if !s.mark {
			s.verdict = "return"
		}
		return []state{s}, nil
	case strings.HasPrefix(rest, "masquerade"):
		s.masq, s.verdict = true, "accept"
		return []state{s}, nil
	}
	return tr.verdict(rest, s)
}

func (tr *tracer) verdict(v string, s state) ([]state, error) {
	switch v {
	case "drop", "reject", "accept", "return":
		s.verdict = v
		return []state{s}, nil
	}
	m := reJump.FindStringSubmatch(v)
	if m == nil {
		return nil, fmt.Errorf("unknown statement %q", v)
	}
	outs, err := tr.run(m[2], s)
	if err != nil {
		return nil, err
	}
	if m[1] == "goto" {
		for i := range outs {
			if outs[i].verdict == "" {
				outs[i].verdict = "return" // goto: the calling chain does not continue
			}
		}
	}
	return outs, nil
}

// setHas reports whether key is an element of the named set.
func (tr *tracer) setHas(name string, key ...string) (bool, error) {
	st := tr.t.Sets[name]
	if st == nil {
		return false, fmt.Errorf("no set %s", name)
	}
	return st.FindElement(key...) != nil, nil
}

// dnatMap follows `dnat … to [ip daddr .] tcp dport .
// numgen random mod N offset B map @name`: one DNAT outcome for each of
// the N slots the map holds for the packet's destination; no match (the
// packet goes on) when it holds none.
func (tr *tracer) dnatMap(name string, withAddr bool, mod, offset string, s state) ([]state, error) {
	m := tr.t.Maps[name]
	if m == nil {
		return nil, fmt.Errorf("no map %s", name)
	}
	n, _ := strconv.Atoi(mod)
	bank, _ := strconv.Atoi(offset) // "" (no offset) is 0
	var key []string
	if withAddr {
		key = append(key, tr.pkt.Dst.String())
	}
	key = append(key, strconv.Itoa(int(tr.pkt.DstPort)))
	var out []state
	for i := range n {
		e := m.FindElement(append(key, strconv.Itoa(bank+i))...)
		if e == nil {
			continue
		}
		ap, err := netip.ParseAddrPort(strings.Replace(strings.Join(e.Value, " . "), " . ", ":", 1))
		if err != nil {
			// IPv6: "addr . port" needs brackets.
			addr, port, _ := strings.Cut(strings.Join(e.Value, " . "), " . ")
			ap, err = netip.ParseAddrPort("[" + addr + "]:" + port)
			if err != nil {
				return nil, fmt.Errorf("map %s: endpoint %v", name, e.Value)
			}
		}
		x := s
		x.dnat, x.verdict = ap, "accept"
		out = append(out, x)
	}
	if len(out) == 0 {
		return []state{s}, nil
	}
	return out, nil
}

func (tr *tracer) vmap(name string, key []string, s state) ([]state, error) {
	m := tr.t.Maps[name]
	if m == nil {
		return nil, fmt.Errorf("no map %s", name)
	}
	e := m.FindElement(key...)
	if e == nil {
		return []state{s}, nil
	}
	return tr.verdict(strings.Join(e.Value, " "), s)
}

// addrIn reports whether a is in spec: an address, a prefix, an
// anonymous set "{ a, b }" or a named set "@name".
func (tr *tracer) addrIn(a netip.Addr, spec string) (bool, error) {
	var items []string
	switch {
	case strings.HasPrefix(spec, "@"):
		set := tr.t.Sets[spec[1:]]
		if set == nil {
			return false, fmt.Errorf("no set %s", spec)
		}
		for _, e := range set.Elements {
			items = append(items, e.Key...)
		}
	case strings.HasPrefix(spec, "{"):
		items = strings.Split(strings.Trim(spec, "{} "), ", ")
	default:
		items = []string{spec}
	}
	for _, it := range items {
		if p, err := netip.ParsePrefix(it); err == nil {
			if p.Contains(a) {
				return true, nil
			}
			continue
		}
		x, err := netip.ParseAddr(it)
		if err != nil {
			return false, fmt.Errorf("bad address %q", it)
		}
		if x == a {
			return true, nil
		}
	}
	return false, nil
}
