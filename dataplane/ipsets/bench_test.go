package ipsets

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const benchMembers = 10000

// BenchmarkKernel compares, in one run and one netns:
//   - Apply/full: a fresh IPSets creating a 10,000-member hash:ip set over netlink;
//   - Apply/one-member: one member added to it and applied;
//   - IpsetRestore/full: `ipset restore` of the same create + 10,000 adds
//     from a file (the floor: the ipset binary's batched netlink writes).
func BenchmarkKernel(b *testing.B) {
	ctx := context.Background()
	h, n := kernelHandle(b)
	spec := SetSpec{Name: "tabby-bench", Type: HashIP, Family: IPv4}
	members := ips(benchMembers, "10.0.0.1")

	b.Run("Apply/full", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			_ = h.IpsetDestroy(spec.Name)
			s := New(h)
			require.NoError(b, s.SetMembers(spec, members))
			b.StartTimer()
			require.NoError(b, s.Apply(ctx))
		}
		b.ReportMetric(benchMembers, "members")
	})
	b.Run("Apply/one-member", func(b *testing.B) {
		_ = h.IpsetDestroy(spec.Name)
		s := New(h)
		require.NoError(b, s.SetMembers(spec, members))
		require.NoError(b, s.Apply(ctx))
		extra := ips(1, "10.200.0.1")
		i := 0
		for b.Loop() {
			if i%2 == 0 {
				require.NoError(b, s.AddMembers(spec.Name, extra...))
			} else {
				require.NoError(b, s.RemoveMembers(spec.Name, extra...))
			}
			i++
			require.NoError(b, s.Apply(ctx))
		}
	})
	b.Run("IpsetRestore/full", func(b *testing.B) {
		var sb strings.Builder
		fmt.Fprintf(&sb, "create %s hash:ip family inet maxelem %d\n", spec.Name, maxElemFor(benchMembers))
		for _, m := range members {
			fmt.Fprintf(&sb, "add %s %s\n", spec.Name, m)
		}
		file := filepath.Join(b.TempDir(), "restore")
		require.NoError(b, os.WriteFile(file, []byte(sb.String()), 0o600))
		for b.Loop() {
			b.StopTimer()
			_ = h.IpsetDestroy(spec.Name)
			b.StartTimer()
			_, err := n.Run(ctx, "ipset", "restore", "-file", file)
			require.NoError(b, err)
		}
	})
	_ = h.IpsetDestroy(spec.Name)
}
