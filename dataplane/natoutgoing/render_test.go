package natoutgoing_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/natoutgoing"
	"github.com/tabbynet/tabby/ipam"
)

func pool(name, cidr string, nat, disabled bool) ipam.IPPool {
	return ipam.IPPool{Name: name, CIDR: netip.MustParsePrefix(cidr), NATOutgoing: nat, Disabled: disabled}
}

// fakes is one node's fake ipsets and iptables.
type fakes struct {
	ipt  *iptables.Fake
	sets *ipsets.Fake
	s    *ipsets.IPSets
}

func newFakes() *fakes {
	f := &fakes{ipt: iptables.NewFake(), sets: ipsets.NewFake()}
	f.s = ipsets.New(f.sets)
	return f
}

func (f *fakes) applier(t testing.TB, cfg natoutgoing.Config, opts ...natoutgoing.Option) *natoutgoing.Applier {
	t.Helper()
	fam := cfg.Family
	if fam == 0 {
		fam = iptables.IPv4
	}
	ipt, err := iptables.New(iptables.Config{Family: fam, Backend: iptables.BackendNFT}, iptables.WithExecer(f.ipt))
	require.NoError(t, err)
	a, err := natoutgoing.New(cfg, ipt, f.s, opts...)
	require.NoError(t, err)
	return a
}

// dump is the sets, then the rules, without hash comments (their values
// are iptables' business and covered by the Example).
func (f *fakes) dump() string {
	var b strings.Builder
	b.WriteString(f.sets.Dump())
	for _, l := range strings.Split(f.ipt.Dump(), "\n") {
		if strings.HasPrefix(l, ":") && !strings.HasPrefix(l, ":tabby") {
			continue // kernel chain declarations
		}
		if i := strings.Index(l, `-m comment --comment "tabby:`); i >= 0 {
			l = l[:i] + l[i+len(`-m comment --comment "tabby:`)+18:]
		}
		if l != "" {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestApplyGolden(t *testing.T) {
	tests := []struct {
		name  string
		cfg   natoutgoing.Config
		pools []ipam.IPPool
		want  string
	}{{
		name: "no pools: empty sets, empty chain, hook",
		want: `create tabby-v4-all-ipam-pools hash:net family inet maxelem 1024
create tabby-v4-masq-ipam-pools hash:net family inet maxelem 1024
# iptables-nft
*nat
:tabby-nat-outgoing - [0:0]
-A POSTROUTING -j tabby-nat-outgoing
COMMIT
`,
	}, {
		name:  "pools without natOutgoing: all-pools set only, empty chain",
		pools: []ipam.IPPool{pool("a", "10.244.0.0/16", false, false), pool("b", "10.245.0.0/16", false, true)},
		want: `create tabby-v4-all-ipam-pools hash:net family inet maxelem 1024
add tabby-v4-all-ipam-pools 10.244.0.0/16
add tabby-v4-all-ipam-pools 10.245.0.0/16
create tabby-v4-masq-ipam-pools hash:net family inet maxelem 1024
# iptables-nft
*nat
:tabby-nat-outgoing - [0:0]
-A POSTROUTING -j tabby-nat-outgoing
COMMIT
`,
	}, {
		name: "disabled pools count as pools and still masquerade; other family skipped",
		pools: []ipam.IPPool{
			pool("nat", "10.244.0.0/16", true, false),
			pool("old-nat", "10.246.0.0/16", true, true),
			pool("exclude", "192.168.0.0/16", false, true),
			pool("v6", "fd00:244::/108", true, false),
		},
		want: `create tabby-v4-all-ipam-pools hash:net family inet maxelem 1024
add tabby-v4-all-ipam-pools 10.244.0.0/16
add tabby-v4-all-ipam-pools 10.246.0.0/16
add tabby-v4-all-ipam-pools 192.168.0.0/16
create tabby-v4-masq-ipam-pools hash:net family inet maxelem 1024
add tabby-v4-masq-ipam-pools 10.244.0.0/16
add tabby-v4-masq-ipam-pools 10.246.0.0/16
# iptables-nft
*nat
:tabby-nat-outgoing - [0:0]
-A POSTROUTING -j tabby-nat-outgoing
-A tabby-nat-outgoing -m set --match-set tabby-v4-masq-ipam-pools src -m set ! --match-set tabby-v4-all-ipam-pools dst -j MASQUERADE
COMMIT
`,
	}, {
		name: "IPv6 family",
		cfg:  natoutgoing.Config{Family: iptables.IPv6},
		pools: []ipam.IPPool{
			pool("v4", "10.244.0.0/16", true, false),
			pool("nat6", "fd00:244::/108", true, false),
			pool("plain6", "fd00:245::/108", false, false),
		},
		want: `create tabby-v6-all-ipam-pools hash:net family inet6 maxelem 1024
add tabby-v6-all-ipam-pools fd00:244::/108
add tabby-v6-all-ipam-pools fd00:245::/108
create tabby-v6-masq-ipam-pools hash:net family inet6 maxelem 1024
add tabby-v6-masq-ipam-pools fd00:244::/108
# ip6tables-nft
*nat
:tabby-nat-outgoing - [0:0]
-A POSTROUTING -j tabby-nat-outgoing
-A tabby-nat-outgoing -m set --match-set tabby-v6-masq-ipam-pools src -m set ! --match-set tabby-v6-all-ipam-pools dst -j MASQUERADE
COMMIT
`,
	}, {
		name: "random-fully and interface filter; unmasked and duplicate CIDRs collapse",
		cfg:  natoutgoing.Config{RandomFully: true, OutInterface: "eth+"},
		pools: []ipam.IPPool{
			pool("nat", "10.244.1.7/16", true, false),
			pool("same", "10.244.0.0/16", true, false),
		},
		want: `create tabby-v4-all-ipam-pools hash:net family inet maxelem 1024
add tabby-v4-all-ipam-pools 10.244.0.0/16
create tabby-v4-masq-ipam-pools hash:net family inet maxelem 1024
add tabby-v4-masq-ipam-pools 10.244.0.0/16
# iptables-nft
*nat
:tabby-nat-outgoing - [0:0]
-A POSTROUTING -j tabby-nat-outgoing
-A tabby-nat-outgoing -o eth+ -m set --match-set tabby-v4-masq-ipam-pools src -m set ! --match-set tabby-v4-all-ipam-pools dst -j MASQUERADE --random-fully
COMMIT
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakes()
			require.NoError(t, f.applier(t, tt.cfg).Apply(context.Background(), tt.pools))
			assert.Equal(t, tt.want, f.dump())
		})
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name  string
		cfg   natoutgoing.Config
		pools []ipam.IPPool
		want  error
	}{
		{"unset CIDR", natoutgoing.Config{}, []ipam.IPPool{{Name: "x"}}, natoutgoing.ErrInvalidPool},
		{"v4 /0", natoutgoing.Config{}, []ipam.IPPool{pool("all", "0.0.0.0/0", true, false)}, natoutgoing.ErrInvalidPool},
		{"v6 /0 in a v4 render", natoutgoing.Config{}, []ipam.IPPool{pool("all6", "::/0", true, false)}, natoutgoing.ErrInvalidPool},
		{"bad family", natoutgoing.Config{Family: 5}, nil, natoutgoing.ErrInvalidConfig},
		{"IPv4-mapped pool", natoutgoing.Config{Family: iptables.IPv6}, []ipam.IPPool{pool("mapped", "::ffff:10.0.0.0/104", true, false)}, natoutgoing.ErrInvalidPool},
		{"interface with a rule in it", natoutgoing.Config{OutInterface: "eth0 -j ACCEPT"}, nil, natoutgoing.ErrInvalidConfig},
		{"interface too long", natoutgoing.Config{OutInterface: strings.Repeat("e", 16)}, nil, natoutgoing.ErrInvalidConfig},
		{"interface with a slash", natoutgoing.Config{OutInterface: "eth/0"}, nil, natoutgoing.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := natoutgoing.Render(tt.cfg, tt.pools)
			require.ErrorIs(t, err, tt.want)
		})
	}
	for _, ok := range []string{"eth0", "eth+", "ens3.100", "wg-0", strings.Repeat("e", 15)} {
		_, err := natoutgoing.Render(natoutgoing.Config{OutInterface: ok}, nil)
		require.NoError(t, err, ok)
	}
	_, err := natoutgoing.Render(natoutgoing.Config{}, []ipam.IPPool{pool("ok", "10.0.0.0/8", true, false), {Name: "broken"}})
	require.ErrorContains(t, err, `"broken"`, "the error names the pool")

	_, err = natoutgoing.New(natoutgoing.Config{Family: 7}, nil, nil)
	require.ErrorIs(t, err, natoutgoing.ErrInvalidConfig)
	_, err = natoutgoing.New(natoutgoing.Config{}, nil, nil)
	require.ErrorIs(t, err, natoutgoing.ErrInvalidConfig)
	ipt6, err := iptables.New(iptables.Config{Family: iptables.IPv6, Backend: iptables.BackendNFT}, iptables.WithExecer(iptables.NewFake()))
	require.NoError(t, err)
	_, err = natoutgoing.New(natoutgoing.Config{Family: iptables.IPv4}, ipt6, ipsets.New(ipsets.NewFake()))
	require.ErrorIs(t, err, natoutgoing.ErrInvalidConfig, "IPv4 config with ip6tables")
}

func TestRenderIsPure(t *testing.T) {
	pools := []ipam.IPPool{pool("nat", "10.244.0.0/16", true, false)}
	a, err := natoutgoing.Render(natoutgoing.Config{}, pools)
	require.NoError(t, err)
	b, err := natoutgoing.Render(natoutgoing.Config{Family: iptables.IPv4}, pools)
	require.NoError(t, err)
	assert.Equal(t, a, b, "the zero family is IPv4")
	require.Len(t, a.Sets, 2)
	assert.Equal(t, natoutgoing.SetAllPools4, a.Sets[0].Spec.Name)
	assert.Equal(t, natoutgoing.SetMasqPools4, a.Sets[1].Spec.Name)
	assert.Equal(t, []iptables.Rule{natoutgoing.HookRule()}, a.Hook)
}

// TestApplyUpdates follows pools as they change: flipping natOutgoing
// edits one member and the chain's rule; nothing pending writes nothing.
func TestApplyUpdates(t *testing.T) {
	ctx := context.Background()
	f := newFakes()
	a := f.applier(t, natoutgoing.Config{})
	nat := pool("nat", "10.244.0.0/16", true, false)
	plain := pool("plain", "10.245.0.0/16", false, false)
	require.NoError(t, a.Apply(ctx, []ipam.IPPool{nat, plain}))
	require.Contains(t, f.dump(), "-j MASQUERADE")

	restores, calls := len(f.ipt.Commands()), f.sets.Calls()
	require.NoError(t, a.Apply(ctx, []ipam.IPPool{nat, plain}))
	assert.Equal(t, calls, f.sets.Calls(), "no ipset writes when nothing changed")
	assert.Equal(t, restores, len(f.ipt.Commands()), "no iptables commands when nothing changed")

	nat.NATOutgoing, plain.NATOutgoing = false, true
	require.NoError(t, a.Apply(ctx, []ipam.IPPool{nat, plain}))
	assert.Equal(t, calls+2, f.sets.Calls(), "one del and one add")
	assert.Contains(t, f.dump(), "add tabby-v4-masq-ipam-pools 10.245.0.0/16\n")
	assert.NotContains(t, f.dump(), "add tabby-v4-masq-ipam-pools 10.244.0.0/16\n")

	plain.NATOutgoing = false
	require.NoError(t, a.Apply(ctx, []ipam.IPPool{nat}))
	assert.Equal(t, `create tabby-v4-all-ipam-pools hash:net family inet maxelem 1024
add tabby-v4-all-ipam-pools 10.244.0.0/16
create tabby-v4-masq-ipam-pools hash:net family inet maxelem 1024
# iptables-nft
*nat
:tabby-nat-outgoing - [0:0]
-A POSTROUTING -j tabby-nat-outgoing
COMMIT
`, f.dump(), "pool deleted and no NAT pool left: empty chain")

	require.NoError(t, a.Delete(ctx))
	assert.Equal(t, "", f.dump(), "Delete removes hook, chain and sets")
}

// TestBothFamiliesShareIPSets runs an IPv4 and an IPv6 applier over one
// IPSets and one iptables fake, as a dual-stack node does.
func TestBothFamiliesShareIPSets(t *testing.T) {
	ctx := context.Background()
	f := newFakes()
	v4 := f.applier(t, natoutgoing.Config{Family: iptables.IPv4})
	v6 := f.applier(t, natoutgoing.Config{Family: iptables.IPv6})
	pools := []ipam.IPPool{pool("nat4", "10.244.0.0/16", true, false), pool("nat6", "fd00:244::/108", true, false)}
	require.NoError(t, v4.Apply(ctx, pools))
	require.NoError(t, v6.Apply(ctx, pools))
	d := f.dump()
	for _, s := range []string{"add tabby-v4-masq-ipam-pools 10.244.0.0/16", "add tabby-v6-masq-ipam-pools fd00:244::/108",
		"# iptables-nft", "# ip6tables-nft"} {
		assert.Contains(t, d, s)
	}
	require.NoError(t, v6.Delete(ctx))
	d = f.dump()
	assert.NotContains(t, d, "tabby-v6")
	assert.Contains(t, d, "add tabby-v4-masq-ipam-pools 10.244.0.0/16", "IPv4 state untouched")
}

// TestWithoutHook leaves POSTROUTING to the caller.
func TestWithoutHook(t *testing.T) {
	f := newFakes()
	a := f.applier(t, natoutgoing.Config{}, natoutgoing.WithoutHook())
	require.NoError(t, a.Apply(context.Background(), []ipam.IPPool{pool("nat", "10.244.0.0/16", true, false)}))
	assert.NotContains(t, f.dump(), "-A POSTROUTING")
	assert.Contains(t, f.dump(), ":tabby-nat-outgoing")
}

// TestApplyFailureRetries: a failed restore returns the iptables error and
// the next Apply converges.
func TestApplyFailureRetries(t *testing.T) {
	ctx := context.Background()
	f := newFakes()
	a := f.applier(t, natoutgoing.Config{})
	pools := []ipam.IPPool{pool("nat", "10.244.0.0/16", true, false)}
	f.ipt.FailNext(1, &iptables.ExitError{Code: 1, Stderr: "boom"})
	require.Error(t, a.Apply(ctx, pools))
	require.NoError(t, a.Apply(ctx, pools))
	assert.Contains(t, f.dump(), "-j MASQUERADE")
}

// TestNilOptionAndLogger: a nil Option and WithLogger(nil) keep the
// defaults; Apply must not panic on a nil logger.
func TestNilOptionAndLogger(t *testing.T) {
	f := newFakes()
	a := f.applier(t, natoutgoing.Config{}, nil, natoutgoing.WithLogger(nil))
	require.NoError(t, a.Apply(context.Background(), []ipam.IPPool{pool("a", "10.244.0.0/16", true, false)}))
	require.Contains(t, f.dump(), "MASQUERADE")
}

// TestRenderCollapsesDuplicates: two pools with one CIDR (one unmasked)
// give one member per set, as the Render doc says.
func TestRenderCollapsesDuplicates(t *testing.T) {
	d, err := natoutgoing.Render(natoutgoing.Config{}, []ipam.IPPool{
		pool("a", "10.244.1.5/16", true, false), pool("b", "10.244.0.0/16", false, false), pool("c", "10.244.0.0/16", true, true)})
	require.NoError(t, err)
	require.Len(t, d.Sets, 2)
	require.Len(t, d.Sets[0].Members, 1)
	require.Len(t, d.Sets[1].Members, 1)
	require.Equal(t, ipsets.Net(netip.MustParsePrefix("10.244.0.0/16")), d.Sets[0].Members[0])
}
