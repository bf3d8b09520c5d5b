package iptables

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"
)

func fakeIPTables(t *testing.T, f Family, opts ...Option) (*IPTables, *Fake) {
	t.Helper()
	fake := NewFake()
	ipt, err := New(Config{Family: f, Backend: BackendNFT}, append([]Option{WithExecer(fake)}, opts...)...)
	require.NoError(t, err)
	return ipt, fake
}

func restores(f *Fake) []string {
	var out []string
	for _, c := range f.Commands() {
		if strings.HasSuffix(c.Name, "-restore") {
			out = append(out, string(c.Stdin))
		}
	}
	return out
}

func TestRenderGolden(t *testing.T) {
	ipt, _ := fakeIPTables(t, IPv4)
	require.NoError(t, ipt.ReplaceChains(Filter, []Chain{{Name: "tabby-fw", Rules: []Rule{
		{Match: Match().Protocol(TCP).DestPorts(80).SourceIPSet("tabby-s-web"), Action: Accept{}, Comment: "allow web"},
		{Match: Match().Protocol(UDP).NotDestPorts(53, 5353), Action: Drop{}},
		{Match: Match().NotSourceNet(netip.MustParsePrefix("10.0.0.7/8")).InInterface("eth0"), Action: Reject{}},
		{Match: Match().MarkClear(0x10000).DestAddrTypeLocal(), Action: Log{Prefix: "tabby drop: "}},
		{Match: Match().DestIPPortSet("tabby-np"), Action: SetMark{Value: 0x10000, Mask: 0x30000}},
	}}}))
	require.NoError(t, ipt.SetChain(NAT, Chain{Name: "tabby-svc", Rules: []Rule{
		{Match: Match().DestNet(netip.MustParsePrefix("10.96.0.1/32")).Protocol(TCP).DestPorts(443),
			Action: DNAT{To: netip.MustParseAddrPort("192.168.0.2:6443")}},
		{Action: SNAT{To: netip.MustParseAddr("192.168.0.1"), RandomFully: true}},
	}}))
	require.NoError(t, ipt.SetHook(Filter, "INPUT", []Rule{{Action: Jump{Chain: "tabby-fw"}}}))
	assert.Equal(t, `*filter
:tabby-fw - [0:0]
-A tabby-fw -p tcp -m comment --comment "tabby:8lU3DNCYnkq68eNU" -m comment --comment "allow web" -m tcp --dport 80 -m set --match-set tabby-s-web src -j ACCEPT
-A tabby-fw -p udp -m comment --comment "tabby:HBoJ-xXd_rRqHXnk" -m multiport ! --dports 53,5353 -j DROP
-A tabby-fw ! -s 10.0.0.0/8 -i eth0 -m comment --comment "tabby:9up-GHidIOcnSGVR" -j REJECT --reject-with icmp-port-unreachable
-A tabby-fw -m comment --comment "tabby:vgmYYIuFqCYhUqQj" -m mark --mark 0x0/0x10000 -m addrtype --dst-type LOCAL -j LOG --log-prefix "tabby drop: "
-A tabby-fw -m comment --comment "tabby:1SwxQulijm0mjUZl" -m set --match-set tabby-np dst,dst -j MARK --set-xmark 0x10000/0x30000
-I INPUT 1 -m comment --comment "tabby:BgQ7HxF3RaJPloEo" -j tabby-fw
COMMIT
*nat
:tabby-svc - [0:0]
-A tabby-svc -d 10.96.0.1/32 -p tcp -m comment --comment "tabby:Tu6ggdwHyupAbInY" -m tcp --dport 443 -j DNAT --to-destination 192.168.0.2:6443
-A tabby-svc -m comment --comment "tabby:PVZMiyXVsNMxfxgc" -j SNAT --to-source 192.168.0.1 --random-fully
COMMIT
`, ipt.Render())
}

func TestRenderServiceMatches(t *testing.T) {
	for _, tc := range []struct {
		f    Family
		m    MatchCriteria
		want string
	}{
		{IPv4, Match().RandomProbability(1.0 / 3), "-m statistic --mode random --probability 0.33333333349"},
		{IPv4, Match().RandomProbability(0.5), "-m statistic --mode random --probability 0.50000000000"},
		{IPv4, Match().RandomProbability(0.1), "-m statistic --mode random --probability 0.10000000009"},
		{IPv4, Match().RandomProbability(1), "-m statistic --mode random --probability 1.00000000000"},
		{IPv4, Match().RecentSet("tabby-sep-x"), "-m recent --set --name tabby-sep-x --mask 255.255.255.255 --rsource"},
		{IPv4, Match().RecentCheck("tabby-sep-x", 10800), "-m recent --rcheck --seconds 10800 --reap --name tabby-sep-x --mask 255.255.255.255 --rsource"},
		{IPv6, Match().RecentCheck("y", 10), "-m recent --rcheck --seconds 10 --reap --name y --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource"},
		{IPv4, Match().SourceAddrTypeLocal(), "-m addrtype --src-type LOCAL"},
	} {
		r := Rule{Match: tc.m, Action: Return{}}
		require.NoError(t, r.validate(tc.f))
		assert.Equal(t, "-m comment --comment h "+tc.want+" -j RETURN", renderRule(r, tc.f, "h"))
	}
}

// TestRenderArgForms: arguments written straight into the rule buffer
// (prefixes, port lists and ranges, conntrack states, NAT addresses) and
// the builtin matches' order.
func TestRenderArgForms(t *testing.T) {
	v6 := netip.MustParsePrefix("fd00:1::/64")
	for _, tc := range []struct {
		f    Family
		r    Rule
		want string
	}{
		{IPv4, Rule{Match: Match().Protocol(TCP).DestPortRanges(PortRange{1, 1}, PortRange{8000, 8080}).SourcePorts(7), Action: Accept{}},
			"-p tcp -m comment --comment h -m multiport --dports 1,8000:8080 -m tcp --sport 7 -j ACCEPT"},
		{IPv4, Rule{Match: Match().Protocol(UDP).DestPortRanges(PortRange{10, 20}), Action: Accept{}},
			"-p udp -m comment --comment h -m udp --dport 10:20 -j ACCEPT"},
		{IPv4, Rule{Match: Match().ConntrackState(StateEstablished, StateInvalid, StateRelated), Action: Accept{}},
			"-m comment --comment h -m conntrack --ctstate INVALID,RELATED,ESTABLISHED -j ACCEPT"},
		{IPv4, Rule{Match: Match().NotConntrackState(StateNew), Action: Drop{}},
			"-m comment --comment h -m conntrack ! --ctstate NEW -j DROP"},
		{IPv4, Rule{Match: Match().Protocol(TCP).OutInterface("o").InInterface("i").DestNet(netip.MustParsePrefix("10.1.2.3/16")).SourceNet(netip.MustParsePrefix("10.9.0.0/24")), Action: Accept{}},
			"-s 10.9.0.0/24 -d 10.1.0.0/16 -i i -o o -p tcp -m comment --comment h -j ACCEPT"},
		{IPv4, Rule{Action: DNAT{To: netip.MustParseAddrPort("10.0.0.1:0")}}, "-m comment --comment h -j DNAT --to-destination 10.0.0.1"},
		{IPv6, Rule{Match: Match().NotDestNet(v6).Protocol(TCP), Action: DNAT{To: netip.MustParseAddrPort("[fd00::1]:80")}},
			"! -d fd00:1::/64 -p tcp -m comment --comment h -j DNAT --to-destination [fd00::1]:80"},
		{IPv6, Rule{Action: Reject{With: "no-route"}}, "-m comment --comment h -j REJECT --reject-with icmp6-no-route"},
		{IPv4, Rule{Action: Reject{With: "icmp-admin-prohibited"}}, "-m comment --comment h -j REJECT --reject-with icmp-admin-prohibited"},
		{IPv6, Rule{Action: DNAT{To: netip.MustParseAddrPort("[fd00::1]:0")}}, "-m comment --comment h -j DNAT --to-destination fd00::1"},
		{IPv6, Rule{Action: SNAT{To: netip.MustParseAddr("fd00::2")}}, "-m comment --comment h -j SNAT --to-source fd00::2"},
	} {
		require.NoError(t, tc.r.validate(tc.f))
		assert.Equal(t, tc.want, renderRule(tc.r, tc.f, "h"))
	}
}

func TestBadRulesRejected(t *testing.T) {
	ipt, _ := fakeIPTables(t, IPv4)
	v6 := netip.MustParsePrefix("fd00::/64")
	for name, r := range map[string]Rule{
		"no action":       {},
		"wrong family":    {Match: Match().SourceNet(v6), Action: Accept{}},
		"port no proto":   {Match: Match().DestPorts(80), Action: Accept{}},
		"port icmp":       {Match: Match().Protocol(ICMP).DestPorts(80), Action: Accept{}},
		"16 ports":        {Match: Match().Protocol(TCP).DestPorts(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), Action: Accept{}},
		"reversed range":  {Match: Match().Protocol(TCP).DestPortRanges(PortRange{9, 1}), Action: Accept{}},
		"bad iface":       {Match: Match().InInterface("eth 0"), Action: Accept{}},
		"long iface":      {Match: Match().InInterface("abcdefghijklmnop"), Action: Accept{}},
		"bad set":         {Match: Match().SourceIPSet(`a"b`), Action: Accept{}},
		"zero mark":       {Match: Match().MarkClear(0), Action: Accept{}},
		"no states":       {Match: Match().ConntrackState(), Action: Accept{}},
		"bad state":       {Match: Match().ConntrackState("BOGUS"), Action: Accept{}},
		"probability 0":   {Match: Match().RandomProbability(0), Action: Accept{}},
		"probability >1":  {Match: Match().RandomProbability(1.5), Action: Accept{}},
		"recent no name":  {Match: Match().RecentSet(""), Action: Accept{}},
		"recent 0 s":      {Match: Match().RecentCheck("tabby-a", 0), Action: Accept{}},
		"quote comment":   {Action: Accept{}, Comment: `say "hi"`},
		"newline comment": {Action: Accept{}, Comment: "a\nb"},
		"bad jump":        {Action: Jump{Chain: "-F"}},
		"long jump":       {Action: Jump{Chain: strings.Repeat("x", 29)}},
		"dnat v6":         {Action: DNAT{To: netip.MustParseAddrPort("[fd00::1]:80")}},
		"empty log":       {Action: Log{}},
		"icmp6 in v4":     {Match: Match().Protocol(ICMPv6), Action: Accept{}},
		"tcp-reset udp":   {Match: Match().Protocol(UDP), Action: Reject{With: "tcp-reset"}},
		"bad protocol":    {Match: Match().Protocol("tcpx"), Action: Accept{}},
		"jump to DNAT":    {Action: Jump{Chain: "DNAT"}},
		"goto ACCEPT":     {Action: Goto{Chain: "ACCEPT"}},
		"jump to INPUT":   {Action: Jump{Chain: "INPUT"}},
		"reject bogus":    {Action: Reject{With: "bogus"}},
		"reject v6 type":  {Action: Reject{With: "icmp6-port-unreachable"}},
		"dnat port":       {Match: Match().Protocol(ICMP), Action: DNAT{To: netip.MustParseAddrPort("10.0.0.1:80")}},
		"iface twice":     {Match: Match().InInterface("a").NotInInterface("b"), Action: Accept{}},
	} {
		err := ipt.SetChain(Filter, Chain{Name: "tabby-x", Rules: []Rule{r}})
		assert.ErrorIs(t, err, ErrInvalidRule, name)
	}
	assert.ErrorIs(t, ipt.SetChain(Filter, Chain{Name: "INPUT"}), ErrNotOwned)
	assert.ErrorIs(t, ipt.SetChain(Filter, Chain{Name: "tabby-" + strings.Repeat("x", 23)}), ErrInvalidRule, "too long: not a chain name")
	assert.ErrorIs(t, ipt.SetChain("bogus", Chain{Name: "tabby-x"}), ErrInvalidRule)
	assert.ErrorIs(t, ipt.SetHook(Filter, "PREROUTING", nil), ErrNotOwned)
	assert.ErrorIs(t, ipt.SetHook(Filter, "tabby-x", nil), ErrNotOwned)
	assert.Equal(t, "", ipt.Render(), "nothing was accepted")
	ipt4, err := New(Config{})
	require.NoError(t, err, "the zero Config is IPv4")
	assert.Equal(t, IPv4, ipt4.cfg.Family)
	_, err = New(Config{Family: 7})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = New(Config{Backend: "bogus"})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

func TestApplyWritesOnlyChangedChains(t *testing.T) {
	ctx := context.Background()
	ipt, fake := fakeIPTables(t, IPv4)
	chains := sampleChains(IPv4)
	require.NoError(t, ipt.ReplaceChains(Filter, chains))
	require.NoError(t, ipt.SetHook(Filter, "FORWARD", []Rule{{Action: Jump{Chain: "tabby-FORWARD"}}}))
	require.NoError(t, ipt.Apply(ctx))
	require.NoError(t, ipt.Apply(ctx))
	require.Len(t, restores(fake), 1, "a second Apply with nothing pending writes nothing")

	chains[2].Rules = chains[2].Rules[:1]
	require.NoError(t, ipt.ReplaceChains(Filter, chains))
	require.NoError(t, ipt.Apply(ctx))
	rs := restores(fake)
	require.Len(t, rs, 2)
	assert.Equal(t, "*filter\n:tabby-to-wl - [0:0]\n-A tabby-to-wl "+mustRender(t, ipt, chains[2])[0]+"\nCOMMIT\n", rs[1])

	// Deleting a chain: flush, then -X after the referencing chain is rewritten.
	chains[0].Rules = chains[0].Rules[:2]
	require.NoError(t, ipt.ReplaceChains(Filter, chains[:2]))
	require.NoError(t, ipt.Apply(ctx))
	rs = restores(fake)
	assert.Contains(t, rs[2], ":tabby-to-wl - [0:0]\n")
	assert.True(t, strings.HasSuffix(rs[2], "-X tabby-to-wl\nCOMMIT\n"), rs[2])
	assert.NotContains(t, fake.Dump(), "tabby-to-wl")
	assert.True(t, ipt.InSync())
}

func mustRender(t *testing.T, ipt *IPTables, c Chain) []string {
	rc, err := renderChain(c.Name, c.Rules, ipt.cfg.Family, ipt.cfg.HashPrefix, nil)
	require.NoError(t, err)
	return rc.specList()
}

func TestForeignRulesUntouchedAndHooksRepaired(t *testing.T) {
	ctx := context.Background()
	ipt, fake := fakeIPTables(t, IPv6)
	_, err := fake.Run(ctx, Command{Name: "ip6tables-nft-restore", Args: []string{"--noflush"}, Stdin: []byte(
		"*filter\n:KUBE-FW - [0:0]\n:tabby-stale - [0:0]\n-A KUBE-FW -j ACCEPT\n-A INPUT -j KUBE-FW\n-A INPUT -j tabby-stale\nCOMMIT\n")})
	require.NoError(t, err)
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-in", Rules: []Rule{{Action: Return{}}}}))
	require.NoError(t, ipt.SetHook(Filter, "INPUT", []Rule{
		{Match: Match().InInterface("tabby+"), Action: Jump{Chain: "tabby-in"}},
		{Match: Match().Protocol(ICMPv6), Action: Accept{}},
	}))
	require.NoError(t, ipt.Apply(ctx))
	dump := fake.Dump()
	assert.Contains(t, dump, "-A INPUT -j KUBE-FW\n-A INPUT -j tabby-stale\n",
		"a foreign rule jumping to a chain with our prefix is not ours")
	assert.Contains(t, dump, ":tabby-stale - [0:0]\n", "a stale chain still referenced is flushed, not deleted")

	// Another program inserts a rule above ours: we move back to the top.
	_, err = fake.Run(ctx, Command{Name: "ip6tables-nft-restore", Args: []string{"--noflush"}, Stdin: []byte(
		"*filter\n-I INPUT 1 -j KUBE-FW\n-D INPUT -j tabby-stale\nCOMMIT\n")})
	require.NoError(t, err)
	require.NoError(t, ipt.Refresh(ctx))
	assert.Regexp(t, `:tabby-in - \[0:0\]
-A INPUT -i tabby\+ -m comment --comment "tabby:\S+" -j tabby-in
-A INPUT -p ipv6-icmp -m comment --comment "tabby:\S+" -j ACCEPT
-A INPUT -j KUBE-FW
-A INPUT -j KUBE-FW
-A KUBE-FW -j ACCEPT
`, fake.Dump())
	assert.NotContains(t, fake.Dump(), "tabby-stale")

	// Removing the hook removes only our rules.
	require.NoError(t, ipt.SetHook(Filter, "INPUT", nil))
	require.NoError(t, ipt.DeleteChainAndApply(ctx, Filter, "tabby-in"))
	assert.Equal(t, "# ip6tables-nft\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-FW - [0:0]\n-A INPUT -j KUBE-FW\n-A INPUT -j KUBE-FW\n-A KUBE-FW -j ACCEPT\nCOMMIT\n", fake.Dump())
}

// DeleteChainAndApply is a test helper.
func (t *IPTables) DeleteChainAndApply(ctx context.Context, table Table, name string) error {
	t.DeleteChain(table, name)
	return t.Apply(ctx)
}

func TestRestoreFailureKeepsOldRulesAndNamesLine(t *testing.T) {
	ctx := context.Background()
	ipt, fake := fakeIPTables(t, IPv4)
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-a", Rules: []Rule{{Action: Accept{}}}}))
	require.NoError(t, ipt.Apply(ctx))
	before := fake.Dump()
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-a", Rules: []Rule{{Action: Drop{}}, {Action: Jump{Chain: "tabby-nowhere"}}}}))
	err := ipt.Apply(ctx)
	var re *RestoreError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 4, re.Line)
	assert.Contains(t, re.Text, "-j tabby-nowhere")
	assert.Equal(t, before, fake.Dump())
	assert.False(t, ipt.InSync())
	// Fixing the desired state repairs it (after re-reading the kernel).
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-a", Rules: []Rule{{Action: Drop{}}}}))
	require.NoError(t, ipt.Apply(ctx))
	assert.Contains(t, fake.Dump(), "-j DROP")
	assert.Equal(t, "iptables-nft-save", fake.Commands()[len(fake.Commands())-2].Name, "re-read after a failure")
}

func TestLockContentionRetried(t *testing.T) {
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(time.Now())
	ipt, fake := fakeIPTables(t, IPv4, WithClock(clk))
	lock := &ExitError{Code: 4, Stderr: "Another app is currently holding the xtables lock. Perhaps you want to use the -w option?"}
	fake.FailNext(2, lock)
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-a"}))
	require.NoError(t, applyStepping(ctx, ipt, clk))
	assert.Len(t, restores(fake), 3)
	for _, r := range fake.Commands() {
		if strings.HasSuffix(r.Name, "restore") {
			assert.Equal(t, []string{"--noflush", "-w", "5"}, r.Args)
		}
	}
	fake.FailNext(DefaultLockRetries+1, lock)
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-b"}))
	err := applyStepping(ctx, ipt, clk)
	var ee *ExitError
	assert.ErrorAs(t, err, &ee)
}

// applyStepping runs Apply, stepping the fake clock past every lock
// backoff it waits on.
func applyStepping(ctx context.Context, ipt *IPTables, clk *clocktesting.FakeClock) error {
	done := make(chan error, 1)
	go func() { done <- ipt.Apply(ctx) }()
	for {
		select {
		case err := <-done:
			return err
		case <-time.After(time.Millisecond):
			if clk.HasWaiters() {
				clk.Step(time.Minute)
			}
		}
	}
}

// TestLockBackoffHonoursContext: a cancelled Apply stops waiting out the
// xtables lock at once instead of sleeping through its backoff.
func TestLockBackoffHonoursContext(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	ipt, fake := fakeIPTables(t, IPv4, WithClock(clk))
	fake.FailNext(1, &ExitError{Code: 4, Stderr: "Another app is currently holding the xtables lock."})
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-a"}))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ipt.Apply(ctx) }()
	require.Eventually(t, clk.HasWaiters, 5*time.Second, time.Millisecond, "Apply waits out the lock")
	cancel() // the fake clock is never stepped: only the cancellation can end the wait
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, ErrRestore)
		var ee *ExitError
		assert.ErrorAs(t, err, &ee, "the lock error is kept")
	case <-time.After(5 * time.Second):
		t.Fatal("Apply kept waiting after its context was cancelled")
	}
	assert.Len(t, restores(fake), 1)
}

func TestPeriodicRefreshFindsDrift(t *testing.T) {
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(time.Now())
	ipt, fake := fakeIPTables(t, IPv4, WithClock(clk))
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-a", Rules: []Rule{{Action: Accept{}}}}))
	require.NoError(t, ipt.Apply(ctx))
	_, err := fake.Run(ctx, Command{Name: "iptables-nft-restore", Args: []string{"--noflush"}, Stdin: []byte("*filter\n-A tabby-a -j DROP\nCOMMIT\n")})
	require.NoError(t, err)
	require.NoError(t, ipt.Apply(ctx))
	assert.Contains(t, fake.Dump(), "-A tabby-a -j DROP", "within the refresh interval the cache is trusted")
	clk.Step(DefaultRefreshInterval)
	require.NoError(t, ipt.Apply(ctx))
	assert.NotContains(t, fake.Dump(), "-A tabby-a -j DROP")
}

func TestRunnerAppliesOnTriggerAndInterval(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ipt, fake := fakeIPTables(t, IPv4)
	r, err := ipt.NewRunner(0)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-a", Rules: []Rule{{Action: Accept{}}}}))
	r.Trigger()
	assert.Eventually(t, func() bool { return len(restores(fake)) == 1 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	<-done
}

func TestDetectBackend(t *testing.T) {
	ctx := context.Background()
	load := func(f *Fake, bin, input string) {
		_, err := f.Run(ctx, Command{Name: bin, Args: []string{"--noflush"}, Stdin: []byte(input)})
		require.NoError(t, err)
	}
	fake := NewFake()
	b, err := DetectBackend(ctx, fake)
	require.NoError(t, err)
	assert.Equal(t, BackendNFT, b, "empty: nft")
	load(fake, "iptables-legacy-restore", "*filter\n-A INPUT -j ACCEPT\n-A INPUT -j DROP\nCOMMIT\n")
	load(fake, "ip6tables-nft-restore", "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n")
	b, _ = DetectBackend(ctx, fake)
	assert.Equal(t, BackendLegacy, b, "more rules in legacy")
	load(fake, "iptables-nft-restore", "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n")
	b, _ = DetectBackend(ctx, fake)
	assert.Equal(t, BackendNFT, b, "kubelet's hint chain wins")
	_, err = DetectBackend(ctx, execFunc(func(context.Context, Command) ([]byte, error) { return nil, ErrNoBackend }))
	assert.ErrorIs(t, err, ErrNoBackend)

	// Auto mode detects on the first Apply.
	ipt, err := New(Config{Family: IPv4}, WithExecer(fake))
	require.NoError(t, err)
	require.NoError(t, ipt.Apply(ctx))
	assert.Equal(t, BackendNFT, ipt.Backend())
}

type execFunc func(context.Context, Command) ([]byte, error)

func (f execFunc) Run(ctx context.Context, c Command) ([]byte, error) { return f(ctx, c) }

func TestSetChainsEqualsSetChain(t *testing.T) {
	var chains []Chain
	for i := range 200 {
		c := Chain{Name: "tabby-c" + strconv.Itoa(i)}
		for j := range i % 7 {
			c.Rules = append(c.Rules, Rule{Match: Match().Protocol(TCP).DestPorts(uint16(j + 1)).SourceIPSet("tabby-s" + strconv.Itoa(i)),
				Action: SetMark{Value: 0x10000, Mask: 0x10000}, Comment: "rule " + strconv.Itoa(j)})
		}
		chains = append(chains, c)
	}
	one, _ := fakeIPTables(t, IPv4)
	for _, c := range chains {
		require.NoError(t, one.SetChain(Filter, c))
	}
	all, _ := fakeIPTables(t, IPv4)
	require.NoError(t, all.SetChains(Filter, chains))
	assert.Equal(t, one.Render(), all.Render())

	// One bad rule: an error naming its chain, and nothing changes.
	bad := slices.Clone(chains)
	bad[150] = Chain{Name: "tabby-c150", Rules: []Rule{{Action: Jump{Chain: "-bad"}}}}
	bad = append(bad, Chain{Name: "tabby-new"})
	err := all.SetChains(Filter, bad)
	require.ErrorIs(t, err, ErrInvalidRule)
	assert.Contains(t, err.Error(), "tabby-c150")
	assert.Equal(t, one.Render(), all.Render())
	assert.ErrorIs(t, all.SetChains(Filter, []Chain{{Name: "other"}}), ErrNotOwned)
}

// TestReadThenApply: Read does the iptables-save Apply would do, so the
// Apply that follows only restores; after QueueResync, Read reads again.
func TestReadThenApply(t *testing.T) {
	ctx := context.Background()
	ipt, fake := fakeIPTables(t, IPv4)
	saves := func() int {
		n := 0
		for _, c := range fake.Commands() {
			if strings.HasSuffix(c.Name, "-save") {
				n++
			}
		}
		return n
	}
	require.NoError(t, ipt.Read(ctx))
	assert.Equal(t, 1, saves())
	require.NoError(t, ipt.Read(ctx))
	assert.Equal(t, 1, saves(), "nothing due: no second read")
	require.NoError(t, ipt.SetChains(Filter, sampleChains(IPv4)))
	require.NoError(t, ipt.Apply(ctx))
	assert.Equal(t, 1, saves(), "Apply after Read does not read again")
	assert.Len(t, restores(fake), 1)
	assert.True(t, ipt.InSync())
	ipt.QueueResync()
	require.NoError(t, ipt.Read(ctx))
	assert.Equal(t, 2, saves())
}

// TestStaleChainReferencedSinceRead: another program jumps to a stale
// owned chain after the last read; the -X fails, Apply reads again and
// flushes the chain instead, in the same call.
func TestStaleChainReferencedSinceRead(t *testing.T) {
	ctx := context.Background()
	ipt, fake := fakeIPTables(t, IPv4)
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-stale", Rules: []Rule{{Action: Accept{}}}}))
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-keep", Rules: []Rule{{Action: Accept{}}}}))
	require.NoError(t, ipt.Apply(ctx))
	_, err := fake.Run(ctx, Command{Name: "iptables-nft-restore", Args: []string{"--noflush"},
		Stdin: []byte("*filter\n-A INPUT -j tabby-stale\nCOMMIT\n")})
	require.NoError(t, err)
	ipt.DeleteChain(Filter, "tabby-stale")
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-keep", Rules: []Rule{{Action: Drop{}}}}))
	require.NoError(t, ipt.Apply(ctx))
	rs := restores(fake)
	require.Len(t, rs, 4, "apply, the foreign write, the failed -X, the retry")
	assert.Contains(t, rs[2], "-X tabby-stale\n")
	assert.NotContains(t, rs[3], "-X tabby-stale")
	dump := fake.Dump()
	assert.Contains(t, dump, ":tabby-stale - [0:0]\n")
	assert.NotContains(t, dump, "-A tabby-stale ")
	assert.Contains(t, dump, "-A tabby-keep -m comment --comment")
	assert.Contains(t, dump, "-j DROP\n", "the other change of the table went in too")
	require.NoError(t, ipt.Apply(ctx))
	assert.Len(t, restores(fake), 4, "nothing pending")
	assert.False(t, ipt.InSync(), "the kept chain is still pending deletion (see InSync's doc)")

	// The other program removes its jump: after the next read the chain
	// is deleted and InSync becomes true.
	_, err = fake.Run(ctx, Command{Name: "iptables-nft-restore", Args: []string{"--noflush"},
		Stdin: []byte("*filter\n-D INPUT -j tabby-stale\nCOMMIT\n")})
	require.NoError(t, err)
	ipt.QueueResync()
	require.NoError(t, ipt.Apply(ctx))
	assert.NotContains(t, fake.Dump(), "tabby-stale")
	assert.True(t, ipt.InSync())
}
