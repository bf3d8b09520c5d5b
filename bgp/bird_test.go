package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// birdPeer is a BIRD 2 daemon in its own namespace, linked to the test
// process's private namespace by a veth: the test side has .1 / ::1 of
// 10.123.<n>.0/24 and fd00:123:<n>::/64, BIRD has .2 / ::2.
type birdPeer struct {
	t      testing.TB
	ns     *nettest.Netns
	dir    string
	n      int
	asn    uint32
	static []string // extra BIRD config (static routes)
	passwd string   // TCP MD5 password of the tabby4 session

	cmd *exec.Cmd
}

func (b *birdPeer) addr4() netip.Addr  { return netip.AddrFrom4([4]byte{10, 123, byte(b.n), 2}) }
func (b *birdPeer) local4() netip.Addr { return netip.AddrFrom4([4]byte{10, 123, byte(b.n), 1}) }
func (b *birdPeer) addr6() netip.Addr  { return netip.MustParseAddr(fmt.Sprintf("fd00:123:%d::2", b.n)) }
func (b *birdPeer) local6() netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00:123:%d::1", b.n))
}

// requireBIRD skips unless root and BIRD 2 is installed, and unless the
// test process runs in its private namespace (see TestMain).
func requireBIRD(t testing.TB) {
	t.Helper()
	requirePrivateNetns(t)
	for _, bin := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("interop test: %s not installed (apt-get install bird2)", bin)
		}
	}
}

// requirePrivateNetns skips unless root and the test process runs in its
// private namespace (see TestMain), where it may add links.
func requirePrivateNetns(t testing.TB) {
	t.Helper()
	nettest.RequireRoot(t)
	if os.Getenv(privateNetnsEnv) == "" {
		t.Skip("kernel test: needs the private test namespace (unshare missing?)")
	}
}

// newBIRD creates the namespace and veth; start it with start.
func newBIRD(t testing.TB, n int, asn uint32) *birdPeer {
	t.Helper()
	b := &birdPeer{t: t, ns: nettest.NewNetns(t, "tbgp-bird"), dir: t.TempDir(), n: n, asn: asn}
	host := fmt.Sprintf("tbgp%d", n)
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}
	run("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", b.ns.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	run("addr", "add", b.local4().String()+"/24", "dev", host)
	run("addr", "add", b.local6().String()+"/64", "dev", host, "nodad")
	run("link", "set", host, "up")
	for _, args := range [][]string{
		{"addr", "add", b.addr4().String() + "/24", "dev", "eth0"},
		{"addr", "add", b.addr6().String() + "/64", "dev", "eth0", "nodad"},
		{"link", "set", "eth0", "up"},
	} {
		_, err := b.ns.Run(context.Background(), "ip", args...)
		require.NoError(t, err)
	}
	return b
}

func (b *birdPeer) config(tabbyASN uint32) string {
	var s strings.Builder
	fmt.Fprintf(&s, "router id %s;\nlog %q all;\n", b.addr4(), filepath.Join(b.dir, "bird.log"))
	s.WriteString("protocol device { scan time 1; }\n")
	s.WriteString("protocol direct { ipv4; ipv6; interface \"eth0\"; }\n")
	for _, st := range b.static {
		s.WriteString(st + "\n")
	}
	pw := ""
	if b.passwd != "" {
		pw = fmt.Sprintf("password %q;", b.passwd)
	}
	fmt.Fprintf(&s, `protocol bgp tabby4 {
  local %s as %d; neighbor %s as %d; strict bind yes; %s
  graceful restart on; connect retry time 1; error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp tabby6 {
  local %s as %d; neighbor %s as %d; strict bind yes;
  graceful restart on; connect retry time 1; error wait time 1, 2;
  ipv6 { import all; export where source = RTS_STATIC; };
}
`, b.addr4(), b.asn, b.local4(), tabbyASN, pw, b.addr6(), b.asn, b.local6(), tabbyASN)
	return s.String()
}

// start writes the config and starts BIRD (stopped in t.Cleanup).
func (b *birdPeer) start(tabbyASN uint32) {
	b.t.Helper()
	conf := filepath.Join(b.dir, "bird.conf")
	require.NoError(b.t, os.WriteFile(conf, []byte(b.config(tabbyASN)), 0o600))
	b.cmd = b.ns.Start(b.t, "bird", "-f", "-c", conf, "-s", b.ctl(), "-P", filepath.Join(b.dir, "bird.pid"))
	require.Eventually(b.t, func() bool { _, err := b.birdc("show", "status"); return err == nil }, 10*time.Second, 50*time.Millisecond)
}

// stop kills BIRD without a Cease (a crash), so the session just drops.
func (b *birdPeer) kill() {
	_ = b.cmd.Process.Kill()
	_, _ = b.cmd.Process.Wait()
}

func (b *birdPeer) ctl() string { return filepath.Join(b.dir, "bird.ctl") }

func (b *birdPeer) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.ctl()}, args...)...).CombinedOutput()
	return string(out), err
}

// routes returns `birdc show route all` for prefix (empty if absent).
func (b *birdPeer) route(p string) string {
	out, err := b.birdc("show", "route", p, "all")
	if err != nil || !strings.Contains(out, p) {
		return ""
	}
	return out
}

func (b *birdPeer) established(proto string) bool {
	out, err := b.birdc("show", "protocols", proto)
	return err == nil && strings.Contains(out, "Established")
}

// kernelRoute returns `ip route show <p>` in the test namespace.
func kernelRoute(t testing.TB, p string) string {
	fam := "-4"
	if strings.Contains(p, ":") {
		fam = "-6"
	}
	out, err := exec.Command("ip", fam, "route", "show", p).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.TrimSpace(string(out))
}

// kernelSpeaker starts a speaker in the test namespace with a real
// RouteOwner programming the kernel (RouteOwner.Apply: deltas, with a full
// Reconcile first and after failures), peered with the BIRDs.
func kernelSpeaker(t testing.TB, asn uint32, birds ...*birdPeer) (*Speaker, *netlink.RouteOwner) {
	return kernelSpeakerSync(t, asn, (*netlink.RouteOwner).Apply, birds...)
}

// kernelSpeakerSync is kernelSpeaker with the RouteOwner method the speaker
// syncs with (Apply or Reconcile).
func kernelSpeakerSync(t testing.TB, asn uint32, sync func(*netlink.RouteOwner, context.Context) (netlink.ReconcileResult, error), birds ...*birdPeer) (*Speaker, *netlink.RouteOwner) {
	t.Helper()
	h, err := nl.NewHandle()
	require.NoError(t, err)
	t.Cleanup(h.Close)
	owner, err := netlink.NewRouteOwner(h)
	require.NoError(t, err)
	t.Cleanup(func() { _ = owner.Set(DefaultSource, nil); _, _ = owner.Reconcile(context.Background()) })
	cfg := Config{NodeName: "tabby", ASNumber: asn, NodeIP: birds[0].local4(), NodeIPv6: birds[0].local6(),
		RouterID: birds[0].local4(), StartupSyncTimeout: 3 * time.Second}
	for _, b := range birds {
		cfg.ListenAddresses = append(cfg.ListenAddresses, b.local4(), b.local6())
	}
	s, err := New(cfg, WithLogger(testLogger(t)), WithRouteProgrammer(owner, "", func(ctx context.Context) error {
		_, err := sync(owner, ctx)
		return err
	}))
	require.NoError(t, err)
	var peers []Peer
	for _, b := range birds {
		peers = append(peers,
			Peer{Name: fmt.Sprintf("bird%d-v4", b.n), Address: b.addr4(), ASNumber: b.asn, SourceAddress: b.local4()},
			Peer{Name: fmt.Sprintf("bird%d-v6", b.n), Address: b.addr6(), ASNumber: b.asn, SourceAddress: b.local6()})
	}
	require.NoError(t, s.SetPeers(context.Background(), peers))
	return s, owner
}

// twoBIRDs starts two BIRDs (AS birdASN and asn2) that both announce
// 10.55.0.0/24 and fd55::/64, bird1 also 10.66.1.0/24 (protocol only1),
// and a kernel speaker peered with both (not started).
func twoBIRDs(t *testing.T, asn2 uint32) (b1, b2 *birdPeer, s *Speaker) {
	t.Helper()
	requireBIRD(t)
	b1, b2 = newBIRD(t, 1, birdASN), newBIRD(t, 2, asn2)
	b1.static = []string{birdStatic("10.55.0.0/24", "fd55::/64") + "\nprotocol static only1 { ipv4; route 10.66.1.0/24 blackhole; }"}
	b2.static = []string{birdStatic("10.55.0.0/24", "fd55::/64")}
	b1.start(tabbyASN)
	b2.start(tabbyASN)
	s, _ = kernelSpeaker(t, tabbyASN, b1, b2)
	return b1, b2, s
}
