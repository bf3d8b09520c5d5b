package cni_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// Benchmarks through libcni and the real binaries, tabby against the
// upstream plugins in the same run (compare ratios; the machine is shared).
// The contenders take turns inside one loop (who goes first alternates), so
// a load change during the run hits both alike.
//
//	go test -run '^$' -bench Pods        -benchtime 200x  ./cni/
//	go test -run '^$' -bench IPAMOnly    -benchtime 1000x ./cni/
//	go test -run '^$' -bench Start       -benchtime 100x  ./cni/
//	go test -run '^$' -bench VethDelete  -benchtime 50x   ./cni/
//	go test -run '^$' -bench PodChurn    -benchtime 100x  ./cni/
//
// BenchmarkPods: b.N pods per plugin set up (ADD), then torn down (DEL);
// p50/p99 of each and the p50 ratios tabby/upstream. BenchmarkIPAMOnly: b.N
// ADDs then DELs of the IPAM plugin binaries alone. BenchmarkStart: a
// VERSION exec of each binary, the process start a DEL cannot avoid.
// BenchmarkVethDelete: the kernel's part of a DEL, the ways one can remove
// a pod's veth. BenchmarkPodChurn: a pod's whole life as a runtime lives
// it — create its namespace, ADD, DEL, remove the namespace — b.N times
// per plugin in turns, so that the kernel's asynchronous cleanup of one
// namespace (RTNL held, an RCU barrier) slows whatever comes next: what
// DEL leaves to that cleanup is paid here.

func percentile(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return float64(s[min(len(s)-1, int(float64(len(s))*p))].Microseconds()) / 1000
}

func report(b *testing.B, verb string, d []time.Duration) {
	b.ReportMetric(percentile(d, 0.50), verb+"-p50-ms")
	b.ReportMetric(percentile(d, 0.99), verb+"-p99-ms")
}

// contender is one plugin configuration and its timings.
type contender struct {
	name       string
	adds, dels []time.Duration
}

// turns runs f(i, c) for every contender, b.N times, the first contender
// alternating between rounds.
func turns(b *testing.B, cs []*contender, f func(i int, c *contender)) {
	for i := range b.N {
		for k := range cs {
			f(i, cs[(i+k)%len(cs)])
		}
	}
}

func timed(d *[]time.Duration, f func() error) error {
	start := time.Now()
	err := f()
	*d = append(*d, time.Since(start))
	return err
}

func reportRatio(b *testing.B, verb string, num, den []time.Duration) {
	if p := percentile(den, 0.5); p > 0 {
		b.ReportMetric(percentile(num, 0.5)/p, verb+"-p50-ratio")
	}
}

// podLists are the two plugin sets of BenchmarkPods and
// BenchmarkPodChurn, network name: tabby with tabby-ipam (a pool on
// tabbyCIDR) and upstream ptp with host-local (on ptpCIDR).
func podLists(b *testing.B, l *lab, name, tabbyCIDR, ptpCIDR string) map[string]*libcni.NetworkConfigList {
	return map[string]*libcni.NetworkConfigList{
		"tabby": l.tabbyList(name, map[string]any{"pools": []any{map[string]any{"name": name, "cidr": tabbyCIDR}}}, nil),
		"ptp+host-local": l.list(map[string]any{"cniVersion": "1.1.0", "name": name, "plugins": []any{map[string]any{
			"type": "ptp",
			"ipam": map[string]any{"type": "host-local", "dataDir": filepath.Join(b.TempDir(), "hl"),
				"ranges": []any{[]any{map[string]any{"subnet": ptpCIDR}}},
				"routes": []any{map[string]any{"dst": "0.0.0.0/0"}}},
		}}}),
	}
}

func BenchmarkPods(b *testing.B) {
	l := newLab(b)
	lists := podLists(b, l, "bench", "10.91.0.0/16", "10.90.0.0/16")
	cs := []*contender{{name: "tabby"}, {name: "ptp+host-local"}}
	pods := map[*contender][]*nettest.Netns{}
	for _, c := range cs {
		for range b.N {
			pods[c] = append(pods[c], nettest.NewNetns(b, "cni-bench"))
		}
	}
	addThenDel(b, cs, func(i int, c *contender) error {
		_, err := l.add(lists[c.name], rt(fmt.Sprint("b", i), pods[c][i].Path))
		return err
	}, func(i int, c *contender) error {
		return l.del(lists[c.name], rt(fmt.Sprint("b", i), pods[c][i].Path))
	})
}

func BenchmarkPodChurn(b *testing.B) {
	l := newLab(b)
	lists := podLists(b, l, "churn", "10.95.0.0/16", "10.96.0.0/16")
	cs := []*contender{{name: "tabby"}, {name: "ptp+host-local"}}
	cycles := map[*contender][]time.Duration{}
	b.ResetTimer()
	turns(b, cs, func(i int, c *contender) {
		start := time.Now()
		ns, err := nettest.CreateNetns(nettest.UniqueName("cni-churn"))
		require.NoError(b, err)
		r := rt(fmt.Sprint("c", i), ns.Path)
		require.NoError(b, timed(&c.adds, func() error { _, err := l.add(lists[c.name], r); return err }))
		require.NoError(b, timed(&c.dels, func() error { return l.del(lists[c.name], r) }))
		require.NoError(b, ns.Delete())
		cycles[c] = append(cycles[c], time.Since(start))
	})
	b.StopTimer()
	for _, c := range cs {
		report(b, c.name+"-add", c.adds)
		report(b, c.name+"-del", c.dels)
		report(b, c.name+"-cycle", cycles[c])
	}
	reportRatio(b, "add", cs[0].adds, cs[1].adds)
	reportRatio(b, "del", cs[0].dels, cs[1].dels)
	reportRatio(b, "cycle", cycles[cs[0]], cycles[cs[1]])
}

// addThenDel times add for every contender, b.N times in turns, then del
// likewise, and reports each contender's p50 and p99 and the p50 ratios
// of the first contender to the second.
func addThenDel(b *testing.B, cs []*contender, add, del func(i int, c *contender) error) {
	b.ResetTimer()
	turns(b, cs, func(i int, c *contender) {
		require.NoError(b, timed(&c.adds, func() error { return add(i, c) }))
	})
	turns(b, cs, func(i int, c *contender) {
		require.NoError(b, timed(&c.dels, func() error { return del(i, c) }))
	})
	b.StopTimer()
	for _, c := range cs {
		report(b, c.name+"-add", c.adds)
		report(b, c.name+"-del", c.dels)
	}
	reportRatio(b, "add", cs[0].adds, cs[1].adds)
	reportRatio(b, "del", cs[0].dels, cs[1].dels)
}

func BenchmarkIPAMOnly(b *testing.B) {
	l := newLab(b)
	pod := nettest.NewNetns(b, "cni-bench")
	dir := b.TempDir()
	ipams := map[string]map[string]any{
		"tabby-ipam": {"type": "tabby-ipam", "datastore_path": filepath.Join(dir, "ipam.db"), "nodename": "node1",
			"pools": []any{map[string]any{"name": "bench", "cidr": "10.92.0.0/16"}}},
		"host-local": {"type": "host-local", "dataDir": filepath.Join(dir, "hl"),
			"ranges": []any{[]any{map[string]any{"subnet": "10.93.0.0/16"}}}},
	}
	stdin := map[string][]byte{}
	for name, ip := range ipams {
		conf := l.list(map[string]any{"cniVersion": "1.1.0", "name": "ipambench", "plugins": []any{map[string]any{
			"type": "ptp", "ipam": ip}}})
		in, err := libcni.InjectConf(conf.Plugins[0], map[string]any{"name": "ipambench", "cniVersion": "1.1.0"})
		require.NoError(b, err)
		stdin[name] = in.Bytes
	}
	run := func(c *contender, verb string, i int) error {
		return l.in(func(ctx context.Context) error {
			args := &invoke.Args{Command: verb, ContainerID: fmt.Sprint("i", i), NetNS: pod.Path, IfName: "eth0", Path: l.bin}
			bin := filepath.Join(l.bin, c.name)
			if verb == "ADD" {
				_, err := invoke.ExecPluginWithResult(ctx, bin, stdin[c.name], args, nil)
				return err
			}
			return invoke.ExecPluginWithoutResult(ctx, bin, stdin[c.name], args, nil)
		})
	}
	addThenDel(b, []*contender{{name: "tabby-ipam"}, {name: "host-local"}},
		func(i int, c *contender) error { return run(c, "ADD", i) },
		func(i int, c *contender) error { return run(c, "DEL", i) })
}

// BenchmarkStart: process start and exit of each plugin binary (CNI
// VERSION, which reads stdin and prints the supported versions).
func BenchmarkStart(b *testing.B) {
	bin := plugins(b)
	cs := []*contender{{name: "tabby"}, {name: "tabby-ipam"}, {name: "ptp"}, {name: "host-local"}}
	b.ResetTimer()
	turns(b, cs, func(_ int, c *contender) {
		cmd := exec.Command(filepath.Join(bin, c.name))
		cmd.Env = []string{"CNI_COMMAND=VERSION"}
		cmd.Stdin = bytes.NewReader([]byte(`{"cniVersion":"1.1.0"}`))
		require.NoError(b, timed(&c.adds, cmd.Run))
	})
	b.StopTimer()
	for _, c := range cs {
		b.ReportMetric(percentile(c.adds, 0.5), c.name+"-p50-ms")
	}
}

// BenchmarkVethDelete: ways to remove a pod's veth pair once it is set up
// (by netlink.Workloads, as tabby's ADD does), each timed until the
// interface is gone: "host" is TeardownWorkload (RTM_DELLINK of the host
// end from the node namespace), "detach" is tabby's DEL (DetachWorkload:
// timed until it returns, the pair left to the namespace), "pod" deletes the pod end through a socket in
// the pod namespace (what ptp does after entering it), "down-first" sets
// the host end down before deleting it, "addrs-first" removes the pod's
// addresses and the host routes before deleting, and "netns-only" deletes
// no link: it removes the pod namespace (as the runtime does after DEL) and
// waits until the kernel's asynchronous namespace cleanup has removed the
// host end.
func BenchmarkVethDelete(b *testing.B) {
	nettest.RequireRoot(b)
	node := nettest.NewNetns(b, "cni-vd")
	w, err := netlink.NewWorkloads(node.Path)
	require.NoError(b, err)
	b.Cleanup(func() { _ = w.Close() })
	nh := node.Handle()
	hostEnd := func(id string) nl.Link {
		l, err := nh.LinkByName(w.HostIfaceName(id))
		require.NoError(b, err)
		return l
	}
	podEnd := func(pod *nettest.Netns) nl.Link {
		l, err := pod.Handle().LinkByName("eth0")
		require.NoError(b, err)
		return l
	}
	ways := map[string]func(id string, pod *nettest.Netns) error{
		"host":   func(id string, _ *nettest.Netns) error { return w.TeardownWorkload(context.Background(), id) },
		"detach": func(id string, pod *nettest.Netns) error { return w.DetachWorkload(context.Background(), id, pod.Path) },
		"pod":    func(_ string, pod *nettest.Netns) error { return pod.Handle().LinkDel(podEnd(pod)) },
		"down-first": func(id string, _ *nettest.Netns) error {
			l := hostEnd(id)
			if err := nh.LinkSetDown(l); err != nil {
				return err
			}
			return nh.LinkDel(l)
		},
		"addrs-first": func(id string, pod *nettest.Netns) error {
			l, pl := hostEnd(id), podEnd(pod)
			addrs, err := pod.Handle().AddrList(pl, unix.AF_UNSPEC)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if err := pod.Handle().AddrDel(pl, &a); err != nil {
					return err
				}
			}
			routes, err := nh.RouteList(l, unix.AF_UNSPEC)
			if err != nil {
				return err
			}
			for _, r := range routes {
				if err := nh.RouteDel(&r); err != nil {
					return err
				}
			}
			return nh.LinkDel(l)
		},
		"netns-only": func(id string, pod *nettest.Netns) error {
			if err := pod.Delete(); err != nil {
				return err
			}
			for {
				if _, err := nh.LinkByName(w.HostIfaceName(id)); err != nil {
					return nil
				}
				time.Sleep(100 * time.Microsecond)
			}
		},
	}
	var cs []*contender
	for _, name := range []string{"host", "detach", "pod", "down-first", "addrs-first", "netns-only"} {
		cs = append(cs, &contender{name: name})
	}
	// Every pod is set up first, so the deletions run long after their
	// creation, as a DEL does (not in the wake of its RCU work).
	type pod struct {
		id string
		ns *nettest.Netns
	}
	pods := map[*contender][]pod{}
	for k, c := range cs {
		for i := range b.N {
			n := k*b.N + i
			ns, err := nettest.CreateNetns(nettest.UniqueName("cni-vd"))
			require.NoError(b, err)
			b.Cleanup(func() { _ = ns.Delete() })
			id := fmt.Sprintf("bench.vd%d", n)
			_, err = w.SetupWorkload(context.Background(), netlink.WorkloadSpec{ID: id, Netns: ns.Path,
				Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 94, byte(n >> 8), byte(n)})}})
			require.NoError(b, err)
			pods[c] = append(pods[c], pod{id, ns})
		}
	}
	// netns-only goes last, alone: the kernel's namespace cleanup goes on
	// (RTNL, an RCU barrier) after the host end is gone and would slow
	// whichever deletion came next.
	explicit, async := cs[:len(cs)-1], cs[len(cs)-1:]
	b.ResetTimer()
	for _, group := range [][]*contender{explicit, async} {
		turns(b, group, func(i int, c *contender) {
			p := pods[c][i]
			require.NoError(b, timed(&c.dels, func() error { return ways[c.name](p.id, p.ns) }))
		})
	}
	b.StopTimer()
	for _, c := range cs {
		b.ReportMetric(percentile(c.dels, 0.5), c.name+"-p50-ms")
	}
}
