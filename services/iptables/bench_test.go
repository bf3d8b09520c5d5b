package iptables_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	sipt "github.com/tabbynet/tabby/services/iptables"
	st "github.com/tabbynet/tabby/services/servicestest"
	"github.com/tabbynet/tabby/services/servicestest/kernelsuite"
)

// benchTable is where a benchmark renders: the kernel through one
// backend in a fresh netns, or ipt.Fake (rendering, hashing and the
// fake's restore only), the peer the kernel figures compare against. The
// default layout has the hairpin set: over an ipsets.Fake for fake, the
// one New opens in the netns otherwise. A target ending in "+chains"
// returns WithHairpinChains instead.
func benchTable(b *testing.B, target string) (*ipt.IPTables, []sipt.Option) {
	b.Helper()
	base, chains := strings.CutSuffix(target, "+chains")
	var ex ipt.Execer = ipt.NewFake()
	var opts []sipt.Option
	switch {
	case chains:
		opts = append(opts, sipt.WithHairpinChains())
	case base == "fake":
		opts = append(opts, sipt.WithHairpinSet(ipsets.New(ipsets.NewFake(), ipsets.WithPrefix(setPrefix))))
	}
	backend := ipt.BackendNFT
	if base != "fake" {
		ns := nettest.NewNetns(b, "svcbench") // skips unless root
		ex, backend = ipt.OSExecer{Netns: ns.Name}, ipt.Backend(base)
	}
	t, err := sipt.NewIPTables(ipt.IPv4, backend, ipt.WithExecer(ex))
	if err != nil {
		b.Fatal(err)
	}
	return t, opts
}

// cpuTimes returns the CPU time (user + system) of this process
// (tabby: rendering, hashing, restore-text building, the fake, and the
// garbage collector) and of its reaped children (iptables-restore and
// iptables-save), in seconds. Unlike wall time, they stay meaningful on
// a machine shared with other jobs.
func cpuTimes(b *testing.B) (self, children float64) {
	b.Helper()
	sec := func(who int) float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return sec(syscall.RUSAGE_SELF), sec(syscall.RUSAGE_CHILDREN)
}

// cpuMeter reports, per op, the CPU seconds cpuTimes measured while
// the timer ran: tabby-cpu-s/op and restore-cpu-s/op.
type cpuMeter struct {
	b                     *testing.B
	self, children        float64
	selfStart, childStart float64
}

func newCPUMeter(b *testing.B) *cpuMeter { return &cpuMeter{b: b} }

func (m *cpuMeter) start() { m.selfStart, m.childStart = cpuTimes(m.b) }

func (m *cpuMeter) stop() {
	s, c := cpuTimes(m.b)
	m.self += s - m.selfStart
	m.children += c - m.childStart
}

func (m *cpuMeter) report() {
	m.b.ReportMetric(m.self/float64(m.b.N), "tabby-cpu-s/op")
	m.b.ReportMetric(m.children/float64(m.b.N), "restore-cpu-s/op")
}

var benchTargets = []string{"fake", "fake+chains", string(ipt.BackendLegacy), string(ipt.BackendLegacy) + "+chains", string(ipt.BackendNFT), string(ipt.BackendNFT) + "+chains"}

// BenchmarkFullSync: a first sync of N services × 10 endpoints (every
// chain in one iptables-restore).
func BenchmarkFullSync(b *testing.B) {
	for _, target := range benchTargets {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("%s/services=%d", target, n), func(b *testing.B) {
				tr := st.LoadTracker(n, 10)
				m := newCPUMeter(b)
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					table, opts := benchTable(b, target)
					b.StartTimer()
					m.start()
					p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4}, opts...)
					if err != nil {
						b.Fatal(err)
					}
					if err := p.Sync(context.Background()); err != nil {
						b.Fatal(err)
					}
					m.stop()
					if err := p.Close(); err != nil {
						b.Fatal(err)
					}
				}
				m.report()
			})
		}
	}
}

// BenchmarkOneEndpointChange: one endpoint of one service replaced, at N
// services × 10 endpoints already written.
func BenchmarkOneEndpointChange(b *testing.B) {
	for _, target := range benchTargets {
		for _, n := range []int{1000, 10000, 30000} {
			b.Run(fmt.Sprintf("%s/services=%d", target, n), func(b *testing.B) {
				if target == string(ipt.BackendNFT)+"+chains" && n > 10000 {
					b.Skip("iptables-nft-restore needs about 160 s to write 10,000 services with WithHairpinChains and grows faster than linearly; see README")
				}
				tr := st.LoadTracker(n, 10)
				table, opts := benchTable(b, target)
				p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4}, opts...)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = p.Close() })
				ctx := context.Background()
				if err := p.Sync(ctx); err != nil {
					b.Fatal(err)
				}
				// The setup's garbage is collected before timing, so the
				// GC's background work on it is not charged to the changes.
				runtime.GC()
				m := newCPUMeter(b)
				b.ResetTimer()
				m.start()
				for i := range b.N {
					var eps []st.Endpoint
					for j := range 10 {
						eps = append(eps, st.Endpoint{IP: fmt.Sprintf("10.245.%d.%d", i%200, j), Node: "node-a"})
					}
					tr.OnEndpointSliceUpdate(st.Slice("bench", "svc-7", "svc-7-1", []st.SlicePort{{Name: "http", Proto: "TCP", Port: 8080}}, eps...))
					if err := p.Sync(ctx); err != nil {
						b.Fatal(err)
					}
				}
				m.stop()
				m.report()
			})
		}
	}
}

// BenchmarkFirstPacket: a new TCP connection from a pod to a cluster IP
// placed after N other services × 10 endpoints in TABBY-SERVICES (its
// rules are a linear list, so the first packet's cost grows with N; the
// services=0 case is the in-run peer).
func BenchmarkFirstPacket(b *testing.B) {
	for _, backend := range []ipt.Backend{ipt.BackendLegacy, ipt.BackendNFT} {
		for _, n := range []int{0, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/services=%d", backend, n), func(b *testing.B) {
				kernelsuite.FirstPacket(b, n, func(tb testing.TB, node *nettest.Node, tr *services.Tracker) kernelsuite.Backend {
					table, err := sipt.NewIPTables(ipt.IPv4, backend, ipt.WithNetns(node.NS.Name))
					if err != nil {
						tb.Fatal(err)
					}
					p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(nettest.PoolCIDR)}})
					if err != nil {
						tb.Fatal(err)
					}
					tb.Cleanup(func() { _ = p.Close() })
					return p
				})
			})
		}
	}
}
