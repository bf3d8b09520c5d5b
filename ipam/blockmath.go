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
// pools are treated as that many; no one exhausts them).
func blockCount(pool IPPool) uint64 {
	d := pool.BlockSize - pool.CIDR.Bits()
	if d >= 62 {
		return 1 << 62
	}
	return 1 << d
}

// blockAt is block number i of the pool.
func blockAt(pool IPPool, i uint64) netip.Prefix {
	shift := pool.CIDR.Addr().BitLen() - pool.BlockSize
	a := fromU128(toU128(pool.CIDR.Addr()).add(i, shift), pool.CIDR.Addr().Is4())
	return netip.PrefixFrom(a, pool.BlockSize)
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
// The blocks of the IPv4-mapped range (in an IPv6 pool stored before
// CreatePool refused it) are left out.
func blockCandidates(pool IPPool, node string, limit uint64, yield func(netip.Prefix) bool) {
	n := blockCount(pool)
	// Blocks [gap, gap+gapLen) are mapped; indices at or past gap are
	// shifted over them.
	gap, gapLen := n, uint64(0)
	if pool.CIDR.Addr().Is6() && pool.CIDR.Bits() < v4Mapped.Bits() {
		if pool.CIDR.Contains(v4Mapped.Addr()) {
			shift := 128 - pool.BlockSize
			gap = (toU128(v4Mapped.Addr()).lo - toU128(pool.CIDR.Addr()).lo) >> shift
			gapLen = 1 << (pool.BlockSize - v4Mapped.Bits())
			n -= gapLen
		}
	}
	start := nodeRand(node).Uint64N(n)
	for k := uint64(0); k < n && k < limit; k++ {
		i := (start + k) % n
		if i >= gap {
			i += gapLen
		}
		if !yield(blockAt(pool, i)) {
			return
		}
	}
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
