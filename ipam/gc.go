package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tabbynet/tabby/ipam/store"
)

// CheckOptions scopes leak detection. Consistency problems are always
// reported.
type CheckOptions struct {
	// LiveHandles, when set, says whether a handle is still in use (from the
	// orchestrator: running pods, CRI valid attachments). Allocations whose
	// handle is not live are leaks. When nil no allocation is called leaked.
	LiveHandles func(handle string) bool
	// HandlePrefix limits leak detection to handles with this prefix (e.g.
	// "k8s-pod-network."), so tunnel addresses and other users are safe.
	HandlePrefix string
	// Node limits leak detection to allocations made for this node, as a
	// CNI GC on one node knows only its own containers.
	Node string
}

func (o CheckOptions) leaked(at *Attribute) bool {
	return o.LiveHandles != nil && strings.HasPrefix(at.Handle, o.HandlePrefix) &&
		(o.Node == "" || at.Node == o.Node) && !o.LiveHandles(at.Handle)
}

// Leak is an allocation whose handle is not live.
type Leak struct {
	Addr    netip.Addr
	Block   netip.Prefix
	Handle  string
	Node    string
	Created time.Time
}

// HandleMismatch is a handle whose record disagrees with the blocks: the
// record counts Recorded allocations in Block, the block holds Allocated.
type HandleMismatch struct {
	Handle    string
	Block     netip.Prefix
	Recorded  int
	Allocated int
}

// AffinityProblem is a block affinity that is orphaned or stuck half-way.
type AffinityProblem struct {
	Node    string
	Block   netip.Prefix
	State   AffinityState
	Problem string
}

// BlockProblem is a block whose own bookkeeping is wrong, that lies outside
// every pool, or whose node has no affinity record for it.
type BlockProblem struct {
	Block   netip.Prefix
	Problem string
}

// CheckReport is the result of Check.
type CheckReport struct {
	// Revision is the store revision everything was read at.
	Revision    int64
	Blocks      int // blocks examined
	Allocations int // allocated addresses seen
	Leaked      []Leak
	Handles     []HandleMismatch
	Affinities  []AffinityProblem
	BlockIssues []BlockProblem
}

// OK reports whether Check found nothing.
func (r CheckReport) OK() bool {
	return len(r.Leaked)+len(r.Handles)+len(r.Affinities)+len(r.BlockIssues) == 0
}

// String summarises the report, one problem a line.
func (r CheckReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d blocks, %d allocations\n", r.Blocks, r.Allocations)
	for _, l := range r.Leaked {
		fmt.Fprintf(&b, "leaked: %s handle %q node %q (block %s)\n", l.Addr, l.Handle, l.Node, l.Block)
	}
	for _, h := range r.Handles {
		fmt.Fprintf(&b, "handle %q: records %d in %s, block holds %d\n", h.Handle, h.Recorded, h.Block, h.Allocated)
	}
	for _, a := range r.Affinities {
		fmt.Fprintf(&b, "affinity %s of %q (%s): %s\n", a.Block, a.Node, a.State, a.Problem)
	}
	for _, bl := range r.BlockIssues {
		fmt.Fprintf(&b, "block %s: %s\n", bl.Block, bl.Problem)
	}
	return b.String()
}

// snapshot is everything Check reads, as of one store revision.
type snapshot struct {
	rev     int64
	cluster *cluster
	blocks  map[netip.Prefix]storedBlock
	affs    []storedAffinity
	handles map[string]storedHandle
}

type storedHandle struct {
	handleRecord
	rev int64
}

// snapshot reads the cluster configuration, blocks, affinities and
// handles in one List, so they are consistent with each other (one store
// revision) even while others write.
func (a *IPAM) snapshot(ctx context.Context) (*snapshot, error) {
	l, err := a.s.List(ctx, keyRoot)
	if err != nil {
		return nil, fmt.Errorf("list ipam state: %w", err)
	}
	s := &snapshot{rev: l.Revision, blocks: map[netip.Prefix]storedBlock{}, handles: map[string]storedHandle{}}
	var revs [3]int64
	var vals [3][]byte
	for _, kv := range l.KVs {
		switch {
		case kv.Key == keyConfig:
			revs[0], vals[0] = kv.Revision, kv.Value
		case kv.Key == keyPools:
			revs[1], vals[1] = kv.Revision, kv.Value
		case kv.Key == keyReservations:
			revs[2], vals[2] = kv.Revision, kv.Value
		case strings.HasPrefix(kv.Key, keyBlocks):
			b, err := decodeBlock(kv.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", kv.Key, err)
			}
			s.blocks[b.CIDR] = storedBlock{b, kv.Revision}
		case strings.HasPrefix(kv.Key, keyAffinities):
			var af Affinity
			if err := json.Unmarshal(kv.Value, &af); err != nil {
				return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			s.affs = append(s.affs, storedAffinity{af, kv.Revision})
		case strings.HasPrefix(kv.Key, keyHandles):
			h, err := decodeHandle(kv.Value)
			if err != nil {
				return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			s.handles[strings.TrimPrefix(kv.Key, keyHandles)] = storedHandle{h, kv.Revision}
		}
	}
	if s.cluster, err = a.decodeCluster(revs, vals); err != nil {
		return nil, err
	}
	return s, nil
}

// Check reports leaked addresses, orphaned or half-done affinities, blocks
// whose bookkeeping is wrong, and handles whose counts disagree with the
// blocks. It only reads, and reads everything at one store revision
// (CheckReport.Revision), so what it reports was true at that revision
// even while others allocate. An allocation in flight at that revision
// shows as a handle counting more than its blocks hold (the handle is
// written first); GC acts only on state older than its grace period.
func (a *IPAM) Check(ctx context.Context, opts CheckOptions) (CheckReport, error) {
	s, err := a.snapshot(ctx)
	if err != nil {
		return CheckReport{}, err
	}
	r := s.check(opts)
	r.Revision = s.rev
	return r, nil
}

func (s *snapshot) check(opts CheckOptions) CheckReport {
	c := s.cluster
	var r CheckReport
	affOf := map[netip.Prefix][]storedAffinity{}
	for _, af := range s.affs {
		affOf[af.CIDR] = append(affOf[af.CIDR], af)
	}
	counted := map[string]map[netip.Prefix]int{} // handle → block → allocations
	for _, cidr := range sortedCIDRs(s.blocks) {
		b := s.blocks[cidr].block
		r.Blocks++
		if p := b.consistency(); p != "" {
			r.BlockIssues = append(r.BlockIssues, BlockProblem{cidr, p})
		}
		if _, ok := c.poolFor(cidr.Addr()); !ok {
			r.BlockIssues = append(r.BlockIssues, BlockProblem{cidr, "outside every pool"})
		}
		if b.Affinity != "" && !slices.ContainsFunc(affOf[cidr], func(af storedAffinity) bool { return af.Node == b.Affinity }) {
			r.BlockIssues = append(r.BlockIssues, BlockProblem{cidr, fmt.Sprintf("affine to %q, which has no affinity record for it", b.Affinity)})
		}
		for o, idx := range b.Allocations {
			if idx < 0 || int(idx) >= len(b.Attributes) {
				continue
			}
			at := &b.Attributes[idx]
			r.Allocations++
			if counted[at.Handle] == nil {
				counted[at.Handle] = map[netip.Prefix]int{}
			}
			counted[at.Handle][cidr]++
			if opts.leaked(at) {
				r.Leaked = append(r.Leaked, Leak{Addr: b.Addr(o), Block: cidr, Handle: at.Handle, Node: at.Node, Created: at.Created})
			}
		}
	}
	for _, af := range s.affs {
		sb, ok := s.blocks[af.CIDR]
		switch {
		case !ok:
			r.Affinities = append(r.Affinities, AffinityProblem{af.Node, af.CIDR, af.State, "no such block"})
		case sb.block.Affinity != af.Node:
			r.Affinities = append(r.Affinities, AffinityProblem{af.Node, af.CIDR, af.State, fmt.Sprintf("block is affine to %q", sb.block.Affinity)})
		case af.State != AffinityConfirmed:
			r.Affinities = append(r.Affinities, AffinityProblem{af.Node, af.CIDR, af.State, "left " + string(af.State)})
		}
	}
	for _, h := range sortedKeys(s.handles, counted) {
		rec := s.handles[h].Blocks
		seen := map[netip.Prefix]bool{}
		for k, n := range rec {
			cidr, err := netip.ParsePrefix(k)
			if err != nil {
				r.Handles = append(r.Handles, HandleMismatch{Handle: h, Recorded: n})
				continue
			}
			seen[cidr] = true
			if got := counted[h][cidr]; got != n {
				r.Handles = append(r.Handles, HandleMismatch{h, cidr, n, got})
			}
		}
		for cidr, n := range counted[h] {
			if !seen[cidr] {
				r.Handles = append(r.Handles, HandleMismatch{h, cidr, 0, n})
			}
		}
	}
	return r
}

func sortedCIDRs[V any](m map[netip.Prefix]V) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	return out
}

func sortedKeys[A, B any](m1 map[string]A, m2 map[string]B) []string {
	var out []string
	for k := range m1 {
		out = append(out, k)
	}
	for k := range m2 {
		if _, ok := m1[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// GCOptions configures GC.
type GCOptions struct {
	CheckOptions
	// GracePeriod protects recent state: allocations created, handles
	// updated and affinities changed less than this long ago are left
	// alone, so GC never races an allocation in flight (Calico's leak grace
	// period is 15m). Zero acts on everything at once.
	GracePeriod time.Duration
}

// GCReport says what GC changed.
type GCReport struct {
	Released        []netip.Addr
	HandlesFixed    int
	AffinitiesFixed int
	BlocksRepaired  int
}

// GC releases leaked allocations (see CheckOptions) older than the grace
// period and repairs what Check reports: it rebuilds inconsistent blocks,
// finishes or undoes half-done block claims and releases, recreates missing
// affinity records, and rewrites handle records to match the blocks. Every
// change is a compare-and-swap against fresh state, so GC is safe to run
// while nodes allocate.
func (a *IPAM) GC(ctx context.Context, opts GCOptions) (GCReport, error) {
	var rep GCReport
	s, err := a.snapshot(ctx)
	if err != nil {
		return rep, err
	}
	cutoff := a.now().Add(-opts.GracePeriod)
	old := func(t time.Time) bool { return !t.After(cutoff) }
	released := map[string]map[netip.Prefix]int{}
	floors := map[string]map[netip.Prefix]int{}

	// 1. Blocks: repair bookkeeping, release leaks, restore affinity records.
	for _, cidr := range sortedCIDRs(s.blocks) {
		b := s.blocks[cidr].block
		if b.consistency() != "" {
			if err := a.modifyBlock(ctx, cidr, func(b *allocBlock) bool {
				if b.consistency() == "" {
					return false
				}
				b.repair()
				return true
			}); err != nil {
				return rep, err
			}
			rep.BlocksRepaired++
		}
		if opts.LiveHandles != nil {
			addrs, freed, remaining, err := a.releaseFromBlock(ctx, cidr, func(_ int, at *Attribute) bool {
				return opts.leaked(at) && old(at.Created)
			})
			if err != nil {
				return rep, err
			}
			rep.Released = append(rep.Released, addrs...)
			for h, n := range freed {
				if released[h] == nil {
					released[h], floors[h] = map[netip.Prefix]int{}, map[netip.Prefix]int{}
				}
				released[h][cidr] += n
				floors[h][cidr] = remaining[h]
			}
		}
		if b.Affinity != "" && !slices.ContainsFunc(s.affs, func(af storedAffinity) bool { return af.CIDR == cidr && af.Node == b.Affinity }) {
			// Re-read: the block may have been released since the snapshot.
			fresh, err := a.getBlock(ctx, cidr)
			if errors.Is(err, store.ErrNotFound) || (err == nil && fresh.block.Affinity != b.Affinity) {
				continue
			}
			if err != nil {
				return rep, err
			}
			val, _ := json.Marshal(Affinity{Node: b.Affinity, CIDR: cidr, State: AffinityConfirmed, Updated: a.now().UTC()})
			if _, err := a.s.Create(ctx, affinityKey(b.Affinity, cidr), val); err != nil && !errors.Is(err, store.ErrExists) {
				return rep, err
			}
			rep.AffinitiesFixed++
		}
	}
	for h, counts := range released {
		if err := a.decrementHandle(ctx, h, counts, floors[h]); err != nil {
			return rep, err
		}
	}

	// 2. Affinities stuck half-way or pointing at nothing.
	for _, af := range s.affs {
		fixed, err := a.gcAffinity(ctx, af, old)
		if err != nil {
			return rep, err
		}
		if fixed {
			rep.AffinitiesFixed++
		}
	}

	// 3. Handles: make the records match the blocks, from fresh state.
	if len(released) > 0 || rep.BlocksRepaired > 0 || rep.AffinitiesFixed > 0 {
		if s, err = a.snapshot(ctx); err != nil {
			return rep, err
		}
	}
	for _, m := range s.check(CheckOptions{}).Handles {
		fixed, err := a.gcHandle(ctx, m.Handle, old)
		if err != nil {
			return rep, err
		}
		if fixed {
			rep.HandlesFixed++
		}
	}
	slices.SortFunc(rep.Released, netip.Addr.Compare)
	if len(rep.Released)+rep.HandlesFixed+rep.AffinitiesFixed+rep.BlocksRepaired > 0 {
		a.log.InfoContext(ctx, "ipam gc", "released", len(rep.Released), "handles", rep.HandlesFixed,
			"affinities", rep.AffinitiesFixed, "blocks", rep.BlocksRepaired)
	}
	return rep, nil
}

// modifyBlock applies fn to the block with compare-and-swap; fn returns
// false to leave it unchanged.
func (a *IPAM) modifyBlock(ctx context.Context, cidr netip.Prefix, fn func(b *allocBlock) bool) error {
	return a.modify(ctx, blockKey(cidr), func(cur []byte) ([]byte, bool, error) {
		if cur == nil {
			return nil, false, nil
		}
		b, err := decodeBlock(cur)
		if err != nil {
			return nil, false, fmt.Errorf("block %s: %w", cidr, err)
		}
		if !fn(b) {
			return nil, false, nil
		}
		return encodeBlock(b), false, nil
	})
}

// gcAffinity finishes or undoes one affinity left half-way.
func (a *IPAM) gcAffinity(ctx context.Context, af storedAffinity, old func(time.Time) bool) (bool, error) {
	sb, err := a.getBlock(ctx, af.CIDR)
	missing := errors.Is(err, store.ErrNotFound)
	if err != nil && !missing {
		return false, err
	}
	key := affinityKey(af.Node, af.CIDR)
	switch {
	case af.State == AffinityPendingDeletion:
		err := a.releaseAffinity(ctx, af, true)
		if errors.Is(err, errNotEmpty) {
			err = nil
		}
		return err == nil, ignoreRace(err)
	case missing || sb.block.Affinity != af.Node:
		if !old(af.Updated) {
			return false, nil // a claim may be in flight
		}
		return true, ignoreRace(a.s.Delete(ctx, key, af.rev))
	case af.State == AffinityPending:
		if !old(af.Updated) {
			return false, nil // the claim may still be confirming it
		}
		af.State, af.Updated = AffinityConfirmed, a.now().UTC()
		val, _ := json.Marshal(af.Affinity)
		_, err := a.s.Update(ctx, key, val, af.rev)
		return true, ignoreRace(err)
	}
	return false, nil
}

// ignoreRace drops errors that mean someone else changed the key first; the
// next GC looks again.
func ignoreRace(err error) error {
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// gcHandle rewrites a handle's record from the blocks.
func (a *IPAM) gcHandle(ctx context.Context, handle string, old func(time.Time) bool) (bool, error) {
	actual := map[string]int{}
	youngest := time.Time{}
	blocks, err := a.listBlocks(ctx)
	if err != nil {
		return false, err
	}
	for _, sb := range blocks {
		b := sb.block
		for _, idx := range b.Allocations {
			if idx >= 0 && int(idx) < len(b.Attributes) && b.Attributes[idx].Handle == handle {
				actual[b.CIDR.String()]++
				if t := b.Attributes[idx].Created; t.After(youngest) {
					youngest = t
				}
			}
		}
	}
	fixed := false
	err = a.modifyHandle(ctx, handle, func(h *handleRecord, exists bool) (edit, error) {
		fixed = false
		switch {
		case exists && !old(h.Updated), !exists && !old(youngest):
			return editSkip, nil // recent: an assignment may be in flight
		case exists && mapsEqualInt(h.Blocks, actual), !exists && len(actual) == 0:
			return editSkip, nil
		}
		fixed = true
		h.Blocks, h.Updated = actual, a.now().UTC()
		if len(actual) == 0 {
			return editDelete, nil
		}
		return editWrite, nil
	})
	return fixed, err
}

func mapsEqualInt(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
