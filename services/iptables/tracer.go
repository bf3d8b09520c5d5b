package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	ipt "github.com/tabbynet/tabby/dataplane/iptables"

	"github.com/tabbynet/tabby/services"
)

// Packet is a new connection's first packet, for Trace.
type Packet = services.TracePacket

// Outcome is one way a packet can go through the rules, for Trace.
type Outcome = services.TraceOutcome

// Trace answers "where would this packet go" against the IPv4 rules an
// ipt.Fake holds (kube-proxy's iptablesTracer): it walks nat PREROUTING
// (or OUTPUT), filter INPUT/FORWARD (or OUTPUT) and nat POSTROUTING and
// returns every possible outcome, sorted without duplicates (a statistic
// rule forks: matched and not). nodeIPs are the node's addresses (for
// addrtype LOCAL; 127.0.0.0/8 is always local). Recent lists are empty,
// so --rcheck never matches.
//
// It understands exactly the rule forms this package writes and returns
// an error for anything else, so a renderer change the tracer does not
// follow fails the tests instead of passing silently.
func Trace(fake *ipt.Fake, nodeIPs []netip.Addr, pkt Packet) ([]Outcome, error) {
	return traceDump(fake.Dump(), nil, nodeIPs, pkt)
}

// TraceWithSets is Trace for a Proxier made WithHairpinSet over an
// ipsets.Fake: `-m set --match-set NAME dst,dst,src` matches when the
// packet's (destination, protocol:destination port, source) is a member
// of the hash:ip,port,ip set NAME in sets; any other set match or set
// type is an error.
func TraceWithSets(fake *ipt.Fake, sets *ipsets.Fake, nodeIPs []netip.Addr, pkt Packet) ([]Outcome, error) {
	return traceDump(fake.Dump(), sets, nodeIPs, pkt)
}

// traceDump is Trace over a Dump text.
func traceDump(dump string, sets *ipsets.Fake, nodeIPs []netip.Addr, pkt Packet) ([]Outcome, error) {
	tr, err := parseDump(dump)
	if err != nil {
		return nil, err
	}
	tr.sets = sets
	tr.local = nodeIPs
	start := traceState{pkt: pkt}
	natHook, filterHook := "PREROUTING", "FORWARD"
	if pkt.FromHost {
		natHook, filterHook = "OUTPUT", "OUTPUT"
	}
	var outs []Outcome
	nat, err := tr.run("nat", natHook, 0, start, 0)
	if err != nil {
		return nil, err
	}
	for _, s := range nat {
		s.verdict = ""
		fh := filterHook
		if !pkt.FromHost && tr.isLocal(s.pkt.Dst) {
			fh = "INPUT"
		}
		filt, err := tr.run("filter", fh, 0, s, 0)
		if err != nil {
			return nil, err
		}
		for _, f := range filt {
			if f.verdict == "DROP" || f.verdict == "REJECT" {
				outs = append(outs, Outcome{Verdict: f.verdict})
				continue
			}
			f.verdict = ""
			post, err := tr.run("nat", "POSTROUTING", 0, f, 0)
			if err != nil {
				return nil, err
			}
			for _, p := range post {
				o := Outcome{Verdict: "ACCEPT", Masquerade: p.verdict == "MASQUERADE"}
				if p.dnat {
					o.Verdict, o.DNAT = "DNAT", netip.AddrPortFrom(p.pkt.Dst, p.pkt.DstPort)
				}
				outs = append(outs, o)
			}
		}
	}
	slices.SortFunc(outs, func(a, b Outcome) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(outs), nil
}

type traceState struct {
	pkt     Packet
	mark    uint32
	dnat    bool
	verdict string // a terminating target, "" when the chain returned
}

type tracer struct {
	tables map[string]map[string][][]string // table -> chain -> rules' args
	sets   *ipsets.Fake                     // nil: no set may be matched
	local  []netip.Addr
	steps  int // chain walks so far, bounded (forks multiply them)
}

// maxTraceSteps bounds the chain walks of one Trace.
const maxTraceSteps = 100000

func (tr *tracer) isLocal(a netip.Addr) bool {
	return slices.Contains(tr.local, a) || netip.MustParsePrefix("127.0.0.0/8").Contains(a)
}

// setMatch evaluates `--match-set NAME DIRS`.
func (tr *tracer) setMatch(name, dirs string, s traceState) (bool, error) {
	var m ipsets.Member // (destination, protocol:port, source), when traceable
	proto, traceable := map[string]ipsets.Protocol{"tcp": ipsets.TCP, "udp": ipsets.UDP, "sctp": ipsets.SCTP}[s.pkt.Protocol]
	if traceable {
		m = ipsets.IPPortIP(s.pkt.Dst, proto, s.pkt.DstPort, s.pkt.Src)
	}
	var typ ipsets.Type
	var has, ok bool
	if tr.sets != nil {
		typ, has, ok = tr.sets.Set(name, m)
	}
	if !ok {
		return false, fmt.Errorf("match-set %s: unknown set", name)
	}
	if dirs != "dst,dst,src" || typ != ipsets.HashIPPortIP {
		return false, fmt.Errorf("match-set %s %s: only dst,dst,src on %s is traced", name, dirs, ipsets.HashIPPortIP)
	}
	return traceable && has, nil
}

// parseDump reads the first dataplane of a Fake's Dump.
func parseDump(dump string) (*tracer, error) {
	tr := &tracer{tables: map[string]map[string][][]string{}}
	var table string
	planes := 0
	for _, line := range strings.Split(dump, "\n") {
		switch {
		case strings.HasPrefix(line, "# "):
			planes++
		case planes > 1:
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			tr.tables[table] = map[string][][]string{}
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if tr.tables[table] == nil || len(f) == 0 {
				return nil, fmt.Errorf("trace: chain line %q outside a table", line)
			}
			tr.tables[table][f[0]] = nil
		case strings.HasPrefix(line, "-A "):
			args, err := splitArgs(line)
			if err != nil {
				return nil, err
			}
			if tr.tables[table] == nil || len(args) < 2 {
				return nil, fmt.Errorf("trace: rule %q outside a table", line)
			}
			tr.tables[table][args[1]] = append(tr.tables[table][args[1]], args[2:])
		}
	}
	return tr, nil
}

// splitArgs splits a saved rule at spaces, keeping "quoted text" whole.
func splitArgs(line string) ([]string, error) {
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimLeft(line, " ") {
		if line[0] == '"' {
			end := strings.IndexByte(line[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("trace: unterminated quote in %q", line)
			}
			out = append(out, line[1:end+1])
			line = line[end+2:]
			continue
		}
		tok, rest, _ := strings.Cut(line, " ")
		out = append(out, tok)
		line = rest
	}
	return out, nil
}

// run walks table/chain from rule i and returns the end states: with a
// verdict when a terminating target was hit, else the state the chain
// returned (for a kernel chain: its ACCEPT policy).
func (tr *tracer) run(table, chain string, i int, s traceState, depth int) ([]traceState, error) {
	if tr.steps++; tr.steps > maxTraceSteps {
		return nil, fmt.Errorf("trace: more than %d chain walks", maxTraceSteps)
	}
	if depth > 20 {
		return nil, fmt.Errorf("trace: chain loop at %s/%s", table, chain)
	}
	rules, ok := tr.tables[table][chain]
	if !ok {
		if depth == 0 {
			return []traceState{s}, nil // empty table in the fake
		}
		return nil, fmt.Errorf("trace: no chain %s/%s", table, chain)
	}
	for ; i < len(rules); i++ {
		matched, fork, target, err := tr.match(rules[i], s)
		if err != nil {
			return nil, fmt.Errorf("trace: %s/%s rule %d: %w", table, chain, i+1, err)
		}
		if !matched {
			continue
		}
		var outs []traceState
		if fork {
			rest, err := tr.run(table, chain, i+1, s, depth)
			if err != nil {
				return nil, err
			}
			outs = rest
		}
		took, err := tr.target(table, chain, i, target, s, depth)
		if err != nil {
			return nil, err
		}
		return append(outs, took...), nil
	}
	return []traceState{s}, nil
}

// target applies a matched rule's target and continues the chain.
func (tr *tracer) target(table, chain string, i int, target []string, s traceState, depth int) ([]traceState, error) {
	if len(target) < 2 || target[0] != "-j" {
		return nil, fmt.Errorf("trace: bad target %q", target)
	}
	cont := func(s traceState) ([]traceState, error) { return tr.run(table, chain, i+1, s, depth) }
	switch target[1] {
	case "RETURN":
		return []traceState{s}, nil
	case "ACCEPT", "DROP":
		s.verdict = target[1]
		return []traceState{s}, nil
	case "REJECT":
		s.verdict = "REJECT"
		return []traceState{s}, nil
	case "MASQUERADE":
		s.verdict = "MASQUERADE"
		return []traceState{s}, nil
	case "MARK":
		if len(target) != 4 || target[2] != "--set-xmark" {
			return nil, fmt.Errorf("trace: bad MARK %q", target)
		}
		v, m, err := parseMark(target[3])
		if err != nil {
			return nil, err
		}
		s.mark = (s.mark &^ m) ^ v
		return cont(s)
	case "DNAT":
		if len(target) != 4 || target[2] != "--to-destination" {
			return nil, fmt.Errorf("trace: bad DNAT %q", target)
		}
		to, err := netip.ParseAddrPort(target[3])
		if err != nil {
			return nil, fmt.Errorf("trace: DNAT: %w", err)
		}
		s.pkt.Dst, s.pkt.DstPort, s.dnat, s.verdict = to.Addr(), to.Port(), true, "DNAT"
		return []traceState{s}, nil
	}
	if len(target) != 2 {
		return nil, fmt.Errorf("trace: bad jump %q", target)
	}
	subs, err := tr.run(table, target[1], 0, s, depth+1)
	if err != nil {
		return nil, err
	}
	var outs []traceState
	for _, sub := range subs {
		if sub.verdict != "" {
			outs = append(outs, sub)
			continue
		}
		more, err := cont(sub)
		if err != nil {
			return nil, err
		}
		outs = append(outs, more...)
	}
	return outs, nil
}

func parseMark(s string) (value, mask uint32, err error) {
	v, m, ok := strings.Cut(s, "/")
	x, err1 := strconv.ParseUint(v, 0, 32)
	y, err2 := strconv.ParseUint(m, 0, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("trace: bad mark %q", s)
	}
	return uint32(x), uint32(y), nil
}

// match evaluates a rule's matches; fork is true when a statistic match
// makes both outcomes possible. target is the rest of the rule.
func (tr *tracer) match(args []string, s traceState) (matched, fork bool, target []string, err error) {
	matched = true
	not := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() string {
			i++
			if i < len(args) {
				return args[i]
			}
			err = fmt.Errorf("missing value after %s", a)
			return ""
		}
		ok := true
		switch a {
		case "!":
			not = true
			continue
		case "-j", "-g":
			return matched, fork, args[i:], err
		case "-s", "-d":
			p, perr := netip.ParsePrefix(next())
			if perr != nil {
				return false, false, nil, perr
			}
			addr := s.pkt.Src
			if a == "-d" {
				addr = s.pkt.Dst
			}
			ok = p.Contains(addr)
		case "-p":
			ok = next() == s.pkt.Protocol
		case "-m":
			switch m := next(); m {
			case "comment":
				next()
				next()
				continue
			case "tcp", "udp", "sctp":
				if next() != "--dport" {
					return false, false, nil, fmt.Errorf("unknown %s option", m)
				}
				ok = next() == strconv.Itoa(int(s.pkt.DstPort))
			case "addrtype":
				if i+1 < len(args) && args[i+1] == "!" {
					i++
					not = true
				}
				dir, typ := next(), next()
				addr := s.pkt.Src
				if dir == "--dst-type" {
					addr = s.pkt.Dst
				}
				ok = typ == "LOCAL" && tr.isLocal(addr)
			case "conntrack":
				if i+1 < len(args) && args[i+1] == "!" {
					i++
					not = true
				}
				if next() != "--ctstate" {
					return false, false, nil, fmt.Errorf("unknown conntrack option")
				}
				states := strings.Split(next(), ",")
				ok = slices.Contains(states, "NEW") || (s.dnat && slices.Contains(states, "DNAT"))
			case "mark":
				if i+1 < len(args) && args[i+1] == "!" {
					i++
					not = true
				}
				next()
				v, mk, merr := parseMark(next())
				if merr != nil {
					return false, false, nil, merr
				}
				ok = s.mark&mk == v
			case "statistic":
				// --mode random --probability P
				next()
				next()
				next()
				p := next()
				if p != "1.00000000000" {
					fork = true
				}
			case "set":
				if i+1 < len(args) && args[i+1] == "!" {
					i++
					not = true
				}
				if next() != "--match-set" {
					return false, false, nil, fmt.Errorf("unknown set option")
				}
				name, dirs := next(), next()
				if err != nil {
					return false, false, nil, err
				}
				var serr error
				if ok, serr = tr.setMatch(name, dirs, s); serr != nil {
					return false, false, nil, serr
				}
			case "recent":
				set := next() == "--set"
				for i+1 < len(args) && strings.HasPrefix(args[i+1], "--") {
					i++
					if args[i] != "--reap" && args[i] != "--rsource" {
						i++
					}
				}
				ok = set // lists are empty: --rcheck never matches
			default:
				return false, false, nil, fmt.Errorf("unknown match %q", m)
			}
		default:
			return false, false, nil, fmt.Errorf("unknown argument %q", a)
		}
		if err != nil {
			return false, false, nil, err
		}
		if ok == not {
			matched = false
		}
		not = false
	}
	return false, false, nil, fmt.Errorf("rule without target")
}
