package iptables

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// place is where a rule goes: an owned chain of table (hook "") or a
// kernel chain (hook) of table.
type place struct {
	table Table
	hook  string
}

// targetCase is a rule the kernel refuses only at Apply (so SetChain or
// SetHook must refuse it) and a valid twin.
type targetCase struct {
	name      string
	f         Family
	bad       Rule
	at        place
	good      Rule
	goodAt    place
	kernelToo bool // the kernel refuses bad too (false: tabby is stricter)
}

func targetCases() []targetCase {
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	filter, nat := place{table: Filter}, place{table: NAT}
	return []targetCase{
		{"reject bogus type", IPv4, Rule{Action: Reject{With: "bogus"}}, filter, Rule{Action: Reject{With: "icmp-host-prohibited"}}, filter, true},
		{"reject IPv4 type in IPv6", IPv6, Rule{Action: Reject{With: "icmp-port-unreachable"}}, filter, Rule{Action: Reject{With: "icmp6-port-unreachable"}}, filter, true},
		{"reject IPv6 type in IPv4", IPv4, Rule{Action: Reject{With: "icmp6-no-route"}}, filter, Rule{Action: Reject{With: "icmp-net-unreachable"}}, filter, true},
		{"reject IPv6 alias", IPv6, Rule{Action: Reject{With: "port-unreach"}}, filter, Rule{Action: Reject{With: "adm-prohibited"}}, filter, false},
		{"tcp-reset without tcp", IPv6, Rule{Match: Match().Protocol(UDP), Action: Reject{With: "tcp-reset"}}, filter,
			Rule{Match: Match().Protocol(TCP), Action: Reject{With: "tcp-reset"}}, filter, true},
		{"jump to a kernel chain", IPv4, Rule{Action: Jump{Chain: "INPUT"}}, filter, Rule{Action: Jump{Chain: "tabby-t2"}}, filter, true},
		{"goto a kernel chain", IPv6, Rule{Action: Goto{Chain: "PREROUTING"}}, nat, Rule{Action: Goto{Chain: "tabby-t2"}}, nat, true},
		{"DNAT port without protocol", IPv4, Rule{Action: DNAT{To: netip.AddrPortFrom(v4, 80)}}, nat,
			Rule{Match: Match().Protocol(TCP), Action: DNAT{To: netip.AddrPortFrom(v4, 80)}}, nat, true},
		{"DNAT IPv6 port without protocol", IPv6, Rule{Action: DNAT{To: netip.AddrPortFrom(v6, 80)}}, nat,
			Rule{Match: Match().Protocol(SCTP), Action: DNAT{To: netip.AddrPortFrom(v6, 80)}}, nat, true},
		{"DNAT port after a negated protocol", IPv4, Rule{Match: Match().NotProtocol(TCP), Action: DNAT{To: netip.AddrPortFrom(v4, 80)}}, nat,
			Rule{Match: Match().NotProtocol(TCP), Action: DNAT{To: netip.AddrPortFrom(v4, 0)}}, nat, false},
		{"DNAT in filter", IPv4, Rule{Action: DNAT{To: netip.AddrPortFrom(v4, 0)}}, filter, Rule{Action: DNAT{To: netip.AddrPortFrom(v4, 0)}}, nat, true},
		{"SNAT in mangle", IPv6, Rule{Action: SNAT{To: v6}}, place{table: Mangle}, Rule{Action: SNAT{To: v6}}, nat, true},
		{"MASQUERADE in filter", IPv4, Rule{Action: Masquerade{}}, filter, Rule{Action: Masquerade{}}, nat, true},
		{"REJECT in nat", IPv4, Rule{Action: Reject{}}, nat, Rule{Action: Reject{}}, filter, true},
		{"REJECT in raw", IPv6, Rule{Action: Reject{}}, place{table: Raw}, Rule{Action: Reject{}}, filter, true},
		{"DNAT in POSTROUTING", IPv4, Rule{Action: DNAT{To: netip.AddrPortFrom(v4, 0)}}, place{NAT, "POSTROUTING"},
			Rule{Action: DNAT{To: netip.AddrPortFrom(v4, 0)}}, place{NAT, "OUTPUT"}, true},
		{"SNAT in PREROUTING", IPv4, Rule{Action: SNAT{To: v4}}, place{NAT, "PREROUTING"}, Rule{Action: SNAT{To: v4}}, place{NAT, "INPUT"}, true},
		{"MASQUERADE in OUTPUT", IPv6, Rule{Action: Masquerade{}}, place{NAT, "OUTPUT"}, Rule{Action: Masquerade{}}, place{NAT, "POSTROUTING"}, true},
		{"protocol twice", IPv4, Rule{Match: Match().Protocol(TCP).Protocol(UDP), Action: Accept{}}, filter,
			Rule{Match: Match().Protocol(TCP), Action: Accept{}}, filter, true},
		{"source twice", IPv4, Rule{Match: Match().SourceNet(netip.MustParsePrefix("10.0.0.0/8")).NotSourceNet(netip.MustParsePrefix("10.1.0.0/16")), Action: Accept{}}, filter,
			Rule{Match: Match().SourceNet(netip.MustParsePrefix("10.0.0.0/8")).NotDestNet(netip.MustParsePrefix("10.1.0.0/16")), Action: Accept{}}, filter, true},
		{"jump to LOG", IPv4, Rule{Action: Jump{Chain: "LOG"}}, place{table: Raw}, Rule{Action: SetMark{Value: 1, Mask: 1}}, place{table: Raw}, false},
		{"jump to a target", IPv4, Rule{Action: Jump{Chain: "DROP"}}, filter, Rule{Action: Log{Prefix: "x"}}, place{NAT, "PREROUTING"}, false},
	}
}

// set puts rules at p in ipt: an owned chain tabby-t (with tabby-t2, a
// jump target, beside it) or a hook.
func (p place) set(ipt *IPTables, rules []Rule) error {
	if err := ipt.SetChain(p.table, Chain{Name: "tabby-t2"}); err != nil {
		return err
	}
	if p.hook != "" {
		return ipt.SetHook(p.table, p.hook, rules)
	}
	return ipt.SetChain(p.table, Chain{Name: "tabby-t", Rules: rules})
}

// TestTargetRestrictions: rules the kernel would refuse at Apply are
// ErrInvalidRule when set, naming the chain and the rule; nothing of them
// is kept, so other pending changes still apply; the valid twin applies.
func TestTargetRestrictions(t *testing.T) {
	ctx := context.Background()
	for _, tc := range targetCases() {
		t.Run(tc.name, func(t *testing.T) {
			ipt, fake := fakeIPTables(t, tc.f)
			require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-other", Rules: []Rule{{Action: Accept{}}}}))
			err := tc.at.set(ipt, []Rule{{Action: Accept{}}, tc.bad})
			require.ErrorIs(t, err, ErrInvalidRule)
			want := "chain tabby-t rule 1: "
			if tc.at.hook != "" {
				want = "chain " + tc.at.hook + " rule 1: "
			}
			assert.Contains(t, err.Error(), want)
			require.NoError(t, ipt.Apply(ctx), "the other pending chain is not held back")
			assert.Contains(t, fake.Dump(), "-A tabby-other ")
			assert.NotContains(t, fake.Dump(), ":tabby-t ")

			require.NoError(t, tc.goodAt.set(ipt, []Rule{tc.good}))
			require.NoError(t, ipt.Apply(ctx))
		})
	}
	ipt, _ := fakeIPTables(t, IPv4)
	assert.ErrorIs(t, ipt.SetChains(NAT, []Chain{{Name: "tabby-a", Rules: []Rule{{Action: Reject{}}}}}), ErrInvalidRule)
	assert.ErrorIs(t, ipt.ReplaceChains(Filter, []Chain{{Name: "tabby-a", Rules: []Rule{{Action: Masquerade{}}}}}), ErrInvalidRule)
}

// TestKernelRefusesWhatSetRefuses: each rule TestTargetRestrictions
// refuses, rendered without validation and restored into a fresh table,
// is refused by the kernel and by the Fake (unless tabby is knowingly
// stricter), on both backends; the valid twin goes in through Apply.
func TestKernelRefusesWhatSetRefuses(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		for _, f := range []Family{IPv4, IPv6} {
			t.Run(string(b)+"/"+f.String(), func(t *testing.T) {
				ipt, ex, _ := kernelIPTables(t, b, f)
				for _, tc := range targetCases() {
					if tc.f != f {
						continue
					}
					chain := "tabby-t"
					if tc.at.hook != "" {
						chain = tc.at.hook
					}
					in := "*" + string(tc.at.table) + "\n:tabby-t - [0:0]\n:tabby-t2 - [0:0]\n-A " + chain + " " +
						renderRule(tc.bad, f, "tabby:x") + "\nCOMMIT\n"
					cmd := Command{Name: binary(f, b, "restore"), Args: []string{"--noflush"}, Stdin: []byte(in)}
					_, kerr := ex.Run(ctx, cmd)
					_, ferr := NewFake().Run(ctx, cmd)
					if tc.kernelToo {
						assert.Error(t, kerr, "%s: kernel refuses %q", tc.name, in)
					}
					assert.Equal(t, kerr == nil, ferr == nil, "%s: fake as kernel: %v / %v", tc.name, kerr, ferr)
					if kerr == nil {
						cleanup := "*" + string(tc.at.table) + "\n-F " + chain + "\n:tabby-t - [0:0]\n-X tabby-t\n-X tabby-t2\nCOMMIT\n"
						_, err := ex.Run(ctx, Command{Name: cmd.Name, Args: cmd.Args, Stdin: []byte(cleanup)})
						require.NoError(t, err)
					}

					require.NoError(t, tc.goodAt.set(ipt, []Rule{tc.good}), tc.name)
					require.NoError(t, ipt.Apply(ctx), tc.name)
					if tc.goodAt.hook != "" {
						require.NoError(t, ipt.SetHook(tc.goodAt.table, tc.goodAt.hook, nil))
					}
					require.NoError(t, ipt.ReplaceChains(tc.goodAt.table, nil))
					require.NoError(t, ipt.Apply(ctx), tc.name)
				}
			})
		}
	}
}

// TestChainNameErrors: each bad name gets its real reason and sentinel.
func TestChainNameErrors(t *testing.T) {
	ipt, _ := fakeIPTables(t, IPv4)
	for _, tc := range []struct {
		table      Table
		name       string
		want       error
		notWant    error
		reasonPart string
	}{
		{Filter, "tabby-a b", ErrInvalidRule, ErrNotOwned, `invalid character ' ' at byte 7`},
		{Filter, `tabby-a"b`, ErrInvalidRule, ErrNotOwned, `invalid character '"' at byte 7`},
		{Filter, "tabby-é", ErrInvalidRule, ErrNotOwned, `invalid character 'é' at byte 6`},
		{Filter, "tabby-" + strings.Repeat("x", 23), ErrInvalidRule, ErrNotOwned, "29 bytes: at most 28"},
		{Filter, "", ErrInvalidRule, ErrNotOwned, "empty chain name"},
		{Filter, "-tabby", ErrInvalidRule, ErrNotOwned, "starts with '-'"},
		{Filter, "other-a", ErrNotOwned, ErrInvalidRule, `must start with "tabby-"`},
		{Filter, "tabby-", ErrNotOwned, ErrInvalidRule, `must start with "tabby-" and go on`},
		{Filter, "INPUT", ErrNotOwned, ErrInvalidRule, "filter/INPUT"},
		{"bogus", "tabby-a", ErrUnknownTable, ErrNotOwned, `unknown table "bogus"`},
	} {
		err := ipt.SetChain(tc.table, Chain{Name: tc.name})
		require.ErrorIs(t, err, tc.want, tc.name)
		assert.NotErrorIs(t, err, tc.notWant, tc.name)
		assert.Contains(t, err.Error(), tc.reasonPart, tc.name)
		assert.ErrorIs(t, ipt.SetChains(tc.table, []Chain{{Name: tc.name}}), tc.want, tc.name)
	}
	assert.ErrorIs(t, ErrUnknownTable, ErrInvalidRule, "an unknown table is invalid input")

	for _, tc := range []struct {
		table Table
		chain string
		want  error
	}{
		{"bogus", "INPUT", ErrUnknownTable},
		{"Filter", "INPUT", ErrUnknownTable},
		{Filter, "PREROUTING", ErrNotOwned},
		{Filter, "tabby-x", ErrNotOwned},
	} {
		err := ipt.SetHook(tc.table, tc.chain, nil)
		assert.ErrorIs(t, err, tc.want, "%s/%s: %v", tc.table, tc.chain, err)
		if tc.want == ErrUnknownTable {
			assert.NotErrorIs(t, err, ErrNotOwned)
		}
	}
}

// TestChainPrefixOfOtherOwners: a prefix overlapping a well-known
// program's chains (either way) is refused; others are accepted.
func TestChainPrefixOfOtherOwners(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"KUBE-", false},
		{"KUBE-TABBY-", false}, // kube-proxy sweeps KUBE-* chains it does not know
		{"K", false},
		{"cali-", false},
		{"cali", false},
		{"CILIUM_", false},
		{"DOCKER-", false},
		{"ts-", false},
		{"tabby-", true},
		{"TABBY-", true},
		{"kube-", true}, // case matters: kube-proxy's chains are KUBE-
		{"my-agent-", true},
	} {
		_, err := New(Config{ChainPrefix: tc.prefix})
		if tc.ok {
			assert.NoError(t, err, tc.prefix)
		} else {
			assert.ErrorIs(t, err, ErrInvalidConfig, tc.prefix)
		}
	}
}
