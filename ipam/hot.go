package ipam

import (
	"encoding/binary"
	"slices"
	"unsafe"
)

// The allocation path (updateBlockForAlloc) is what Assign spends its time
// in, so it does not decode and re-encode the whole block every time: it
// keeps, per block, a parsed form of the block as of one store revision
// (hotBlock), and writes the new block by encoding the header, allocations
// and free list afresh and copying the attribute records, which an
// allocation never changes, verbatim. The hotBlocks live in the IPAM's one
// cache (cache.go), under its one rule: an entry is used only when the
// store hands back exactly the revision (and length) it was made from.
// Anything else — another process's write, a stale entry — is a miss,
// which decodes the block as before.

// hotBlock is a block as of revision rev, shared read-only.
type hotBlock struct {
	rev    int64
	rawLen int // length of the stored encoding the entry was made from
	// b has CIDR, Affinity, EmptySince, Allocations and Unallocated; its
	// Attributes are left out (they are attrs, encoded).
	b allocBlock
	// attrs is the canonical encoding of the attributes, one after the
	// other; attrEnds[i] is where attribute i ends in it.
	attrs    string
	attrEnds []int32
}

// attr returns the encoding of attribute i.
func (h *hotBlock) attr(i int) string {
	start := int32(0)
	if i > 0 {
		start = h.attrEnds[i-1]
	}
	return h.attrs[start:h.attrEnds[i]]
}

// parseHot decodes a stored block into a hotBlock, re-encoding its
// attributes canonically (so equal attributes have equal encodings).
func parseHot(raw []byte, rev int64) (*hotBlock, error) {
	b, err := decodeBlock(raw)
	if err != nil {
		return nil, err
	}
	enc, start, ends := encodeBlockParts(b, true)
	h := &hotBlock{rev: rev, rawLen: len(raw), b: *b, attrs: bytesString(enc[start:]), attrEnds: ends}
	h.b.Attributes = nil
	return h, nil
}

// bytesString returns b as a string without copying; b must not be
// modified afterwards.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// canonicalAttr reports whether a's encoding identifies it: equal
// encodings then mean equal attributes (Attribute.equal), so the
// allocation path can compare encodings. Times outside UnixNano's range or
// at exactly the epoch (which the codec stores as "zero") and zoned
// floating IPs (the codec drops zones) are compared decoded instead.
func canonicalAttr(a *Attribute) bool {
	if !a.Created.IsZero() {
		if y := a.Created.Year(); y < 1700 || y > 2200 || a.Created.UnixNano() == 0 {
			return false
		}
	}
	for _, f := range a.FloatingIPs {
		if f.Zone() != "" {
			return false
		}
	}
	return true
}

// hotAttrIndex returns the index of the attribute equal to attr (whose
// encoding is enc), or -1 when there is none.
func hotAttrIndex(h *hotBlock, raw []byte, attr *Attribute, enc []byte) (int32, error) {
	if canonicalAttr(attr) {
		for i := range h.attrEnds {
			if h.attr(i) == string(enc) {
				return int32(i), nil
			}
		}
		return -1, nil
	}
	full, err := decodeBlock(raw)
	if err != nil {
		return 0, err
	}
	for i := range full.Attributes {
		if full.Attributes[i].equal(attr) {
			return int32(i), nil
		}
	}
	return -1, nil
}

// encodeHot encodes nb (header, allocations, free list) followed by h's
// attributes and, when newAttr is not nil, one more; it returns the
// encoding and the hotBlock for it (revision still to be set).
func encodeHot(nb *allocBlock, h *hotBlock, newAttr []byte) ([]byte, *hotBlock) {
	n := len(h.attrEnds)
	if newAttr != nil {
		n++
	}
	buf := make([]byte, 0, 16+len(nb.Affinity)+2*len(nb.Allocations)+2*len(nb.Unallocated)+len(h.attrs)+len(newAttr))
	buf = encodeBlockHead(buf, nb)
	buf = binary.AppendUvarint(buf, uint64(n))
	start := len(buf)
	buf = append(buf, h.attrs...)
	ends := h.attrEnds
	if newAttr != nil {
		buf = append(buf, newAttr...)
		ends = append(slices.Clip(ends), int32(len(buf)-start))
	}
	nh := &hotBlock{rawLen: len(buf), b: *nb, attrs: bytesString(buf[start:]), attrEnds: ends}
	return buf, nh
}
