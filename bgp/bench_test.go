package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tabbynet/tabby/dataplane/netlink"
)

// benchPrefixes returns n distinct /26 pod blocks in 10.128.0.0/9.
func benchPrefixes(n int) []Advertisement {
	out := make([]Advertisement, n)
	for i := range n {
		v := uint32(10)<<24 | 1<<23 | uint32(i)<<6
		out[i] = Advertisement{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 26),
			Communities: []Community{{A: 64512, B: 100}}}
	}
	return out
}

// birdCount returns how many routes BIRD holds from protocol proto.
func (b *birdPeer) count(proto string) int {
	out, err := b.birdc("show", "route", "protocol", proto, "count")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[1] == "of" {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	return -1
}

func (b *birdPeer) waitCount(tb testing.TB, proto string, n int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for b.count(proto) != n {
		if time.Now().After(deadline) {
			tb.Fatalf("BIRD protocol %s: %d routes, want %d", proto, b.count(proto), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gobgpdPeer is Debian's gobgpd in the test namespace on its own address,
// driven through its gRPC API with AddPathStream, its fastest bulk path.
type gobgpdPeer struct {
	client api.GobgpApiClient
}

func startGobgpd(tb testing.TB, local, birdAddr netip.Addr) *gobgpdPeer {
	tb.Helper()
	bin, err := exec.LookPath("gobgpd")
	if err != nil {
		tb.Skip("benchmark peer: gobgpd not installed (apt-get install gobgpd)")
	}
	dir := tb.TempDir()
	conf := fmt.Sprintf(`[global.config]
  as = 64513
  router-id = "%s"
  local-address-list = ["%s"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "%s"
    peer-as = %d
  [neighbors.transport.config]
    local-address = "%s"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
`, local, local, birdAddr, birdASN, local)
	path := filepath.Join(dir, "gobgpd.toml")
	require.NoError(tb, os.WriteFile(path, []byte(conf), 0o600))
	apiAddr := "127.0.0.1:" + strconv.Itoa(freePort(tb))
	cmd := exec.Command(bin, "-f", path, "--api-hosts", apiAddr, "-l", "error", "--pprof-disable")
	cmd.Stdout, cmd.Stderr = testWriter{tb}, testWriter{tb}
	require.NoError(tb, cmd.Start())
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	conn, err := grpc.NewClient(apiAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(tb, err)
	tb.Cleanup(func() { conn.Close() })
	return &gobgpdPeer{client: api.NewGobgpApiClient(conn)}
}

func (g *gobgpdPeer) advertise(tb testing.TB, ads []Advertisement) {
	ctx := context.Background()
	stream, err := g.client.AddPathStream(ctx)
	require.NoError(tb, err)
	const batch = 1000
	for i := 0; i < len(ads); i += batch {
		req := &api.AddPathStreamRequest{TableType: api.TableType_GLOBAL}
		for _, a := range ads[i:min(i+batch, len(ads))] {
			p, err := toAPIPath(a.Prefix, a.Communities, false)
			require.NoError(tb, err)
			req.Paths = append(req.Paths, p)
		}
		require.NoError(tb, stream.Send(req))
	}
	_, err = stream.CloseAndRecv()
	require.NoError(tb, err)
}

func (g *gobgpdPeer) withdrawAll(tb testing.TB) {
	_, err := g.client.DeletePath(context.Background(), &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: familyV4})
	require.NoError(tb, err)
}

// BenchmarkAdvertiseToBIRD: time until one BIRD holds n prefixes, sent by
// tabby (SetAdvertisements) and by Debian's gobgpd (gRPC AddPathStream in
// batches of 1,000) in turn, in the same run. Reports seconds per round for
// each and the ratio gobgpd/tabby (> 1: tabby is faster).
func BenchmarkAdvertiseToBIRD(b *testing.B) {
	requireBIRD(b)
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			if n > 10_000 && testing.Short() {
				b.Skip("100,000 prefixes: not in -short")
			}
			bird := newBIRD(b, 9, birdASN)
			gobgpdAddr := netip.MustParseAddr("10.123.9.3")
			out, err := exec.Command("ip", "addr", "add", gobgpdAddr.String()+"/24", "dev", "tbgp9").CombinedOutput()
			require.NoError(b, err, "%s", out)
			bird.static = []string{fmt.Sprintf(`protocol bgp gobgpd4 {
  local %s as %d; neighbor %s as 64513; strict bind yes; connect retry time 1;
  ipv4 { import all; export none; };
}`, bird.addr4(), birdASN, gobgpdAddr)}
			bird.start(tabbyASN)
			s, err := New(Config{NodeIP: bird.local4(), ListenAddresses: []netip.Addr{bird.local4()}},
				WithLogger(testLogger(b)))
			require.NoError(b, err)
			require.NoError(b, s.SetPeers(context.Background(), []Peer{{Address: bird.addr4(), ASNumber: birdASN}}))
			require.NoError(b, s.Start(context.Background()))
			b.Cleanup(s.Stop)
			g := startGobgpd(b, gobgpdAddr, bird.addr4())
			require.Eventually(b, func() bool { return bird.established("tabby4") && bird.established("gobgpd4") },
				30*time.Second, 50*time.Millisecond)
			ads := benchPrefixes(n)
			var tabbyT, gobgpdT time.Duration
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				require.NoError(b, s.SetAdvertisements(context.Background(), ads))
				bird.waitCount(b, "tabby4", n)
				tabbyT += time.Since(t0)
				t0 = time.Now()
				g.advertise(b, ads)
				bird.waitCount(b, "gobgpd4", n)
				gobgpdT += time.Since(t0)
				b.StopTimer()
				require.NoError(b, s.SetAdvertisements(context.Background(), nil))
				g.withdrawAll(b)
				bird.waitCount(b, "tabby4", 0)
				bird.waitCount(b, "gobgpd4", 0)
				b.StartTimer()
			}
			b.ReportMetric(tabbyT.Seconds()/float64(b.N), "tabby-s")
			b.ReportMetric(gobgpdT.Seconds()/float64(b.N), "gobgpd-s")
			b.ReportMetric(gobgpdT.Seconds()/tabbyT.Seconds(), "gobgpd/tabby")
		})
	}
}

// BenchmarkProgramLearnedRoutes: BIRD announces 10,000 prefixes (a static
// protocol enabled at t0); time until tabby has them all in the kernel
// through a RouteOwner, and, as the peer in the same run, until BIRD's own
// kernel protocol has them in BIRD's namespace. Both run at once. The
// speaker syncs the RouteOwner with Apply (deltas only: the steady path)
// or, for comparison, Reconcile (a kernel dump each sync).
func BenchmarkProgramLearnedRoutes(b *testing.B) {
	requireBIRD(b)
	for i, sync := range []struct {
		name string
		f    func(*netlink.RouteOwner, context.Context) (netlink.ReconcileResult, error)
	}{{"sync=Apply", (*netlink.RouteOwner).Apply}, {"sync=Reconcile", (*netlink.RouteOwner).Reconcile}} {
		b.Run(sync.name, func(b *testing.B) { benchProgramLearned(b, 8+i, sync.f) })
	}
}

func benchProgramLearned(b *testing.B, birdN int, sync func(*netlink.RouteOwner, context.Context) (netlink.ReconcileResult, error)) {
	const n = 10_000
	bird := newBIRD(b, birdN, birdASN)
	var st strings.Builder
	st.WriteString("protocol static bulk { disabled yes; ipv4;\n")
	for i := range n {
		fmt.Fprintf(&st, "  route 10.%d.%d.0/24 unreachable;\n", 200+i/256, i%256)
	}
	st.WriteString("}\nprotocol kernel { ipv4 { import none; export where proto = \"bulk\"; }; merge paths on; }\n")
	bird.static = []string{st.String()}
	bird.start(tabbyASN)
	s, owner := kernelSpeakerSync(b, tabbyASN, sync, bird)
	require.NoError(b, s.Start(context.Background()))
	b.Cleanup(s.Stop)
	require.Eventually(b, func() bool { return bird.established("tabby4") }, 30*time.Second, 50*time.Millisecond)
	<-s.Synced()
	h, err := nl.NewHandle()
	require.NoError(b, err)
	defer h.Close()
	countProto := func(h *nl.Handle, proto int) int {
		rs, err := h.RouteListFiltered(nl.FAMILY_V4, &nl.Route{Protocol: nl.RouteProtocol(proto), Table: 254}, nl.RT_FILTER_PROTOCOL|nl.RT_FILTER_TABLE)
		if err != nil {
			return -1
		}
		return len(rs)
	}
	const rtprotBIRD = 12
	var tabbyT, birdT time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		_, err := bird.birdc("enable", "bulk")
		require.NoError(b, err)
		var tDone, bDone time.Duration
		for tDone == 0 || bDone == 0 {
			if tDone == 0 && countProto(h, owner.Protocol()) >= n {
				tDone = time.Since(t0)
			}
			if bDone == 0 && countProto(bird.ns.Handle(), rtprotBIRD) >= n {
				bDone = time.Since(t0)
			}
			require.Less(b, time.Since(t0), 2*time.Minute, "tabby %d, BIRD %d routes", countProto(h, owner.Protocol()), countProto(bird.ns.Handle(), rtprotBIRD))
			// Dumping 10,000 routes costs CPU the two contenders need:
			// poll slowly (the figures are +-100 ms).
			time.Sleep(100 * time.Millisecond)
		}
		tabbyT += tDone
		birdT += bDone
		b.StopTimer()
		_, err = bird.birdc("disable", "bulk")
		require.NoError(b, err)
		require.Eventually(b, func() bool {
			return countProto(h, owner.Protocol()) == 0 && countProto(bird.ns.Handle(), rtprotBIRD) == 0
		},
			time.Minute, 50*time.Millisecond)
		b.StartTimer()
	}
	b.ReportMetric(tabbyT.Seconds()/float64(b.N), "tabby-s")
	b.ReportMetric(birdT.Seconds()/float64(b.N), "bird-kernel-s")
}

// BenchmarkMemoryPer10kPrefixes: live heap per 10,000 advertised prefixes:
// tabby's own state (sources, delta tracker, reasons; a speaker not
// started) and, as the peer in the same run, a bare GoBGP BgpServer given
// the same paths with AddPath (the RIB a started speaker adds on top).
func BenchmarkMemoryPer10kPrefixes(b *testing.B) {
	const n = 10_000
	ads := benchPrefixes(n)
	// heap waits until the live heap stops shrinking (stopped servers'
	// goroutines finish asynchronously) and returns it.
	heap := func() int64 {
		var last int64 = -1
		for range 20 {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			cur := int64(m.HeapAlloc)
			if last >= 0 && cur >= last-last/200 {
				return cur
			}
			last = cur
			time.Sleep(200 * time.Millisecond)
		}
		return last
	}
	var tabbyB, bareB float64
	for range b.N {
		before := heap()
		srv := server.NewBgpServer(server.LoggerOption(slogAdapter{l: testLogger(b), level: new(slog.LevelVar)}))
		go srv.Serve()
		require.NoError(b, srv.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{Asn: 64512, RouterId: "127.0.0.42", ListenPort: -1}}))
		for _, a := range ads {
			p, err := toAPIPath(a.Prefix, a.Communities, false)
			require.NoError(b, err)
			_, err = srv.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
			require.NoError(b, err)
		}
		bareB += float64(heap() - before)
		runtime.KeepAlive(srv)
		srv.Stop() // its Serve goroutine stays: GoBGP cannot stop it

		before = heap()
		s, err := New(Config{NodeIP: netip.MustParseAddr("127.0.0.41"), ListenPort: -1}, WithLogger(testLogger(b)))
		require.NoError(b, err)
		require.NoError(b, s.SetAdvertisements(context.Background(), ads))
		tabbyB += float64(heap() - before)
		runtime.KeepAlive(s)
	}
	b.ReportMetric(tabbyB/float64(b.N), "tabby-B/10k")
	b.ReportMetric(bareB/float64(b.N), "gobgp-rib-B/10k")
}
