package ipam

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/ipam/store"
)

// PoolUsage is one pool's line in `tabbyctl ipam show`.
type PoolUsage struct {
	Name     string
	CIDR     netip.Prefix
	Disabled bool
	// Size is the number of addresses in the pool (saturating at MaxUint64).
	Size uint64
	// Blocks is the number of blocks carved; InBlocks their addresses.
	Blocks   int
	InBlocks int
	Used     int
	// Free is Size - Used (saturating).
	Free uint64
}

// NodeUsage is one node's line.
type NodeUsage struct {
	Node string
	// Blocks are the node's affine blocks; Capacity their addresses, Used
	// how many of those are allocated (by anyone).
	Blocks   []netip.Prefix
	Capacity int
	Used     int
	// Borrowed is how many addresses the node holds in blocks that are not
	// its own.
	Borrowed int
}

// BlockUsage is one block's line (`--show-blocks`).
type BlockUsage struct {
	CIDR     netip.Prefix
	Pool     string
	Affinity string
	Size     int
	Used     int
	// Borrowed counts allocations made for nodes other than Affinity.
	Borrowed int
}

// Usage is the utilisation report.
type Usage struct {
	Pools  []PoolUsage
	Nodes  []NodeUsage
	Blocks []BlockUsage
}

// Borrowed is the number of addresses held by nodes other than their
// block's node, cluster-wide.
func (u Usage) Borrowed() int {
	n := 0
	for _, b := range u.Blocks {
		n += b.Borrowed
	}
	return n
}

// Usage reports utilisation per pool, node and block.
func (a *IPAM) Usage(ctx context.Context) (Usage, error) {
	c, err := a.loadCluster(ctx)
	if err != nil {
		return Usage{}, err
	}
	blocks, err := a.listBlocks(ctx)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	pools := map[string]*PoolUsage{}
	for _, p := range c.pools {
		hostBits := p.CIDR.Addr().BitLen() - p.CIDR.Bits()
		size := uint64(math.MaxUint64)
		if hostBits < 64 {
			size = 1 << hostBits
		}
		u.Pools = append(u.Pools, PoolUsage{Name: p.Name, CIDR: p.CIDR, Disabled: p.Disabled, Size: size})
	}
	for i := range u.Pools {
		pools[u.Pools[i].Name] = &u.Pools[i]
	}
	nodes := map[string]*NodeUsage{}
	nodeOf := func(n string) *NodeUsage {
		if nodes[n] == nil {
			nodes[n] = &NodeUsage{Node: n}
		}
		return nodes[n]
	}
	for _, sb := range blocks {
		b := sb.block
		bu := BlockUsage{CIDR: b.CIDR, Affinity: b.Affinity, Size: b.Size(), Used: b.Used()}
		if p, ok := c.poolFor(b.CIDR.Addr()); ok {
			bu.Pool = p.Name
			pu := pools[p.Name]
			pu.Blocks++
			pu.InBlocks += b.Size()
			pu.Used += b.Used()
		}
		if b.Affinity != "" {
			n := nodeOf(b.Affinity)
			n.Blocks = append(n.Blocks, b.CIDR)
			n.Capacity += b.Size()
			n.Used += b.Used()
		}
		for _, idx := range b.Allocations {
			if idx >= 0 && int(idx) < len(b.Attributes) && b.Attributes[idx].Node != b.Affinity {
				bu.Borrowed++
				nodeOf(b.Attributes[idx].Node).Borrowed++
			}
		}
		u.Blocks = append(u.Blocks, bu)
	}
	for i := range u.Pools {
		u.Pools[i].Free = u.Pools[i].Size - uint64(u.Pools[i].Used)
	}
	for _, n := range nodes {
		u.Nodes = append(u.Nodes, *n)
	}
	slices.SortFunc(u.Nodes, func(x, y NodeUsage) int { return cmp.Compare(x.Node, y.Node) })
	slices.SortFunc(u.Blocks, func(x, y BlockUsage) int { return x.CIDR.Addr().Compare(y.CIDR.Addr()) })
	return u, nil
}

// AffineBlocks returns the blocks confirmed affine to node — the ones it
// advertises over BGP and blackholes locally — and the store revision to
// pass to WatchAffinities to follow changes from there. An empty node
// name, or one with '/' or spaces, is ErrInvalid (it must not list other
// nodes' blocks).
func (a *IPAM) AffineBlocks(ctx context.Context, node string) ([]netip.Prefix, int64, error) {
	if err := validateName(node); err != nil {
		return nil, 0, fmt.Errorf("%w: affine blocks: node: %v", ErrInvalid, err)
	}
	l, err := a.s.List(ctx, keyAffinities+node+"/")
	if err != nil {
		return nil, 0, fmt.Errorf("affine blocks of node %q: %w", node, err)
	}
	var out []netip.Prefix
	for _, kv := range l.KVs {
		var af Affinity
		if err := json.Unmarshal(kv.Value, &af); err != nil {
			return nil, 0, fmt.Errorf("affine blocks of node %q: decode %s: %w", node, kv.Key, err)
		}
		if af.State == AffinityConfirmed {
			out = append(out, af.CIDR)
		}
	}
	return out, l.Revision, nil
}

// BorrowedAddrs returns the addresses node holds in blocks not affine to
// it: each needs a /32 (/128) route to node, since the block's route
// leads to its owner. The revision is for WatchBlocks. A bad node name
// (as for AffineBlocks) is ErrInvalid.
func (a *IPAM) BorrowedAddrs(ctx context.Context, node string) ([]netip.Addr, int64, error) {
	if err := validateName(node); err != nil {
		return nil, 0, fmt.Errorf("%w: borrowed addresses: node: %v", ErrInvalid, err)
	}
	l, err := a.s.List(ctx, keyBlocks)
	if err != nil {
		return nil, 0, fmt.Errorf("borrowed addresses of node %q: %w", node, err)
	}
	var out []netip.Addr
	for _, kv := range l.KVs {
		b, err := decodeBlock(kv.Value)
		if err != nil {
			return nil, 0, fmt.Errorf("borrowed addresses of node %q: %s: %w", node, kv.Key, err)
		}
		out = append(out, b.borrowedBy(node)...)
	}
	return out, l.Revision, nil
}

// borrowedBy lists addresses allocated for node in a block not affine to it.
func (b *allocBlock) borrowedBy(node string) []netip.Addr {
	if b.Affinity == node {
		return nil
	}
	var out []netip.Addr
	for o, idx := range b.Allocations {
		if idx >= 0 && int(idx) < len(b.Attributes) && b.Attributes[idx].Node == node {
			out = append(out, b.Addr(o))
		}
	}
	return out
}

// AffinityEvent is a change to a block affinity. Deleted events carry only
// Node and CIDR.
type AffinityEvent struct {
	Affinity
	Deleted  bool
	Revision int64
	Err      error // set on the last event when the watch fails
}

// WatchAffinities streams affinity changes after revision (0: from now)
// until ctx ends. AffineBlocks gives the revision to start from.
//
// The stream also ends when the watch fails: a last event carries Err —
// matching store.ErrCompacted when afterRevision is older than the store
// keeps (etcd compaction; the history of bbolt and memory stores) — and
// the channel closes. List again and watch from the listing's revision.
func (a *IPAM) WatchAffinities(ctx context.Context, afterRevision int64) (<-chan AffinityEvent, error) {
	return watchDecoded(ctx, a.s, keyAffinities, afterRevision, func(ev store.Event) AffinityEvent {
		out := AffinityEvent{Revision: ev.KV.Revision}
		if ev.Type == store.EventDelete {
			out.Deleted = true
			node, rest, _ := strings.Cut(strings.TrimPrefix(ev.KV.Key, keyAffinities), "/")
			out.Node = node
			out.CIDR, _ = netip.ParsePrefix(strings.Replace(rest, "-", "/", 1))
			return out
		}
		if err := json.Unmarshal(ev.KV.Value, &out.Affinity); err != nil {
			out.Err = err
		}
		return out
	}, func(err error) AffinityEvent { return AffinityEvent{Err: err} })
}

// BlockInfo is a block as watchers see it: a stable view, independent of
// how blocks are stored.
type BlockInfo struct {
	CIDR netip.Prefix
	// Affinity is the block's node ("" for none).
	Affinity string
	// Size is the number of addresses in the block.
	Size int
	// Allocations are the allocated addresses, in address order.
	Allocations []BlockAllocation
}

// BlockAllocation is one allocated address of a block.
type BlockAllocation struct {
	Addr netip.Addr
	// Borrowed is true when the holder's node is not the block's: the
	// holder's node routes a /32 (/128) for it.
	Borrowed  bool
	Attribute Attribute
}

// BorrowedBy returns the addresses held for node in the block when the
// block is not node's own (the /32 routes node needs).
func (b *BlockInfo) BorrowedBy(node string) []netip.Addr {
	var out []netip.Addr
	for _, al := range b.Allocations {
		if al.Borrowed && al.Attribute.Node == node {
			out = append(out, al.Addr)
		}
	}
	return out
}

func (b *allocBlock) info() *BlockInfo {
	out := &BlockInfo{CIDR: b.CIDR, Affinity: b.Affinity, Size: b.Size()}
	for o, idx := range b.Allocations {
		if idx >= 0 && int(idx) < len(b.Attributes) {
			at := b.Attributes[idx]
			out.Allocations = append(out.Allocations, BlockAllocation{Addr: b.Addr(o), Borrowed: at.Node != b.Affinity, Attribute: at})
		}
	}
	return out
}

// BlockEvent is a change to a block; Block is nil when it was deleted.
type BlockEvent struct {
	CIDR     netip.Prefix
	Block    *BlockInfo
	Revision int64
	// Err is set on the last event when the watch fails, or when the
	// block's stored value does not decode (Block is nil; the stream goes
	// on).
	Err error
}

// WatchBlocks streams block changes after revision (0: from now) until ctx
// ends. A node agent recomputes its borrowed addresses from these;
// BorrowedAddrs gives the revision to start from.
//
// The stream also ends when the watch fails: a last event carries Err —
// matching store.ErrCompacted when afterRevision is older than the store
// keeps (etcd compaction; the history of bbolt and memory stores) — and
// the channel closes. List again and watch from the listing's revision.
func (a *IPAM) WatchBlocks(ctx context.Context, afterRevision int64) (<-chan BlockEvent, error) {
	return watchDecoded(ctx, a.s, keyBlocks, afterRevision, func(ev store.Event) BlockEvent {
		out := BlockEvent{Revision: ev.KV.Revision}
		out.CIDR, _ = netip.ParsePrefix(strings.Replace(strings.TrimPrefix(ev.KV.Key, keyBlocks), "-", "/", 1))
		if ev.Type == store.EventPut {
			b, err := decodeBlock(ev.KV.Value)
			if err != nil {
				out.Err = fmt.Errorf("%s: %w", ev.KV.Key, err)
			} else {
				out.Block = b.info()
			}
		}
		return out
	}, func(err error) BlockEvent { return BlockEvent{Err: err} })
}

func watchDecoded[T any](ctx context.Context, s store.Store, prefix string, after int64, conv func(store.Event) T, fail func(error) T) (<-chan T, error) {
	if err := store.CheckWatchRevision(after); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ch, err := s.Watch(ctx, prefix, after)
	if err != nil {
		return nil, err
	}
	out := make(chan T, 16)
	go func() {
		defer close(out)
		for ev := range ch {
			var v T
			if ev.Type == store.EventError {
				v = fail(ev.Err)
			} else {
				v = conv(ev)
			}
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// ListPools returns every pool, sorted by name, with defaults filled in
// (as Pools), and the store revision to pass to WatchPools to follow
// changes from there.
func (a *IPAM) ListPools(ctx context.Context) ([]IPPool, int64, error) {
	l, err := a.s.List(ctx, keyCluster)
	if err != nil {
		return nil, 0, fmt.Errorf("read pools: %w", err)
	}
	for _, kv := range l.KVs {
		if kv.Key == keyPools {
			pools, err := decodePools(kv.Value)
			return pools, l.Revision, err
		}
	}
	return nil, l.Revision, nil
}

func decodePools(v []byte) ([]IPPool, error) {
	var pools []IPPool
	if err := json.Unmarshal(v, &pools); err != nil {
		return nil, fmt.Errorf("decode pools: %w", err)
	}
	return pools, nil
}

// PoolsEvent is the complete pool list (sorted by name, defaults filled
// in; empty when the list was deleted) after one change to any pool:
// created, updated (natOutgoing, disabled, ...) or deleted.
type PoolsEvent struct {
	Pools    []IPPool
	Revision int64
	Err      error // set on the last event when the watch fails, or when the stored list does not decode
}

// WatchPools streams the pool list after every change made after revision
// (0: from now) until ctx ends. Pools live in one store key, so each
// event carries every pool: a node agent re-renders what depends on pools
// (outgoing NAT, routes to pool CIDRs) from each one.
//
// The stream also ends when the watch fails: a last event carries Err —
// matching store.ErrCompacted when afterRevision is older than the store
// keeps (etcd compaction; the history of bbolt and memory stores) — and
// the channel closes. List again and watch from the listing's revision.
func (a *IPAM) WatchPools(ctx context.Context, afterRevision int64) (<-chan PoolsEvent, error) {
	return watchDecoded(ctx, a.s, keyPools, afterRevision, func(ev store.Event) PoolsEvent {
		out := PoolsEvent{Revision: ev.KV.Revision}
		if ev.Type == store.EventPut {
			out.Pools, out.Err = decodePools(ev.KV.Value)
		}
		return out
	}, func(err error) PoolsEvent { return PoolsEvent{Err: err} })
}
