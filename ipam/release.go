package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/selector"
)

// AssignIPArgs asks for specific addresses (the cni.projectcalico.org/ipAddrs
// annotation, CNI_ARGS IP=).
type AssignIPArgs struct {
	Addrs          []netip.Addr
	Handle         string
	Node           string
	Namespace, Pod string
	Extra          map[string]string
	FloatingIPs    []netip.Addr
	Use            Use
}

// AssignIP assigns exactly the requested addresses, all or nothing. Each
// must lie in an enabled pool (ErrNotInPool) and be free
// (ErrAddressInUse). As in Calico, IPReservations do not apply: they keep
// automatic assignment (Assign) away, and an explicit request is the
// documented way to give a reserved address to one pod. An address in a
// pool that does not allow Use matches ErrNoMatchingPool and ErrInvalid.
//
// If an address's block does not exist yet, it is claimed for the node
// (AssignedIP.Borrowed false) when the node may claim another block:
// AutoAllocateBlocks is on and the node has fewer usable blocks than
// MaxBlocksPerHost. Otherwise, without StrictAffinity the block is created
// with no affinity and the address comes back with Borrowed true (route a
// /32 or /128 for it); with StrictAffinity the request fails with an
// *AllocationError matching ErrBlockLimit. Under strict affinity an
// address in another node's block is refused (ErrStrictAffinity). As with
// Assign, an error that does not match ErrOutcomeUnknown means nothing
// stays assigned.
func (a *IPAM) AssignIP(ctx context.Context, args AssignIPArgs) ([]AssignedIP, error) {
	attr, err := a.attribute(args.Handle, args.Node, args.Namespace, args.Pod, args.Extra, args.FloatingIPs, args.Use)
	if err != nil {
		return nil, err
	}
	if len(args.Addrs) == 0 {
		return nil, fmt.Errorf("%w: no addresses requested", ErrInvalid)
	}
	c, err := a.loadCluster(ctx)
	if err != nil {
		return nil, err
	}
	// Validate everything before writing anything.
	for i, addr := range args.Addrs {
		if !addr.IsValid() || addr.Is4In6() || addr.Zone() != "" {
			return nil, fmt.Errorf("%w: bad address %v", ErrInvalid, addr)
		}
		if slices.Contains(args.Addrs[:i], addr) {
			return nil, fmt.Errorf("%w: %s requested twice", ErrInvalid, addr)
		}
		p, ok := c.poolFor(addr)
		if !ok || p.Disabled {
			return nil, fmt.Errorf("assign %s: %w", addr, ErrNotInPool)
		}
		if !p.allows(attr.Use) {
			// Both sentinels: ErrNoMatchingPool as from Assign with a
			// requested pool of the wrong use, ErrInvalid as before.
			return nil, fmt.Errorf("%w: %w", ErrInvalid, &AllocationError{Family: family(addr.Is6()), Node: attr.Node,
				Pools: []string{p.Name}, Reason: ErrNoMatchingPool,
				Detail: fmt.Sprintf("%s is in pool %q, which does not allow %s addresses", addr, p.Name, attr.Use)})
		}
	}
	var got []AssignedIP
	for _, addr := range args.Addrs {
		ips, err := a.assignOne(ctx, c, &attr, addr)
		got = append(got, ips...)
		if err != nil {
			return nil, a.failed(ctx, &attr, got, err)
		}
	}
	return got, nil
}

// assignOne assigns addr; on an error with an unknown outcome it returns
// the address too, for the rollback.
func (a *IPAM) assignOne(ctx context.Context, c *cluster, attr *Attribute, addr netip.Addr) ([]AssignedIP, error) {
	p, _ := c.poolFor(addr)
	cidr := blockFor(addr, p.BlockSize)
	pools := []IPPool{p}
	for attempt := 0; attempt < a.maxRetries; attempt++ {
		if err := a.backoff(ctx, attempt); err != nil {
			return nil, err
		}
		if _, err := a.s.Get(ctx, blockKey(cidr)); errors.Is(err, store.ErrNotFound) {
			if err := a.createBlockFor(ctx, c, attr, cidr); err != nil && !errors.Is(err, errBlockTaken) {
				return nil, fmt.Errorf("assign %s: %w", addr, err)
			}
			continue
		} else if err != nil {
			return nil, err
		}
		var inUse bool
		ips, err := a.updateBlockForAlloc(ctx, c, pools, cidr, attr, func(b *allocBlock) error {
			if c.config.StrictAffinity && b.Affinity != attr.Node {
				return &AllocationError{Family: family(addr.Is6()), Node: attr.Node, Pools: []string{p.Name}, Reason: ErrStrictAffinity,
					Detail: fmt.Sprintf("%s is in block %s affine to %q", addr, b.CIDR, b.Affinity)}
			}
			return nil
		}, false, func(b *allocBlock, _ []bool) []int {
			o := int32(ordinal(b.CIDR, addr))
			i := slices.Index(b.Unallocated, o)
			if i < 0 {
				inUse = true
				return nil
			}
			return []int{i}
		})
		if err != nil {
			return ips, err
		}
		if inUse {
			return nil, fmt.Errorf("assign %s: %w", addr, ErrAddressInUse)
		}
		if len(ips) == 1 {
			return ips, nil
		}
		// The block vanished between the two reads: go round again.
	}
	return nil, fmt.Errorf("assign %s: %w", addr, ErrTooManyConflicts)
}

// createBlockFor creates the block holding a requested address: affine to
// the node when it may claim another block (it has fewer usable blocks
// than the limit, counted as Assign counts them), else (without strict
// affinity) with no affinity.
func (a *IPAM) createBlockFor(ctx context.Context, c *cluster, attr *Attribute, cidr netip.Prefix) error {
	node := attr.Node
	var labels selector.Map
	if c.needsNodeLabels() {
		var err error
		if labels, err = a.nodeLabels(ctx, node); err != nil {
			return err
		}
	}
	usable, err := c.candidatePools(cidr.Addr().Is6(), nil, labels, attr.Use)
	if err != nil {
		return err
	}
	affs, err := a.listAffinities(ctx, node)
	if err != nil {
		return err
	}
	owned := 0
	for _, af := range affs {
		if _, ok := poolOf(usable, af.CIDR); ok && af.CIDR.Addr().Is6() == cidr.Addr().Is6() && af.State != AffinityPendingDeletion {
			owned++
		}
	}
	if c.config.AutoAllocateBlocks && owned < c.config.blockLimit() {
		return a.claim(ctx, node, cidr)
	}
	if c.config.StrictAffinity {
		return &AllocationError{Family: family(cidr.Addr().Is6()), Node: node, Reason: ErrBlockLimit,
			Detail: fmt.Sprintf("block %s does not exist and the node may not claim it", cidr)}
	}
	_, err = a.s.Create(ctx, blockKey(cidr), encodeBlock(newBlock(cidr, "", a.now().UTC())))
	if errors.Is(err, store.ErrExists) {
		return errBlockTaken
	}
	if err == nil || !definite(err) {
		// As in claim: read the pools after writing the block, for
		// DeletePool.
		if perr := a.poolStillThere(ctx, cidr); perr != nil {
			if errors.Is(perr, errPoolGone) {
				a.withdrawBlock(ctx, cidr, "")
			}
			return errors.Join(err, perr)
		}
	}
	return err
}

// ReleaseByHandle frees every address assigned under handle and returns
// them. Releasing an unknown or already released handle is not an error.
func (a *IPAM) ReleaseByHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	h, rev, err := a.getHandle(ctx, handle)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("release handle %q: %w", handle, err)
	}
	var out []netip.Addr
	done, floors := map[netip.Prefix]int{}, map[netip.Prefix]int{}
	for k, n := range h.Blocks {
		cidr, err := netip.ParsePrefix(k)
		if err != nil {
			continue
		}
		addrs, _, remaining, err := a.releaseFromBlock(ctx, cidr, func(_ int, at *Attribute) bool { return at.Handle == handle })
		if err != nil {
			return out, fmt.Errorf("release handle %q: %w", handle, err)
		}
		out = append(out, addrs...)
		done[cidr] = max(n, len(addrs))  // drop the block from the record whatever it counted
		floors[cidr] = remaining[handle] // unless an assignment to the handle raced this
	}
	// Usually nobody touched the record meanwhile: delete it at the
	// revision read; otherwise subtract what was released.
	if err := a.s.Delete(ctx, handleKey(handle), rev); err != nil {
		if !retryable(err) {
			return out, writeErr(fmt.Sprintf("release handle %q", handle), err)
		}
		if err := a.decrementHandle(ctx, handle, done, floors); err != nil {
			return out, fmt.Errorf("release handle %q: %w", handle, err)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	a.log.DebugContext(ctx, "released handle", "handle", handle, "addrs", len(out))
	return out, nil
}

// releaseFromBlock frees the ordinals drop selects, deleting the block when
// it ends up empty with no affinity. It returns the freed addresses, the
// count freed per handle, and the count per handle left in the block as
// written (or as read, when nothing was freed). A write whose outcome is
// unknown is an error matching ErrOutcomeUnknown.
func (a *IPAM) releaseFromBlock(ctx context.Context, cidr netip.Prefix, drop func(ord int, at *Attribute) bool) (addrs []netip.Addr, freed, remaining map[string]int, err error) {
	for attempt := 0; attempt < a.maxRetries; attempt++ {
		if err := a.backoff(ctx, attempt); err != nil {
			return nil, nil, nil, err
		}
		sb, err := a.getBlock(ctx, cidr)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, nil, nil
		}
		if err != nil {
			return nil, nil, nil, err
		}
		b := sb.block
		addrs = addrs[:0]
		freed := b.release(func(ord int, at *Attribute) bool {
			if drop(ord, at) {
				addrs = append(addrs, b.Addr(ord))
				return true
			}
			return false
		}, a.now().UTC())
		if len(freed) == 0 {
			return nil, nil, b.handleCounts(), nil
		}
		if b.Used() == 0 && b.Affinity == "" {
			err = a.s.Delete(ctx, blockKey(cidr), sb.rev)
		} else {
			_, err = a.s.Update(ctx, blockKey(cidr), encodeBlock(b), sb.rev)
		}
		if err == nil {
			return addrs, freed, b.handleCounts(), nil
		}
		if !retryable(err) {
			return nil, nil, nil, writeErr("update block "+cidr.String(), err)
		}
	}
	return nil, nil, nil, fmt.Errorf("block %s: %w", cidr, ErrTooManyConflicts)
}

// writeErr wraps the error of a store write, marking it ErrOutcomeUnknown
// unless the store certainly did not apply it.
func writeErr(what string, err error) error {
	if definite(err) || errors.Is(err, ErrOutcomeUnknown) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrOutcomeUnknown, err)
}

// blockOf finds the block that holds addr: from its pool's block size, or
// by scanning blocks when the pool is gone.
func (a *IPAM) blockOf(ctx context.Context, c *cluster, addr netip.Addr) (netip.Prefix, bool, error) {
	if p, ok := c.poolFor(addr); ok {
		return blockFor(addr, p.BlockSize), true, nil
	}
	cidrs, err := a.blockCIDRs(ctx)
	if err != nil {
		return netip.Prefix{}, false, err
	}
	for cidr := range cidrs {
		if cidr.Contains(addr) {
			return cidr, true, nil
		}
	}
	return netip.Prefix{}, false, nil
}

// ReleaseIPs frees the given addresses whoever holds them and returns those
// that were allocated. Free or unknown addresses are skipped.
func (a *IPAM) ReleaseIPs(ctx context.Context, addrs ...netip.Addr) ([]netip.Addr, error) {
	c, err := a.loadCluster(ctx)
	if err != nil {
		return nil, err
	}
	byBlock := map[netip.Prefix]map[int]bool{}
	for _, addr := range addrs {
		cidr, ok, err := a.blockOf(ctx, c, addr)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if byBlock[cidr] == nil {
			byBlock[cidr] = map[int]bool{}
		}
		byBlock[cidr][ordinal(cidr, addr)] = true
	}
	var out []netip.Addr
	for cidr, ords := range byBlock {
		got, freed, remaining, err := a.releaseFromBlock(ctx, cidr, func(o int, _ *Attribute) bool { return ords[o] })
		if err != nil {
			return out, err
		}
		out = append(out, got...)
		for h, n := range freed {
			// The floor keeps the handle's other addresses in the block
			// counted should GC have rebuilt the record since the write.
			if err := a.decrementHandle(ctx, h, map[netip.Prefix]int{cidr: n}, map[netip.Prefix]int{cidr: remaining[h]}); err != nil {
				return out, fmt.Errorf("release %s: %w", cidr, err)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// IPsByHandle returns the addresses assigned under handle, sorted (none
// for an unknown handle). It is the lookup a retried CNI ADD needs, since
// Assign with a handle that already holds addresses assigns more: if it
// returns addresses, the earlier ADD got as far as assigning them (an
// Assign that failed without ErrOutcomeUnknown leaves nothing). It reads
// the handle's record, then the blocks the record names, so addresses of
// an Assign still in flight may be missing.
func (a *IPAM) IPsByHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	h, _, err := a.getHandle(ctx, handle)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for k := range h.Blocks {
		cidr, err := netip.ParsePrefix(k)
		if err != nil {
			continue
		}
		sb, err := a.getBlock(ctx, cidr)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for o, idx := range sb.block.Allocations {
			if idx >= 0 && int(idx) < len(sb.block.Attributes) && sb.block.Attributes[idx].Handle == handle {
				out = append(out, sb.block.Addr(o))
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// IPInfo describes one address for `tabbyctl ipam show --ip`.
type IPInfo struct {
	Addr      netip.Addr
	Pool      string       // "" when outside every pool
	Block     netip.Prefix // invalid when the block does not exist
	Affinity  string       // the block's node
	Allocated bool
	Attribute Attribute // the holder, when Allocated
	Borrowed  bool      // allocated for a node other than the block's
	Reserved  bool
}

// Lookup reports the state of one address. An invalid address, an
// IPv4-mapped IPv6 one (write it as IPv4) or one with a zone is
// ErrInvalid; an address in no pool and no block is an IPInfo with only
// Addr set.
func (a *IPAM) Lookup(ctx context.Context, addr netip.Addr) (IPInfo, error) {
	if !addr.IsValid() || addr.Is4In6() || addr.Zone() != "" {
		return IPInfo{}, fmt.Errorf("%w: lookup %s: want a plain IPv4 or IPv6 address", ErrInvalid, addrString(addr))
	}
	c, err := a.loadCluster(ctx)
	if err != nil {
		return IPInfo{}, err
	}
	info := IPInfo{Addr: addr}
	if p, ok := c.poolFor(addr); ok {
		info.Pool = p.Name
	}
	for _, r := range c.reserved {
		info.Reserved = info.Reserved || r.Contains(addr)
	}
	cidr, ok, err := a.blockOf(ctx, c, addr)
	if err != nil || !ok {
		return info, err
	}
	sb, err := a.getBlock(ctx, cidr)
	if errors.Is(err, store.ErrNotFound) {
		return info, nil
	}
	if err != nil {
		return info, err
	}
	info.Block, info.Affinity = cidr, sb.block.Affinity
	if at, ok := sb.block.Holder(addr); ok {
		info.Allocated, info.Attribute = true, *at
		info.Borrowed = at.Node != sb.block.Affinity
	}
	return info, nil
}

var errNotEmpty = errors.New("block not empty")

// releaseAffinity gives up a node's claim on a block: the affinity goes to
// pendingDeletion, then the block is deleted if empty (or, when
// requireEmpty is false, kept with no affinity), then the affinity is
// deleted. A crash in between leaves a pendingDeletion affinity that Check
// reports and GC finishes.
func (a *IPAM) releaseAffinity(ctx context.Context, af storedAffinity, requireEmpty bool) error {
	key := affinityKey(af.Node, af.CIDR)
	if af.State == AffinityPendingDeletion {
		// Resuming a release (GC, from its snapshot): go on only if the
		// affinity is still the one read. Otherwise the release was
		// finished, and the node may have claimed the block afresh, whose
		// new block this must not delete.
		if _, rev, err := getJSON[Affinity](ctx, a.s, key); err != nil || rev != af.rev {
			if errors.Is(err, store.ErrNotFound) || err == nil {
				return fmt.Errorf("resume release of %s of %s: %w", af.CIDR, af.Node, store.ErrConflict)
			}
			return err
		}
	} else {
		af.State, af.Updated = AffinityPendingDeletion, a.now().UTC()
		val, _ := json.Marshal(af.Affinity)
		rev, err := a.s.Update(ctx, key, val, af.rev)
		if err != nil {
			return fmt.Errorf("release affinity %s of %s: %w", af.CIDR, af.Node, err)
		}
		af.rev = rev
	}
	for attempt := 0; ; attempt++ {
		if attempt >= a.maxRetries {
			return fmt.Errorf("release block %s: %w", af.CIDR, ErrTooManyConflicts)
		}
		if err := a.backoff(ctx, attempt); err != nil {
			return err
		}
		sb, err := a.getBlock(ctx, af.CIDR)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return err
		}
		b := sb.block
		if b.Affinity != af.Node {
			break
		}
		if b.Used() == 0 {
			err = a.s.Delete(ctx, blockKey(af.CIDR), sb.rev)
		} else if requireEmpty {
			// Someone allocated meanwhile: keep the claim.
			af.State, af.Updated = AffinityConfirmed, a.now().UTC()
			val, _ := json.Marshal(af.Affinity)
			if _, err := a.s.Update(ctx, key, val, af.rev); err != nil {
				return fmt.Errorf("restore affinity %s of %s: %w", af.CIDR, af.Node, err)
			}
			return errNotEmpty
		} else {
			b.Affinity = ""
			_, err = a.s.Update(ctx, blockKey(af.CIDR), encodeBlock(b), sb.rev)
		}
		if err == nil {
			break
		}
		if !retryable(err) {
			return fmt.Errorf("release block %s: %w", af.CIDR, err)
		}
	}
	if err := a.s.Delete(ctx, key, af.rev); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete affinity %s of %s: %w", af.CIDR, af.Node, err)
	}
	return nil
}

// ReleaseEmptyBlocks frees the affine blocks of node ("" for every node)
// that have been empty for the configured grace period, keeping each
// node's last usable block of a family unless ReleaseLastBlock is set. It
// returns the released blocks, sorted by address. Run it periodically (the
// node agent or a controller does).
//
// A block is usable when its pool exists, is enabled and its nodeSelector
// selects the node. Only usable blocks count when deciding which is the
// last: when every usable block of the node is empty, the first in address
// order is kept; empty blocks in disabled, deleted or non-selecting pools
// are always released (after the grace period), so the DeletePool recipe
// (disable the pool, release its addresses, wait for ReleaseEmptyBlocks)
// drains the pool even when it held the node's only block. A node name
// with '/' or spaces is ErrInvalid.
func (a *IPAM) ReleaseEmptyBlocks(ctx context.Context, node string) ([]netip.Prefix, error) {
	if node != "" {
		if err := validateName(node); err != nil {
			return nil, fmt.Errorf("%w: release empty blocks: node: %v", ErrInvalid, err)
		}
	}
	c, err := a.loadCluster(ctx)
	if err != nil {
		return nil, err
	}
	affs, err := a.listAffinities(ctx, node)
	if err != nil {
		return nil, err
	}
	now := a.now()
	grace := c.config.emptyGrace()
	// Per node and family: how many usable blocks it has, and its empty
	// blocks, usable ones flagged.
	type emptyBlock struct {
		storedAffinity
		usable bool
	}
	type group struct {
		usable int
		empty  []emptyBlock
	}
	groups := map[string]*group{} // node + family
	labels := map[string]selector.Map{}
	for _, af := range affs {
		if af.State != AffinityConfirmed {
			continue
		}
		k := fmt.Sprintf("%s/%d", af.Node, family(af.CIDR.Addr().Is6()))
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
		}
		usable, err := a.blockUsable(ctx, c, af, labels)
		if err != nil {
			return nil, err
		}
		if usable {
			g.usable++
		}
		sb, err := a.getBlock(ctx, af.CIDR)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if sb.block.Used() == 0 && sb.block.Affinity == af.Node && now.Sub(sb.block.EmptySince) >= grace {
			g.empty = append(g.empty, emptyBlock{af, usable})
		}
	}
	var out []netip.Prefix
	for _, g := range groups {
		usableEmpty := 0
		for _, eb := range g.empty {
			if eb.usable {
				usableEmpty++
			}
		}
		slices.SortFunc(g.empty, func(x, y emptyBlock) int { return x.CIDR.Addr().Compare(y.CIDR.Addr()) })
		var release []storedAffinity
		kept := c.config.ReleaseLastBlock
		for _, eb := range g.empty {
			if !kept && eb.usable && usableEmpty == g.usable {
				kept = true // the node's last usable block
				continue
			}
			release = append(release, eb.storedAffinity)
		}
		for _, af := range release {
			err := a.releaseAffinity(ctx, af, true)
			if errors.Is(err, errNotEmpty) {
				continue
			}
			if err != nil {
				return out, err
			}
			out = append(out, af.CIDR)
		}
	}
	slices.SortFunc(out, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	return out, nil
}

// ReleaseNode handles node deletion: every block affinity of the node is
// released (empty blocks are deleted, others stay with no affinity so
// their remaining addresses keep working until released), and the node's
// labels are forgotten. Its addresses themselves are released by handle or
// by GC.
func (a *IPAM) ReleaseNode(ctx context.Context, node string) ([]netip.Prefix, error) {
	if err := validateName(node); err != nil {
		return nil, fmt.Errorf("%w: node: %v", ErrInvalid, err)
	}
	affs, err := a.listAffinities(ctx, node)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, af := range affs {
		if err := a.releaseAffinity(ctx, af, false); err != nil {
			return out, err
		}
		out = append(out, af.CIDR)
	}
	if err := a.s.Delete(ctx, nodeKey(node), 0); err != nil && !errors.Is(err, store.ErrNotFound) {
		return out, fmt.Errorf("forget node %q: %w", node, err)
	}
	return out, nil
}

// blockUsable reports whether af's node may still allocate from af's
// block: its pool exists, is enabled and selects the node. labels caches
// node labels across calls.
func (a *IPAM) blockUsable(ctx context.Context, c *cluster, af storedAffinity, labels map[string]selector.Map) (bool, error) {
	i := slices.IndexFunc(c.pools, func(p IPPool) bool { return p.CIDR.Contains(af.CIDR.Addr()) })
	if i < 0 || c.pools[i].Disabled {
		return false, nil
	}
	if !c.needsNodeLabels() {
		return true, nil
	}
	l, ok := labels[af.Node]
	if !ok {
		var err error
		if l, err = a.nodeLabels(ctx, af.Node); err != nil {
			return false, err
		}
		labels[af.Node] = l
	}
	return c.sels[i].Evaluate(l), nil
}

// addrString is addr.String, quoted when invalid so the message says so.
func addrString(addr netip.Addr) string {
	if !addr.IsValid() {
		return "(zero address)"
	}
	return addr.String()
}
