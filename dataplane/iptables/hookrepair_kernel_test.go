package iptables

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKernelHookRepair: on both backends and families, another program's
// rule inserted above tabby's hook rules, a hook rule deleted, and an
// owned chain flushed by hand are each repaired by the next Refresh, and
// the repair is stable (a second Refresh writes nothing); the foreign
// rule stays, below the hooks.
func TestKernelHookRepair(t *testing.T) {
	ctx := context.Background()
	cmd := func(f Family, b Backend) string { return strings.TrimSuffix(binary(f, b, ""), "-") }
	for _, b := range backends {
		for _, f := range []Family{IPv4, IPv6} {
			t.Run(string(b)+"/"+f.String(), func(t *testing.T) {
				ipt, ex, n := kernelIPTables(t, b, f)
				require.NoError(t, ipt.ReplaceChains(Filter, sampleChains(f)))
				require.NoError(t, ipt.SetHook(Filter, "FORWARD", []Rule{
					{Match: Match().InInterface("tabby+"), Action: Jump{Chain: "tabby-FORWARD"}},
					{Match: Match().OutInterface("tabby+"), Action: Jump{Chain: "tabby-FORWARD"}},
				}))
				require.NoError(t, ipt.Apply(ctx))
				want, err := n.Run(ctx, binary(f, b, "save"), "-t", "filter")
				require.NoError(t, err)
				norm := func(s string) string {
					var keep []string
					for _, l := range strings.Split(s, "\n") {
						if !strings.HasPrefix(l, "#") {
							keep = append(keep, l)
						}
					}
					return strings.Join(keep, "\n")
				}
				for _, mut := range []string{
					"-I FORWARD 1 -j ACCEPT",
					"-I FORWARD 2 -j ACCEPT",
					"-D FORWARD 2",
					"-F tabby-to-wl",
					"-A tabby-from-wl -j ACCEPT",
				} {
					_, err := n.Run(ctx, cmd(f, b), strings.Fields(mut)...)
					require.NoError(t, err, mut)
					before := ex.restores
					require.NoError(t, ipt.Refresh(ctx), mut)
					assert.Equal(t, before+1, ex.restores, mut)
					require.NoError(t, ipt.Refresh(ctx), mut)
					assert.Equal(t, before+1, ex.restores, "%s: stable after repair", mut)
					assert.True(t, ipt.InSync(), mut)
					got, err := n.Run(ctx, binary(f, b, "save"), "-t", "filter")
					require.NoError(t, err)
					if strings.HasPrefix(mut, "-I FORWARD") {
						// The foreign ACCEPT stays, after the hooks.
						_, err := n.Run(ctx, cmd(f, b), "-D", "FORWARD", "-j", "ACCEPT")
						require.NoError(t, err)
						assert.Regexp(t, `-A FORWARD -i tabby\+ -m comment --comment "tabby:\S+" -j tabby-FORWARD\n-A FORWARD -o tabby\+ -m comment --comment "tabby:\S+" -j tabby-FORWARD\n-A FORWARD -j ACCEPT\n`, got, mut)
						require.NoError(t, ipt.Refresh(ctx))
						continue
					}
					assert.Equal(t, norm(want), norm(got), mut)
				}
			})
		}
	}
}
