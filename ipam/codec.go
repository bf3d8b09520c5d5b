package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
	"unsafe"
)

// Blocks are the hot, large values (one entry per address), so they use a
// compact binary encoding rather than JSON. Layout (all integers uvarint
// unless noted):
//
//	version=1 | free (2 bytes, big endian: len(unallocated), so a full
//	block can be skipped without decoding it) |
//	cidr (addr len byte, addr bytes, bits) | affinity str |
//	emptySince (unix nanos, varint) | n | n allocations (attr index + 1) |
//	len(unallocated) | ordinals | len(attributes) | attributes
//
// An attribute is handle, node, namespace, pod, use (strings), created
// (varint nanos), len(extra) then key/value strings sorted by key,
// len(floating) then addresses (len byte + bytes).
const blockCodecVersion = 1

// maxBlockLen bounds decoded sizes: blocks are at most /20 or /116.
const maxBlockLen = 4096

var errCorrupt = errors.New("corrupt block encoding")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	s := a.AsSlice()
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

func encodeBlock(blk *Block) []byte {
	b, _, _ := encodeBlockParts(blk, false)
	return b
}

// encodeBlockHead appends everything before the attributes: the header,
// the allocations and the unallocated ordinals.
func encodeBlockHead(b []byte, blk *Block) []byte {
	b = append(b, blockCodecVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(blk.Unallocated)))
	b = appendAddr(b, blk.CIDR.Addr())
	b = binary.AppendUvarint(b, uint64(blk.CIDR.Bits()))
	b = appendString(b, blk.Affinity)
	b = appendTime(b, blk.EmptySince)
	b = binary.AppendUvarint(b, uint64(len(blk.Allocations)))
	b = appendInt32s(b, blk.Allocations, 1)
	b = binary.AppendUvarint(b, uint64(len(blk.Unallocated)))
	return appendInt32s(b, blk.Unallocated, 0)
}

// appendInt32s appends v+add for each v as uvarints (one byte each, in
// the common case, written directly).
func appendInt32s(b []byte, vs []int32, add int32) []byte {
	b = slices.Grow(b, len(vs))
	for _, v := range vs {
		if u := uint32(v + add); u < 0x80 {
			b = append(b, byte(u))
		} else {
			b = binary.AppendUvarint(b, uint64(v+add))
		}
	}
	return b
}

// encodeBlockParts encodes blk; with offsets it also returns where the
// attributes start and where each ends (relative to the start).
func encodeBlockParts(blk *Block, offsets bool) (b []byte, attrStart int, attrEnds []int32) {
	b = make([]byte, 0, 64+2*len(blk.Allocations)+len(blk.Unallocated)*2+len(blk.Attributes)*96)
	b = encodeBlockHead(b, blk)
	b = binary.AppendUvarint(b, uint64(len(blk.Attributes)))
	attrStart = len(b)
	if offsets {
		attrEnds = make([]int32, 0, len(blk.Attributes)+1)
	}
	for i := range blk.Attributes {
		b = appendAttribute(b, &blk.Attributes[i])
		if offsets {
			attrEnds = append(attrEnds, int32(len(b)-attrStart))
		}
	}
	return b, attrStart, attrEnds
}

// appendAttribute appends the encoding of one attribute.
func appendAttribute(b []byte, a *Attribute) []byte {
	b = appendString(b, a.Handle)
	b = appendString(b, a.Node)
	b = appendString(b, a.Namespace)
	b = appendString(b, a.Pod)
	b = appendString(b, string(a.Use))
	b = appendTime(b, a.Created)
	switch len(a.Extra) {
	case 0:
		b = binary.AppendUvarint(b, 0)
	case 1:
		b = binary.AppendUvarint(b, 1)
		for k, v := range a.Extra {
			b = appendString(b, k)
			b = appendString(b, v)
		}
	default:
		keys := make([]string, 0, len(a.Extra))
		for k := range a.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = binary.AppendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			b = appendString(b, k)
			b = appendString(b, a.Extra[k])
		}
	}
	b = binary.AppendUvarint(b, uint64(len(a.FloatingIPs)))
	for _, f := range a.FloatingIPs {
		b = appendAddr(b, f)
	}
	return b
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errCorrupt, what)
	}
}

func (d *decoder) uvarint(what string, limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > limit {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) time(what string) time.Time {
	if d.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return time.Time{}
	}
	d.b = d.b[n:]
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (d *decoder) bytes(what string, n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail(what)
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

// string returns a view of the input, not a copy: decodeBlock's callers
// pass buffers they own and never modify (values from a Store are copies).
func (d *decoder) string(what string) string {
	b := d.bytes(what, d.uvarint(what, 1<<20))
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (d *decoder) addr(what string) netip.Addr {
	n := d.bytes(what, 1)
	if d.err != nil {
		return netip.Addr{}
	}
	if n[0] != 4 && n[0] != 16 {
		d.fail(what)
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(d.bytes(what, uint64(n[0])))
	return a
}

// peekFree reads the number of unallocated ordinals of an encoded block
// without decoding it.
func peekFree(b []byte) (int, bool) {
	if len(b) < 3 || b[0] != blockCodecVersion {
		return 0, false
	}
	return int(binary.BigEndian.Uint16(b[1:3])), true
}

// decodeBlock decodes an encoded block. The strings in the result share
// b's memory, so b must not be modified afterwards.
func decodeBlock(b []byte) (*Block, error) {
	free, ok := peekFree(b)
	if !ok {
		return nil, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	d := &decoder{b: b[3:]}
	blk := &Block{}
	addr := d.addr("cidr")
	bitsN := int(d.uvarint("cidr bits", 128))
	if d.err == nil {
		blk.CIDR = netip.PrefixFrom(addr, bitsN)
		if !blk.CIDR.IsValid() || blk.CIDR != blk.CIDR.Masked() || addr.BitLen()-bitsN > 12 {
			d.fail("cidr")
		}
	}
	blk.Affinity = d.string("affinity")
	blk.EmptySince = d.time("emptySince")
	n := d.uvarint("allocations", maxBlockLen)
	if d.err == nil && int(n) != blockLen(blk.CIDR) {
		d.fail("allocation count")
	}
	blk.Allocations = make([]int32, n)
	for i := range blk.Allocations {
		blk.Allocations[i] = int32(d.uvarint("allocation", maxBlockLen)) - 1
	}
	n = d.uvarint("unallocated", maxBlockLen)
	blk.Unallocated = make([]int32, n)
	for i := range blk.Unallocated {
		blk.Unallocated[i] = int32(d.uvarint("ordinal", maxBlockLen))
	}
	n = d.uvarint("attributes", maxBlockLen)
	if d.err == nil && n > 0 {
		blk.Attributes = make([]Attribute, n)
	}
	for i := range blk.Attributes {
		a := &blk.Attributes[i]
		a.Handle = d.string("handle")
		a.Node = d.string("node")
		a.Namespace = d.string("namespace")
		a.Pod = d.string("pod")
		a.Use = Use(d.string("use"))
		a.Created = d.time("created")
		if m := d.uvarint("extra", 1024); m > 0 {
			a.Extra = make(map[string]string, m)
			for range m {
				k := d.string("extra key")
				a.Extra[k] = d.string("extra value")
			}
		}
		if m := d.uvarint("floating", 1024); m > 0 {
			a.FloatingIPs = make([]netip.Addr, m)
			for j := range a.FloatingIPs {
				a.FloatingIPs[j] = d.addr("floating ip")
			}
		}
		if d.err != nil {
			break
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err == nil && free != len(blk.Unallocated) {
		d.fail("free count")
	}
	if d.err != nil {
		return nil, d.err
	}
	return blk, nil
}
