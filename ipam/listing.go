package ipam

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Allocation is one allocated address as an outside checker sees it
// (`tabbyctl ipam check`, an operator's audit).
type Allocation struct {
	Addr  netip.Addr
	Block netip.Prefix
	// Pool is the name of the pool holding Block in the configuration
	// read just before the blocks ("" when the block lies outside every
	// pool).
	Pool string
	// Affinity is the node the block is affine to ("" for none).
	Affinity string
	// Borrowed is true when the holder's node is not the block's.
	Borrowed  bool
	Attribute Attribute
}

// HandleInfo is one handle record: how many addresses the handle counts
// in each block. The blocks are the truth; a record over-counts while an
// assignment is in flight or after one was interrupted (GC repairs it).
type HandleInfo struct {
	Handle string
	Blocks map[netip.Prefix]int
	// Updated is when an assignment last added to the record.
	Updated time.Time
}

// Allocations lists every allocated address as of one store revision,
// which it returns, so that the listing is consistent even while others
// allocate. The blocks are read in one List; the sequence decodes them one
// at a time as it is ranged over (blocks in key order, addresses in order
// within a block), so a caller that stops early decodes no more. A block
// that fails to decode yields its error and ends the sequence.
func (a *IPAM) Allocations(ctx context.Context) (iter.Seq2[Allocation, error], int64, error) {
	l, err := a.s.List(ctx, keyCluster)
	if err != nil {
		return nil, 0, fmt.Errorf("list allocations: %w", err)
	}
	var revs [3]int64
	var vals [3][]byte
	for _, kv := range l.KVs {
		if i := slices.Index([]string{keyConfig, keyPools, keyReservations}, kv.Key); i >= 0 {
			revs[i], vals[i] = kv.Revision, kv.Value
		}
	}
	c, err := a.decodeCluster(revs, vals)
	if err != nil {
		return nil, 0, err
	}
	bl, err := a.s.List(ctx, keyBlocks)
	if err != nil {
		return nil, 0, fmt.Errorf("list allocations: %w", err)
	}
	seq := func(yield func(Allocation, error) bool) {
		for _, kv := range bl.KVs {
			b, err := decodeBlock(kv.Value)
			if err != nil {
				yield(Allocation{}, fmt.Errorf("%s: %w", kv.Key, err))
				return
			}
			pool, _ := c.poolFor(b.CIDR.Addr())
			for o, idx := range b.Allocations {
				if idx < 0 || int(idx) >= len(b.Attributes) {
					continue
				}
				at := b.Attributes[idx]
				if !yield(Allocation{Addr: b.Addr(o), Block: b.CIDR, Pool: pool.Name, Affinity: b.Affinity,
					Borrowed: at.Node != b.Affinity, Attribute: at}, nil) {
					return
				}
			}
		}
	}
	return seq, bl.Revision, nil
}

// Handles lists every handle record as of one store revision, which it
// returns; the sequence decodes the records one at a time, in handle
// order, as it is ranged over. A record that fails to decode yields its
// error and ends the sequence.
func (a *IPAM) Handles(ctx context.Context) (iter.Seq2[HandleInfo, error], int64, error) {
	l, err := a.s.List(ctx, keyHandles)
	if err != nil {
		return nil, 0, fmt.Errorf("list handles: %w", err)
	}
	seq := func(yield func(HandleInfo, error) bool) {
		for _, kv := range l.KVs {
			h, err := decodeHandle(kv.Value)
			if err != nil {
				yield(HandleInfo{}, fmt.Errorf("decode %s: %w", kv.Key, err))
				return
			}
			info := HandleInfo{Handle: strings.TrimPrefix(kv.Key, keyHandles), Updated: h.Updated,
				Blocks: make(map[netip.Prefix]int, len(h.Blocks))}
			for _, k := range slices.Sorted(maps.Keys(h.Blocks)) {
				cidr, err := netip.ParsePrefix(k)
				if err != nil {
					yield(HandleInfo{}, fmt.Errorf("decode %s: block %q: %w", kv.Key, k, err))
					return
				}
				info.Blocks[cidr] = h.Blocks[k]
			}
			if !yield(info, nil) {
				return
			}
		}
	}
	return seq, l.Revision, nil
}
