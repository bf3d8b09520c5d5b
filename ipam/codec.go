package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unsafe"
)

// Blocks are the hot, large values (one entry per address), so they use a
// compact binary encoding rather than JSON. Layout (all integers uvarint
// unless noted):
//
//	version=2 | free (2 bytes, big endian: len(unallocated), so a full
//	block can be skipped without decoding it) |
//	cidr (addr len byte, addr bytes, bits) | affinity str |
//	emptySince (unix nanos, varint) | n | n allocations (attr index + 1) |
//	len(unallocated) | ordinals | len(attributes) | attributes
//
// An attribute is a flags byte, then handle (without the usual
// "k8s-pod-network." prefix when attrHandlePrefix is set), node (unless
// attrNodeIsAffinity), namespace, pod, use (unless attrWorkload) as
// strings, then created (varint nanos) when attrCreated, len(extra) and
// key/value strings sorted by key when attrExtra, len(floating) and
// addresses (len byte + bytes) when attrFloating. Every allocation
// rewrites its block, so the flags keep the per-pod records, most of a
// block's bytes, about half the size they would be spelled out.
const blockCodecVersion = 2

// Attribute flags.
const (
	attrNodeIsAffinity = 1 << iota // node is the block's affinity
	attrHandlePrefix               // handle starts with k8sHandlePrefix
	attrWorkload                   // use is Workload
	attrCreated
	attrExtra
	attrFloating
	attrKnownFlags = 1<<iota - 1
)

// k8sHandlePrefix starts the handles Calico-style CNI plugins write.
const k8sHandlePrefix = "k8s-pod-network."

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

func encodeBlock(blk *allocBlock) []byte {
	b, _, _ := encodeBlockParts(blk, false)
	return b
}

// encodeBlockHead appends everything before the attributes: the header,
// the allocations and the unallocated ordinals.
func encodeBlockHead(b []byte, blk *allocBlock) []byte {
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
func encodeBlockParts(blk *allocBlock, offsets bool) (b []byte, attrStart int, attrEnds []int32) {
	b = make([]byte, 0, 64+2*len(blk.Allocations)+len(blk.Unallocated)*2+len(blk.Attributes)*96)
	b = encodeBlockHead(b, blk)
	b = binary.AppendUvarint(b, uint64(len(blk.Attributes)))
	attrStart = len(b)
	if offsets {
		attrEnds = make([]int32, 0, len(blk.Attributes)+1)
	}
	for i := range blk.Attributes {
		b = appendAttribute(b, &blk.Attributes[i], blk.Affinity)
		if offsets {
			attrEnds = append(attrEnds, int32(len(b)-attrStart))
		}
	}
	return b, attrStart, attrEnds
}

// appendAttribute appends the encoding of one attribute of a block
// affine to affinity.
func appendAttribute(b []byte, a *Attribute, affinity string) []byte {
	flags := byte(0)
	handle := a.Handle
	if h, ok := strings.CutPrefix(handle, k8sHandlePrefix); ok {
		flags |= attrHandlePrefix
		handle = h
	}
	if a.Node == affinity {
		flags |= attrNodeIsAffinity
	}
	if a.Use == UseWorkload {
		flags |= attrWorkload
	}
	if !a.Created.IsZero() && a.Created.UnixNano() != 0 {
		flags |= attrCreated
	}
	if len(a.Extra) > 0 {
		flags |= attrExtra
	}
	if len(a.FloatingIPs) > 0 {
		flags |= attrFloating
	}
	b = append(b, flags)
	b = appendString(b, handle)
	if flags&attrNodeIsAffinity == 0 {
		b = appendString(b, a.Node)
	}
	b = appendString(b, a.Namespace)
	b = appendString(b, a.Pod)
	if flags&attrWorkload == 0 {
		b = appendString(b, string(a.Use))
	}
	if flags&attrCreated != 0 {
		b = binary.AppendVarint(b, a.Created.UnixNano())
	}
	switch len(a.Extra) {
	case 0:
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
	if len(a.FloatingIPs) > 0 {
		b = binary.AppendUvarint(b, uint64(len(a.FloatingIPs)))
		for _, f := range a.FloatingIPs {
			b = appendAddr(b, f)
		}
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

// attribute decodes one attribute of a block affine to affinity.
func (d *decoder) attribute(a *Attribute, affinity string) {
	fb := d.bytes("attribute flags", 1)
	if d.err != nil {
		return
	}
	flags := fb[0]
	if flags&^attrKnownFlags != 0 {
		d.fail("attribute flags")
		return
	}
	a.Handle = d.string("handle")
	if flags&attrHandlePrefix != 0 {
		a.Handle = k8sHandlePrefix + a.Handle
	}
	a.Node = affinity
	if flags&attrNodeIsAffinity == 0 {
		a.Node = d.string("node")
	}
	a.Namespace = d.string("namespace")
	a.Pod = d.string("pod")
	a.Use = UseWorkload
	if flags&attrWorkload == 0 {
		a.Use = Use(d.string("use"))
	}
	if flags&attrCreated != 0 {
		a.Created = d.time("created")
	}
	if flags&attrExtra != 0 {
		m := d.uvarint("extra", 1024)
		a.Extra = make(map[string]string, m)
		for range m {
			k := d.string("extra key")
			a.Extra[k] = d.string("extra value")
		}
	}
	if flags&attrFloating != 0 {
		m := d.uvarint("floating", 1024)
		a.FloatingIPs = make([]netip.Addr, m)
		for j := range a.FloatingIPs {
			a.FloatingIPs[j] = d.addr("floating ip")
		}
	}
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
func decodeBlock(b []byte) (*allocBlock, error) {
	free, ok := peekFree(b)
	if !ok {
		return nil, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	d := &decoder{b: b[3:]}
	blk := &allocBlock{}
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
		d.attribute(&blk.Attributes[i], blk.Affinity)
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
