package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	benchChains        = 2000
	benchRulesPerChain = 5
)

func benchChain(i, gen int) Chain {
	a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0})
	rules := []Rule{
		{Match: Match().SourceNet(netip.PrefixFrom(a, 24)).Protocol(TCP).DestPorts(80, 443, uint16(8000+gen)), Action: SetMark{Value: 0x10000, Mask: 0x10000}},
		{Match: Match().MarkMatchesWithMask(0x10000, 0x10000), Action: Return{}},
		{Match: Match().Protocol(UDP).DestPorts(53).InInterface("tabby+"), Action: Accept{}},
		{Match: Match().ConntrackState(StateInvalid), Action: Drop{}},
		{Action: Return{}, Comment: fmt.Sprintf("chain %d", i)},
	}
	return Chain{Name: fmt.Sprintf("tabby-pi-%06d", i), Rules: rules[:benchRulesPerChain]}
}

func benchChainSet(gen int) []Chain {
	chains := make([]Chain, benchChains)
	for i := range chains {
		chains[i] = benchChain(i, gen)
	}
	return chains
}

// BenchmarkKernel applies ~10,000 rules in 2,000 chains on each backend
// in a netns, and compares with the floor: iptables-restore --noflush of
// the same input (as Apply would write it to an empty dataplane) from a
// file.
func BenchmarkKernel(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends {
		b.Run(string(be), func(b *testing.B) {
			_, ex, n := kernelIPTables(b, be, IPv4)
			flush := func() {
				_, err := ex.Run(ctx, Command{Name: binary(IPv4, be, "restore"), Stdin: []byte("*filter\nCOMMIT\n")})
				require.NoError(b, err)
			}
			chains := benchChainSet(0)
			hook := []Rule{{Action: Jump{Chain: chains[0].Name}}}
			b.Run("Apply/full", func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					flush()
					ipt, err := New(Config{Family: IPv4, Backend: be}, WithNetns(n.Name))
					require.NoError(b, err)
					require.NoError(b, ipt.ReplaceChains(Filter, chains))
					require.NoError(b, ipt.SetHook(Filter, "FORWARD", hook))
					b.StartTimer()
					require.NoError(b, ipt.Apply(ctx))
				}
				b.ReportMetric(benchChains*benchRulesPerChain, "rules")
			})
			b.Run("Restore/full", func(b *testing.B) {
				ipt, err := New(Config{Family: IPv4, Backend: be})
				require.NoError(b, err)
				require.NoError(b, ipt.ReplaceChains(Filter, chains))
				require.NoError(b, ipt.SetHook(Filter, "FORWARD", hook))
				// Apply's input to an empty dataplane, in Apply's order.
				input, _ := ipt.buildInput()
				file := filepath.Join(b.TempDir(), "rules")
				require.NoError(b, os.WriteFile(file, input, 0o600))
				for b.Loop() {
					b.StopTimer()
					flush()
					b.StartTimer()
					_, err := n.Run(ctx, "sh", "-c", binary(IPv4, be, "restore")+" --noflush -w 5 < "+file)
					require.NoError(b, err)
				}
			})
			b.Run("Apply/one-chain", func(b *testing.B) {
				flush()
				ipt, err := New(Config{Family: IPv4, Backend: be}, WithNetns(n.Name))
				require.NoError(b, err)
				require.NoError(b, ipt.ReplaceChains(Filter, chains))
				require.NoError(b, ipt.SetHook(Filter, "FORWARD", hook))
				require.NoError(b, ipt.Apply(ctx))
				i := 0
				for b.Loop() {
					i++
					c := benchChain(7, i)
					require.NoError(b, ipt.SetChain(Filter, c))
					require.NoError(b, ipt.Apply(ctx))
				}
			})
			flush()
		})
	}
}

// scaleChain is chain i of a BenchmarkFakeScale table, as the services
// backend writes per endpoint: a source match with a mark, then a DNAT.
func scaleChain(i, gen int) Chain {
	a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return Chain{Name: fmt.Sprintf("tabby-sep-%08d", i), Rules: []Rule{
		{Match: Match().SourceNet(netip.PrefixFrom(a, 32)), Action: SetMark{Value: 0x4000, Mask: 0x4000}},
		{Match: Match().Protocol(TCP), Action: DNAT{To: netip.AddrPortFrom(a, uint16(8000+gen))}, Comment: "ns/svc:http"},
	}}
}

// BenchmarkFakeScale writes n two-rule chains, each jumped to from one
// of n/100 dispatch chains, into a Fake (rendering, hashing, the restore
// text and the Fake's parser), and then changes one chain and deletes
// another (with its jump). ns/chain stays flat from 10,000 to 100,000
// chains when the full apply is linear; one-change's ns/op stays flat
// when it costs O(change). The hooked variants add a PREROUTING hook
// jumping to every dispatch chain (set last in full), so that the check
// of the NAT targets' hooks (SetChain's and the Fake's) walks real paths:
// the full apply walks every chain once, one change only its path.
func BenchmarkFakeScale(b *testing.B) {
	ctx := context.Background()
	for _, hooked := range []bool{false, true} {
		for _, n := range []int{10000, 100000} {
			benchFakeScale(ctx, b, n, hooked)
		}
	}
}

func benchFakeScale(ctx context.Context, b *testing.B, n int, hooked bool) {
	name := ""
	if hooked {
		name = "-hooked"
	}
	{
		var chains, dispatch []Chain
		for i := range n {
			c := scaleChain(i, 0)
			if i%100 == 0 {
				dispatch = append(dispatch, Chain{Name: fmt.Sprintf("tabby-d-%06d", i/100)})
			}
			d := &dispatch[len(dispatch)-1]
			d.Rules = append(d.Rules, Rule{Match: Match().DestNet(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), 32)), Action: Jump{Chain: c.Name}})
			chains = append(chains, c)
		}
		all := slices.Concat(chains, dispatch)
		var hook []Rule
		if hooked {
			for _, d := range dispatch {
				hook = append(hook, Rule{Action: Jump{Chain: d.Name}})
			}
		}
		setUp := func(b *testing.B) *IPTables {
			ipt, err := New(Config{Family: IPv4, Backend: BackendNFT}, WithExecer(NewFake()))
			require.NoError(b, err)
			return ipt
		}
		b.Run(fmt.Sprintf("full%s/chains=%d", name, n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				ipt := setUp(b)
				b.StartTimer()
				for _, c := range all {
					require.NoError(b, ipt.SetChain(NAT, c))
				}
				if hooked {
					require.NoError(b, ipt.SetHook(NAT, "PREROUTING", hook))
				}
				require.NoError(b, ipt.Apply(ctx))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/chain")
		})
		b.Run(fmt.Sprintf("one-change%s/chains=%d", name, n), func(b *testing.B) {
			ipt := setUp(b)
			require.NoError(b, ipt.ReplaceChains(NAT, all))
			if hooked {
				require.NoError(b, ipt.SetHook(NAT, "PREROUTING", hook))
			}
			require.NoError(b, ipt.Apply(ctx))
			d0 := dispatch[0]
			without := Chain{Name: d0.Name, Rules: slices.Delete(slices.Clone(d0.Rules), 8, 9)}
			gen := 0
			for b.Loop() {
				// Chain 7 changes; chain 8 is deleted with its jump, then
				// comes back: two applies, each O(change).
				gen++
				require.NoError(b, ipt.SetChain(NAT, scaleChain(7, gen)))
				require.NoError(b, ipt.SetChain(NAT, without))
				ipt.DeleteChain(NAT, chains[8].Name)
				require.NoError(b, ipt.Apply(ctx))
				require.NoError(b, ipt.SetChain(NAT, chains[8]))
				require.NoError(b, ipt.SetChain(NAT, d0))
				require.NoError(b, ipt.Apply(ctx))
			}
		})
	}
}
