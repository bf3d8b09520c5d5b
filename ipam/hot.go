package ipam

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"time"
	"unsafe"
)

// The allocation path (updateBlockForAlloc) is what Assign spends its time
// in, so it does not decode and re-encode the whole block every time: it
// keeps, per block, a parsed form of the block as of one store revision
// (hotBlock), and writes the new block by encoding the header, allocations
// and free list afresh and copying the attribute records, which an
// allocation never changes, verbatim. The store decides validity: an entry
// is used only when the store hands back exactly the revision (and length)
// it was made from, and it is replaced after every write that succeeds.
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

// maxHotBlocks bounds the cache (an IPAM allocating for one node touches a
// handful of blocks; a controller may touch all).
const maxHotBlocks = 4096

type hotBlocks struct {
	mu sync.Mutex
	m  map[netip.Prefix]*hotBlock
}

func (c *hotBlocks) get(cidr netip.Prefix, rev int64, rawLen int) *hotBlock {
	c.mu.Lock()
	h := c.m[cidr]
	c.mu.Unlock()
	if h != nil && h.rev == rev && h.rawLen == rawLen {
		return h
	}
	return nil
}

func (c *hotBlocks) put(cidr netip.Prefix, h *hotBlock) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[netip.Prefix]*hotBlock{}
	}
	if old := c.m[cidr]; old != nil && old.rev > h.rev {
		return // a newer write already cached
	}
	if _, ok := c.m[cidr]; !ok && len(c.m) >= maxHotBlocks {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[cidr] = h
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

// stringBytes returns a read-only byte view of s (never nil).
func stringBytes(s string) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
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

// revCache keeps small decoded values by key as of one revision (and
// encoded length), so an unchanged value is not decoded again. It holds
// at most maxHotBlocks entries.
type revCache[V any] struct {
	mu sync.Mutex
	m  map[string]revEntry[V]
}

type revEntry[V any] struct {
	rev int64
	n   int
	v   V
}

func (c *revCache[V]) get(key string, rev int64, n int) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.getLocked(key, rev, n)
}

// getLocked is get with c.mu held.
func (c *revCache[V]) getLocked(key string, rev int64, n int) (V, bool) {
	if e, ok := c.m[key]; ok && e.rev == rev && e.n == n {
		return e.v, true
	}
	var zero V
	return zero, false
}

func (c *revCache[V]) put(key string, rev int64, n int, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]revEntry[V]{}
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= maxHotBlocks {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = revEntry[V]{rev, n, v}
}

// fullBlockTTL is how long a block found full is trusted to stay full
// without reading it again.
const fullBlockTTL = time.Second

// fullBlocks remembers blocks an allocation found full, so that a node
// with many full blocks does not read every one of them each time its
// current block fills (which made allocation O(blocks per node)). A mark
// is trusted for fullBlockTTL; releases through this IPAM clear it at
// once, so only addresses freed by another process can wait that long to
// be reused. Before it fails or stops at the block limit, an allocation
// sweeps again without trusting marks.
type fullBlocks struct {
	mu sync.Mutex
	m  map[netip.Prefix]time.Time
}

func (f *fullBlocks) mark(cidr netip.Prefix, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[netip.Prefix]time.Time{}
	}
	if len(f.m) >= maxHotBlocks {
		for k, at := range f.m {
			if now.Sub(at) >= fullBlockTTL {
				delete(f.m, k)
			}
		}
		if len(f.m) >= maxHotBlocks {
			clear(f.m)
		}
	}
	f.m[cidr] = now
}

// recent reports whether cidr was found full less than fullBlockTTL ago.
func (f *fullBlocks) recent(cidr netip.Prefix, now time.Time) bool {
	f.mu.Lock()
	at, ok := f.m[cidr]
	f.mu.Unlock()
	return ok && now.Sub(at) < fullBlockTTL && !now.Before(at)
}

func (f *fullBlocks) forget(cidr netip.Prefix) {
	f.mu.Lock()
	delete(f.m, cidr)
	f.mu.Unlock()
}

// nodeAffinities caches each node's affinity listing for fullBlockTTL, on
// the same terms as fullBlocks: an allocation whose current block fills
// uses it to find the node's other blocks without listing them all again;
// claims through this IPAM add to it and other affinity changes through
// this IPAM drop it; the sweep that runs before an allocation fails or
// stops at the block limit lists afresh.
type nodeAffinities struct {
	mu sync.Mutex
	m  map[string]cachedAffinities
}

type cachedAffinities struct {
	affs []storedAffinity // shared, read only
	at   time.Time
}

func (n *nodeAffinities) get(node string, now time.Time) ([]storedAffinity, bool) {
	n.mu.Lock()
	c, ok := n.m[node]
	n.mu.Unlock()
	if !ok || now.Sub(c.at) >= fullBlockTTL || now.Before(c.at) {
		return nil, false
	}
	return c.affs, true
}

func (n *nodeAffinities) put(node string, affs []storedAffinity, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]cachedAffinities{}
	}
	if _, ok := n.m[node]; !ok && len(n.m) >= maxHotBlocks {
		clear(n.m)
	}
	n.m[node] = cachedAffinities{affs, now}
}

// add appends a claim made through this IPAM to node's cached listing.
func (n *nodeAffinities) add(node string, af storedAffinity) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.m[node]; ok {
		// Readers hold shorter slice headers and never look past their
		// length, so appending in place (under n.mu) is safe.
		n.m[node] = cachedAffinities{append(c.affs, af), c.at}
	}
}

func (n *nodeAffinities) forget(node string) {
	n.mu.Lock()
	delete(n.m, node)
	n.mu.Unlock()
}
