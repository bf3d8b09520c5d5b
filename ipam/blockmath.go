package ipam

import (
	"encoding/binary"
	"hash/fnv"
	"math/bits"
	"math/rand/v2"
	"net/netip"
)

// u128 is an address as a 128-bit number (IPv4 in the low 32 bits).
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func fromU128(v u128, is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(v.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], v.hi)
	binary.BigEndian.PutUint64(b[8:], v.lo)
	return netip.AddrFrom16(b)
}

// add returns v + (n << shift).
func (v u128) add(n uint64, shift int) u128 {
	var hi, lo uint64
	switch {
	case shift == 0:
		lo = n
	case shift < 64:
		hi, lo = n>>(64-shift), n<<shift
	default:
		hi = n << (shift - 64)
	}
	sum, carry := bits.Add64(v.lo, lo, 0)
	return u128{hi: v.hi + hi + carry, lo: sum}
}

// blockLen is the number of addresses in a block.
func blockLen(block netip.Prefix) int { return 1 << (block.Addr().BitLen() - block.Bits()) }

// addrAt is the address at ordinal i of an aligned block.
func addrAt(block netip.Prefix, i int) netip.Addr {
	return fromU128(toU128(block.Addr()).add(uint64(i), 0), block.Addr().Is4())
}

// ordinal is addr's index inside block (blocks are at most 4096 long and
// aligned, so only the low bits differ).
func ordinal(block netip.Prefix, addr netip.Addr) int {
	return int(toU128(addr).lo - toU128(block.Addr()).lo)
}

// blockFor is the block of the given size that holds addr.
func blockFor(addr netip.Addr, blockSize int) netip.Prefix {
	p, _ := addr.Prefix(blockSize)
	return p
}

// blockCount is the number of blocks in pool, capped at 1<<62 (larger IPv6
// pools have that many candidates, spread over the pool: see
// blockCandidatesSkipping).
func blockCount(pool IPPool) uint64 {
	d := pool.BlockSize - pool.CIDR.Bits()
	if d >= 62 {
		return 1 << 62
	}
	return 1 << d
}

// nodeRand is a random source seeded by the node name, so each node starts
// its search for a free block at its own (stable) place in the pool and
// nodes don't stampede onto the same block.
func nodeRand(node string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(node))
	s := h.Sum64()
	return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
}

// blockCandidates yields the pool's blocks starting at a node-seeded random
// index and wrapping around, stopping after limit blocks.
func blockCandidates(pool IPPool, node string, limit uint64, yield func(netip.Prefix) bool) {
	blockCandidatesSkipping(pool, node, limit, nil, yield)
}

// blockCandidatesSkipping is blockCandidates leaving out, without counting
// them toward limit, the blocks that covered reports wholly inside a
// range (a reservation): the search jumps past the range in one step, so
// a reservation of any size costs one step, not one per block.
//
// A pool of more than 2^62 blocks (an IPv6 pool larger than a /60 in /122
// blocks) has 2^62 candidates spread evenly over it: the first block of
// each of 2^62 equal parts, so that a reservation of the pool's start
// leaves candidates elsewhere. The blocks of the IPv4-mapped range (in an
// IPv6 pool stored before CreatePool refused it) are left out.
func blockCandidatesSkipping(pool IPPool, node string, limit uint64, covered func(netip.Prefix) (netip.Prefix, bool), yield func(netip.Prefix) bool) {
	is4 := pool.CIDR.Addr().Is4()
	base := toU128(pool.CIDR.Addr())
	d := pool.BlockSize - pool.CIDR.Bits()
	stride := max(d-62, 0)                                      // candidate i is block i << stride
	unit := pool.CIDR.Addr().BitLen() - pool.BlockSize + stride // candidate i is at base + i << unit
	n := blockCount(pool)
	// Candidates [gap, gap+gapLen) are mapped; indices at or past gap are
	// shifted over them.
	gap, gapLen := n, uint64(0)
	if stride == 0 && !is4 && pool.CIDR.Bits() < v4Mapped.Bits() && pool.CIDR.Contains(v4Mapped.Addr()) {
		gap = toU128(v4Mapped.Addr()).sub(base).shr(unit).lo
		gapLen = 1 << (pool.BlockSize - v4Mapped.Bits())
		n -= gapLen
	}
	real := func(c uint64) uint64 {
		if c >= gap {
			return c + gapLen
		}
		return c
	}
	start := nodeRand(node).Uint64N(n)
	tried := uint64(0)
	for k := uint64(0); k < n && tried < limit; {
		c := (start + k) % n
		b := netip.PrefixFrom(fromU128(base.add(real(c), unit), is4), pool.BlockSize)
		if covered != nil {
			if r, ok := covered(b); ok {
				// The next candidate after r: the one past r's last
				// address, in candidate order.
				next := n
				if off := lastOf(r).sub(base).shr(unit); off.hi == 0 && off.lo < n+gapLen {
					switch nr := off.lo + 1; {
					case nr <= gap:
						next = nr
					case nr < gap+gapLen:
						next = gap
					default:
						next = nr - gapLen
					}
				}
				k += next - c // > 0: r holds candidate c
				continue
			}
		}
		tried++
		if !yield(b) {
			return
		}
		k++
	}
}

// sub returns v - w (mod 2^128).
func (v u128) sub(w u128) u128 {
	lo, borrow := bits.Sub64(v.lo, w.lo, 0)
	return u128{hi: v.hi - w.hi - borrow, lo: lo}
}

// shr returns v >> s, for 0 <= s < 128.
func (v u128) shr(s int) u128 {
	switch {
	case s == 0:
		return v
	case s < 64:
		return u128{hi: v.hi >> s, lo: v.lo>>s | v.hi<<(64-s)}
	default:
		return u128{lo: v.hi >> (s - 64)}
	}
}

// lastOf is the last address of p as a number.
func lastOf(p netip.Prefix) u128 {
	host := p.Addr().BitLen() - p.Bits()
	v := toU128(p.Masked().Addr())
	switch {
	case host == 0:
	case host < 64:
		v.lo |= 1<<host - 1
	default:
		v.lo = ^uint64(0)
		v.hi |= 1<<(host-64) - 1
	}
	return v
}

// coveringReservation returns a reservation holding all of block.
func coveringReservation(block netip.Prefix, res []netip.Prefix) (netip.Prefix, bool) {
	for _, r := range res {
		if r.Bits() <= block.Bits() && r.Overlaps(block) {
			return r, true
		}
	}
	return netip.Prefix{}, false
}

// reservedMask says which ordinals of block are reserved; nil means none,
// and all reports a block wholly reserved.
func reservedMask(block netip.Prefix, res []netip.Prefix) (mask []bool, all bool) {
	for _, r := range res {
		if !r.Overlaps(block) {
			continue
		}
		if r.Bits() <= block.Bits() {
			return nil, true
		}
		if mask == nil {
			mask = make([]bool, blockLen(block))
		}
		first := ordinal(block, r.Addr())
		for i := range blockLen(r) {
			mask[first+i] = true
		}
	}
	return mask, false
}
