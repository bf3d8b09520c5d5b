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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// TestBIRDMultihop: BIRD sits two hops away, behind a router namespace.
// The eBGP session establishes only once the peer has an eBGP multihop
// TTL (IPv4) or ttlSecurity (IPv6, GTSM on both sides).
//
//	test ns 10.124.1.1 ── router .254 | .254 ── 10.124.2.2 BIRD
//	        fd00:124:1::1                        fd00:124:2::2
func TestBIRDMultihop(t *testing.T) {
	requireBIRD(t)
	ctx := context.Background()
	router, bird := nettest.NewNetns(t, "tbgp-rtr"), nettest.NewNetns(t, "tbgp-mh")
	ip := func(ns *nettest.Netns, args ...string) {
		t.Helper()
		var out []byte
		var err error
		if ns == nil {
			out, err = exec.Command("ip", args...).CombinedOutput()
		} else {
			var s string
			s, err = ns.Run(ctx, "ip", args...)
			out = []byte(s)
		}
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}
	ip(nil, "link", "add", "tbgpmh", "type", "veth", "peer", "name", "left", "netns", router.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "tbgpmh").Run() })
	ip(router, "link", "add", "right", "type", "veth", "peer", "name", "eth0", "netns", bird.Name)
	for _, c := range []struct {
		ns   *nettest.Netns
		args []string
	}{
		{nil, []string{"addr", "add", "10.124.1.1/24", "dev", "tbgpmh"}},
		{nil, []string{"addr", "add", "fd00:124:1::1/64", "dev", "tbgpmh", "nodad"}},
		{nil, []string{"link", "set", "tbgpmh", "up"}},
		{nil, []string{"route", "add", "10.124.2.0/24", "via", "10.124.1.254"}},
		{nil, []string{"route", "add", "fd00:124:2::/64", "via", "fd00:124:1::254"}},
		{router, []string{"addr", "add", "10.124.1.254/24", "dev", "left"}},
		{router, []string{"addr", "add", "fd00:124:1::254/64", "dev", "left", "nodad"}},
		{router, []string{"addr", "add", "10.124.2.254/24", "dev", "right"}},
		{router, []string{"addr", "add", "fd00:124:2::254/64", "dev", "right", "nodad"}},
		{router, []string{"link", "set", "left", "up"}},
		{router, []string{"link", "set", "right", "up"}},
		{bird, []string{"addr", "add", "10.124.2.2/24", "dev", "eth0"}},
		{bird, []string{"addr", "add", "fd00:124:2::2/64", "dev", "eth0", "nodad"}},
		{bird, []string{"link", "set", "eth0", "up"}},
		{bird, []string{"route", "add", "10.124.1.0/24", "via", "10.124.2.254"}},
		{bird, []string{"route", "add", "fd00:124:1::/64", "via", "fd00:124:2::254"}},
	} {
		ip(c.ns, c.args...)
	}
	require.NoError(t, router.Sysctl("net.ipv4.ip_forward", "1"))
	require.NoError(t, router.Sysctl("net.ipv6.conf.all.forwarding", "1"))

	dir := t.TempDir()
	b := &birdPeer{t: t, ns: bird, dir: dir, asn: birdASN}
	conf := fmt.Sprintf(`router id 10.124.2.2;
log %q all;
protocol device { scan time 1; }
protocol kernel k4 { ipv4 { import all; export none; }; learn; }
protocol kernel k6 { ipv6 { import all; export none; }; learn; }
protocol bgp tabby4 {
  local 10.124.2.2 as %d; neighbor 10.124.1.1 as %d; multihop 2;
  connect retry time 1; error wait time 1, 2;
  ipv4 { import all; export none; };
}
protocol bgp tabby6 {
  local fd00:124:2::2 as %d; neighbor fd00:124:1::1 as %d; multihop 2; ttl security yes;
  connect retry time 1; error wait time 1, 2;
  ipv6 { import all; export none; };
}
`, filepath.Join(dir, "bird.log"), birdASN, tabbyASN, birdASN, tabbyASN)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bird.conf"), []byte(conf), 0o600))
	b.cmd = bird.Start(t, "bird", "-f", "-c", filepath.Join(dir, "bird.conf"), "-s", b.ctl(), "-P", filepath.Join(dir, "bird.pid"))
	require.Eventually(t, func() bool { _, err := b.birdc("show", "status"); return err == nil }, 10*time.Second, 50*time.Millisecond)

	s, err := New(Config{NodeName: "tabby", ASNumber: tabbyASN, NodeIP: netip.MustParseAddr("10.124.1.1"), NodeIPv6: netip.MustParseAddr("fd00:124:1::1"),
		ListenAddresses: []netip.Addr{netip.MustParseAddr("10.124.1.1"), netip.MustParseAddr("fd00:124:1::1")}}, WithLogger(testLogger(t)))
	require.NoError(t, err)
	v4 := Peer{Name: "bird-v4", Address: netip.MustParseAddr("10.124.2.2"), ASNumber: birdASN}
	v6 := Peer{Name: "bird-v6", Address: netip.MustParseAddr("fd00:124:2::2"), ASNumber: birdASN}
	require.NoError(t, s.SetPeers(ctx, []Peer{v4, v6}))
	require.NoError(t, s.Advertise(ctx, Advertisement{Prefix: pfx("10.244.20.0/26")}, Advertisement{Prefix: pfx("fd00:244:20::/122")}))
	require.NoError(t, s.Start(ctx))
	t.Cleanup(s.Stop)

	// Single-hop eBGP (TTL 1): the packets die at the router.
	time.Sleep(5 * time.Second)
	assert.False(t, b.established("tabby4"), "no session without multihop")
	assert.False(t, b.established("tabby6"), "no session without ttlSecurity")

	v4.EBGPMultihopTTL, v6.TTLSecurity = 2, 2
	require.NoError(t, s.SetPeers(ctx, []Peer{v4, v6}))
	require.Eventually(t, func() bool { return b.established("tabby4") && b.established("tabby6") }, 30*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool { return b.route("10.244.20.0/26") != "" && b.route("fd00:244:20::/122") != "" }, 15*time.Second, 100*time.Millisecond)
	assert.Contains(t, b.route("10.244.20.0/26"), "via 10.124.2.254", "recursive next hop 10.124.1.1 through the router")
}
