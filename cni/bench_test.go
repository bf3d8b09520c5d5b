package cni_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// Benchmarks through libcni and the real binaries, tabby against the
// upstream plugins in the same run (compare ratios; the machine is shared).
//
//	go test -run '^$' -bench . -benchtime 200x ./cni/
//
// BenchmarkPods: b.N pods set up one after the other (ADD), then torn down
// (DEL); p50/p99 of each. BenchmarkIPAMOnly: b.N ADDs of the IPAM plugin
// binaries alone.

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

func BenchmarkPods(b *testing.B) {
	for _, tc := range []struct {
		name string
		list func(l *lab) *libcni.NetworkConfigList
	}{
		{"tabby", func(l *lab) *libcni.NetworkConfigList {
			return l.tabbyList("bench", map[string]any{"pools": []any{map[string]any{"name": "bench", "cidr": "10.91.0.0/16"}}}, nil)
		}},
		{"ptp+host-local", func(l *lab) *libcni.NetworkConfigList {
			return l.list(map[string]any{"cniVersion": "1.1.0", "name": "bench", "plugins": []any{map[string]any{
				"type": "ptp",
				"ipam": map[string]any{"type": "host-local", "dataDir": filepath.Join(l.t.TempDir(), "hl"),
					"ranges": []any{[]any{map[string]any{"subnet": "10.90.0.0/16"}}},
					"routes": []any{map[string]any{"dst": "0.0.0.0/0"}}},
			}}})
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := newLab(b)
			list := tc.list(l)
			pods := make([]*nettest.Netns, b.N)
			for i := range pods {
				pods[i] = nettest.NewNetns(b, "cni-bench")
			}
			var adds, dels []time.Duration
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				_, err := l.add(list, rt(fmt.Sprint("b", i), pods[i].Path))
				adds = append(adds, time.Since(start))
				require.NoError(b, err)
			}
			for i := range pods {
				start := time.Now()
				require.NoError(b, l.del(list, rt(fmt.Sprint("b", i), pods[i].Path)))
				dels = append(dels, time.Since(start))
			}
			b.StopTimer()
			report(b, "add", adds)
			report(b, "del", dels)
		})
	}
}

func BenchmarkIPAMOnly(b *testing.B) {
	for _, tc := range []struct {
		name string
		ipam func(dir string) map[string]any
	}{
		{"tabby-ipam", func(dir string) map[string]any {
			return map[string]any{"type": "tabby-ipam", "datastore_path": filepath.Join(dir, "ipam.db"), "nodename": "node1",
				"pools": []any{map[string]any{"name": "bench", "cidr": "10.92.0.0/16"}}}
		}},
		{"host-local", func(dir string) map[string]any {
			return map[string]any{"type": "host-local", "dataDir": filepath.Join(dir, "hl"),
				"ranges": []any{[]any{map[string]any{"subnet": "10.92.0.0/16"}}}}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := newLab(b)
			pod := nettest.NewNetns(b, "cni-bench")
			ip := tc.ipam(b.TempDir())
			conf := l.list(map[string]any{"cniVersion": "1.1.0", "name": "ipambench", "plugins": []any{map[string]any{
				"type": "ptp", "ipam": ip}}})
			stdin, err := libcni.InjectConf(conf.Plugins[0], map[string]any{"name": "ipambench", "cniVersion": "1.1.0"})
			require.NoError(b, err)
			bin := filepath.Join(l.bin, ip["type"].(string))
			var adds []time.Duration
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				err := l.in(func(ctx context.Context) error {
					_, err := invoke.ExecPluginWithResult(ctx, bin, stdin.Bytes, &invoke.Args{Command: "ADD",
						ContainerID: fmt.Sprint("i", i), NetNS: pod.Path, IfName: "eth0", Path: l.bin}, nil)
					return err
				})
				adds = append(adds, time.Since(start))
				require.NoError(b, err)
			}
			b.StopTimer()
			report(b, "add", adds)
		})
	}
}
