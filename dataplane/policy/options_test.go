package policy_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

// A nil Option (an option chosen conditionally and left unset) and nil
// option values are ignored by the three constructors an embedder of this
// package calls, never a panic, and the result still works: an Apply with
// backend detection logs through the (default) logger.
func TestNilOptionsIgnored(t *testing.T) {
	tests := []struct {
		name    string
		iptOpts []iptables.Option
		setOpts []ipsets.Option
		opts    []dppolicy.Option
	}{
		{name: "nil options", iptOpts: []iptables.Option{nil}, setOpts: []ipsets.Option{nil}, opts: []dppolicy.Option{nil}},
		{name: "nil loggers", iptOpts: []iptables.Option{iptables.WithLogger(nil)}, setOpts: []ipsets.Option{ipsets.WithLogger(nil)}, opts: []dppolicy.Option{dppolicy.WithLogger(nil)}},
		{name: "nil clock", iptOpts: []iptables.Option{iptables.WithClock(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *dppolicy.Compiler
			assert.NotPanics(t, func() {
				ipt, err := iptables.New(iptables.Config{}, append([]iptables.Option{iptables.WithExecer(iptables.NewFake())}, tt.iptOpts...)...)
				require.NoError(t, err)
				sets := ipsets.New(ipsets.NewFake(), tt.setOpts...)
				require.NoError(t, sets.Err())
				c, err = dppolicy.New(dppolicy.Config{}, ipt, sets, tt.opts...)
				require.NoError(t, err)
				require.NoError(t, c.SetInterface("shop/web", "tby1"))
				_, err = c.Apply(context.Background())
				require.NoError(t, err)
			})
			require.NotNil(t, c)
		})
	}
	assert.NotPanics(t, func() {
		_, err := iptables.New(iptables.Config{}, iptables.WithExecer(nil))
		assert.NoError(t, err)
	})
}

// New refuses what could never Apply, up front, with ErrInvalidConfig.
func TestNewRefusesUnusableConfig(t *testing.T) {
	ipt4, err := iptables.New(iptables.Config{}, iptables.WithExecer(iptables.NewFake()))
	require.NoError(t, err)
	ipt6, err := iptables.New(iptables.Config{Family: iptables.IPv6}, iptables.WithExecer(iptables.NewFake()))
	require.NoError(t, err)
	good := ipsets.New(ipsets.NewFake())
	tests := []struct {
		name string
		cfg  dppolicy.Config
		ipt  *iptables.IPTables
		sets *ipsets.IPSets
		want []error // nil: accepted
	}{
		{name: "defaults", ipt: ipt4, sets: good},
		{name: "nil ipsets", ipt: ipt4, want: []error{dppolicy.ErrInvalidConfig}},
		{name: "ipsets without a handle", ipt: ipt4, sets: ipsets.New(nil), want: []error{dppolicy.ErrInvalidConfig, ipsets.ErrInvalidConfig}},
		{name: "ipsets with a bad prefix", ipt: ipt4, sets: ipsets.New(ipsets.NewFake(), ipsets.WithPrefix("")), want: []error{dppolicy.ErrInvalidConfig, ipsets.ErrInvalidConfig}},
		{name: "family mismatch", ipt: ipt6, sets: good, want: []error{dppolicy.ErrInvalidConfig}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dppolicy.New(tt.cfg, tt.ipt, tt.sets)
			if tt.want == nil {
				require.NoError(t, err)
				require.NotNil(t, c)
				return
			}
			for _, w := range tt.want {
				assert.ErrorIs(t, err, w)
			}
			assert.Nil(t, c)
		})
	}
}

// A failed Apply has handed its changes to the appliers: the next Apply
// writes them although its plan is empty (the documented behaviour).
func TestApplyAfterFailedApply(t *testing.T) {
	iptFake, setFake := iptables.NewFake(), ipsets.NewFake()
	ipt, err := iptables.New(iptables.Config{Backend: iptables.BackendNFT}, iptables.WithExecer(iptFake))
	require.NoError(t, err)
	c, err := dppolicy.New(dppolicy.Config{}, ipt, ipsets.New(setFake))
	require.NoError(t, err)
	web := &policy.Endpoint{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"},
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	np := &policy.NetworkPolicy{}
	np.Name, np.Namespace = "web", "shop"
	np.Spec.Selector = "app == 'web'"
	np.Spec.Ingress = []policy.Rule{{Action: policy.Allow, Source: policy.EntityRule{Selector: "app == 'web'"}}}
	require.NoError(t, c.Replace(policy.Resources{Endpoints: []*policy.Endpoint{web}, NetworkPolicies: []*policy.NetworkPolicy{np}}))
	require.NoError(t, c.SetInterface("shop/web", "tby1"))
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	p, err := c.Apply(cancelled)
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, p.Empty(), "the failed Apply's plan lists its changes")
	assert.NotContains(t, iptFake.Dump(), "tabby-fw-tby1", "nothing written yet")
	assert.True(t, c.Plan().Empty(), "Plan does not list them again")

	p, err = c.Apply(context.Background())
	require.NoError(t, err)
	assert.True(t, p.Empty())
	assert.Contains(t, iptFake.Dump(), ":tabby-fw-tby1 -", "written by the next Apply")
	assert.Contains(t, setFake.Dump(), "10.0.0.1", "written by the next Apply")
}
