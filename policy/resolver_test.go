package policy

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// dumpResolved writes everything a resolved policy holds (in JSON, so
// selectors by their canonical form and pointers by what they point to),
// and the selections Resolve worked out, so that two resolutions can be
// compared.
func dumpResolved(t require.TestingT, rp *ResolvedPolicy) string {
	if rp == nil {
		return "<nil>"
	}
	js, err := json.Marshal(rp)
	require.NoError(t, err)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nendpoints: %s\n", js, rp.EndpointSelector())
	for _, d := range []Direction{Ingress, Egress} {
		for _, r := range rp.Rules(d) {
			for _, m := range []EntityMatch{r.Src, r.Dst} {
				sel, ok := m.MatchSelector()
				not, notOK := m.NotMatchSelector()
				fmt.Fprintf(&b, "  %s match %s %v not %s %v\n", d, sel, ok, not, notOK)
			}
		}
	}
	return b.String()
}

// TestResolverMatchesResolve: one Resolver shared by the policies of many
// random worlds, used from several goroutines, gives what Resolve gives,
// errors included.
func TestResolverMatchesResolve(t *testing.T) {
	var res Resolver
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for seed := w; seed < 200; seed += 4 {
				g := gen{rand.New(rand.NewPCG(uint64(seed), 7))}
				r := g.world()
				for _, p := range r.NetworkPolicies {
					want, wantErr := p.Resolve()
					got, gotErr := res.ResolveNetworkPolicy(p)
					require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(gotErr), "seed %d %s", seed, p.Name)
					require.Equal(t, dumpResolved(t, want), dumpResolved(t, got), "seed %d %s", seed, p.Name)
				}
				for _, p := range r.GlobalNetworkPolicies {
					want, wantErr := p.Resolve()
					got, gotErr := res.ResolveGlobalNetworkPolicy(p)
					require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(gotErr), "seed %d %s", seed, p.Name)
					require.Equal(t, dumpResolved(t, want), dumpResolved(t, got), "seed %d %s", seed, p.Name)
				}
			}
		})
	}
	wg.Wait()
}

// TestResolvedIndependentOfInput: a resolved policy keeps no pointer into
// the policy it came from, and a nil policy is an error, not a panic.
func TestResolvedIndependentOfInput(t *testing.T) {
	order := 1000.0
	np := &NetworkPolicy{ObjectMeta: objMeta("ns1", "p")}
	np.Spec.Order = &order
	for _, r := range []*Resolver{nil, {}} {
		rp, err := r.ResolveNetworkPolicy(np)
		require.NoError(t, err)
		*np.Spec.Order = 42
		require.Equal(t, 1000.0, *rp.Order)
		*np.Spec.Order = 1000

		_, err = r.ResolveNetworkPolicy(nil)
		require.ErrorIs(t, err, ErrInvalid)
		_, err = r.ResolveGlobalNetworkPolicy(nil)
		require.ErrorIs(t, err, ErrInvalid)
	}
}
