package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func FuzzParseSave(f *testing.F) {
	f.Add("*filter\n:INPUT ACCEPT [0:0]\n:tabby-a - [0:0]\n-A INPUT -m comment --comment \"tabby:abc\" -j tabby-a\nCOMMIT\n")
	f.Add("# Generated\n*nat\n:X - [0:0]\n-A X -m comment --comment \"a \\\"b\\\"\" -j DNAT\nCOMMIT\n")
	f.Add("*filter\n-A X\n")
	f.Add("*filter\n:A - [0:0]\n-A A -m comment --comment \"unterminated\nCOMMIT\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseSave(text)
		if err != nil {
			return
		}
		// Re-rendering what was parsed parses to the same structure.
		var b strings.Builder
		for _, tb := range s.Tables {
			b.WriteString("*" + string(tb.Name) + "\n")
			for _, c := range tb.Chains {
				b.WriteString(":" + c.Name + " " + c.Policy + " [0:0]\n")
			}
			for _, c := range tb.Chains {
				for _, r := range c.Rules {
					b.WriteString("-A " + c.Name + " " + r.Spec + "\n")
				}
			}
			b.WriteString("COMMIT\n")
		}
		s2, err := ParseSave(b.String())
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, b.String())
		}
		if len(s2.Tables) != len(s.Tables) {
			t.Fatalf("tables %d != %d", len(s2.Tables), len(s.Tables))
		}
	})
}

// FuzzRenderRule builds rules from arbitrary strings and numbers: SetChain
// either rejects them with an error or renders a rule that the strict
// Fake accepts and whose hash comment reads back from its dump.
func FuzzRenderRule(f *testing.F) {
	f.Add("10.0.0.0/8", "eth0", "tabby-s", "hello", "tabby-x", uint16(80), uint16(90), uint32(0x100), "tcp")
	f.Add("fd00::/64", "a+", "x\"y", "", "-X", uint16(0), uint16(0), uint32(0), "icmp")
	f.Fuzz(func(t *testing.T, prefix, iface, set, comment, target string, p1, p2 uint16, mark uint32, proto string) {
		pfx, perr := netip.ParsePrefix(prefix)
		fam := IPv4
		if perr == nil && pfx.Addr().Is6() {
			fam = IPv6
		}
		m := Match()
		if perr == nil {
			m = m.SourceNet(pfx)
		}
		m = m.InInterface(iface).Protocol(Protocol(proto)).DestPortRanges(PortRange{p1, p2}).SourceIPSet(set).MarkClear(mark)
		fake := NewFake()
		ipt, err := New(Config{Family: fam, Backend: BackendLegacy}, WithExecer(fake))
		if err != nil {
			t.Fatal(err)
		}
		rules := []Rule{{Match: m, Action: Accept{}, Comment: comment}, {Action: Jump{Chain: target}}}
		if !strings.HasPrefix(target, "tabby-") {
			rules[1].Action = Log{Prefix: target}
		}
		chains := []Chain{{Name: "tabby-fuzz", Rules: rules}}
		if strings.HasPrefix(target, "tabby-") && target != "tabby-fuzz" {
			chains = append(chains, Chain{Name: target})
		}
		if err := ipt.ReplaceChains(Filter, chains); err != nil {
			return
		}
		if err := ipt.Apply(context.Background()); err != nil {
			t.Fatalf("rendered rule rejected: %v\n%s", err, ipt.Render())
		}
		if err := ipt.Refresh(context.Background()); err != nil || !ipt.InSync() {
			t.Fatalf("not in sync after refresh: %v\n%s", err, fake.Dump())
		}
	})
}

// FuzzServiceMatches: statistic and recent matches from arbitrary values
// are rejected by SetChain or accepted by the strict Fake and read back
// in sync.
func FuzzServiceMatches(f *testing.F) {
	f.Add("tabby-sep-a", uint32(10800), 1.0/3, true)
	f.Add("", uint32(0), 0.0, false)
	f.Add("a b", uint32(1), 2.0, true)
	f.Fuzz(func(t *testing.T, name string, seconds uint32, p float64, set bool) {
		m := Match().RandomProbability(p)
		if set {
			m = m.RecentSet(name)
		} else {
			m = m.RecentCheck(name, seconds)
		}
		fake := NewFake()
		ipt, err := New(Config{Family: IPv4, Backend: BackendNFT}, WithExecer(fake))
		if err != nil {
			t.Fatal(err)
		}
		if err := ipt.SetChain(NAT, Chain{Name: "tabby-fuzz", Rules: []Rule{{Match: m.SourceAddrTypeLocal(), Action: Return{}}}}); err != nil {
			return
		}
		if err := ipt.Apply(context.Background()); err != nil {
			t.Fatalf("rendered rule rejected: %v\n%s", err, ipt.Render())
		}
		if err := ipt.Refresh(context.Background()); err != nil || !ipt.InSync() {
			t.Fatalf("not in sync after refresh: %v\n%s", err, fake.Dump())
		}
	})
}

// splitArgsByByte is the reference splitArgs: iptables-restore's
// splitting, one byte at a time.
func splitArgsByByte(s string) ([]string, error) {
	var out []string
	var b strings.Builder
	in, quoted, esc := false, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			b.WriteByte(c)
			esc = false
		case quoted && c == '\\':
			esc = true
		case c == '"':
			quoted = !quoted
			in = true
		case c == ' ' && !quoted:
			if in {
				out = append(out, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if quoted || esc {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if in {
		out = append(out, b.String())
	}
	return out, nil
}

// FuzzSplitArgs: splitArgs (which slices arguments out of the spec where
// it can) splits as the byte-by-byte reference does, and skipArgs skips
// whole arguments.
func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{"", " ", "-A  x\t-j\\ ACCEPT ", `-m comment --comment "a b\" c"`, "a\\b  c", `x"y z"w "" " "`, `"a\"`, `"tabby:x" -j X`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := splitArgs(s)
		want, werr := splitArgsByByte(s)
		require.Equal(t, werr == nil, err == nil)
		if werr != nil {
			return
		}
		if len(want) == 0 {
			require.Empty(t, got)
		} else {
			require.Equal(t, want, got)
		}
		for n := range len(want) + 1 {
			rest, err := splitArgs(skipArgs(s, n))
			require.NoError(t, err)
			if n == len(want) {
				require.Empty(t, rest)
			} else {
				require.Equal(t, want[n:], rest, "after %d arguments", n)
			}
		}
	})
}
