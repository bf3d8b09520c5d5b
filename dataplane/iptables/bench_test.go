package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
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
// the same rendered rules from a file.
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
				file := filepath.Join(b.TempDir(), "rules")
				require.NoError(b, os.WriteFile(file, []byte(ipt.Render()), 0o600))
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
