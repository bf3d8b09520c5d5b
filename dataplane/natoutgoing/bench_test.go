package natoutgoing_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/tabbynet/tabby/dataplane/natoutgoing"
	"github.com/tabbynet/tabby/ipam"
)

func benchPools(n int) []ipam.IPPool {
	pools := make([]ipam.IPPool, n)
	for i := range pools {
		pools[i] = ipam.IPPool{Name: fmt.Sprintf("p%d", i), CIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24),
			NATOutgoing: i%2 == 0}
	}
	return pools
}

// BenchmarkApply compares, on the fakes with 256 pools, a resync with
// nothing changed and a one-pool natOutgoing flip against the pure Render
// they both start with.
func BenchmarkApply(b *testing.B) {
	ctx := context.Background()
	pools := benchPools(256)
	b.Run("render", func(b *testing.B) {
		for b.Loop() {
			if _, err := natoutgoing.Render(natoutgoing.Config{}, pools); err != nil {
				b.Fatal(err)
			}
		}
	})
	setup := func(b *testing.B) *natoutgoing.Applier {
		f := newFakes()
		a := f.applier(b, natoutgoing.Config{})
		if err := a.Apply(ctx, pools); err != nil {
			b.Fatal(err)
		}
		return a
	}
	b.Run("unchanged", func(b *testing.B) {
		a := setup(b)
		for b.Loop() {
			if err := a.Apply(ctx, pools); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("flip-one-pool", func(b *testing.B) {
		a := setup(b)
		p := append([]ipam.IPPool(nil), pools...)
		for b.Loop() {
			p[1].NATOutgoing = !p[1].NATOutgoing
			if err := a.Apply(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
