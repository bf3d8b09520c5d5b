package iptables

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// countingExecer counts restores and keeps the last input.
type countingExecer struct {
	Execer
	mu       sync.Mutex
	restores int
	last     string
}

func (c *countingExecer) Run(ctx context.Context, cmd Command) ([]byte, error) {
	if strings.HasSuffix(cmd.Name, "-restore") {
		c.mu.Lock()
		c.restores++
		c.last = string(cmd.Stdin)
		c.mu.Unlock()
	}
	return c.Execer.Run(ctx, cmd)
}

var backends = []Backend{BackendLegacy, BackendNFT}

func kernelIPTables(t testing.TB, b Backend, f Family) (*IPTables, *countingExecer, *nettest.Netns) {
	t.Helper()
	n := nettest.NewNetns(t, "tbipt")
	ex := &countingExecer{Execer: OSExecer{Netns: n.Name}}
	if _, err := ex.Run(context.Background(), Command{Name: binary(f, b, "save")}); err != nil {
		t.Skipf("kernel test: %s not usable: %v", binary(f, b, "save"), err)
	}
	ipt, err := New(Config{Family: f, Backend: b}, WithExecer(ex))
	require.NoError(t, err)
	return ipt, ex, n
}

func sampleChains(f Family) []Chain {
	pfx, host := netip.MustParsePrefix("10.65.0.0/16"), netip.MustParseAddr("10.96.0.10")
	if f == IPv6 {
		pfx, host = netip.MustParsePrefix("fd00:65::/64"), netip.MustParseAddr("fd00:96::a")
	}
	return []Chain{
		{Name: "tabby-FORWARD", Rules: []Rule{
			{Match: Match().ConntrackState(StateRelated, StateEstablished), Action: Accept{}},
			{Match: Match().InInterface("tabby+"), Action: Jump{Chain: "tabby-from-wl"}},
			{Match: Match().OutInterface("tabby+"), Action: Jump{Chain: "tabby-to-wl"}},
		}},
		{Name: "tabby-from-wl", Rules: []Rule{
			{Match: Match().SourceNet(pfx).Protocol(TCP).DestPorts(80, 443), Action: SetMark{Value: 0x10000, Mask: 0x10000}, Comment: "web"},
			{Match: Match().MarkMatchesWithMask(0x10000, 0x10000), Action: Return{}},
			{Match: Match().Protocol(UDP).DestPortRanges(PortRange{53, 53}), Action: Accept{}},
			{Action: Reject{}},
		}},
		{Name: "tabby-to-wl", Rules: []Rule{
			{Match: Match().NotDestNet(pfx).Protocol(SCTP).SourcePorts(9), Action: Drop{}},
			{Match: Match().DestNet(netip.PrefixFrom(host, host.BitLen())), Action: Goto{Chain: "tabby-from-wl"}},
		}},
	}
}

func natRules(f Family) []Rule {
	to, src := netip.MustParseAddrPort("10.0.0.2:8080"), netip.MustParseAddr("192.168.1.1")
	if f == IPv6 {
		to, src = netip.MustParseAddrPort("[fd00::2]:8080"), netip.MustParseAddr("fd00::1")
	}
	return []Rule{
		{Match: Match().DestAddrTypeLocal().Protocol(TCP).DestPorts(30080), Action: DNAT{To: to}},
		{Match: Match().NotDestAddrTypeLocal(), Action: SNAT{To: src, RandomFully: true}},
		{Match: Match().DestIPSet("tabby-s"), Action: DNAT{To: netip.AddrPortFrom(to.Addr(), 0)}},
		// kube-proxy's service and endpoint chains.
		{Match: Match().RandomProbability(1.0 / 3), Action: Return{}},
		{Match: Match().Protocol(TCP).RecentCheck("tabby-sep-a", 10800), Action: DNAT{To: to}},
		{Match: Match().Protocol(TCP).RecentSet("tabby-sep-a"), Action: DNAT{To: to}},
		{Match: Match().SourceAddrTypeLocal().RandomProbability(0.1), Action: SetMark{Value: 0x4000, Mask: 0x4000}},
		{Match: Match().RandomProbability(1), Action: Return{}},
	}
}

func moreRules(f Family) []Rule {
	icmp, reject := ICMP, "icmp-admin-prohibited"
	if f == IPv6 {
		icmp, reject = ICMPv6, "addr-unreach" // an alias: rendered as iptables-save prints it
	}
	return []Rule{
		{Match: Match().Protocol(icmp), Action: Accept{}},
		{Match: Match().Protocol(icmp), Action: Reject{With: reject}},
		{Match: Match().SourceIPSet("tabby-s").NotDestIPSet("tabby-s"), Action: Log{Prefix: "tabby: "}},
		{Match: Match().NotConntrackState(StateNew, StateInvalid), Action: Accept{}},
		// kube-proxy's no-endpoints and CVE-2020-8558 rules.
		{Match: Match().Protocol(TCP).DestPorts(30081).DestAddrTypeLocal(), Action: Reject{}},
		{Match: Match().Protocol(TCP).MarkNotMatchesWithMask(0x1, 0xf), Action: Reject{With: "tcp-reset"}},
		{Match: Match().NotInInterface("eth0").NotOutInterface("eth1").NotProtocol(UDP), Action: Drop{}},
		{Match: Match().Protocol(UDP).SourcePorts(1, 2).DestPortRanges(PortRange{1000, 2000}), Action: Return{}, Comment: "a b"},
	}
}

func TestKernelApplyAndRefresh(t *testing.T) {
	for _, b := range backends {
		for _, f := range []Family{IPv4, IPv6} {
			t.Run(string(b)+"/"+f.String(), func(t *testing.T) {
				ctx := context.Background()
				ipt, ex, n := kernelIPTables(t, b, f)
				// A foreign rule and chain that must survive.
				_, err := ex.Run(ctx, Command{Name: binary(f, b, "restore"), Args: []string{"--noflush"},
					Stdin: []byte("*filter\n:OTHER - [0:0]\n-A OTHER -j ACCEPT\n-A FORWARD -j OTHER\nCOMMIT\n")})
				require.NoError(t, err)
				ex.restores = 0
				require.NoError(t, ipt.ReplaceChains(Filter, sampleChains(f)))
				require.NoError(t, ipt.SetHook(Filter, "FORWARD", []Rule{{Action: Jump{Chain: "tabby-FORWARD"}}}))
				nat := []Chain{
					{Name: "tabby-nat-post", Rules: []Rule{{Match: Match().SourceNet(sampleChains(f)[1].Rules[0].Match.parts[0].(netMatch).prefix), Action: Masquerade{RandomFully: true}}}},
					{Name: "tabby-nat-pre", Rules: natRules(f)},
				}
				if _, err := n.Run(ctx, "ipset", "create", "tabby-s", "hash:ip", "family", map[Family]string{IPv4: "inet", IPv6: "inet6"}[f]); err != nil {
					t.Fatalf("ipset create: %v", err)
				}
				require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-more", Rules: moreRules(f)}))
				require.NoError(t, ipt.ReplaceChains(NAT, nat))
				require.NoError(t, ipt.SetHook(NAT, "POSTROUTING", []Rule{{Action: Jump{Chain: "tabby-nat-post"}}}))
				require.NoError(t, ipt.Apply(ctx))
				assert.Equal(t, 1, ex.restores)

				// Re-reading finds nothing to do: hashes round-trip through the backend.
				require.NoError(t, ipt.Refresh(ctx))
				assert.Equal(t, 1, ex.restores, "no drift right after apply")
				assert.True(t, ipt.InSync())

				// save dumps the rules without the "# Generated/Completed
				// on <time>" lines, which change every second.
				save := func() string {
					out, err := ex.Run(ctx, Command{Name: binary(f, b, "save")})
					require.NoError(t, err)
					var keep []string
					for _, l := range strings.Split(string(out), "\n") {
						if !strings.HasPrefix(l, "#") {
							keep = append(keep, l)
						}
					}
					return strings.Join(keep, "\n")
				}
				s := save()
				assert.Contains(t, s, "-A FORWARD -j OTHER")
				// Rendering is canonical: the backend dumps our rules as written.
				for _, line := range strings.Split(ipt.Render(), "\n") {
					if strings.HasPrefix(line, "-A ") {
						assert.Contains(t, s, line+"\n")
					}
				}
				assert.Regexp(t, `(?m)^-A FORWARD -m comment --comment "tabby:[A-Za-z0-9_-]{16}" -j tabby-FORWARD\n-A FORWARD -j OTHER$`, s)

				// Drift: another program edits a chain, deletes the hook and a chain.
				mut := "*filter\n-A tabby-to-wl -j ACCEPT\n-D FORWARD 1\n:tabby-FORWARD - [0:0]\n-X tabby-FORWARD\nCOMMIT\n"
				_, err = ex.Run(ctx, Command{Name: binary(f, b, "restore"), Args: []string{"--noflush"}, Stdin: []byte(mut)})
				require.NoError(t, err)
				ex.restores = 1
				require.NoError(t, ipt.Refresh(ctx))
				assert.Equal(t, 2, ex.restores)
				require.NoError(t, ipt.Refresh(ctx))
				assert.Equal(t, 2, ex.restores, "repaired")
				s2 := save()
				assert.Contains(t, s2, "-A FORWARD -j OTHER")
				assert.Contains(t, s2, ":tabby-FORWARD")
				assert.NotContains(t, s2, "-A tabby-to-wl -j ACCEPT")

				// A failing transaction names the line and keeps the old rules.
				require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-to-wl", Rules: []Rule{{Action: Jump{Chain: "tabby-missing"}}}}))
				err = ipt.Apply(ctx)
				var re *RestoreError
				require.ErrorAs(t, err, &re)
				assert.ErrorIs(t, err, ErrRestore)
				assert.Contains(t, re.Text, "-j tabby-missing", "%v", err)
				assert.Equal(t, s2, save())

				// Deleting everything leaves only the foreign rules.
				require.NoError(t, ipt.ReplaceChains(Filter, nil))
				require.NoError(t, ipt.ReplaceChains(NAT, nil))
				require.NoError(t, ipt.SetHook(Filter, "FORWARD", nil))
				require.NoError(t, ipt.SetHook(NAT, "POSTROUTING", nil))
				require.NoError(t, ipt.Apply(ctx))
				assert.NotContains(t, save(), "tabby")
			})
		}
	}
}

func TestKernelDetectBackend(t *testing.T) {
	ctx := context.Background()
	_, ex, _ := kernelIPTables(t, BackendLegacy, IPv4)
	b, err := DetectBackend(ctx, ex)
	require.NoError(t, err)
	assert.Equal(t, BackendNFT, b, "no rules anywhere: nft")
	_, err = ex.Run(ctx, Command{Name: "iptables-legacy-restore", Args: []string{"--noflush"},
		Stdin: []byte("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n")})
	require.NoError(t, err)
	b, err = DetectBackend(ctx, ex)
	require.NoError(t, err)
	assert.Equal(t, BackendLegacy, b, "rules only in legacy")
	_, err = ex.Run(ctx, Command{Name: "iptables-nft-restore", Args: []string{"--noflush"},
		Stdin: []byte("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n")})
	require.NoError(t, err)
	b, err = DetectBackend(ctx, ex)
	require.NoError(t, err)
	assert.Equal(t, BackendNFT, b, "kubelet's hint in nft")
}

// lockExecer records the outcome of every restore.
type lockExecer struct {
	Execer
	mu       sync.Mutex
	restores []error
}

func (l *lockExecer) Run(ctx context.Context, cmd Command) ([]byte, error) {
	out, err := l.Execer.Run(ctx, cmd)
	if strings.HasSuffix(cmd.Name, "-restore") {
		l.mu.Lock()
		l.restores = append(l.restores, err)
		l.mu.Unlock()
	}
	return out, err
}

// TestKernelLockContention holds a private xtables lock file (flock, as
// iptables itself takes /run/xtables.lock) for 1.5 s while an Apply runs
// with XTABLES_LOCKFILE pointing at it and LockWait 1 s: on legacy the
// first restore gives up after waiting 1 s (exit 4), the applier retries
// after its backoff, and the retry succeeds once the lock is released. The
// nft backend takes no xtables lock: its Apply goes through at once. The
// global /run/xtables.lock is never touched.
func TestKernelLockContention(t *testing.T) {
	nettest.RequireRoot(t)
	const hold = 1500 * time.Millisecond
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			n := nettest.NewNetns(t, "tblock")
			lockPath := filepath.Join(t.TempDir(), "xtables.lock")
			ex := &lockExecer{Execer: OSExecer{Netns: n.Name, Env: []string{"XTABLES_LOCKFILE=" + lockPath}}}
			if _, err := ex.Run(context.Background(), Command{Name: binary(IPv4, b, "save")}); err != nil {
				t.Skipf("kernel test: %s not usable: %v", binary(IPv4, b, "save"), err)
			}
			ipt, err := New(Config{Backend: b, LockWait: time.Second}, WithExecer(ex))
			require.NoError(t, err)
			require.NoError(t, ipt.ReplaceChains(Filter, sampleChains(IPv4)))

			f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
			require.NoError(t, err)
			t.Cleanup(func() { _ = f.Close() })
			fd := int(f.Fd())
			require.NoError(t, syscall.Flock(fd, syscall.LOCK_EX))
			start := time.Now()
			released := make(chan struct{})
			go func() {
				defer close(released)
				time.Sleep(hold)
				_ = syscall.Flock(fd, syscall.LOCK_UN)
			}()

			err = ipt.Apply(context.Background())
			took := time.Since(start)
			<-released
			require.NoError(t, err)
			ex.mu.Lock()
			restores := slices.Clone(ex.restores)
			ex.mu.Unlock()
			out, err := n.Run(context.Background(), binary(IPv4, b, "save"))
			require.NoError(t, err)
			assert.Contains(t, out, ":tabby-FORWARD", "the rules went in")
			if b == BackendNFT {
				assert.Len(t, restores, 1, "nft takes no xtables lock")
				assert.NoError(t, restores[0])
				assert.Less(t, took, hold, "nft did not wait for the lock")
				return
			}
			require.GreaterOrEqual(t, len(restores), 2, "the applier retried: %v", restores)
			var ee *ExitError
			require.ErrorAs(t, restores[0], &ee, "the first restore failed on the lock")
			assert.True(t, isLockError(ee), "lock error: %v", ee)
			assert.NoError(t, restores[len(restores)-1])
			assert.GreaterOrEqual(t, took, hold, "Apply waited for the lock to be released")
		})
	}
}

// TestKernelStaleChainReferencedSinceRead: on both backends, a stale
// owned chain that another program started jumping to after the last
// read is flushed and kept by the same Apply (its -X fails once), and the
// table's other pending change goes in.
func TestKernelStaleChainReferencedSinceRead(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			ipt, ex, n := kernelIPTables(t, b, IPv4)
			require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-stale", Rules: []Rule{{Action: Accept{}}}}))
			require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-keep", Rules: []Rule{{Action: Accept{}}}}))
			require.NoError(t, ipt.Apply(ctx))
			_, err := ex.Run(ctx, Command{Name: binary(IPv4, b, "restore"), Args: []string{"--noflush"},
				Stdin: []byte("*filter\n-A INPUT -j tabby-stale\nCOMMIT\n")})
			require.NoError(t, err)
			ex.restores = 0
			ipt.DeleteChain(Filter, "tabby-stale")
			require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-keep", Rules: []Rule{{Action: Drop{}}}}))
			require.NoError(t, ipt.Apply(ctx))
			assert.Equal(t, 2, ex.restores, "the failed -X and the retry")
			out, err := n.Run(ctx, binary(IPv4, b, "save"))
			require.NoError(t, err)
			assert.Contains(t, out, ":tabby-stale - [0:0]")
			assert.NotContains(t, out, "-A tabby-stale ")
			assert.Contains(t, out, "-A INPUT -j tabby-stale")
			assert.Regexp(t, `-A tabby-keep -m comment --comment "tabby:\S+" -j DROP`, out)
		})
	}
}
