package iptables

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reachCase is a nat table whose NAT target the hook reaches from a
// kernel chain it may not be used in (bad), and the kernel chain it may
// be reached from (good).
type reachCase struct {
	name      string
	chains    []Chain
	hook      []Rule
	bad, good string
	// at is the chain and rule the NAT target is in.
	at string
}

func reachCases(f Family) []reachCase {
	a := netip.MustParseAddr("10.0.0.1")
	if f == IPv6 {
		a = netip.MustParseAddr("fd00::1")
	}
	dnat, snat := DNAT{To: netip.AddrPortFrom(a, 0)}, SNAT{To: a}
	return []reachCase{
		{"DNAT jumped to from POSTROUTING", []Chain{{Name: "tabby-a", Rules: []Rule{{Action: dnat}}}},
			[]Rule{{Action: Jump{Chain: "tabby-a"}}}, "POSTROUTING", "PREROUTING", "chain tabby-a rule 0"},
		{"DNAT through a jump and a goto from INPUT", []Chain{
			{Name: "tabby-a", Rules: []Rule{{Match: Match().Protocol(TCP), Action: Jump{Chain: "tabby-b"}}}},
			{Name: "tabby-b", Rules: []Rule{{Action: Goto{Chain: "tabby-c"}}}},
			{Name: "tabby-c", Rules: []Rule{{Action: Return{}}, {Action: dnat}}},
		}, []Rule{{Action: Accept{}}, {Action: Jump{Chain: "tabby-a"}}}, "INPUT", "OUTPUT", "chain tabby-c rule 1"},
		{"SNAT from PREROUTING", []Chain{
			{Name: "tabby-a", Rules: []Rule{{Action: Jump{Chain: "tabby-b"}}}},
			{Name: "tabby-b", Rules: []Rule{{Action: snat}}},
		}, []Rule{{Action: Jump{Chain: "tabby-a"}}}, "PREROUTING", "INPUT", "chain tabby-b rule 0"},
		{"MASQUERADE from INPUT", []Chain{{Name: "tabby-a", Rules: []Rule{{Action: Masquerade{}}}}},
			[]Rule{{Action: Jump{Chain: "tabby-a"}}}, "INPUT", "POSTROUTING", "chain tabby-a rule 0"},
		{"MASQUERADE by a goto from OUTPUT", []Chain{{Name: "tabby-a", Rules: []Rule{{Action: Masquerade{RandomFully: true}}}}},
			[]Rule{{Action: Goto{Chain: "tabby-a"}}}, "OUTPUT", "POSTROUTING", "chain tabby-a rule 0"},
	}
}

// TestReachedNATTarget: a NAT target reached from a kernel chain that is
// not its hook is ErrInvalidRule from whichever call completes the path
// — SetHook, SetChain of any chain on it, SetChains, ReplaceChains —
// naming the rule, the NAT target's chain and rule and the hook; the
// refused call changes nothing (Apply into the strict Fake succeeds),
// and the same chains behind the good hook are accepted.
func TestReachedNATTarget(t *testing.T) {
	ctx := context.Background()
	for _, f := range []Family{IPv4, IPv6} {
		for _, tc := range reachCases(f) {
			t.Run(f.String()+"/"+tc.name, func(t *testing.T) {
				check := func(ipt *IPTables, err error) {
					t.Helper()
					require.ErrorIs(t, err, ErrInvalidRule)
					assert.Contains(t, err.Error(), "("+tc.at+")")
					assert.Contains(t, err.Error(), "reached from kernel chain "+tc.bad+" ("+tc.bad+" -> ")
				}
				// Chains first, then the hook.
				ipt, _ := fakeIPTables(t, f)
				require.NoError(t, ipt.SetChains(NAT, tc.chains))
				err := ipt.SetHook(NAT, tc.bad, tc.hook)
				check(ipt, err)
				require.NoError(t, ipt.Apply(ctx), "what was refused is not kept")
				assert.Contains(t, err.Error(), "chain "+tc.bad+" rule ")
				require.NoError(t, ipt.SetHook(NAT, tc.good, tc.hook))
				require.NoError(t, ipt.Apply(ctx))

				// The hook first, then each chain; the last one on the
				// path is refused, whichever it is.
				for skip := range tc.chains {
					ipt, _ := fakeIPTables(t, f)
					require.NoError(t, ipt.SetHook(NAT, tc.bad, tc.hook))
					for i, c := range tc.chains {
						if i != skip {
							require.NoError(t, ipt.SetChain(NAT, c))
						}
					}
					err := ipt.SetChain(NAT, tc.chains[skip])
					check(ipt, err)
					assert.Contains(t, err.Error(), "chain "+tc.chains[skip].Name+" rule ")
					require.NoError(t, ipt.SetChain(NAT, Chain{Name: tc.chains[skip].Name}))
					require.NoError(t, ipt.Apply(ctx), "what was refused is not kept")
				}
				// SetChains and ReplaceChains of the whole path.
				ipt, _ = fakeIPTables(t, f)
				require.NoError(t, ipt.SetHook(NAT, tc.bad, tc.hook))
				check(ipt, ipt.SetChains(NAT, tc.chains))
				check(ipt, ipt.ReplaceChains(NAT, tc.chains))
				// The chains alone, or with the hook elsewhere, are fine.
				require.NoError(t, ipt.SetHook(NAT, tc.bad, nil))
				require.NoError(t, ipt.ReplaceChains(NAT, tc.chains))
				require.NoError(t, ipt.SetHook(NAT, tc.good, tc.hook))
				require.NoError(t, ipt.Apply(ctx))
			})
		}
	}
}

// TestReachedNATTargetUpdates: the reachability follows DeleteChain,
// ReplaceChains dropping chains, emptied hooks and refused calls.
func TestReachedNATTargetUpdates(t *testing.T) {
	ctx := context.Background()
	dnat := []Rule{{Action: DNAT{To: netip.MustParseAddrPort("10.0.0.1:0")}}}
	jump := func(c string) []Rule { return []Rule{{Action: Jump{Chain: c}}} }
	ipt, fake := fakeIPTables(t, IPv4)
	require.NoError(t, ipt.SetHook(NAT, "POSTROUTING", jump("tabby-a")))
	require.NoError(t, ipt.SetChain(NAT, Chain{Name: "tabby-a", Rules: jump("tabby-b")}))
	require.ErrorIs(t, ipt.SetChain(NAT, Chain{Name: "tabby-b", Rules: dnat}), ErrInvalidRule)

	// A refused SetChain of tabby-a keeps its old jumps: tabby-c stays
	// unreached; a refused SetChains keeps tabby-c's.
	require.NoError(t, ipt.SetChain(NAT, Chain{Name: "tabby-c", Rules: dnat}))
	require.ErrorIs(t, ipt.SetChain(NAT, Chain{Name: "tabby-a", Rules: jump("tabby-c")}), ErrInvalidRule)
	require.ErrorIs(t, ipt.SetChains(NAT, []Chain{{Name: "tabby-c"}, {Name: "tabby-b", Rules: dnat}}), ErrInvalidRule)
	require.ErrorIs(t, ipt.SetChain(NAT, Chain{Name: "tabby-a", Rules: jump("tabby-c")}), ErrInvalidRule)

	// DeleteChain of tabby-a: nothing reaches tabby-b any more.
	ipt.DeleteChain(NAT, "tabby-a")
	require.NoError(t, ipt.SetChain(NAT, Chain{Name: "tabby-b", Rules: dnat}))
	// Setting tabby-a again restores the path.
	require.ErrorIs(t, ipt.SetChain(NAT, Chain{Name: "tabby-a", Rules: jump("tabby-b")}), ErrInvalidRule)
	// ReplaceChains dropping tabby-a (desired: only b and c).
	require.NoError(t, ipt.ReplaceChains(NAT, []Chain{{Name: "tabby-b", Rules: dnat}, {Name: "tabby-c", Rules: dnat}}))
	require.NoError(t, ipt.SetChain(NAT, Chain{Name: "tabby-a", Rules: jump("tabby-x")}))
	// An emptied hook: tabby-a may jump to the DNAT chains now.
	require.NoError(t, ipt.SetHook(NAT, "POSTROUTING", nil))
	require.NoError(t, ipt.SetChain(NAT, Chain{Name: "tabby-a", Rules: jump("tabby-b")}))
	require.ErrorIs(t, ipt.SetHook(NAT, "POSTROUTING", jump("tabby-a")), ErrInvalidRule)
	require.NoError(t, ipt.SetHook(NAT, "PREROUTING", jump("tabby-a")))
	require.NoError(t, ipt.Apply(ctx))
	assert.Contains(t, fake.Dump(), "-A PREROUTING -m comment")

	// Other tables are not concerned; a chain of another program is not
	// followed (unknown).
	require.NoError(t, ipt.SetHook(Filter, "INPUT", jump("tabby-b")))
	require.NoError(t, ipt.SetHook(NAT, "POSTROUTING", jump("KUBE-POSTROUTING")))
}

// TestKernelRefusesReachedNAT: the states TestReachedNATTarget refuses,
// restored raw into a fresh netns, are refused by the kernel and by the
// Fake, on legacy and nft, IPv4 and IPv6; the same chains behind the good
// kernel chain go in through Apply.
func TestKernelRefusesReachedNAT(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		for _, f := range []Family{IPv4, IPv6} {
			t.Run(string(b)+"/"+f.String(), func(t *testing.T) {
				ipt, ex, _ := kernelIPTables(t, b, f)
				for _, tc := range reachCases(f) {
					var in strings.Builder
					in.WriteString("*nat\n")
					for _, c := range tc.chains {
						in.WriteString(":" + c.Name + " - [0:0]\n")
					}
					for _, c := range slices.Concat(tc.chains, []Chain{{Name: tc.bad, Rules: tc.hook}}) {
						for _, r := range c.Rules {
							in.WriteString("-A " + c.Name + " " + renderRule(r, f, "tabby:x") + "\n")
						}
					}
					in.WriteString("COMMIT\n")
					cmd := Command{Name: binary(f, b, "restore"), Args: []string{"--noflush"}, Stdin: []byte(in.String())}
					_, kerr := ex.Run(ctx, cmd)
					_, ferr := NewFake().Run(ctx, cmd)
					assert.Error(t, kerr, "%s: kernel refuses %q", tc.name, in.String())
					assert.Error(t, ferr, "%s: fake refuses %q", tc.name, in.String())
					if kerr == nil {
						require.NoError(t, ipt.Refresh(ctx)) // clean up
					}

					require.NoError(t, ipt.ReplaceChains(NAT, tc.chains), tc.name)
					require.NoError(t, ipt.SetHook(NAT, tc.good, tc.hook), tc.name)
					require.NoError(t, ipt.Apply(ctx), tc.name)
					require.NoError(t, ipt.SetHook(NAT, tc.good, nil))
					require.NoError(t, ipt.ReplaceChains(NAT, nil))
					require.NoError(t, ipt.Apply(ctx), tc.name)
				}
			})
		}
	}
}
