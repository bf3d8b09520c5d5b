package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPoolValidation(t *testing.T) {
	tests := []struct {
		name string
		pool IPPool
		err  error
		want string
	}{
		{"v4 default block", IPPool{Name: "p", CIDR: pfx("10.0.0.0/16")}, nil, ""},
		{"v6 default block", IPPool{Name: "p", CIDR: pfx("fd00::/64")}, nil, ""},
		{"host bits", IPPool{Name: "p", CIDR: pfx("10.0.0.1/16")}, ErrInvalid, "host bits"},
		{"no cidr", IPPool{Name: "p"}, ErrInvalid, "no CIDR"},
		{"no name", IPPool{CIDR: pfx("10.0.0.0/16")}, ErrInvalid, "empty name"},
		{"block too small v4", IPPool{Name: "p", CIDR: pfx("10.0.0.0/16"), BlockSize: 19}, ErrInvalid, "outside 20-32"},
		{"block too big v6", IPPool{Name: "p", CIDR: pfx("fd00::/64"), BlockSize: 112}, ErrInvalid, "outside 116-128"},
		{"block larger than pool", IPPool{Name: "p", CIDR: pfx("10.0.0.0/28"), BlockSize: 26}, ErrInvalid, "larger than the pool"},
		{"link local v4", IPPool{Name: "p", CIDR: pfx("169.254.0.0/16")}, ErrInvalid, "link-local"},
		{"link local v6", IPPool{Name: "p", CIDR: pfx("fe80::/64")}, ErrInvalid, "link-local"},
		{"bad selector", IPPool{Name: "p", CIDR: pfx("10.0.0.0/16"), NodeSelector: "a =="}, ErrInvalid, "nodeSelector"},
		{"ipip and vxlan", IPPool{Name: "p", CIDR: pfx("10.0.0.0/16"), IPIPMode: EncapAlways, VXLANMode: EncapAlways}, ErrInvalid, "both"},
		{"ipip on v6", IPPool{Name: "p", CIDR: pfx("fd00::/64"), IPIPMode: EncapAlways}, ErrInvalid, "IPv4 only"},
		{"bad mode", IPPool{Name: "p", CIDR: pfx("10.0.0.0/16"), VXLANMode: "Sometimes"}, ErrInvalid, "unknown encapsulation"},
		{"bad use", IPPool{Name: "p", CIDR: pfx("10.0.0.0/16"), AllowedUses: []Use{"LoadBalancer"}}, ErrInvalid, "allowed use"},
		{"slash in name", IPPool{Name: "a/b", CIDR: pfx("10.0.0.0/16")}, ErrInvalid, "without '/'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			onEveryBackend(t, func(t *testing.T, e *env) {
				p, err := e.ipam.CreatePool(e.ctx, tc.pool)
				if tc.err != nil {
					require.ErrorIs(t, err, tc.err)
					assert.Contains(t, err.Error(), tc.want)
					pools, err := e.ipam.Pools(e.ctx)
					require.NoError(t, err)
					assert.Empty(t, pools, "nothing half-written")
					return
				}
				require.NoError(t, err)
				assert.NotZero(t, p.BlockSize)
				assert.Equal(t, EncapNever, p.VXLANMode)
				assert.Equal(t, []Use{UseWorkload, UseTunnel}, p.AllowedUses)
			})
		})
	}
}

func TestPoolOverlapUpdateDelete(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("a", "10.0.0.0/16", 26)
		_, err := e.ipam.CreatePool(e.ctx, IPPool{Name: "b", CIDR: pfx("10.0.128.0/17")})
		require.ErrorIs(t, err, ErrOverlap)
		_, err = e.ipam.CreatePool(e.ctx, IPPool{Name: "a", CIDR: pfx("10.1.0.0/16")})
		require.ErrorIs(t, err, ErrInvalid)

		_, err = e.ipam.UpdatePool(e.ctx, IPPool{Name: "a", CIDR: pfx("10.0.0.0/16"), BlockSize: 28})
		require.ErrorIs(t, err, ErrInvalid, "block size is immutable")
		p, err := e.ipam.UpdatePool(e.ctx, IPPool{Name: "a", CIDR: pfx("10.0.0.0/16"), BlockSize: 26, NATOutgoing: true, NodeSelector: "zone  !=  'x'"})
		require.NoError(t, err)
		assert.Equal(t, `zone != "x"`, p.NodeSelector, "selector stored in canonical form")
		_, err = e.ipam.UpdatePool(e.ctx, IPPool{Name: "nope", CIDR: pfx("10.9.0.0/16")})
		require.ErrorIs(t, err, ErrNotFound)

		e.mustAssign4("h1", "n1")
		require.ErrorIs(t, e.ipam.DeletePool(e.ctx, "a"), ErrPoolInUse)
		_, err = e.ipam.ReleaseByHandle(e.ctx, "h1")
		require.NoError(t, err)
		_, err = e.ipam.ReleaseNode(e.ctx, "n1")
		require.NoError(t, err)
		require.NoError(t, e.ipam.DeletePool(e.ctx, "a"))
		require.ErrorIs(t, e.ipam.DeletePool(e.ctx, "a"), ErrNotFound)
	})
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  IPAMConfig
		ok   bool
	}{
		{"default", DefaultConfig(), true},
		{"strict", IPAMConfig{StrictAffinity: true, AutoAllocateBlocks: true}, true},
		{"strict without auto", IPAMConfig{StrictAffinity: true}, true},
		{"neither", IPAMConfig{}, false},
		{"limit without strict (Calico accepts it)", IPAMConfig{AutoAllocateBlocks: true, MaxBlocksPerHost: 3}, true},
		{"limit with strict", IPAMConfig{AutoAllocateBlocks: true, StrictAffinity: true, MaxBlocksPerHost: 3}, true},
		{"negative limit", IPAMConfig{AutoAllocateBlocks: true, StrictAffinity: true, MaxBlocksPerHost: -1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			onEveryBackend(t, func(t *testing.T, e *env) {
				err := e.ipam.SetConfig(e.ctx, tc.cfg)
				if tc.ok {
					require.NoError(t, err)
					got, err := e.ipam.Config(e.ctx)
					require.NoError(t, err)
					assert.Equal(t, tc.cfg, got)
				} else {
					require.ErrorIs(t, err, ErrInvalid)
				}
			})
		})
	}
}

func TestAssignClaimsAffineBlock(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 28)
		a := e.mustAssign4("h1", "node-a")
		assert.Equal(t, "p", a.Pool)
		assert.False(t, a.Borrowed)
		assert.Equal(t, "node-a", a.BlockAffinity)
		assert.True(t, a.Block.Contains(a.Addr))
		assert.Equal(t, 28, a.Block.Bits())

		b := e.mustAssign4("h2", "node-a")
		assert.Equal(t, a.Block, b.Block, "second address from the same affine block")
		assert.NotEqual(t, a.Addr, b.Addr)

		blocks, _, err := e.ipam.AffineBlocks(e.ctx, "node-a")
		require.NoError(t, err)
		assert.Equal(t, []netip.Prefix{a.Block}, blocks)

		ips, err := e.ipam.IPsByHandle(e.ctx, "h1")
		require.NoError(t, err)
		assert.Equal(t, []netip.Addr{a.Addr}, ips)
		e.checkClean()
	})
}

func TestNewBlockStartIsSeededByNode(t *testing.T) {
	first := func(node string) netip.Prefix {
		e := newEnv(t)
		e.pool("p", "10.0.0.0/16", 26)
		return e.mustAssign4("h", node).Block
	}
	assert.Equal(t, first("node-a"), first("node-a"), "deterministic per node")
	seen := map[netip.Prefix]bool{}
	for i := range 8 {
		seen[first(fmt.Sprintf("node-%d", i))] = true
	}
	assert.Greater(t, len(seen), 4, "nodes start at different blocks")
}

func TestAffineBlocksFillThenClaim(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 30) // 4 addresses per block
		seen := map[netip.Addr]bool{}
		blocks := map[netip.Prefix]bool{}
		for i := range 10 {
			ip := e.mustAssign4(fmt.Sprintf("h%d", i), "n")
			require.False(t, seen[ip.Addr])
			seen[ip.Addr] = true
			blocks[ip.Block] = true
			assert.False(t, ip.Borrowed)
		}
		assert.Len(t, blocks, 3, "fills each block before claiming the next")
		e.checkClean()
	})
}

// borrowEnv makes a pool of two 4-address blocks, one per node, and fills
// node b's block.
// borrowEnv sets up e: node b's block is full, node a's has room.
func borrowEnv(e *env, cfg IPAMConfig) *env {
	e.config(cfg)
	e.pool("p", "10.0.0.0/29", 30)
	e.mustAssign4("a0", "a")
	for i := range 4 {
		e.mustAssign4(fmt.Sprintf("b%d", i), "b")
	}
	return e
}

func TestBorrowing(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		borrowEnv(e, DefaultConfig())
		ip := e.mustAssign4("b4", "b")
		assert.True(t, ip.Borrowed)
		assert.Equal(t, "a", ip.BlockAffinity)
		borrowed, _, err := e.ipam.BorrowedAddrs(e.ctx, "b")
		require.NoError(t, err)
		assert.Equal(t, []netip.Addr{ip.Addr}, borrowed)
		for i := 5; i < 7; i++ {
			e.mustAssign4(fmt.Sprintf("b%d", i), "b")
		}
		_, err = e.assign4("b7", "b")
		var ae *AllocationError
		require.ErrorAs(t, err, &ae)
		require.ErrorIs(t, err, ErrPoolExhausted)
		assert.Equal(t, []string{"p"}, ae.Pools)
		assert.Equal(t, 4, ae.Family)
		e.checkClean()
	})
}

func TestAllocationFailureReasons(t *testing.T) {
	strict := IPAMConfig{StrictAffinity: true, AutoAllocateBlocks: true}
	t.Run("strict affinity forbids borrowing", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			borrowEnv(e, strict)
			_, err := e.assign4("b4", "b")
			require.ErrorIs(t, err, ErrStrictAffinity)
			assert.Contains(t, err.Error(), "3 free addresses")
		})
	})
	t.Run("block limit", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.config(IPAMConfig{StrictAffinity: true, AutoAllocateBlocks: true, MaxBlocksPerHost: 1})
			e.pool("p", "10.0.0.0/24", 30)
			for i := range 4 {
				e.mustAssign4(fmt.Sprintf("h%d", i), "n")
			}
			_, err := e.assign4("h4", "n")
			require.ErrorIs(t, err, ErrBlockLimit)
		})
	})
	t.Run("request block limit without strict stops too (Calico does not borrow at the limit)", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.pool("p", "10.0.0.0/24", 30)
			e.mustAssign4("other", "m")
			for i := range 4 {
				_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: fmt.Sprintf("h%d", i), Node: "n", Num4: 1, MaxBlocksPerHost: 1})
				require.NoError(t, err)
			}
			_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h4", Node: "n", Num4: 1, MaxBlocksPerHost: 1})
			require.ErrorIs(t, err, ErrBlockLimit)
			e.checkClean()
		})
	})
	t.Run("auto allocate off", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.config(IPAMConfig{StrictAffinity: true})
			e.pool("p", "10.0.0.0/24", 30)
			_, err := e.assign4("h", "n")
			require.ErrorIs(t, err, ErrBlockLimit)
		})
	})
	t.Run("strict and everything full", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.config(strict)
			e.pool("p", "10.0.0.0/30", 30)
			for i := range 4 {
				e.mustAssign4(fmt.Sprintf("h%d", i), "n")
			}
			_, err := e.assign4("x", "m")
			require.ErrorIs(t, err, ErrPoolExhausted)
		})
	})
	t.Run("no pool matches the node", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.pool("p", "10.0.0.0/24", 28, func(p *IPPool) { p.NodeSelector = `zone == "a"` })
			_, err := e.assign4("h", "n")
			require.ErrorIs(t, err, ErrNoMatchingPool)
			require.NoError(t, e.ipam.SetNodeLabels(e.ctx, "n", map[string]string{"zone": "a"}))
			e.mustAssign4("h", "n")
		})
	})
	t.Run("no pool of the family", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.pool("p", "10.0.0.0/24", 28)
			_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num6: 1})
			require.ErrorIs(t, err, ErrNoMatchingPool)
		})
	})
	t.Run("disabled pool", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.pool("p", "10.0.0.0/24", 28, func(p *IPPool) { p.Disabled = true })
			_, err := e.assign4("h", "n")
			require.ErrorIs(t, err, ErrNoMatchingPool)
		})
	})
	t.Run("use not allowed", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.pool("p", "10.0.0.0/24", 28, func(p *IPPool) { p.AllowedUses = []Use{UseWorkload} })
			_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num4: 1, Use: UseTunnel})
			require.ErrorIs(t, err, ErrNoMatchingPool)
		})
	})
}

func TestBadRequests(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 28)
		for name, args := range map[string]AssignArgs{
			"no handle":     {Node: "n", Num4: 1},
			"no node":       {Handle: "h", Num4: 1},
			"nothing asked": {Handle: "h", Node: "n"},
			"negative":      {Handle: "h", Node: "n", Num4: -1, Num6: 2},
			"bad use":       {Handle: "h", Node: "n", Num4: 1, Use: "Other"},
		} {
			_, err := e.ipam.Assign(e.ctx, args)
			require.ErrorIs(t, err, ErrInvalid, name)
		}
		_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num4: 1, IPv4Pools: []string{"nope"}})
		require.ErrorIs(t, err, ErrUnknownPool)
		_, err = e.ipam.Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num6: 1, IPv6Pools: []string{"p"}})
		require.ErrorIs(t, err, ErrInvalid)
		r, err := e.ipam.Check(e.ctx, CheckOptions{})
		require.NoError(t, err)
		assert.Zero(t, r.Blocks, "nothing half-written")
	})
}

func TestPoolChoice(t *testing.T) {
	t.Run("priority then name", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.pool("a", "10.1.0.0/24", 28)
			e.pool("b", "10.2.0.0/24", 28, func(p *IPPool) { p.Priority = 10 })
			assert.Equal(t, "b", e.mustAssign4("h1", "n").Pool)
			e2 := newEnv(t)
			e2.pool("z", "10.1.0.0/24", 28)
			e2.pool("y", "10.2.0.0/24", 28)
			assert.Equal(t, "y", e2.mustAssign4("h1", "n").Pool)
		})
	})
	t.Run("requested pools by name or CIDR beat selectors", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.pool("default", "10.1.0.0/24", 28)
			e.pool("special", "10.2.0.0/24", 28, func(p *IPPool) { p.NodeSelector = "has(never)" })
			for i, ref := range []string{"special", "10.2.0.0/24"} {
				r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: fmt.Sprint("h-", i), Node: "n", Num4: 1, IPv4Pools: []string{ref}})
				require.NoError(t, err)
				assert.Equal(t, "special", r.IPv4[0].Pool)
			}
			assert.Equal(t, "default", e.mustAssign4("h", "n").Pool)
		})
	})
	t.Run("affine blocks of other pools are not used", func(t *testing.T) {
		onEveryBackend(t, func(t *testing.T, e *env) {
			e.pool("a", "10.1.0.0/24", 28)
			e.pool("b", "10.2.0.0/24", 28)
			r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h1", Node: "n", Num4: 1, IPv4Pools: []string{"b"}})
			require.NoError(t, err)
			assert.Equal(t, "b", r.IPv4[0].Pool)
			r, err = e.ipam.Assign(e.ctx, AssignArgs{Handle: "h2", Node: "n", Num4: 1, IPv4Pools: []string{"a"}})
			require.NoError(t, err)
			assert.Equal(t, "a", r.IPv4[0].Pool)
		})
	})
}

func TestDualStack(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("v4", "10.0.0.0/24", 28)
		e.pool("v6", "fd00::/124", 124)
		r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num4: 1, Num6: 1, Namespace: "ns", Pod: "pod"})
		require.NoError(t, err)
		require.Len(t, r.IPv4, 1)
		require.Len(t, r.IPv6, 1)
		assert.True(t, r.IPv4[0].Addr.Is4())
		assert.True(t, r.IPv6[0].Addr.Is6())
		assert.Equal(t, 128, r.IPv6[0].HostPrefix().Bits())
		info, err := e.ipam.Lookup(e.ctx, r.IPv6[0].Addr)
		require.NoError(t, err)
		assert.True(t, info.Allocated)
		assert.Equal(t, "pod", info.Attribute.Pod)
		assert.Equal(t, "ns", info.Attribute.Namespace)

		// All or nothing: the IPv6 pool is full, so the IPv4 address is given back.
		for i := range 15 {
			_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: fmt.Sprintf("f%d", i), Node: "n", Num6: 1})
			require.NoError(t, err)
		}
		before, err := e.ipam.Usage(e.ctx)
		require.NoError(t, err)
		_, err = e.ipam.Assign(e.ctx, AssignArgs{Handle: "x", Node: "n", Num4: 1, Num6: 1})
		require.ErrorIs(t, err, ErrPoolExhausted)
		after, err := e.ipam.Usage(e.ctx)
		require.NoError(t, err)
		assert.Equal(t, before.Pools, after.Pools)
		ips, err := e.ipam.IPsByHandle(e.ctx, "x")
		require.NoError(t, err)
		assert.Empty(t, ips)
		e.checkClean()
	})
}

func TestReservations(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/28", 30)
		require.NoError(t, e.ipam.SetReservation(e.ctx, IPReservation{Name: "r", CIDRs: []netip.Prefix{pfx("10.0.0.0/30"), pfx("10.0.0.5/32")}}))
		require.ErrorIs(t, e.ipam.SetReservation(e.ctx, IPReservation{Name: "bad", CIDRs: []netip.Prefix{pfx("10.0.0.1/30")}}), ErrInvalid)
		got := map[netip.Addr]bool{}
		for i := range 11 {
			ip, err := e.assign4(fmt.Sprintf("h%d", i), "n")
			require.NoError(t, err, i)
			got[ip.Addr] = true
		}
		assert.Len(t, got, 11)
		for _, a := range []string{"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5"} {
			assert.False(t, got[addr(a)], a)
		}
		_, err := e.assign4("full", "n")
		require.ErrorIs(t, err, ErrPoolExhausted)
		require.NoError(t, e.ipam.DeleteReservation(e.ctx, "r"))
		require.ErrorIs(t, e.ipam.DeleteReservation(e.ctx, "r"), ErrNotFound)
		e.mustAssign4("after", "n")
	})
}

func TestAssignIP(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 28)
		ips, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.20")}, Handle: "h1", Node: "a"})
		require.NoError(t, err)
		require.Len(t, ips, 1)
		assert.Equal(t, pfx("10.0.0.16/28"), ips[0].Block)
		assert.False(t, ips[0].Borrowed, "the block is claimed for the node")

		_, err = e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.20")}, Handle: "h2", Node: "a"})
		require.ErrorIs(t, err, ErrAddressInUse)
		_, err = e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.9.0.1")}, Handle: "h2", Node: "a"})
		require.ErrorIs(t, err, ErrNotInPool)

		// Another node may take an address in a's block (it is borrowed) ...
		ips, err = e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.21")}, Handle: "h3", Node: "b"})
		require.NoError(t, err)
		assert.True(t, ips[0].Borrowed)

		// ... but not under strict affinity.
		e.config(IPAMConfig{StrictAffinity: true, AutoAllocateBlocks: true})
		_, err = e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.22")}, Handle: "h4", Node: "b"})
		require.ErrorIs(t, err, ErrStrictAffinity)

		// A taken address in a full block is in use too.
		e2 := newEnv(t)
		e2.pool("small", "10.5.0.0/30", 30)
		for i := range 4 {
			e2.mustAssign4(fmt.Sprint("s", i), "a")
		}
		_, err = e2.ipam.AssignIP(e2.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.5.0.1")}, Handle: "x", Node: "a"})
		require.ErrorIs(t, err, ErrAddressInUse)

		// All or nothing: the second address is taken, so the first is released.
		_, err = e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.40"), addr("10.0.0.20")}, Handle: "h5", Node: "a"})
		require.ErrorIs(t, err, ErrAddressInUse)
		info, err := e.ipam.Lookup(e.ctx, addr("10.0.0.40"))
		require.NoError(t, err)
		assert.False(t, info.Allocated)
		e.checkClean()
	})
}

func TestRelease(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 28)
		e.pool("p6", "fd00::/120", 124)
		r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num4: 2, Num6: 1})
		require.NoError(t, err)
		other := e.mustAssign4("o", "n")

		got, err := e.ipam.ReleaseByHandle(e.ctx, "h")
		require.NoError(t, err)
		assert.Len(t, got, 3)
		got, err = e.ipam.ReleaseByHandle(e.ctx, "h")
		require.NoError(t, err, "idempotent")
		assert.Empty(t, got)
		_, err = e.ipam.ReleaseByHandle(e.ctx, "never-existed")
		require.NoError(t, err)
		for _, ip := range r.All() {
			info, err := e.ipam.Lookup(e.ctx, ip.Addr)
			require.NoError(t, err)
			assert.False(t, info.Allocated)
		}

		got, err = e.ipam.ReleaseIPs(e.ctx, other.Addr, addr("10.0.0.200"), addr("192.168.0.1"))
		require.NoError(t, err)
		assert.Equal(t, []netip.Addr{other.Addr}, got)
		ips, err := e.ipam.IPsByHandle(e.ctx, "o")
		require.NoError(t, err)
		assert.Empty(t, ips)
		e.checkClean()

		// A released address is reused last.
		first := e.mustAssign4("x", "n")
		assert.NotEqual(t, other.Addr, first.Addr)
	})
}

func TestEmptyBlockRelease(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 30)
		var handles []string
		for i := range 9 { // three blocks
			h := fmt.Sprintf("h%d", i)
			e.mustAssign4(h, "n")
			handles = append(handles, h)
		}
		for _, h := range handles {
			_, err := e.ipam.ReleaseByHandle(e.ctx, h)
			require.NoError(t, err)
		}
		rel, err := e.ipam.ReleaseEmptyBlocks(e.ctx, "n")
		require.NoError(t, err)
		assert.Empty(t, rel, "within the grace period")

		e.clock.Advance(DefaultEmptyBlockGracePeriod)
		rel, err = e.ipam.ReleaseEmptyBlocks(e.ctx, "")
		require.NoError(t, err)
		assert.Len(t, rel, 2, "the node's last block is kept")
		blocks, _, err := e.ipam.AffineBlocks(e.ctx, "n")
		require.NoError(t, err)
		assert.Len(t, blocks, 1)

		e.config(IPAMConfig{AutoAllocateBlocks: true, ReleaseEmptyBlocksAtOnce: true, ReleaseLastBlock: true})
		rel, err = e.ipam.ReleaseEmptyBlocks(e.ctx, "n")
		require.NoError(t, err)
		assert.Len(t, rel, 1)
		e.checkClean()
		u, err := e.ipam.Usage(e.ctx)
		require.NoError(t, err)
		assert.Empty(t, u.Blocks)
	})
}

func TestReleaseNode(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 30)
		for i := range 5 { // two blocks, the second with one address
			e.mustAssign4(fmt.Sprintf("h%d", i), "gone")
		}
		for i := range 4 {
			_, err := e.ipam.ReleaseByHandle(e.ctx, fmt.Sprintf("h%d", i))
			require.NoError(t, err)
		}
		rel, err := e.ipam.ReleaseNode(e.ctx, "gone")
		require.NoError(t, err)
		assert.Len(t, rel, 2)
		u, err := e.ipam.Usage(e.ctx)
		require.NoError(t, err)
		require.Len(t, u.Blocks, 1, "the empty block is deleted, the used one kept")
		assert.Equal(t, "", u.Blocks[0].Affinity)
		assert.Equal(t, 1, u.Blocks[0].Used)
		e.checkClean()
		// The last address goes, and with it the unaffine block.
		_, err = e.ipam.ReleaseByHandle(e.ctx, "h4")
		require.NoError(t, err)
		u, err = e.ipam.Usage(e.ctx)
		require.NoError(t, err)
		assert.Empty(t, u.Blocks)
	})
}

func TestBorrowWithinLabel(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.config(IPAMConfig{AutoAllocateBlocks: true, BorrowWithinLabel: "zone"})
		e.pool("p", "10.0.0.0/28", 30) // four blocks
		for n, z := range map[string]string{"a1": "a", "a2": "a", "b1": "b", "b2": "b"} {
			require.NoError(t, e.ipam.SetNodeLabels(e.ctx, n, map[string]string{"zone": z}))
			e.mustAssign4("first-"+n, n)
		}
		for i := range 3 {
			e.mustAssign4(fmt.Sprintf("a1-%d", i), "a1")
		}
		ip := e.mustAssign4("a1-borrow", "a1")
		assert.True(t, ip.Borrowed)
		assert.Equal(t, "a2", ip.BlockAffinity, "borrowed within the zone")
		for i := range 2 {
			e.mustAssign4(fmt.Sprintf("a1-more-%d", i), "a1")
		}
		_, err := e.assign4("a1-none", "a1")
		require.ErrorIs(t, err, ErrPoolExhausted, "zone b's free addresses are off limits")
		assert.Contains(t, err.Error(), `same "zone" label`)
	})
}

func TestUsage(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		borrowEnv(e, DefaultConfig())
		e.mustAssign4("b4", "b") // borrowed from a
		u, err := e.ipam.Usage(e.ctx)
		require.NoError(t, err)
		require.Len(t, u.Pools, 1)
		assert.Equal(t, PoolUsage{Name: "p", CIDR: pfx("10.0.0.0/29"), Size: 8, Blocks: 2, InBlocks: 8, Used: 6, Free: 2}, u.Pools[0])
		require.Len(t, u.Nodes, 2)
		assert.Equal(t, "a", u.Nodes[0].Node)
		assert.Equal(t, 2, u.Nodes[0].Used)
		assert.Equal(t, 0, u.Nodes[0].Borrowed)
		assert.Equal(t, 4, u.Nodes[1].Used)
		assert.Equal(t, 1, u.Nodes[1].Borrowed)
		require.Len(t, u.Blocks, 2)
		assert.Equal(t, 1, u.Borrowed())
	})
}

func TestAllocationErrorMessage(t *testing.T) {
	err := &AllocationError{Family: 4, Node: "n", Pools: []string{"a", "b"}, Reason: ErrBlockLimit, Detail: "x"}
	assert.Equal(t, `assign IPv4 for node "n": per-node block limit reached (pools considered: a, b): x`, err.Error())
	assert.True(t, errors.Is(err, ErrBlockLimit))
}

// A node skips blocks it found full in the last second (cache.recentlyFull) and
// reuses its affinity listing from then (nodeAffinities). An address freed
// by another process in such a block is therefore reused once the second
// has passed, and at once when the node would otherwise stop at its block
// limit; a release through the same IPAM is seen at once.
func TestRecentlyFullBlocks(t *testing.T) {
	for _, tc := range []struct {
		name          string
		limit         int
		sameIPAM      bool
		advance       time.Duration
		wantFreedAddr bool
	}{
		{"other process, within the second: a new block", 10, false, 0, false},
		{"other process, after the second: the freed address", 10, false, fullBlockTTL, true},
		{"other process, at the block limit: swept afresh", 2, false, 0, true},
		{"same IPAM: at once", 10, true, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onEveryBackend(t, func(t *testing.T, e *env) {
				e.pool("p", "10.0.0.0/24", 28) // 16 addresses a block
				e.config(IPAMConfig{StrictAffinity: true, AutoAllocateBlocks: true, MaxBlocksPerHost: tc.limit})
				var first []AssignedIP
				for i := range 17 { // fills block 1, claims block 2
					first = append(first, e.mustAssign4(fmt.Sprintf("h%d", i), "n"))
				}
				block1 := first[0].Block
				for i := 17; i < 32; i++ { // fills block 2
					require.Equal(t, first[16].Block, e.mustAssign4(fmt.Sprintf("h%d", i), "n").Block)
				}
				releaser := mustNew(t, e.s, WithClock(e.clock.Now)) // another process
				if tc.sameIPAM {
					releaser = e.ipam
				}
				freed := first[3].Addr
				_, err := releaser.ReleaseIPs(e.ctx, freed)
				require.NoError(t, err)
				e.clock.Advance(tc.advance)

				got := e.mustAssign4("next", "n")
				if tc.wantFreedAddr {
					assert.Equal(t, freed, got.Addr)
				} else {
					assert.NotEqual(t, block1, got.Block)
				}
			})
		})
	}
}

// Claims work from a cache of which blocks exist (cache.findFree). A block
// another process deleted after the cache saw it is found again when the
// cache says the pool is full.
func TestClaimAfterAnotherProcessFreedABlock(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/27", 28) // two blocks
		e.config(IPAMConfig{StrictAffinity: true, AutoAllocateBlocks: true, MaxBlocksPerHost: 2})
		other := mustNew(t, e.s, WithClock(e.clock.Now))
		b, err := other.Assign(e.ctx, AssignArgs{Handle: "hb", Node: "b", Num4: 1})
		require.NoError(t, err)
		y := b.IPv4[0].Block
		x := e.mustAssign4("ha", "a").Block // this IPAM's cache now holds both
		require.NotEqual(t, x, y)

		_, err = other.ReleaseByHandle(e.ctx, "hb")
		require.NoError(t, err)
		released, err := other.ReleaseNode(e.ctx, "b")
		require.NoError(t, err)
		require.Equal(t, []netip.Prefix{y}, released, "the block is gone")

		got := e.mustAssign4("hc", "c")
		assert.Equal(t, y, got.Block)
	})
}
