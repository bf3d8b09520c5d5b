package ipam

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/selector"
)

// AssignArgs asks for automatically chosen addresses.
type AssignArgs struct {
	// Handle names the allocation, e.g. "k8s-pod-network.<containerID>";
	// ReleaseByHandle frees everything assigned under it. Assign does not
	// look for earlier assignments: calling it twice with one handle
	// assigns a second set of addresses, both held by the handle. A
	// retried CNI ADD should first call IPsByHandle and reuse what the
	// handle already holds (or ReleaseByHandle and assign afresh).
	Handle string
	// Node is the node the addresses are for; blocks affine to it are used
	// first.
	Node string
	// Num4 and Num6 are how many IPv4 and IPv6 addresses to assign. A
	// request for both is all-or-nothing.
	Num4, Num6 int
	// IPv4Pools and IPv6Pools restrict the pools (by name or CIDR), as from
	// the CNI config or the cni.projectcalico.org/ipv4pools annotation.
	// Requested pools are used regardless of their nodeSelector and are
	// tried in the order listed (a pool listed twice counts where it is
	// first listed), whatever their Priority, as in Calico (libcalico-go
	// determinePools keeps the request's order): the node's affine blocks
	// in the first pool, then in the next; a new block from the first
	// pool with one left, then the next; borrowing likewise. Empty means
	// every enabled pool whose nodeSelector matches the node, tried by
	// Priority (higher first), then name (tabby's extension). A requested
	// pool that is unknown is ErrUnknownPool, disabled or of the other
	// family ErrInvalid, failing the whole request even when another
	// requested pool could serve it (Calico fails it too); one that does
	// not allow Use is skipped (ErrNoMatchingPool when none is left).
	IPv4Pools, IPv6Pools []string
	Namespace, Pod       string
	Extra                map[string]string
	FloatingIPs          []netip.Addr
	// Use is Workload (default) or Tunnel; pools must allow it.
	Use Use
	// MaxBlocksPerHost, when positive and tighter than the configured
	// limit, caps the node's blocks for this request.
	MaxBlocksPerHost int
}

// AssignedIP is one assigned address.
type AssignedIP struct {
	Addr  netip.Addr
	Block netip.Prefix
	Pool  string
	// Borrowed is true when the address comes from a block affine to
	// another node (BlockAffinity, or none): the dataplane and BGP must
	// route a /32 (/128) for it, since the block's route points elsewhere.
	Borrowed      bool
	BlockAffinity string
}

// HostPrefix is the address as a /32 or /128.
func (ip AssignedIP) HostPrefix() netip.Prefix {
	return netip.PrefixFrom(ip.Addr, ip.Addr.BitLen())
}

// AssignResult holds the assigned addresses by family.
type AssignResult struct {
	IPv4, IPv6 []AssignedIP
}

// All returns IPv4 then IPv6 addresses.
func (r AssignResult) All() []AssignedIP { return append(slices.Clone(r.IPv4), r.IPv6...) }

func (a *IPAM) attribute(handle, node, ns, pod string, extra map[string]string, floating []netip.Addr, use Use) (Attribute, error) {
	if err := validateName(handle); err != nil {
		return Attribute{}, fmt.Errorf("%w: handle: %v", ErrInvalid, err)
	}
	if err := validateName(node); err != nil {
		return Attribute{}, fmt.Errorf("%w: node: %v", ErrInvalid, err)
	}
	if use == "" {
		use = UseWorkload
	}
	if use != UseWorkload && use != UseTunnel {
		return Attribute{}, fmt.Errorf("%w: unknown use %q", ErrInvalid, use)
	}
	for _, f := range floating {
		if !f.IsValid() {
			return Attribute{}, fmt.Errorf("%w: invalid floating IP", ErrInvalid)
		}
	}
	return Attribute{Handle: handle, Node: node, Namespace: ns, Pod: pod, Use: use, Extra: extra,
		FloatingIPs: floating, Created: a.now().UTC()}, nil
}

// Assign assigns Num4 IPv4 and Num6 IPv6 addresses to args.Handle on
// args.Node, in the order of Calico's autoAssign: the node's usable affine
// blocks (in pools that are enabled, select the node or were requested,
// and allow the use); then, if the node already has its limit of usable
// blocks (the tighter of MaxBlocksPerHost here and in the config, default
// 20) or auto-allocation is off, it stops with ErrBlockLimit, strict
// affinity or not; else it claims a new block from a matching pool; and
// only when no block is left to claim does it borrow a free address from
// another node's block, unless strict affinity forbids it
// (ErrStrictAffinity). Failures to find an address are *AllocationError
// values matching exactly one of ErrBlockLimit, ErrStrictAffinity,
// ErrPoolExhausted or ErrNoMatchingPool.
//
// It is all-or-nothing for addresses: an error that does not match
// ErrOutcomeUnknown means no address stays assigned. The handle record
// (written before the blocks) may still over-count, when undoing its
// count failed as well, until ReleaseByHandle(args.Handle) removes it or
// a GC past its grace period rewrites it from the blocks; Check reports
// it meanwhile. An error that matches ErrOutcomeUnknown (a store write
// whose outcome could not be settled, or a rollback that failed, joined
// to the original error) means addresses may stay assigned to
// args.Handle: release it by handle.
func (a *IPAM) Assign(ctx context.Context, args AssignArgs) (AssignResult, error) {
	attr, err := a.attribute(args.Handle, args.Node, args.Namespace, args.Pod, args.Extra, args.FloatingIPs, args.Use)
	if err != nil {
		return AssignResult{}, err
	}
	if args.Num4 < 0 || args.Num6 < 0 || args.Num4+args.Num6 == 0 || args.Num4+args.Num6 > 1024 {
		return AssignResult{}, fmt.Errorf("%w: ask for 1-1024 addresses (got %d IPv4, %d IPv6)", ErrInvalid, args.Num4, args.Num6)
	}
	c, err := a.loadCluster(ctx)
	if err != nil {
		return AssignResult{}, err
	}
	var labels selector.Map
	if c.needsNodeLabels() {
		if labels, err = a.nodeLabels(ctx, args.Node); err != nil {
			return AssignResult{}, err
		}
	}
	var res AssignResult
	for _, fam := range []struct {
		n     int
		v6    bool
		pools []string
		out   *[]AssignedIP
	}{{args.Num4, false, args.IPv4Pools, &res.IPv4}, {args.Num6, true, args.IPv6Pools, &res.IPv6}} {
		if fam.n == 0 {
			continue
		}
		got, err := a.autoAssign(ctx, c, &attr, labels, fam.v6, fam.n, fam.pools, args.MaxBlocksPerHost)
		*fam.out = got
		if err != nil {
			return AssignResult{}, a.failed(ctx, &attr, res.All(), err)
		}
	}
	if a.log.Enabled(ctx, slog.LevelDebug) {
		a.log.DebugContext(ctx, "assigned", "handle", args.Handle, "node", args.Node, "ipv4", len(res.IPv4), "ipv6", len(res.IPv6))
	}
	return res, nil
}

// failed rolls back a request that failed with err, having assigned (or
// maybe assigned: writes with an unknown outcome) ips, and returns the
// error for the caller: err itself when the rollback settled everything,
// so nothing stays assigned; err joined with an ErrOutcomeUnknown error
// when it did not (what it could not release is left to ReleaseByHandle
// or GC, as after a crash).
func (a *IPAM) failed(ctx context.Context, attr *Attribute, ips []AssignedIP, err error) error {
	var u *unknownWrite
	if errors.As(err, &u) {
		// Try once more to settle the write (the store may be back).
		if _, aerr := a.allocApplied(ctx, u.block, u.casRev, u.ips, attr); aerr != nil {
			// It may still land: leave its addresses, and their counts
			// on the handle, alone, and roll back the rest.
			ips = slices.DeleteFunc(slices.Clone(ips), func(ip AssignedIP) bool {
				return slices.ContainsFunc(u.ips, func(v AssignedIP) bool { return v.Addr == ip.Addr })
			})
			rerr := a.rollback(ctx, attr, ips)
			return errors.Join(err, fmt.Errorf("%w: addresses may stay assigned to handle %q: %w",
				ErrOutcomeUnknown, attr.Handle, errors.Join(aerr, rerr)))
		}
	}
	if rerr := a.rollback(ctx, attr, ips); rerr != nil {
		a.log.WarnContext(ctx, "rollback of a failed assignment", "handle", attr.Handle, "err", rerr)
		return errors.Join(err, fmt.Errorf("%w: rollback failed, addresses may stay assigned to handle %q: %w",
			ErrOutcomeUnknown, attr.Handle, rerr))
	}
	return settled(err, u)
}

// rollback releases the addresses among ips that attr still holds (an
// address whose write was not applied may be someone else's by now, and
// is left alone) and takes all of ips off attr.Handle's record, each of
// which was counted there before its block was written.
func (a *IPAM) rollback(ctx context.Context, attr *Attribute, ips []AssignedIP) error {
	byBlock := map[netip.Prefix]map[int]bool{}
	for _, ip := range ips {
		if byBlock[ip.Block] == nil {
			byBlock[ip.Block] = map[int]bool{}
		}
		byBlock[ip.Block][ordinal(ip.Block, ip.Addr)] = true
	}
	var errs []error
	for cidr, ords := range byBlock {
		_, _, remaining, err := a.releaseFromBlock(ctx, cidr, func(o int, at *Attribute) bool { return ords[o] && at.equal(attr) })
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = a.decrementHandle(ctx, attr.Handle, map[netip.Prefix]int{cidr: len(ords)}, map[netip.Prefix]int{cidr: remaining[attr.Handle]})
		if err != nil { // the handle over-counts, which GC repairs
			a.log.WarnContext(ctx, "undo handle count", "handle", attr.Handle, "err", err)
		}
	}
	return errors.Join(errs...)
}

// candidatePools returns the pools to try for a family, in order: the
// requested pools in the order of the request (the first mention of a
// pool counts), as libcalico-go's determinePools keeps them; otherwise the
// enabled pools that select the node, by Priority (higher first), then
// name. The result is shared: callers must not modify it.
func (c *cluster) candidatePools(v6 bool, requested []string, labels map[string]string, use Use) ([]IPPool, error) {
	if pools, ok := c.anyNode[anyNodeKey{v6, use}]; ok && len(requested) == 0 {
		return pools, nil
	}
	var out []IPPool
	if len(requested) > 0 {
		for _, r := range requested {
			p, ok := c.resolvePool(r)
			if !ok {
				return nil, &PoolError{Pool: r, IPv6: v6, Err: ErrUnknownPool}
			}
			if p.CIDR.Addr().Is6() != v6 {
				return nil, fmt.Errorf("%w: pool %q is not IPv%d", ErrInvalid, r, family(v6))
			}
			if p.Disabled {
				return nil, fmt.Errorf("%w: pool %q is disabled", ErrInvalid, r)
			}
			if p.allows(use) && !slices.ContainsFunc(out, func(q IPPool) bool { return q.Name == p.Name }) {
				out = append(out, p)
			}
		}
	} else {
		for i, p := range c.pools {
			if p.CIDR.Addr().Is6() == v6 && !p.Disabled && p.allows(use) && c.sels[i].Evaluate(mapLabels(labels)) {
				out = append(out, p)
			}
		}
	}
	if len(requested) == 0 {
		// tabby's extension: a deterministic order among matching pools.
		// Requested pools keep the order of the request, as in Calico.
		slices.SortStableFunc(out, func(x, y IPPool) int {
			return cmp.Or(cmp.Compare(y.Priority, x.Priority), cmp.Compare(x.Name, y.Name))
		})
	}
	return out, nil
}

type mapLabels map[string]string

func (m mapLabels) Get(k string) (string, bool) { v, ok := m[k]; return v, ok }

// resolvePool finds a pool by name or by CIDR.
func (c *cluster) resolvePool(ref string) (IPPool, bool) {
	if i, ok := c.pool(ref); ok {
		return c.pools[i], true
	}
	if pfx, err := netip.ParsePrefix(ref); err == nil {
		for _, p := range c.pools {
			if p.CIDR == pfx.Masked() {
				return p, true
			}
		}
	}
	return IPPool{}, false
}

func family(v6 bool) int {
	if v6 {
		return 6
	}
	return 4
}

func poolOf(pools []IPPool, cidr netip.Prefix) (IPPool, bool) {
	for _, p := range pools {
		if p.CIDR.Contains(cidr.Addr()) {
			return p, true
		}
	}
	return IPPool{}, false
}

var errNoFreeBlock = errors.New("no free block")

func (a *IPAM) autoAssign(ctx context.Context, c *cluster, attr *Attribute, labels map[string]string, v6 bool, num int, requested []string, reqLimit int) ([]AssignedIP, error) {
	pools, err := c.candidatePools(v6, requested, labels, attr.Use)
	if err != nil {
		return nil, err
	}
	node := attr.Node
	fail := func(reason error, detail string) error {
		names := make([]string, len(pools))
		for i, p := range pools {
			names[i] = p.Name
		}
		return &AllocationError{Family: family(v6), Node: node, Pools: names, Reason: reason, Detail: detail}
	}
	if len(pools) == 0 && len(requested) > 0 {
		return nil, fail(ErrNoMatchingPool, fmt.Sprintf("none of the requested pools %v allows %s addresses", requested, attr.Use))
	}
	if len(pools) == 0 {
		return nil, fail(ErrNoMatchingPool, "no enabled pool of this family selects the node and allows "+string(attr.Use))
	}
	limit := c.config.blockLimit()
	if reqLimit > 0 && reqLimit < limit {
		limit = reqLimit
	}
	var got []AssignedIP
	// Fast path: the node's block that last had room, without listing the
	// node's affinities (the block itself says whose it is). Only when it
	// is in the first pool to try: a block of a later pool waits for the
	// earlier pools' blocks (the order of the request, or Priority).
	if hint, ok := a.cache.current.Load(hintKey{node, v6}); ok {
		if pools[0].CIDR.Contains(hint.(netip.Prefix).Addr()) {
			ips, err := a.allocFromBlock(ctx, c, pools, hint.(netip.Prefix), attr, num, requireAffinity(node))
			if got = ips; err != nil {
				return got, err
			}
			if len(got) == num {
				return got, nil
			}
		}
	}
	// Calico's order (libcalico-go ipam.go autoAssign): the node's usable
	// affine blocks; then, if the node is at its block limit, stop with
	// ErrBlockLimit (no borrowing, strict or not); else claim a new block;
	// only when no block is left to claim, borrow unless strict affinity
	// forbids it. A block counts toward the limit only while the node may
	// still allocate from it: its pool is one of pools (enabled, selecting
	// the node or requested, allowing the use).
	owned := 0
	trustFull := true // skip blocks recently found full (cache.recentlyFull)
	for round := 0; len(got) < num && round < limit+4; round++ {
		// 1. Blocks affine to the node, in pool order.
		affs, listed := a.cache.nodeAffinities(node, a.now())
		if !trustFull || !listed {
			if affs, err = a.listAffinities(ctx, node); err != nil {
				return got, err
			}
			a.cache.putNodeAffinities(node, affs, a.now())
		}
		// The node's usable blocks in this family, in pool order and,
		// within a pool, the block that last had room first; blocks
		// recently found full are left out (but counted).
		hint, _ := a.cache.current.Load(hintKey{node, v6})
		now := a.now()
		owned = 0
		type rankedAffinity struct {
			rank int
			storedAffinity
		}
		var ranked []rankedAffinity
		for _, af := range affs {
			if af.CIDR.Addr().Is6() != v6 || af.State == AffinityPendingDeletion {
				continue
			}
			pi := slices.IndexFunc(pools, func(p IPPool) bool { return p.CIDR.Contains(af.CIDR.Addr()) })
			if pi < 0 {
				continue // unusable: counts toward nothing
			}
			owned++
			if trustFull && a.cache.recentlyFull(af.CIDR, now) {
				continue
			}
			r := 2 * pi
			if af.CIDR != hint {
				r++
			}
			ranked = append(ranked, rankedAffinity{r, af})
		}
		slices.SortStableFunc(ranked, func(x, y rankedAffinity) int { return cmp.Compare(x.rank, y.rank) })
		for _, ra := range ranked {
			af := ra.storedAffinity
			ips, err := a.allocFromBlock(ctx, c, pools, af.CIDR, attr, num-len(got), requireAffinity(node))
			got = append(got, ips...)
			if err != nil {
				return got, err
			}
			if len(ips) > 0 {
				a.cache.current.Store(hintKey{node, v6}, af.CIDR)
				if af.State == AffinityPending {
					// A claim interrupted before its confirmation: the
					// block is in use, so it is the node's (and
					// AffineBlocks, which the node agent routes, must
					// list it), also when this request ends here.
					a.confirmAffinity(ctx, af)
				}
			}
			if len(got) == num {
				return got, nil
			}
		}
		// 2. Claim a new block, unless at the limit.
		atLimit := !c.config.AutoAllocateBlocks || owned >= limit
		if atLimit && trustFull { // look at every block before giving up
			trustFull = false
			continue
		}
		if !c.config.AutoAllocateBlocks {
			return got, fail(ErrBlockLimit, fmt.Sprintf("autoAllocateBlocks is false and the node's %d usable blocks are full", owned))
		}
		if atLimit {
			return got, fail(ErrBlockLimit, fmt.Sprintf("the node has %d usable blocks (limit %d) and they are full", owned, limit))
		}
		cidr, err := a.claimBlock(ctx, c, pools, node)
		if errors.Is(err, errPoolGone) {
			// The pool was deleted while this request claimed a block
			// from it (DeletePool): go on with the pools as they are now.
			if c, err = a.loadCluster(ctx); err != nil {
				return got, err
			}
			if labels == nil && c.needsNodeLabels() {
				if labels, err = a.nodeLabels(ctx, node); err != nil {
					return got, err
				}
			}
			if pools, err = c.candidatePools(v6, requested, labels, attr.Use); err != nil {
				return got, err
			}
			if len(pools) == 0 {
				return got, fail(ErrNoMatchingPool, "the pools were deleted while the request ran")
			}
			continue
		}
		if errors.Is(err, errNoFreeBlock) {
			if trustFull {
				trustFull = false
				continue
			}
			break // 3. borrow
		}
		if err != nil {
			return got, err
		}
		// Use the new block at once rather than listing the node's
		// blocks again.
		ips, err := a.allocFromBlock(ctx, c, pools, cidr, attr, num-len(got), requireAffinity(node))
		got = append(got, ips...)
		if err != nil {
			return got, err
		}
		if len(ips) > 0 {
			a.cache.current.Store(hintKey{node, v6}, cidr)
		}
	}
	if len(got) == num {
		return got, nil
	}
	// 3. No block left to claim: borrow, unless strict affinity forbids it.
	if !c.config.StrictAffinity {
		ips, err := a.borrow(ctx, c, pools, attr, labels, num-len(got))
		got = append(got, ips...)
		if err != nil || len(got) == num {
			return got, err
		}
		detail := fmt.Sprintf("no block left to claim, the node's %d usable blocks are full and no other block has a free address", owned)
		if c.config.BorrowWithinLabel != "" {
			detail += fmt.Sprintf(" (borrowing only from nodes with the same %q label)", c.config.BorrowWithinLabel)
		}
		return got, fail(ErrPoolExhausted, detail)
	}
	othersFree, err := a.freeElsewhere(ctx, c, pools, node)
	if err != nil {
		return got, err
	}
	if othersFree > 0 {
		return got, fail(ErrStrictAffinity, fmt.Sprintf("no block left to claim and the node's %d usable blocks are full; %d free addresses are in other nodes' blocks", owned, othersFree))
	}
	return got, fail(ErrPoolExhausted, fmt.Sprintf("no block left to claim and the node's %d usable blocks are full", owned))
}

// blockCheck vets a block before allocating from it; a non-nil error stops
// the allocation, errSkip skips the block quietly.
type blockCheck func(b *allocBlock) error

var errSkip = errors.New("skip block")

func requireAffinity(node string) blockCheck {
	return func(b *allocBlock) error {
		if b.Affinity != node {
			return errSkip
		}
		return nil
	}
}

// allocFromBlock assigns up to n free, unreserved ordinals of the block with
// compare-and-swap, writing the handle first so that a crash between the
// two writes leaves a handle that over-counts (which Check reports and GC
// repairs) rather than an allocation no handle can release.
func (a *IPAM) allocFromBlock(ctx context.Context, c *cluster, pools []IPPool, cidr netip.Prefix, attr *Attribute, n int, check blockCheck) ([]AssignedIP, error) {
	return a.updateBlockForAlloc(ctx, c, pools, cidr, attr, check, true, func(b *allocBlock, mask []bool) []int {
		var pos []int
		for i, o := range b.Unallocated {
			if len(pos) == n {
				break
			}
			if mask == nil || !mask[o] {
				pos = append(pos, i)
			}
		}
		return pos
	})
}

// updateBlockForAlloc assigns the ordinals pick chooses (positions in
// Unallocated). For automatic assignment (auto) it returns at once,
// without decoding, for a block with no free ordinal, and gives pick the
// reserved ordinals (IPReservations) to avoid; explicit requests ignore
// reservations, as in Calico.
func (a *IPAM) updateBlockForAlloc(ctx context.Context, c *cluster, pools []IPPool, cidr netip.Prefix, attr *Attribute, check blockCheck, auto bool, pick func(b *allocBlock, mask []bool) []int) ([]AssignedIP, error) {
	key := blockKey(cidr)
	var enc []byte // attr's encoding in a block affine to encAffinity
	var encAffinity string
	for attempt := 0; attempt < a.maxRetries; attempt++ {
		if err := a.backoff(ctx, attempt); err != nil {
			return nil, err
		}
		kv, err := a.s.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		raw := kv.Value
		if free, ok := peekFree(raw); auto && ok && free == 0 {
			a.cache.markFull(cidr, a.now())
			return nil, nil // full: nothing to take, whoever owns it
		}
		st := keyStamp(kv.Revision, len(raw))
		h, ok := cached[*hotBlock](&a.cache, key, st)
		if !ok {
			if h, err = parseHot(raw, kv.Revision); err != nil {
				return nil, fmt.Errorf("block %s: %w", cidr, err)
			}
			a.cache.put(key, st, h)
		}
		b := &h.b // shared: read only
		if err := check(b); err != nil {
			if errors.Is(err, errSkip) {
				return nil, nil
			}
			return nil, err
		}
		var mask []bool
		if auto {
			var all bool
			if mask, all = reservedMask(b.CIDR, c.reserved); all {
				return nil, nil
			}
		}
		pos := pick(b, mask)
		if len(pos) == 0 {
			return nil, nil
		}
		if err := a.incrementHandle(ctx, attr.Handle, cidr, len(pos)); err != nil {
			return nil, err
		}
		if enc == nil || encAffinity != b.Affinity {
			// The encoding depends on the block's affinity.
			enc, encAffinity = appendAttribute(make([]byte, 0, 96), attr, b.Affinity), b.Affinity
		}
		idx, err := hotAttrIndex(h, raw, attr, enc)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", cidr, err)
		}
		newAttr := []byte(nil)
		if idx < 0 {
			idx, newAttr = int32(len(h.attrEnds)), enc
		}
		ips := make([]AssignedIP, len(pos))
		pool, _ := poolOf(pools, cidr)
		if pool.Name == "" {
			pool, _ = c.poolFor(cidr.Addr())
		}
		nb := allocBlock{CIDR: b.CIDR, Affinity: b.Affinity, Allocations: slices.Clone(b.Allocations)}
		var taken []bool
		if len(pos) > 8 {
			taken = make([]bool, len(b.Unallocated))
		}
		for i, p := range pos {
			o := int(b.Unallocated[p])
			if taken != nil {
				taken[p] = true
			}
			nb.Allocations[o] = idx
			ips[i] = AssignedIP{Addr: b.Addr(o), Block: cidr, Pool: pool.Name,
				Borrowed: b.Affinity != attr.Node, BlockAffinity: b.Affinity}
		}
		nb.Unallocated = make([]int32, 0, len(b.Unallocated))
		for i, o := range b.Unallocated {
			if taken != nil && !taken[i] || taken == nil && !slices.Contains(pos, i) {
				nb.Unallocated = append(nb.Unallocated, o)
			}
		}
		buf, nh := encodeHot(&nb, h, newAttr)
		rev, err := a.s.Update(ctx, key, buf, kv.Revision) // buf is never modified: nh refers to it
		if err == nil {
			nh.rev = rev
			a.cache.put(key, keyStamp(rev, nh.rawLen), nh)
			return ips, nil
		}
		if !definite(err) {
			// Maybe applied: read the block back to find out.
			applied, rerr := a.allocApplied(ctx, cidr, kv.Revision, ips, attr)
			switch {
			case rerr != nil:
				a.log.WarnContext(ctx, "block write with unknown outcome", "block", cidr, "err", err, "read", rerr)
				return ips, &unknownWrite{block: cidr, casRev: kv.Revision, ips: ips, err: err}
			case applied:
				return ips, nil
			}
		}
		// Certainly not applied: undo the handle count. Should that fail,
		// the handle over-counts, which GC repairs; never under-counts.
		if derr := a.decrementHandle(ctx, attr.Handle, map[netip.Prefix]int{cidr: len(pos)}, nil); derr != nil {
			a.log.WarnContext(ctx, "undo handle count", "handle", attr.Handle, "err", derr)
		}
		if !retryable(err) {
			return nil, fmt.Errorf("update block %s: %w", cidr, err)
		}
	}
	return nil, fmt.Errorf("block %s: %w", cidr, ErrTooManyConflicts)
}

var errMixedOutcome = errors.New("some of the addresses are held, some not")

// allocApplied settles a block write, compare-and-swapped against
// revision casRev, whose outcome is unknown: it reports whether the write
// was applied, or an error when it cannot tell. Applied: every address is
// held by an attribute equal to attr (the handle and its creation time
// make that unique). Not applied: none is, and the write can no longer
// land — the block has moved past casRev, or this rewrites the block as
// read at casRev to fence off a write still in flight (etcd may apply a
// proposal after reporting a timeout).
func (a *IPAM) allocApplied(ctx context.Context, cidr netip.Prefix, casRev int64, ips []AssignedIP, attr *Attribute) (bool, error) {
	key := blockKey(cidr)
	for range 3 {
		kv, err := a.s.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil // gone: a compare against casRev never succeeds again
		}
		if err != nil {
			return false, err
		}
		b, err := decodeBlock(kv.Value)
		if err != nil {
			return false, fmt.Errorf("block %s: %w", cidr, err)
		}
		held := 0
		for _, ip := range ips {
			if at, ok := b.Holder(ip.Addr); ok && at.equal(attr) {
				held++
			}
		}
		switch {
		case held == len(ips):
			return true, nil
		case held > 0:
			return false, errMixedOutcome
		case kv.Revision != casRev:
			return false, nil
		}
		// Unchanged since the read the write was based on: fence it off.
		_, err = a.s.Update(ctx, key, kv.Value, casRev)
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return false, err
		}
		// Something landed meanwhile, maybe ours: look again.
	}
	return false, fmt.Errorf("block %s: %w", cidr, ErrTooManyConflicts)
}

// incrementHandle adds n allocations in block to the handle's record.
func (a *IPAM) incrementHandle(ctx context.Context, handle string, block netip.Prefix, n int) error {
	now := a.now().UTC()
	// Most handles are new: try a plain create first.
	_, err := a.s.Create(ctx, handleKey(handle), encodeNewHandle(block, n, now))
	if err == nil || !errors.Is(err, store.ErrExists) {
		if err != nil {
			return fmt.Errorf("record handle %q: %w", handle, err)
		}
		return nil
	}
	err = a.modifyHandle(ctx, handle, func(h *handleRecord, _ bool) (edit, error) {
		if h.Blocks == nil {
			h.Blocks = map[string]int{}
		}
		h.Blocks[block.String()] += n
		h.Updated = now
		return editWrite, nil
	})
	if err != nil {
		return fmt.Errorf("record handle %q: %w", handle, err)
	}
	return nil
}

// decrementHandle subtracts counts from the handle's record, dropping
// blocks that reach zero and the record when it is empty. A block's count
// never drops below floors[block]: the handle's allocations in the block
// as written by the release that calls this, so a GC that rebuilt the
// record in between (already without the released addresses) does not
// lose the handle's other addresses. It leaves Updated alone: the record
// is stamped by increments, which is what GC's grace period protects.
func (a *IPAM) decrementHandle(ctx context.Context, handle string, counts, floors map[netip.Prefix]int) error {
	return a.modifyHandle(ctx, handle, func(h *handleRecord, exists bool) (edit, error) {
		if !exists {
			return editSkip, nil
		}
		changed := false
		for cidr, n := range counts {
			k := cidr.String()
			cur, had := h.Blocks[k]
			next := max(cur-n, floors[cidr])
			if next <= 0 {
				delete(h.Blocks, k)
			} else {
				h.Blocks[k] = next
			}
			changed = changed || next != cur || (had && next <= 0)
		}
		switch {
		case len(h.Blocks) == 0:
			return editDelete, nil
		case !changed:
			return editSkip, nil
		}
		return editWrite, nil
	})
}

func (a *IPAM) confirmAffinity(ctx context.Context, af storedAffinity) {
	af.State, af.Updated = AffinityConfirmed, a.now().UTC()
	b, _ := json.Marshal(af.Affinity)
	if _, err := a.s.Update(ctx, affinityKey(af.Node, af.CIDR), b, af.rev); err != nil {
		a.log.DebugContext(ctx, "confirm affinity", "node", af.Node, "block", af.CIDR, "err", err)
	}
}

// blockCIDRs returns the CIDRs of every existing block (from keys only).
func (a *IPAM) blockCIDRs(ctx context.Context) (map[netip.Prefix]bool, error) {
	keys, _, err := store.ListKeys(ctx, a.s, keyBlocks)
	if err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}
	out := make(map[netip.Prefix]bool, len(keys))
	for _, k := range keys {
		if p, err := netip.ParsePrefix(strings.Replace(strings.TrimPrefix(k, keyBlocks), "-", "/", 1)); err == nil {
			out[p] = true
		}
	}
	a.cache.resetKnown(out)
	return out, nil
}

func findFreeIn(c *cluster, pools []IPPool, node string, existing map[netip.Prefix]bool) (netip.Prefix, error) {
	for _, p := range pools {
		var found netip.Prefix
		covered := func(b netip.Prefix) (netip.Prefix, bool) { return coveringReservation(b, c.reserved) }
		blockCandidatesSkipping(p, node, uint64(len(existing))+1<<16, covered, func(cidr netip.Prefix) bool {
			if existing[cidr] {
				return true
			}
			found = cidr
			return false
		})
		if found.IsValid() {
			return found, nil
		}
	}
	return netip.Prefix{}, errNoFreeBlock
}

// claimBlock carves a new block for node: affinity (pending), then the
// block, then the affinity confirmed. Racing claimers of the same block are
// settled by the block's Create; the loser withdraws its affinity. The
// candidate comes from the cache of known blocks and is probed first, so a
// claim reads one key rather than listing every block.
func (a *IPAM) claimBlock(ctx context.Context, c *cluster, pools []IPPool, node string) (netip.Prefix, error) {
	fresh := false
	reload := func() error {
		fresh = true
		_, err := a.blockCIDRs(ctx)
		return err
	}
	if !a.cache.knownLoaded() {
		if err := reload(); err != nil {
			return netip.Prefix{}, err
		}
	}
	const maxStaleProbes = 8
	stale := 0
	for attempt := 0; attempt < a.maxRetries; attempt++ {
		cidr, err := a.cache.findFree(c, pools, node)
		if errors.Is(err, errNoFreeBlock) && !fresh {
			if err := reload(); err != nil {
				return netip.Prefix{}, err
			}
			continue
		}
		if err != nil {
			return netip.Prefix{}, err
		}
		ours, err := a.probeBlock(ctx, cidr, node)
		if err != nil {
			return netip.Prefix{}, err
		}
		if ours {
			err = a.claim(ctx, node, cidr)
		} else {
			err = errBlockTaken
		}
		if err == nil {
			a.log.DebugContext(ctx, "claimed block", "node", node, "block", cidr)
			return cidr, nil
		}
		if !errors.Is(err, errBlockTaken) {
			return netip.Prefix{}, err
		}
		a.cache.addKnown(cidr)
		if stale++; stale >= maxStaleProbes && !fresh {
			if err := reload(); err != nil {
				return netip.Prefix{}, err
			}
		}
	}
	return netip.Prefix{}, fmt.Errorf("claim block: %w", ErrTooManyConflicts)
}

// probeBlock reports whether node may claim cidr: the block does not exist,
// or it is node's own from an interrupted earlier claim.
func (a *IPAM) probeBlock(ctx context.Context, cidr netip.Prefix, node string) (bool, error) {
	kv, err := a.s.Get(ctx, blockKey(cidr))
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read block %s: %w", cidr, err)
	}
	b, err := decodeBlock(kv.Value)
	if err != nil {
		return false, fmt.Errorf("block %s: %w", cidr, err)
	}
	return b.Affinity == node, nil
}

var errBlockTaken = errors.New("block already exists")

// errPoolGone: the pool of a block being created was deleted meanwhile.
// It matches ErrNotInPool, what AssignIP of an address in it returns.
var errPoolGone = fmt.Errorf("its pool was deleted meanwhile: %w", ErrNotInPool)

// poolStillThere reads the pools afresh and returns an error matching
// errPoolGone unless a pool with cidr's block size holds cidr.
func (a *IPAM) poolStillThere(ctx context.Context, cidr netip.Prefix) error {
	c, err := a.loadCluster(ctx)
	if err != nil {
		return err
	}
	if p, ok := c.poolFor(cidr.Addr()); ok && p.BlockSize == cidr.Bits() {
		return nil
	}
	return fmt.Errorf("block %s: %w", cidr, errPoolGone)
}

// withdrawBlock deletes block cidr, just created affine to node ("" for
// none), because its pool is gone; a block someone allocated from
// meanwhile is left alone (Check reports it outside every pool).
func (a *IPAM) withdrawBlock(ctx context.Context, cidr netip.Prefix, node string) {
	sb, err := a.getBlock(ctx, cidr)
	if err == nil && sb.block.Used() == 0 && sb.block.Affinity == node {
		err = a.s.Delete(ctx, blockKey(cidr), sb.rev)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		a.log.DebugContext(ctx, "withdraw block of a deleted pool", "block", cidr, "err", err)
	}
}

func (a *IPAM) claim(ctx context.Context, node string, cidr netip.Prefix) error {
	now := a.now().UTC()
	af := Affinity{Node: node, CIDR: cidr, State: AffinityPending, Updated: now}
	key := affinityKey(node, cidr)
	val, _ := json.Marshal(af)
	var rev int64
	var err error
	for attempt := 0; attempt < a.maxRetries; attempt++ {
		rev, err = a.s.Create(ctx, key, val)
		if err == nil || (definite(err) && !errors.Is(err, store.ErrExists)) {
			break
		}
		// It exists (an interrupted earlier claim, or a release under
		// way), or maybe our Create was applied: read it.
		cur, crev, gerr := getJSON[Affinity](ctx, a.s, key)
		if gerr == nil {
			af, rev, err = cur, crev, nil
			break
		}
		if !errors.Is(gerr, store.ErrNotFound) || !errors.Is(err, store.ErrExists) {
			break // the read failed, or our Create failed unapplied
		}
		// Deleted meanwhile: create it again.
	}
	if err != nil {
		return fmt.Errorf("claim %s for %s: %w", cidr, node, err)
	}
	if af.State == AffinityPendingDeletion {
		return errBlockTaken
	}
	_, err = a.s.Create(ctx, blockKey(cidr), encodeBlock(newBlock(cidr, node, now)))
	if err == nil || !definite(err) {
		// The pools are read after the block is written, and DeletePool
		// lists blocks after removing the pool, so that one of the two
		// sees the other: back off when the pool is gone.
		if perr := a.poolStillThere(ctx, cidr); perr != nil {
			if errors.Is(perr, errPoolGone) {
				a.withdrawBlock(ctx, cidr, node)
				if derr := a.s.Delete(ctx, key, rev); derr != nil && !errors.Is(derr, store.ErrNotFound) {
					a.log.DebugContext(ctx, "withdraw affinity", "node", node, "block", cidr, "err", derr)
				}
			}
			return fmt.Errorf("claim %s for %s: %w", cidr, node, perr)
		}
	}
	if err != nil && !definite(err) {
		// Maybe created: it is ours if it exists affine to node.
		if _, gerr := a.getBlock(ctx, cidr); gerr == nil {
			err = store.ErrExists // settled below: ours if affine to node
		}
	}
	if errors.Is(err, store.ErrExists) {
		sb, gerr := a.getBlock(ctx, cidr)
		if gerr == nil && sb.block.Affinity == node {
			err = nil // ours, from an interrupted earlier claim
		} else {
			if derr := a.s.Delete(ctx, key, rev); derr != nil && !errors.Is(derr, store.ErrNotFound) {
				a.log.DebugContext(ctx, "withdraw affinity", "node", node, "block", cidr, "err", derr)
			}
			return errBlockTaken
		}
	}
	if err != nil {
		return fmt.Errorf("create block %s for %s: %w", cidr, node, err)
	}
	if af.State == AffinityConfirmed {
		return nil
	}
	af.State, af.Updated = AffinityConfirmed, now
	val, _ = json.Marshal(af)
	if _, err := a.s.Update(ctx, key, val, rev); err != nil {
		// A conflict usually means GC or a second Assign for the node
		// confirmed it first, and a lost response may hide our own
		// write: either way the claim stands if the affinity now reads
		// confirmed.
		if cur, _, gerr := getJSON[Affinity](ctx, a.s, key); gerr == nil && cur.State == AffinityConfirmed && cur.Node == node {
			return nil
		}
		return writeErr(fmt.Sprintf("confirm affinity %s for %s", cidr, node), err)
	}
	return nil
}

// borrowable lists blocks in pools not affine to node that have free
// addresses, honouring BorrowWithinLabel, in pool order and random order
// within a pool.
func (a *IPAM) borrowable(ctx context.Context, c *cluster, pools []IPPool, node string, labels map[string]string) ([]storedBlock, error) {
	blocks, err := a.listBlocks(ctx)
	if err != nil {
		return nil, err
	}
	label := c.config.BorrowWithinLabel
	want, haveLabel := labels[label]
	ownerOK := map[string]bool{}
	var out []storedBlock
	for _, sb := range blocks {
		b := sb.block
		if b.Affinity == node || len(b.Unallocated) == 0 {
			continue
		}
		if _, ok := poolOf(pools, b.CIDR); !ok {
			continue
		}
		if label != "" {
			ok, seen := ownerOK[b.Affinity]
			if !seen {
				ol, err := a.nodeLabels(ctx, b.Affinity)
				if err != nil {
					return nil, err
				}
				v, has := ol[label]
				ok = b.Affinity != "" && haveLabel && has && v == want
				ownerOK[b.Affinity] = ok
			}
			if !ok {
				continue
			}
		}
		out = append(out, sb)
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	slices.SortStableFunc(out, func(x, y storedBlock) int {
		return cmp.Compare(slices.IndexFunc(pools, func(p IPPool) bool { return p.CIDR.Contains(x.block.CIDR.Addr()) }),
			slices.IndexFunc(pools, func(p IPPool) bool { return p.CIDR.Contains(y.block.CIDR.Addr()) }))
	})
	return out, nil
}

func (a *IPAM) borrow(ctx context.Context, c *cluster, pools []IPPool, attr *Attribute, labels map[string]string, n int) ([]AssignedIP, error) {
	cands, err := a.borrowable(ctx, c, pools, attr.Node, labels)
	if err != nil {
		return nil, err
	}
	var got []AssignedIP
	for _, sb := range cands {
		ips, err := a.allocFromBlock(ctx, c, pools, sb.block.CIDR, attr, n-len(got), func(b *allocBlock) error {
			if b.Affinity == attr.Node {
				return errSkip
			}
			return nil
		})
		got = append(got, ips...)
		if err != nil {
			return got, err
		}
		if len(got) == n {
			break
		}
	}
	return got, nil
}

// freeElsewhere counts free, unreserved addresses in other nodes' blocks.
func (a *IPAM) freeElsewhere(ctx context.Context, c *cluster, pools []IPPool, node string) (int, error) {
	blocks, err := a.listBlocks(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sb := range blocks {
		if _, ok := poolOf(pools, sb.block.CIDR); !ok || sb.block.Affinity == node {
			continue
		}
		n += freeCount(sb.block, c.reserved)
	}
	return n, nil
}

func freeCount(b *allocBlock, reserved []netip.Prefix) int {
	mask, all := reservedMask(b.CIDR, reserved)
	if all {
		return 0
	}
	n := 0
	for _, o := range b.Unallocated {
		if mask == nil || !mask[o] {
			n++
		}
	}
	return n
}
