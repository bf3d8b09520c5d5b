package nftables_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	snft "github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// Benchmark targets: knftables.Fake (rule generation and transaction
// validation only), the kernel through the `nft` CLI (knftables), and the
// kernel through the netlink executor (Netlink). Both kernel targets
// start with "kernel" so that -bench '…/kernel' runs them side by side.
var benchTargets = []string{"fake", "kernel-cli", "kernel-netlink"}

// benchTarget returns the knftables.Interface of target, in a fresh
// network namespace for the kernel targets.
func benchTarget(b *testing.B, target string) knftables.Interface {
	b.Helper()
	if target == "fake" {
		return knftables.NewFake(knftables.IPv4Family, snft.DefaultTable)
	}
	ns := nettest.NewNetns(b, "svcbench") // skips unless root
	var nft knftables.Interface
	var err error
	if target == "kernel-netlink" {
		var nl *snft.Netlink
		nl, err = snft.NewNetlink(knftables.IPv4Family, snft.DefaultTable, ns.Path)
		if err == nil {
			b.Cleanup(func() { _ = nl.Close() })
		}
		nft = nl
	} else {
		nft, err = snft.NewInNetns(knftables.IPv4Family, snft.DefaultTable, ns.Path)
	}
	if err != nil {
		b.Fatal(err)
	}
	return nft
}

// cpuTime is the CPU time (user + system) used so far by this process
// and its waited-for children (the `nft` processes of the CLI target):
// on a loaded machine it is a steadier measure than wall time.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	d := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return d(self.Utime) + d(self.Stime) + d(children.Utime) + d(children.Stime)
}

// reportCPU reports the CPU time per operation since start as cpu-ms/op.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// BenchmarkFullSync: a first sync of N services × 10 endpoints (the whole
// table in one transaction).
func BenchmarkFullSync(b *testing.B) {
	for _, target := range benchTargets {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("%s/services=%d", target, n), func(b *testing.B) {
				if target == "fake" && n > 1000 {
					b.Skip("knftables.Fake copies the whole table per transaction; only the 1,000 case is a useful peer")
				}
				nft := benchTarget(b, target)
				tr := st.LoadTracker(n, 10)
				b.ResetTimer()
				cpu := cpuTime()
				defer reportCPU(b, cpu)
				for range b.N {
					p, err := snft.New(nft, tr, snft.Config{Family: knftables.IPv4Family}, quiet())
					if err != nil {
						b.Fatal(err)
					}
					if err := p.Sync(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOneEndpointChange: one endpoint of one service replaced, at N
// services × 10 endpoints already in the table.
func BenchmarkOneEndpointChange(b *testing.B) {
	for _, target := range benchTargets {
		for _, n := range []int{1000, 10000, 30000} {
			b.Run(fmt.Sprintf("%s/services=%d", target, n), func(b *testing.B) {
				if target == "fake" && n > 1000 {
					b.Skip("knftables.Fake copies the whole table per transaction; only the 1,000 case is a useful peer")
				}
				nft := benchTarget(b, target)
				tr := st.LoadTracker(n, 10)
				// (With the service CIDR of st.Many's cluster IPs, as a
				// kube-proxy configuration always has one.)
				p, err := snft.New(nft, tr, snft.Config{Family: knftables.IPv4Family,
					ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}}, quiet())
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				if err := p.Sync(ctx); err != nil {
					b.Fatal(err)
				}
				_, slices := st.Many("bench", n, 10, true)
				// The setup's garbage (a full sync, the slices) is
				// collected before timing, so the GC's background work on
				// it is not charged to the first changes.
				runtime.GC()
				b.ResetTimer()
				cpu := cpuTime()
				defer reportCPU(b, cpu)
				for i := range b.N {
					s := slices[(i*7919)%n].DeepCopy()
					s.Endpoints[0].Addresses = []string{fmt.Sprintf("10.250.%d.%d", (i>>8)&0xff, i&0xff)}
					tr.OnEndpointSliceUpdate(s)
					if err := p.Sync(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkFirstPacket: a new TCP connection (connect, read the answer,
// close) from a pod to a service's cluster IP, with 0 or 10,000 other
// services in the table: the first packet's dispatch is a verdict-map
// lookup, so the two should match.
func BenchmarkFirstPacket(b *testing.B) {
	for _, n := range []int{0, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			topo := nettest.NewTopology(b, nettest.Nodes(1))
			node := topo.Node(0)
			backend := node.AddPod(b)
			backend.ListenTCP(b, 8080)
			client := node.AddPod(b)
			// The netlink executor writes the same table as the CLI
			// (TestNetlinkMatchesCLI) and loads 10,000 services in a
			// fraction of the time.
			nft, err := snft.NewNetlink(knftables.IPv4Family, snft.DefaultTable, node.NS.Path)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = nft.Close() })
			tr := st.LoadTracker(n, 10)
			tr.OnServiceUpdate(st.Service("default", "target", "10.111.0.1", st.Port("http", v1.ProtocolTCP, 80, 0)))
			tr.OnEndpointSliceUpdate(st.Slice("default", "target", "target-1", webPorts, st.Endpoint{IP: backend.IP.String(), Node: node.Name}))
			p, err := snft.New(nft, tr, snft.Config{Family: knftables.IPv4Family}, quiet())
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
			vip := netip.MustParseAddrPort("10.111.0.1:80")
			b.ResetTimer()
			for range b.N {
				if _, err := client.Probe("tcp", vip, 2*time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// quiet keeps the Proxier's Info line about each full rewrite out of the
// benchmark output.
func quiet() snft.Option { return snft.WithLogger(slog.New(slog.DiscardHandler)) }
