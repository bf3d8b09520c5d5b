package ipsets

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// BenchmarkKernel compares, in one run and one netns, filling a new set
// (create + members) three ways:
//   - Apply/batched: a fresh IPSets over the KernelHandle (many members per
//     netlink message);
//   - Apply/per-entry: the same over its plain *netlink.Handle (one
//     message and ACK per member, the peer);
//   - IpsetRestore: `ipset restore` of the same create + add lines from a
//     file (the ipset binary's own batched netlink writes);
//
// for a 10,000-member hash:ip set and a 100,000-member hash:ip,port,ip set
// (services/iptables' hairpin set for 10,000 services × 10 endpoints), and
// OneMember: one member added to the hash:ip set, or removed, and applied.
func BenchmarkKernel(b *testing.B) {
	h, n := kernelHandle(b)
	hairpin := make([]Member, 100_000)
	for i := range hairpin {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		hairpin[i] = IPPortIP(a, TCP, uint16(8000+i%10), a)
	}
	b.Run("hash:ip/10000", func(b *testing.B) {
		benchFill(b, h, n, SetSpec{Name: "tabby-bench", Type: HashIP, Family: IPv4}, ips(10_000, "10.0.0.1"))
	})
	b.Run("hash:ip,port,ip/100000", func(b *testing.B) {
		benchFill(b, h, n, SetSpec{Name: "tabby-bench", Type: HashIPPortIP, Family: IPv4}, hairpin)
	})
	b.Run("hash:ip/10000/OneMember", func(b *testing.B) {
		ctx := context.Background()
		spec := SetSpec{Name: "tabby-bench", Type: HashIP, Family: IPv4}
		_ = h.IpsetDestroy(spec.Name)
		s := New(h)
		require.NoError(b, s.SetMembers(spec, ips(10_000, "10.0.0.1")))
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
		_ = h.IpsetDestroy(spec.Name)
	})
}

func benchFill(b *testing.B, h *KernelHandle, n *nettest.Netns, spec SetSpec, members []Member) {
	ctx := context.Background()
	apply := func(h Handle) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				_ = h.IpsetDestroy(spec.Name)
				s := New(h)
				require.NoError(b, s.SetMembers(spec, members))
				b.StartTimer()
				require.NoError(b, s.Apply(ctx))
			}
			b.ReportMetric(float64(len(members)), "members")
		}
	}
	b.Run("Apply/batched", apply(h))
	b.Run("Apply/per-entry", apply(h.Handle))
	b.Run("IpsetRestore", func(b *testing.B) {
		var sb strings.Builder
		fmt.Fprintf(&sb, "create %s %s family %s maxelem %d\n", spec.Name, spec.Type, spec.Family, maxElemFor(len(members)))
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
