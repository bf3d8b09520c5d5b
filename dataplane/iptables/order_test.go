package iptables

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withSortedInput makes Apply write the order before appendSection: all
// declarations sorted, then all rules (the benchmark's peer).
func withSortedInput() Option { return func(t *IPTables) { t.sortedInput = true } }

// orderCase is a random section: chains (sorted by name) whose rules
// jump to one another (cycles included), to hubs' many targets, to
// chains the section does not declare and to kernel targets.
type orderCase struct {
	chains     int
	hubs       int
	maxRules   int
	undeclared bool // jumps to owned chains outside the section
}

func randomSection(t testing.TB, rng *rand.Rand, oc orderCase) []sectionChain {
	names := make([]string, oc.chains)
	for i := range names {
		names[i] = fmt.Sprintf("tabby-%c%04x", 'a'+rng.IntN(3), rng.Uint32()&0xffff)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	out := make([]sectionChain, len(names))
	for i, name := range names {
		n := rng.IntN(oc.maxRules + 1)
		if i < oc.hubs {
			n = len(names) + rng.IntN(8)
		}
		rules := make([]Rule, n)
		for r := range rules {
			switch k := rng.IntN(10); {
			case i < oc.hubs && k < 8:
				rules[r].Action = Jump{Chain: names[rng.IntN(len(names))]}
			case k < 3:
				rules[r].Action = Jump{Chain: names[rng.IntN(len(names))]}
			case k < 4:
				rules[r].Action = Goto{Chain: names[rng.IntN(len(names))]}
			case k < 5 && oc.undeclared:
				rules[r].Action = Jump{Chain: fmt.Sprintf("tabby-out-%d", rng.IntN(5))}
			case k < 6:
				rules[r] = Rule{Action: Log{Prefix: "-j " + names[0]}}
			default:
				rules[r] = Rule{Match: Match().SourceNet(netip.MustParsePrefix("10.0.0.0/8")), Action: Accept{}, Comment: "x -j " + names[0]}
			}
		}
		rc, err := renderChain(name, rules, IPv4, DefaultHashPrefix, nil)
		require.NoError(t, err)
		out[i] = sectionChain{name, rc}
	}
	// Every fifth chain is only declared (flushed or about to be deleted).
	for i := range out {
		if i%5 == 4 && i >= oc.hubs {
			out[i].rc = renderedChain{}
		}
	}
	return out
}

// sortedSection is the order before appendSection: declarations, then rules.
func sortedSection(chains []sectionChain) []byte {
	var b []byte
	for _, c := range chains {
		b = append(b, ":"+c.name+" - [0:0]\n"...)
	}
	for _, c := range chains {
		b = appendAppends(b, c.name, c.rc)
	}
	return b
}

// checkRestoreOrder asserts that got is a permutation of want (both
// restore inputs of table sections) that keeps restore's semantics: same
// sections in the same order; in each, a chain declared before its first
// -A, a rule after the declaration of a section chain it jumps to, each
// chain's rules in want's order, and every other line (hooks, -X) after
// all declarations and appends, in want's order.
func checkRestoreOrder(t testing.TB, want, got string) {
	t.Helper()
	split := func(s string) (heads []string, secs [][]string) {
		for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
			switch {
			case strings.HasPrefix(l, "*"):
				heads = append(heads, l)
				secs = append(secs, nil)
			case l == "COMMIT":
			default:
				require.NotEmpty(t, secs, "line %q outside a section", l)
				secs[len(secs)-1] = append(secs[len(secs)-1], l)
			}
		}
		return heads, secs
	}
	wh, ws := split(want)
	gh, gs := split(got)
	require.Equal(t, wh, gh, "sections")
	require.Equal(t, strings.Count(want, "COMMIT\n"), strings.Count(got, "COMMIT\n"))
	for s := range ws {
		w, g := ws[s], gs[s]
		require.ElementsMatch(t, w, g, "section %s: not a permutation", wh[s])
		declared := map[string]int{}
		for i, l := range g {
			if strings.HasPrefix(l, ":") {
				declared[strings.Fields(l[1:])[0]] = i
			}
		}
		type chainLine struct{ chain, spec string }
		rules := func(lines []string) (map[string][]string, []string, int) {
			byChain := map[string][]string{}
			var rest []string
			lastBody := -1
			for i, l := range lines {
				switch {
				case strings.HasPrefix(l, ":"):
					lastBody = i
				case strings.HasPrefix(l, "-A "):
					chain, spec, _ := strings.Cut(l[3:], " ")
					byChain[chain] = append(byChain[chain], spec)
					lastBody = i
				default:
					rest = append(rest, l)
				}
			}
			return byChain, rest, lastBody
		}
		wr, wrest, _ := rules(w)
		gr, grest, gLast := rules(g)
		assert.Equal(t, wr, gr, "section %s: each chain's rules in order", wh[s])
		assert.Equal(t, wrest, grest, "section %s: hooks and deletions in order", wh[s])
		for i, l := range g {
			if !strings.HasPrefix(l, "-A ") {
				if !strings.HasPrefix(l, ":") {
					assert.Greater(t, i, gLast, "section %s: %q before a declaration or append", wh[s], l)
				}
				continue
			}
			chain, spec, _ := strings.Cut(l[3:], " ")
			d, ok := declared[chain]
			require.True(t, ok, "section %s: -A of undeclared %s", wh[s], chain)
			assert.Less(t, d, i, "section %s: %q before :%s", wh[s], l, chain)
			if tg := jumpTarget(spec); tg != "" {
				if d, ok := declared[tg]; ok {
					assert.Less(t, d, i, "section %s: %q before its target's declaration", wh[s], l)
				}
			}
		}
	}
}

func TestAppendSectionOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		oc    orderCase
		seeds int
	}{
		{"empty", orderCase{}, 1},
		{"one chain", orderCase{chains: 1, maxRules: 3}, 5},
		{"small graph", orderCase{chains: 12, maxRules: 6, undeclared: true}, 50},
		{"no rules", orderCase{chains: 40}, 3},
		{"hubs", orderCase{chains: 300, hubs: 3, maxRules: 4, undeclared: true}, 10},
		{"dense", orderCase{chains: 100, maxRules: 40}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range tc.seeds {
				rng := rand.New(rand.NewPCG(uint64(seed), 7))
				chains := randomSection(t, rng, tc.oc)
				want := "*filter\n" + string(sortedSection(chains)) + "COMMIT\n"
				got := "*filter\n" + string(appendSection(nil, chains)) + "COMMIT\n"
				checkRestoreOrder(t, want, got)
			}
		})
	}
}

// nftListCost simulates iptables-nft-restore 1.8.9's chain list
// (nft-cache.c cache_chain_list_insert) over one section of input: per
// line, the names already in the sorted list that sort before the
// chain it names and before its jump target (when that is a section
// chain). It returns the total and the largest cost of a line.
func nftListCost(input string) (total, most int) {
	var list []string
	mention := func(name string) int {
		i, found := slices.BinarySearch(list, name)
		if !found {
			list = slices.Insert(list, i, name)
		}
		return i
	}
	for _, l := range strings.Split(input, "\n") {
		cost := 0
		switch {
		case strings.HasPrefix(l, ":"):
			cost = mention(strings.Fields(l[1:])[0])
		case strings.HasPrefix(l, "-A "):
			chain, spec, _ := strings.Cut(l[3:], " ")
			cost = mention(chain)
			if tg := jumpTarget(spec); strings.HasPrefix(tg, "tabby-") {
				cost += mention(tg)
			}
		}
		total, most = total+cost, max(most, cost)
	}
	return total, most
}

// TestAppendSectionCost: on the services-like table, each line of the new
// order walks at most about two batches of the simulated chain list when
// the hub's jumps come in descending target order, and the whole input
// costs a small fraction of the sorted order's walk; with the hub's
// jumps shuffled it still costs less than the sorted order.
func TestAppendSectionCost(t *testing.T) {
	for _, random := range []bool{false, true} {
		chains, _ := orderBenchChains(3000, random)
		var sec []sectionChain
		for _, c := range chains {
			rc, err := renderChain(c.Name, c.Rules, IPv4, DefaultHashPrefix, nil)
			require.NoError(t, err)
			sec = append(sec, sectionChain{c.Name, rc})
		}
		slices.SortFunc(sec, func(a, b sectionChain) int { return strings.Compare(a.name, b.name) })
		sortedTotal, _ := nftListCost(string(sortedSection(sec)))
		total, most := nftListCost(string(appendSection(nil, sec)))
		t.Logf("random hub %v: sorted %d, new %d comparisons (largest line %d)", random, sortedTotal, total, most)
		if !random {
			assert.LessOrEqual(t, most, 2*declareBatch+1)
			assert.Less(t, 20*total, sortedTotal)
		} else {
			assert.Less(t, total, sortedTotal)
		}
	}
}

func TestJumpTarget(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"-j tabby-x", "tabby-x"},
		{"-g tabby-x", "tabby-x"},
		{`-m comment --comment "tabby:abc" -j tabby-x`, "tabby-x"},
		{`-m comment --comment "a -j tabby-x"`, ""},
		{`-j LOG --log-prefix "-j tabby-x"`, ""},
		{"-j DNAT --to-destination 10.0.0.1:80", ""},
		{"x-j tabby-x", ""},
		{"-j", ""},
		{"", ""},
		{"-j ACCEPT", "ACCEPT"},
	} {
		assert.Equal(t, tc.want, jumpTarget(tc.spec), tc.spec)
	}
}

// FuzzAppendSection: any section appendSection orders is a permutation
// of the sorted order that keeps restore's semantics.
func FuzzAppendSection(f *testing.F) {
	f.Add(uint64(1), uint8(10), uint8(0), uint8(5), true)
	f.Add(uint64(2), uint8(200), uint8(2), uint8(3), false)
	f.Fuzz(func(t *testing.T, seed uint64, chains, hubs, maxRules uint8, undeclared bool) {
		rng := rand.New(rand.NewPCG(seed, 7))
		oc := orderCase{chains: int(chains), hubs: int(hubs % 4), maxRules: int(maxRules % 50), undeclared: undeclared}
		sec := randomSection(t, rng, oc)
		checkRestoreOrder(t, "*nat\n"+string(sortedSection(sec))+"COMMIT\n", "*nat\n"+string(appendSection(nil, sec))+"COMMIT\n")
	})
}

// dagChains is a random desired state for Apply: chains jumping only to
// chains later in a random permutation (the kernel refuses loops), some
// to hubs' many targets.
func dagChains(rng *rand.Rand, n, hubs int, prefix string) []Chain {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("tabby-%s%c%05d", prefix, 'a'+rng.IntN(3), i)
	}
	rng.Shuffle(n, func(i, j int) { names[i], names[j] = names[j], names[i] })
	chains := make([]Chain, n)
	for i, name := range names {
		nr := rng.IntN(5)
		if i < hubs {
			nr = n
		}
		c := Chain{Name: name}
		for range nr {
			if i+1 < n && rng.IntN(3) > 0 {
				c.Rules = append(c.Rules, Rule{Action: Jump{Chain: names[i+1+rng.IntN(n-i-1)]}})
			} else {
				c.Rules = append(c.Rules, Rule{Match: Match().Protocol(TCP), Action: Accept{}})
			}
		}
		chains[i] = c
	}
	return chains
}

// TestApplyOrderOnFake: Apply's new order and the sorted one, given the
// same random changes (new chains, rewritten ones, deleted ones, hooks),
// write permutations of each other that keep restore's semantics, and the
// Fake (as strict as the kernel about undeclared targets) ends equal.
func TestApplyOrderOnFake(t *testing.T) {
	ctx := context.Background()
	for seed := range 8 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 11))
			first := map[Table][]Chain{Filter: dagChains(rng, 150, 2, "f"), NAT: dagChains(rng, 80, 1, "n")}
			second := map[Table][]Chain{Filter: dagChains(rng, 150, 2, "f"), NAT: dagChains(rng, 80, 1, "n")}
			var inputs [2][]string
			var dumps [2]string
			for k, opts := range [][]Option{nil, {withSortedInput()}} {
				ipt, fake := fakeIPTables(t, IPv4, opts...)
				for _, state := range []map[Table][]Chain{first, second} {
					for _, tb := range []Table{Filter, NAT} {
						require.NoError(t, ipt.ReplaceChains(tb, state[tb]))
					}
					require.NoError(t, ipt.SetHook(Filter, "FORWARD", []Rule{{Action: Jump{Chain: state[Filter][0].Name}}}))
					require.NoError(t, ipt.Apply(ctx))
				}
				inputs[k], dumps[k] = restores(fake), fake.Dump()
			}
			require.Len(t, inputs[0], 2)
			require.Len(t, inputs[1], 2)
			for i := range inputs[0] {
				checkRestoreOrder(t, inputs[1][i], inputs[0][i])
			}
			assert.Equal(t, dumps[1], dumps[0])
		})
	}
}

// TestRestoreErrorLineReordered: a refused rule in the middle of a large
// reordered input is still named by its line and text.
func TestRestoreErrorLineReordered(t *testing.T) {
	ctx := context.Background()
	ipt, fake := fakeIPTables(t, IPv4)
	chains, bad := orderBenchChains(600, false)
	require.NoError(t, ipt.ReplaceChains(NAT, chains))
	require.NoError(t, ipt.SetChain(NAT, bad))
	err := ipt.Apply(ctx)
	var re *RestoreError
	require.ErrorAs(t, err, &re)
	in := restores(fake)[0]
	assert.Equal(t, strings.Split(in, "\n")[re.Line-1], re.Text)
	assert.Contains(t, re.Text, "-A "+bad.Name+" ")
	assert.Contains(t, re.Text, "-j tabby-nowhere")
	assert.Less(t, strings.Index(in, "\n-A "), strings.LastIndex(in, "\n:"), "the new order: rules between declarations")
}

// orderBenchChains is a services-like nat table: n leaf chains of ten
// DNAT rules and a hub "tabby-services" jumping to each, in descending
// target order or (random) shuffled. With bad, it also returns a copy of
// a chain from the middle whose fifth rule jumps to a missing chain.
func orderBenchChains(n int, random bool) ([]Chain, Chain) {
	rng := rand.New(rand.NewPCG(uint64(n), 3))
	chains := make([]Chain, 0, n+1)
	hub := Chain{Name: "tabby-services"}
	for i := range n {
		name := fmt.Sprintf("tabby-svc-%016x", rng.Uint64())
		c := Chain{Name: name}
		for e := range 10 {
			ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), uint16(8000+e))
			c.Rules = append(c.Rules, Rule{Match: Match().Protocol(TCP).RandomProbability(1 / float64(10-e)), Action: DNAT{To: ep}})
		}
		chains = append(chains, c)
		vip := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), 32)
		hub.Rules = append(hub.Rules, Rule{Match: Match().DestNet(vip).Protocol(TCP).DestPorts(80), Action: Jump{Chain: name}})
	}
	if random {
		rng.Shuffle(len(hub.Rules), func(i, j int) { hub.Rules[i], hub.Rules[j] = hub.Rules[j], hub.Rules[i] })
	} else {
		slices.SortFunc(hub.Rules, func(a, b Rule) int {
			return strings.Compare(b.Action.(Jump).Chain, a.Action.(Jump).Chain)
		})
	}
	bad := Chain{Name: chains[n/2].Name, Rules: slices.Clone(chains[n/2].Rules)}
	bad.Rules[4] = Rule{Match: Match().Protocol(TCP), Action: Jump{Chain: "tabby-nowhere"}}
	return append(chains, hub), bad
}

// TestKernelRestoreErrorLineReordered (legacy and nft): a rule the kernel
// refuses in the middle of a 2,000-chain reordered nat section — a jump
// to a missing chain (nft names COMMIT; restore finds the rule) or a
// missing ipset (both name the rule) — is named by its line and text,
// and the table keeps its rules.
func TestKernelRestoreErrorLineReordered(t *testing.T) {
	ctx := context.Background()
	chains, badJump := orderBenchChains(2000, true)
	badSet := Chain{Name: badJump.Name, Rules: slices.Clone(badJump.Rules)}
	badSet.Rules[4] = Rule{Match: Match().Protocol(TCP).SourceIPSet("tabby-missing"), Action: Accept{}}
	for _, be := range backends {
		for _, tc := range []struct {
			name string
			bad  Chain
			want string
		}{
			{"missing chain", badJump, "-j tabby-nowhere"},
			{"missing set", badSet, "--match-set tabby-missing src"},
		} {
			t.Run(string(be)+"/"+tc.name, func(t *testing.T) {
				ipt, ex, _ := kernelIPTables(t, be, IPv4)
				require.NoError(t, ipt.ReplaceChains(NAT, chains[:100]))
				require.NoError(t, ipt.Apply(ctx))
				save := func() string {
					out, err := ex.Run(ctx, Command{Name: binary(IPv4, be, "save"), Args: []string{"-t", "nat"}})
					require.NoError(t, err)
					return strings.Join(slices.DeleteFunc(strings.Split(string(out), "\n"), func(l string) bool { return strings.HasPrefix(l, "#") }), "\n")
				}
				before := save()
				require.NoError(t, ipt.ReplaceChains(NAT, chains))
				require.NoError(t, ipt.SetChain(NAT, tc.bad))
				err := ipt.Apply(ctx)
				var re *RestoreError
				require.ErrorAs(t, err, &re)
				lines := strings.Split(ex.last, "\n")
				require.Greater(t, re.Line, 1000, "%v", err)
				assert.Equal(t, lines[re.Line-1], re.Text)
				assert.True(t, strings.HasPrefix(re.Text, "-A "+tc.bad.Name+" "), re.Text)
				assert.Contains(t, re.Text, tc.want)
				assert.Less(t, strings.Index(ex.last, "\n-A "), strings.LastIndex(ex.last, "\n:"), "the new order: rules between declarations")
				assert.Equal(t, before, save())
			})
		}
	}
}
