package netlink_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	nl "github.com/vishvananda/netlink"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

const benchWorkloads = 200

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func runIPBatch(b *testing.B, netnsName string, lines []string) time.Duration {
	b.Helper()
	f := filepath.Join(b.TempDir(), "batch")
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	out, err := exec.Command("ip", "-n", netnsName, "-batch", f).CombinedOutput()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("ip -batch: %v: %s", err, out)
	}
	return d
}

// BenchmarkWorkloadSetupTeardown sets up 200 workloads, then tears them
// down, per iteration (each pod netns made beforehand, untimed) and reports
// the p50/p99 latency of setup, teardown and setup+teardown per workload,
// next to `ip -batch` creating and then deleting the same 200 veth pairs
// (peer created in the pod netns, host end up, a /32 route) in one process:
// the per-pair floor.
func BenchmarkWorkloadSetupTeardown(b *testing.B) {
	ctx := context.Background()
	host := nettest.NewNetns(b, "tby-bh")
	w, err := tnl.NewWorkloads(host.Path)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	pods := make([]*nettest.Netns, benchWorkloads)
	for i := range pods {
		pods[i] = nettest.NewNetns(b, "tby-bp")
	}
	specs := make([]tnl.WorkloadSpec, benchWorkloads)
	for i := range specs {
		specs[i] = tnl.WorkloadSpec{ID: fmt.Sprintf("bench.%d", i), Netns: pods[i].Path,
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(1 + i%250)})}}
	}
	var setup, teardown, both []time.Duration
	var batchAdd, batchDel time.Duration
	b.ResetTimer()
	for b.Loop() {
		// Like a CNI plugin: plain (unlocked) goroutines; the Workloads
		// handles are bound to the host namespace. All setups, then all
		// teardowns, as the ip -batch run below does.
		st := make([]time.Duration, len(specs))
		for i, s := range specs {
			t0 := time.Now()
			if _, err := w.SetupWorkload(ctx, s); err != nil {
				b.Fatal(err)
			}
			st[i] = time.Since(t0)
		}
		for i, s := range specs {
			t0 := time.Now()
			if err := w.TeardownWorkload(ctx, s.ID); err != nil {
				b.Fatal(err)
			}
			td := time.Since(t0)
			setup, teardown, both = append(setup, st[i]), append(teardown, td), append(both, st[i]+td)
		}
		// The same veth work through ip -batch, in the same run.
		var add, del []string
		for i, s := range specs {
			name := fmt.Sprintf("ipb%d", i)
			a := s.Addresses[0]
			add = append(add, "link add "+name+" type veth peer name eth0 netns "+pods[i].Name,
				"link set "+name+" up", "route add "+a.String()+"/32 dev "+name)
			del = append(del, "link del "+name)
		}
		batchAdd += runIPBatch(b, host.Name, add)
		batchDel += runIPBatch(b, host.Name, del)
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(both, 0.5).Nanoseconds()), "p50-ns/workload")
	b.ReportMetric(float64(percentile(both, 0.99).Nanoseconds()), "p99-ns/workload")
	b.ReportMetric(float64(percentile(setup, 0.5).Nanoseconds()), "setup-p50-ns")
	b.ReportMetric(float64(percentile(setup, 0.99).Nanoseconds()), "setup-p99-ns")
	b.ReportMetric(float64(percentile(teardown, 0.5).Nanoseconds()), "teardown-p50-ns")
	pairs := float64(b.N * benchWorkloads)
	addPair, delPair := float64(batchAdd.Nanoseconds())/pairs, float64(batchDel.Nanoseconds())/pairs
	b.ReportMetric(addPair, "ipbatch-add-ns/pair")
	b.ReportMetric(delPair, "ipbatch-del-ns/pair")
	b.ReportMetric(float64(percentile(setup, 0.5).Nanoseconds())/addPair, "setup-p50/ipbatch-add")
	b.ReportMetric(float64(percentile(both, 0.5).Nanoseconds())/(addPair+delPair), "p50/ipbatch")
}

const benchRoutes = 10000

// BenchmarkRouteOwner10k programs 10,000 /32 routes through a RouteOwner
// (one Set + Reconcile), reconciles again with nothing to do (the cost of
// a periodic resync), removes them, and reports routes/s next to
// `ip -batch` adding the same routes.
func BenchmarkRouteOwner10k(b *testing.B) {
	ctx := context.Background()
	n := nettest.NewNetns(b, "tby-br")
	h := n.Handle()
	veth := &nl.Veth{LinkAttrs: nl.LinkAttrs{Name: "eth0", TxQLen: -1}, PeerName: "peer0"}
	if err := h.LinkAdd(veth); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"eth0", "peer0"} {
		if _, err := n.Run(ctx, "ip", "link", "set", name, "up"); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := n.Run(ctx, "ip", "addr", "add", "10.99.0.1/24", "dev", "eth0"); err != nil {
		b.Fatal(err)
	}
	gw := netip.MustParseAddr("10.99.0.2")
	routes := make([]tnl.Route, benchRoutes)
	lines := make([]string, benchRoutes)
	for i := range routes {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}), 32)
		routes[i] = tnl.Route{Dst: dst, NextHops: []tnl.NextHop{{Gateway: gw}}}
		lines[i] = "route add " + dst.String() + " via " + gw.String() + " proto 116"
	}
	kh, err := tnl.NewKernelHandle(n.Path)
	if err != nil {
		b.Fatal(err)
	}
	defer kh.Close()
	o, err := tnl.NewRouteOwner(kh)
	if err != nil {
		b.Fatal(err)
	}
	var add, del, batch, noop time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := o.Set("bench", routes); err != nil {
			b.Fatal(err)
		}
		res, err := o.Reconcile(ctx)
		if err != nil || res.Added != benchRoutes {
			b.Fatalf("reconcile: %+v %v", res, err)
		}
		t1 := time.Now()
		add += t1.Sub(t0)
		if res, err := o.Reconcile(ctx); err != nil || res != (tnl.ReconcileResult{}) {
			b.Fatalf("no-op reconcile: %+v %v", res, err)
		}
		noop += time.Since(t1)
		t1 = time.Now()
		if err := o.Set("bench", nil); err != nil {
			b.Fatal(err)
		}
		if res, err := o.Reconcile(ctx); err != nil || res.Deleted != benchRoutes {
			b.Fatalf("reconcile delete: %+v %v", res, err)
		}
		t2 := time.Now()
		del += t2.Sub(t1)
		batch += runIPBatch(b, n.Name, lines)
		if _, err := n.Run(ctx, "ip", "route", "flush", "proto", "116"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	total := float64(b.N * benchRoutes)
	b.ReportMetric(total/add.Seconds(), "routes/s")
	b.ReportMetric(total/del.Seconds(), "deletes/s")
	b.ReportMetric(total/batch.Seconds(), "ipbatch-routes/s")
	b.ReportMetric(float64(noop.Milliseconds())/float64(b.N), "noop-reconcile-ms")
}
