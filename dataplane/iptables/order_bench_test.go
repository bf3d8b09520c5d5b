package iptables

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// cpuSeconds returns the user+system CPU seconds of this process, and
// the user and user+system CPU seconds of its waited-for children (the
// iptables commands Apply ran).
func cpuSeconds(b *testing.B) (self, childUser, children float64) {
	b.Helper()
	var s, c syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &s))
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_CHILDREN, &c))
	sec := func(ns int64) float64 { return time.Duration(ns).Seconds() }
	return sec(s.Utime.Nano() + s.Stime.Nano()), sec(c.Utime.Nano()), sec(c.Utime.Nano() + c.Stime.Nano())
}

// BenchmarkRestoreOrder applies a services-like nat table (10,000 chains
// of ten DNAT rules and a hub jumping to each: orderBenchChains) into a
// fresh netns on each backend, in the sorted order (every declaration,
// then every rule: the peer) and in appendSection's order, with the
// hub's jumps in descending target order ("desc-hub") or shuffled
// ("random-hub"). restore-cpu-s/op is the CPU of the commands Apply ran
// (one iptables-save of an empty table and the iptables-restore), from
// getrusage(RUSAGE_CHILDREN) (restore-user-s/op its user part, where
// the chain list's cost shows); tabby-cpu-s/op is Apply's own.
func BenchmarkRestoreOrder(b *testing.B) {
	ctx := context.Background()
	const n = 10000
	for _, be := range backends {
		for _, random := range []bool{false, true} {
			chains, _ := orderBenchChains(n, random)
			hubOrder := map[bool]string{false: "desc-hub", true: "random-hub"}[random]
			for _, sorted := range []bool{true, false} {
				order := map[bool]string{true: "sorted", false: "ordered"}[sorted]
				b.Run(fmt.Sprintf("%s/%s/%s", be, hubOrder, order), func(b *testing.B) {
					var self, user, children float64
					for b.Loop() {
						b.StopTimer()
						ns := nettest.NewNetns(b, "tbord")
						opts := []Option{WithNetns(ns.Name)}
						if sorted {
							opts = append(opts, withSortedInput())
						}
						ipt, err := New(Config{Family: IPv4, Backend: be}, opts...)
						require.NoError(b, err)
						if _, err := ipt.exec.Run(ctx, Command{Name: binary(IPv4, be, "save")}); err != nil {
							b.Skipf("%s not usable: %v", binary(IPv4, be, "save"), err)
						}
						require.NoError(b, ipt.ReplaceChains(NAT, chains))
						s0, u0, c0 := cpuSeconds(b)
						b.StartTimer()
						require.NoError(b, ipt.Apply(ctx))
						b.StopTimer()
						s1, u1, c1 := cpuSeconds(b)
						self, user, children = self+s1-s0, user+u1-u0, children+c1-c0
						b.StartTimer()
					}
					b.ReportMetric(self/float64(b.N), "tabby-cpu-s/op")
					b.ReportMetric(children/float64(b.N), "restore-cpu-s/op")
					b.ReportMetric(user/float64(b.N), "restore-user-s/op")
					b.ReportMetric(n*11, "rules")
				})
			}
		}
	}
}
