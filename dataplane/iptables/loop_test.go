package iptables

import (
	"context"
	"fmt"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func jumps(to ...string) []Rule {
	rules := make([]Rule, len(to))
	for i, c := range to {
		rules[i] = Rule{Match: Match().Protocol(TCP), Action: Jump{Chain: c}}
	}
	return rules
}

// TestLoopRefusedWhenHooked: a loop is accepted until a hook reaches it;
// the call completing that (SetHook, SetChain, SetChains, ReplaceChains)
// is ErrInvalidRule naming the loop and the hook, and changes nothing.
func TestLoopRefusedWhenHooked(t *testing.T) {
	ctx := context.Background()
	for _, table := range []Table{Filter, NAT} {
		hook := "OUTPUT"
		t.Run(string(table), func(t *testing.T) {
			fake := NewFake()
			ipt, err := New(Config{Backend: BackendNFT}, WithExecer(fake))
			require.NoError(t, err)
			require.NoError(t, ipt.SetChains(table, []Chain{{Name: "tabby-a", Rules: jumps("tabby-b")}, {Name: "tabby-b", Rules: jumps("tabby-a")}}))
			require.NoError(t, ipt.Apply(ctx), "an unhooked loop is accepted")
			err = ipt.SetHook(table, hook, jumps("tabby-a"))
			require.ErrorIs(t, err, ErrInvalidRule)
			assert.Contains(t, err.Error(), "jump loop tabby-a -> tabby-b -> tabby-a would be reached from kernel chain "+hook)
			// Break the loop, hook, then close it again by each call.
			require.NoError(t, ipt.SetChain(table, Chain{Name: "tabby-b", Rules: []Rule{{Action: Accept{}}}}))
			require.NoError(t, ipt.SetHook(table, hook, jumps("tabby-a")))
			require.ErrorIs(t, ipt.SetChain(table, Chain{Name: "tabby-b", Rules: jumps("tabby-a")}), ErrInvalidRule)
			require.ErrorIs(t, ipt.SetChain(table, Chain{Name: "tabby-a", Rules: []Rule{{Action: Goto{Chain: "tabby-a"}}}}), ErrInvalidRule)
			require.ErrorIs(t, ipt.SetChains(table, []Chain{{Name: "tabby-c", Rules: jumps("tabby-c")}, {Name: "tabby-b", Rules: jumps("tabby-c")}}), ErrInvalidRule)
			require.ErrorIs(t, ipt.ReplaceChains(table, []Chain{{Name: "tabby-a", Rules: jumps("tabby-b")}, {Name: "tabby-b", Rules: jumps("tabby-a")}}), ErrInvalidRule)
			require.NoError(t, ipt.Apply(ctx), "nothing refused was half-set")
			assert.True(t, ipt.InSync())
			// A replace removing the path allows the loop again.
			require.NoError(t, ipt.ReplaceChains(table, []Chain{{Name: "tabby-a"}, {Name: "tabby-x", Rules: jumps("tabby-y")}, {Name: "tabby-y", Rules: jumps("tabby-x")}}))
			require.NoError(t, ipt.Apply(ctx))
		})
	}
}

// TestLoopCheckProperty: random calls on a few chains; an accepted call
// leaves a state the Fake (which refuses hooked loops as both kernels do:
// TestFakeMatchesKernel) applies, and a call is refused only when a
// brute-force walk of the state it would leave finds a hook reaching a loop.
func TestLoopCheckProperty(t *testing.T) {
	ctx := context.Background()
	names := []string{"tabby-0", "tabby-1", "tabby-2", "tabby-3", "tabby-4", "tabby-5"}
	hooks := []string{"INPUT", "FORWARD"}
	for seed := range int64(40) {
		r := rand.New(rand.NewSource(seed))
		fake := NewFake()
		ipt, err := New(Config{Backend: BackendLegacy}, WithExecer(fake))
		require.NoError(t, err)
		model := map[string][]string{} // chain or hook -> targets
		randTargets := func() []string {
			var to []string
			for range r.Intn(3) {
				to = append(to, names[r.Intn(len(names))])
			}
			return to
		}
		for step := range 60 {
			next := map[string][]string{}
			for k, v := range model {
				next[k] = v
			}
			var err error
			switch op := r.Intn(10); {
			case op < 5:
				c, to := names[r.Intn(len(names))], randTargets()
				next[c] = to
				err = ipt.SetChain(Filter, Chain{Name: c, Rules: jumps(to...)})
			case op < 7:
				h, to := hooks[r.Intn(len(hooks))], randTargets()
				next[h] = to
				if len(to) == 0 {
					delete(next, h)
				}
				err = ipt.SetHook(Filter, h, jumps(to...))
			case op < 8:
				c := names[r.Intn(len(names))]
				// Keep every jump target desired: delete only an unreferenced chain.
				if referenced(next, c) {
					continue
				}
				delete(next, c)
				ipt.DeleteChain(Filter, c)
			default:
				var batch []Chain
				for _, c := range names[:2+r.Intn(3)] {
					to := randTargets()
					next[c] = to
					batch = append(batch, Chain{Name: c, Rules: jumps(to...)})
				}
				err = ipt.SetChains(Filter, batch)
			}
			// Every jump target must be desired for Apply to succeed:
			// create the missing ones empty (that closes no loop).
			var created []string
			for _, to := range next {
				for _, c := range to {
					if _, ok := next[c]; !ok {
						next[c] = nil
						created = append(created, c)
						require.NoError(t, ipt.SetChain(Filter, Chain{Name: c}))
					}
				}
			}
			want := hookedLoop(next, hooks)
			require.Equal(t, want, err != nil, "seed %d step %d: %v", seed, step, err)
			if err == nil {
				model = next
			} else {
				for _, c := range created {
					model[c] = nil
				}
			}
			if aerr := ipt.Apply(ctx); aerr != nil {
				cmds := fake.Commands()
				for _, c := range cmds[max(0, len(cmds)-4):] {
					t.Logf("%s\n%s", c, c.Stdin)
				}
				t.Logf("model %v", model)
				require.NoError(t, aerr, "seed %d step %d", seed, step)
			}
		}
	}
}

func referenced(m map[string][]string, c string) bool {
	for _, to := range m {
		for _, x := range to {
			if x == c {
				return true
			}
		}
	}
	return false
}

// hookedLoop is the brute force: does a hook reach a chain that reaches itself?
func hookedLoop(m map[string][]string, hooks []string) bool {
	reach := func(from string) map[string]bool {
		seen := map[string]bool{}
		stack := append([]string(nil), m[from]...)
		for len(stack) > 0 {
			c := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if !seen[c] {
				seen[c] = true
				stack = append(stack, m[c]...)
			}
		}
		return seen
	}
	for _, h := range hooks {
		for c := range reach(h) {
			if reach(c)[c] {
				return true
			}
		}
	}
	return false
}

// TestKernelLoopRefusedAtSet: on both kernels a hooked loop fails the
// table; tabby refuses the hook at set time, and the other pending
// chains still apply.
func TestKernelLoopRefusedAtSet(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			ipt, ex, _ := kernelIPTables(t, b, IPv4)
			require.NoError(t, ipt.SetChains(Filter, []Chain{{Name: "tabby-a", Rules: jumps("tabby-b")}, {Name: "tabby-b", Rules: jumps("tabby-a")}}))
			require.NoError(t, ipt.Apply(ctx), "the kernel accepts an unhooked loop")
			require.ErrorIs(t, ipt.SetHook(Filter, "FORWARD", jumps("tabby-a")), ErrInvalidRule)
			_, err := ex.Run(ctx, Command{Name: binary(IPv4, b, "restore"), Args: []string{"--noflush"},
				Stdin: []byte("*filter\n-A FORWARD -p tcp -j tabby-a\nCOMMIT\n")})
			require.Error(t, err, "the kernel refuses the hooked loop")
			require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-c", Rules: []Rule{{Action: Accept{}}}}))
			require.NoError(t, ipt.SetHook(Filter, "FORWARD", jumps("tabby-c")))
			require.NoError(t, ipt.Apply(ctx))
			out, err := ex.Run(ctx, Command{Name: binary(IPv4, b, "save")})
			require.NoError(t, err)
			assert.Contains(t, string(out), "-j tabby-c")
			assert.NotContains(t, string(out), fmt.Sprintf("-A FORWARD -p tcp -m comment --comment \"%s", "x"))
		})
	}
}
