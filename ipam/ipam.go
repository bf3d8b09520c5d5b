package ipam

import (
	"bytes"
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
	"time"

	"k8s.io/apimachinery/pkg/api/validate/content"

	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/selector"
)

// Store keys. Everything lives under keyRoot.
const (
	keyRoot         = "ipam/v1/"
	keyCluster      = keyRoot + "cluster/"
	keyConfig       = keyCluster + "config"
	keyPools        = keyCluster + "pools"
	keyReservations = keyCluster + "reservations"
	keyNodes        = keyRoot + "nodes/"
	keyAffinities   = keyRoot + "affinity/"
	keyBlocks       = keyRoot + "blocks/"
	keyHandles      = keyRoot + "handles/"
)

func blockKey(cidr netip.Prefix) string {
	// keyBlocks + strings.Replace(cidr.String(), "/", "-", 1), in one
	// allocation.
	if !cidr.IsValid() {
		return keyBlocks + strings.Replace(cidr.String(), "/", "-", 1)
	}
	b := make([]byte, 0, len(keyBlocks)+43)
	b = append(b, keyBlocks...)
	b = cidr.AppendTo(b)
	if i := bytes.IndexByte(b[len(keyBlocks):], '/'); i >= 0 {
		b[len(keyBlocks)+i] = '-'
	}
	return bytesString(b)
}

func affinityKey(node string, cidr netip.Prefix) string {
	return keyAffinities + node + "/" + strings.Replace(cidr.String(), "/", "-", 1)
}

func handleKey(h string) string { return keyHandles + h }

func nodeKey(n string) string { return keyNodes + n }

// IPAM allocates addresses from pools through a Store. It keeps no state of
// its own beyond caches, so any number of IPAM values, in any number of
// processes, may share one store.
type IPAM struct {
	s          store.Store
	log        *slog.Logger
	now        func() time.Time
	maxRetries int

	cache cache // the one cache layer (cache.go)
}

// Option configures New. An option given a bad value makes New fail with
// an error wrapping ErrInvalid.
type Option func(*IPAM) error

// WithLogger sets the logger (default: discard); nil is an error.
func WithLogger(l *slog.Logger) Option {
	return func(a *IPAM) error {
		if l == nil {
			return fmt.Errorf("%w: WithLogger(nil)", ErrInvalid)
		}
		a.log = l
		return nil
	}
}

// WithClock sets the clock used for timestamps and grace periods (default
// time.Now); nil is an error.
func WithClock(now func() time.Time) Option {
	return func(a *IPAM) error {
		if now == nil {
			return fmt.Errorf("%w: WithClock(nil)", ErrInvalid)
		}
		a.now = now
		return nil
	}
}

// WithMaxRetries bounds compare-and-swap retries per step (default 100);
// it must be at least 1.
func WithMaxRetries(n int) Option {
	return func(a *IPAM) error {
		if n < 1 {
			return fmt.Errorf("%w: WithMaxRetries(%d): need at least 1", ErrInvalid, n)
		}
		a.maxRetries = n
		return nil
	}
}

// New returns an IPAM over s. It fails (ErrInvalid) on a nil store or an
// option given a bad value.
func New(s store.Store, opts ...Option) (*IPAM, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil store", ErrInvalid)
	}
	a := &IPAM{log: slog.New(slog.DiscardHandler), now: time.Now, maxRetries: 100}
	a.s = trackedStore{Store: s, c: &a.cache}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalid)
		}
		if err := o(a); err != nil {
			return nil, fmt.Errorf("ipam: %w", err)
		}
	}
	return a, nil
}

// cluster is the decoded cluster-wide state: config, pools, reservations.
type cluster struct {
	revs   [3]int64
	config IPAMConfig
	pools  []IPPool // sorted by name
	sels   []selector.Selector
	// labelsMatter is set when some pool's nodeSelector is not all() or
	// borrowing is limited to a label: only then does Assign read the
	// node's labels.
	labelsMatter bool
	// anyNode holds candidatePools' answer, made once, for requests that
	// name no pools when labels don't matter (v6, use); read only.
	anyNode      map[anyNodeKey][]IPPool
	reservations []IPReservation
	reserved     []netip.Prefix
}

func (c *cluster) needsNodeLabels() bool { return c.labelsMatter }

type anyNodeKey struct {
	v6  bool
	use Use
}

func (c *cluster) pool(name string) (int, bool) {
	for i := range c.pools {
		if c.pools[i].Name == name {
			return i, true
		}
	}
	return 0, false
}

// poolFor returns the pool containing addr.
func (c *cluster) poolFor(addr netip.Addr) (IPPool, bool) {
	for _, p := range c.pools {
		if p.CIDR.Contains(addr) {
			return p, true
		}
	}
	return IPPool{}, false
}

// loadCluster reads config, pools and reservations in one List, reusing the
// decoded copy while their revisions are unchanged.
func (a *IPAM) loadCluster(ctx context.Context) (*cluster, error) {
	var revs [3]int64
	vals := [3][]byte{}
	keys := [3]string{keyConfig, keyPools, keyReservations}
	l, err := a.s.List(ctx, keyCluster)
	if err != nil {
		return nil, fmt.Errorf("read ipam configuration: %w", err)
	}
	for _, kv := range l.KVs {
		if i := slices.Index(keys[:], kv.Key); i >= 0 {
			revs[i], vals[i] = kv.Revision, kv.Value
		}
	}
	return a.decodeCluster(revs, vals)
}

// decodeCluster decodes the config, pools and reservations values (nil
// when missing) read at revs, reusing the cached copy when the revisions
// match.
func (a *IPAM) decodeCluster(revs [3]int64, vals [3][]byte) (*cluster, error) {
	if c, ok := cached[*cluster](&a.cache, keyCluster, stamp(revs)); ok {
		return c, nil
	}
	c := &cluster{revs: revs, config: DefaultConfig()}
	if vals[0] != nil {
		if err := json.Unmarshal(vals[0], &c.config); err != nil {
			return nil, fmt.Errorf("decode ipam config: %w", err)
		}
	}
	if vals[1] != nil {
		if err := json.Unmarshal(vals[1], &c.pools); err != nil {
			return nil, fmt.Errorf("decode pools: %w", err)
		}
	}
	for _, p := range c.pools {
		sel, err := selector.Parse(p.NodeSelector)
		if err != nil {
			return nil, fmt.Errorf("%w: stored pool %q: nodeSelector: %w", ErrInvalid, p.Name, err)
		}
		c.sels = append(c.sels, sel)
		if sel.String() != selector.All().String() {
			c.labelsMatter = true
		}
	}
	if c.config.BorrowWithinLabel != "" {
		c.labelsMatter = true
	}
	if vals[2] != nil {
		if err := json.Unmarshal(vals[2], &c.reservations); err != nil {
			return nil, fmt.Errorf("decode reservations: %w", err)
		}
	}
	for _, r := range c.reservations {
		c.reserved = append(c.reserved, r.CIDRs...)
	}
	// A pool stored before CreatePool refused the IPv4-mapped range may
	// cover it: reserve the range so that automatic assignment skips its
	// blocks and addresses (AssignIP refuses mapped addresses anyway).
	for _, p := range c.pools {
		if p.CIDR.Addr().Is6() && p.CIDR.Overlaps(v4Mapped) {
			c.reserved = append(c.reserved, v4Mapped)
			break
		}
	}
	if !c.labelsMatter {
		c.anyNode = map[anyNodeKey][]IPPool{}
		for _, v6 := range []bool{false, true} {
			for _, use := range []Use{UseWorkload, UseTunnel} {
				c.anyNode[anyNodeKey{v6, use}], _ = c.candidatePools(v6, nil, nil, use)
			}
		}
	}
	a.cache.put(keyCluster, stamp(revs), c)
	return c, nil
}

// backoff sleeps a little, growing with attempt, with full jitter.
func (a *IPAM) backoff(ctx context.Context, attempt int) error {
	if attempt == 0 {
		return ctx.Err()
	}
	d := min(time.Duration(50<<min(attempt, 10))*time.Microsecond, 20*time.Millisecond)
	t := time.NewTimer(rand.N(d) + time.Microsecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func retryable(err error) bool {
	return errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound)
}

// modify runs a read-modify-CAS loop on key. fn gets the current value (nil
// when missing) and returns the new value, or nil with del=true to delete,
// or nil with del=false to leave the key alone.
func (a *IPAM) modify(ctx context.Context, key string, fn func(cur []byte) (next []byte, del bool, err error)) error {
	for attempt := 0; attempt < a.maxRetries; attempt++ {
		if err := a.backoff(ctx, attempt); err != nil {
			return err
		}
		kv, err := a.s.Get(ctx, key)
		missing := errors.Is(err, store.ErrNotFound)
		if err != nil && !missing {
			return err
		}
		var cur []byte
		if !missing {
			cur = kv.Value
		}
		next, del, err := fn(cur)
		if err != nil {
			return err
		}
		switch {
		case del && missing, !del && next == nil:
			return nil
		case del:
			err = a.s.Delete(ctx, key, kv.Revision)
		case missing:
			_, err = a.s.Create(ctx, key, next)
		default:
			_, err = a.s.Update(ctx, key, next, kv.Revision)
		}
		if err == nil || !retryable(err) {
			return err
		}
	}
	return fmt.Errorf("%s: %w", key, ErrTooManyConflicts)
}

// edit is what a modifyJSON callback wants done with the key.
type edit int

const (
	editSkip   edit = iota // leave the key alone
	editWrite              // write the edited value
	editDelete             // delete the key
)

// modifyJSON is modify for JSON values of type T: fn edits *v in place (the
// zero value when the key is missing) and says what to do.
func modifyJSON[T any](ctx context.Context, a *IPAM, key string, fn func(v *T, exists bool) (edit, error)) error {
	return a.modify(ctx, key, func(cur []byte) ([]byte, bool, error) {
		var v T
		if cur != nil {
			if err := json.Unmarshal(cur, &v); err != nil {
				return nil, false, fmt.Errorf("decode %s: %w", key, err)
			}
		}
		e, err := fn(&v, cur != nil)
		if err != nil || e == editSkip {
			return nil, false, err
		}
		if e == editDelete {
			return nil, true, nil
		}
		b, err := json.Marshal(v)
		return b, false, err
	})
}

func getJSON[T any](ctx context.Context, s store.Store, key string) (T, int64, error) {
	var v T
	kv, err := s.Get(ctx, key)
	if err != nil {
		return v, 0, err
	}
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		return v, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return v, kv.Revision, nil
}

// Config returns the IPAM configuration (DefaultConfig when none is set).
func (a *IPAM) Config(ctx context.Context) (IPAMConfig, error) {
	c, err := a.loadCluster(ctx)
	if err != nil {
		return IPAMConfig{}, err
	}
	return c.config, nil
}

// SetConfig validates (IPAMConfig.Validate, ErrInvalid) and stores the
// IPAM configuration, replacing the whole stored one. It may be called at
// any time, with blocks and addresses assigned: nothing already assigned
// or claimed is changed, and every later operation follows the new
// configuration (a lowered MaxBlocksPerHost stops new claims only, and
// StrictAffinity turned on stops new borrowing only). Calico behaves the
// same: libcalico-go's SetIPAMConfig says it may only be called without
// allocated blocks, but no longer checks it (early versions refused with
// "Cannot change IPAM config while allocations exist").
func (a *IPAM) SetConfig(ctx context.Context, cfg IPAMConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	return modifyJSON(ctx, a, keyConfig, func(v *IPAMConfig, _ bool) (edit, error) {
		*v = cfg
		return editWrite, nil
	})
}

// Pools returns every pool, sorted by name, with defaults filled in.
func (a *IPAM) Pools(ctx context.Context) ([]IPPool, error) {
	c, err := a.loadCluster(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Clone(c.pools), nil
}

// Pool returns one pool by name.
func (a *IPAM) Pool(ctx context.Context, name string) (IPPool, error) {
	c, err := a.loadCluster(ctx)
	if err != nil {
		return IPPool{}, err
	}
	if i, ok := c.pool(name); ok {
		return c.pools[i], nil
	}
	return IPPool{}, fmt.Errorf("pool %q: %w", name, ErrNotFound)
}

// CreatePool validates p, fills in its defaults and adds it. Pools may not
// overlap; the check and the write are one atomic compare-and-swap. An
// IPv6 pool may not overlap the IPv4-mapped range ::ffff:0:0/96
// (ErrInvalid). A block left from a deleted pool (Check reports it
// outside every pool) that lies in p must be one of p's blocks, which p
// then adopts; one of another size or alignment is ErrOverlap, since its
// addresses would also lie in one of p's blocks and could be handed out
// twice.
func (a *IPAM) CreatePool(ctx context.Context, p IPPool) (IPPool, error) {
	p = p.normalize()
	if err := p.Validate(); err != nil {
		return IPPool{}, err
	}
	// No block is created in a range outside every pool, so none can
	// appear here between this listing and the pool's write.
	cidrs, err := a.blockCIDRs(ctx)
	if err != nil {
		return IPPool{}, fmt.Errorf("create pool %q: %w", p.Name, err)
	}
	var misfit error
	for _, cidr := range sortedCIDRs(cidrs) {
		if cidr.Overlaps(p.CIDR) && (cidr.Bits() != p.BlockSize || !p.CIDR.Contains(cidr.Addr())) {
			misfit = fmt.Errorf("block %s, left from a deleted pool, is not one of its /%d blocks: %w", cidr, p.BlockSize, ErrOverlap)
			break
		}
	}
	err = modifyJSON(ctx, a, keyPools, func(pools *[]IPPool, _ bool) (edit, error) {
		for _, q := range *pools {
			if err := p.Conflict(q); err != nil {
				return editSkip, err
			}
		}
		if misfit != nil { // checked after the pools: an existing pool's block is an overlap with that pool
			return editSkip, misfit
		}
		*pools = append(*pools, p)
		slices.SortFunc(*pools, func(x, y IPPool) int { return cmp.Compare(x.Name, y.Name) })
		return editWrite, nil
	})
	if err != nil {
		return IPPool{}, fmt.Errorf("create pool %q: %w", p.Name, err)
	}
	return p, nil
}

// UpdatePool replaces an existing pool's mutable fields; its CIDR and block
// size cannot change (ErrInvalid), and an unknown pool is ErrNotFound.
// It replaces the whole pool, filling defaults as CreatePool does, so a
// zero field means "the default", never "unchanged": an empty CIDR is
// ErrInvalid, a zero BlockSize is the default size (ErrInvalid when the
// pool's differs), and empty modes and AllowedUses, and an empty
// NodeSelector (all nodes), replace the stored ones. Update by modifying
// the stored pool:
//
//	p, err := a.Pool(ctx, "default")
//	p.Disabled = true
//	p, err = a.UpdatePool(ctx, p)
//
// A pool stored before CreatePool refused the IPv4-mapped range
// ::ffff:0:0/96 may only be updated to Disabled (any other update is
// ErrInvalid), so that it can be drained and deleted; Assign never hands
// out its mapped addresses.
func (a *IPAM) UpdatePool(ctx context.Context, p IPPool) (IPPool, error) {
	p = p.normalize()
	if err := p.validate(); err != nil {
		return IPPool{}, err
	}
	if err := p.validateNotMapped(); err != nil && !p.Disabled {
		return IPPool{}, fmt.Errorf("%w (only disabling it is allowed)", err)
	}
	err := modifyJSON(ctx, a, keyPools, func(pools *[]IPPool, _ bool) (edit, error) {
		for i, q := range *pools {
			if q.Name != p.Name {
				continue
			}
			if q.CIDR != p.CIDR || q.BlockSize != p.BlockSize {
				return editSkip, fmt.Errorf("%w: the CIDR and block size of pool %q are immutable", ErrInvalid, p.Name)
			}
			(*pools)[i] = p
			return editWrite, nil
		}
		return editSkip, fmt.Errorf("pool %q: %w", p.Name, ErrNotFound)
	})
	if err != nil {
		return IPPool{}, fmt.Errorf("update pool %q: %w", p.Name, err)
	}
	return p, nil
}

// DeletePool removes a pool that has no blocks left; while one remains it
// is ErrPoolInUse, and an unknown pool is ErrNotFound. To drain a pool:
// disable it (UpdatePool), release its addresses (ReleaseByHandle, or GC),
// then ReleaseEmptyBlocks frees its empty blocks once the empty-block grace
// period has passed (a block in a disabled pool is never kept as a node's
// last block).
//
// An assignment in flight may claim a block from the pool while it is
// deleted. The pool is removed first and its blocks listed after, while a
// claim creates its block first and reads the pools after (withdrawing the
// block when its pool is gone), so one of the two always sees the other:
// when the listing finds a block, the pool is put back and DeletePool
// fails with ErrPoolInUse.
func (a *IPAM) DeletePool(ctx context.Context, name string) error {
	c, err := a.loadCluster(ctx)
	if err != nil {
		return err
	}
	i, ok := c.pool(name)
	if !ok {
		return fmt.Errorf("delete pool %q: %w", name, ErrNotFound)
	}
	if err := a.poolWithoutBlocks(ctx, c.pools[i]); err != nil {
		return err
	}
	var removed IPPool
	found := false
	err = modifyJSON(ctx, a, keyPools, func(pools *[]IPPool, _ bool) (edit, error) {
		j := slices.IndexFunc(*pools, func(p IPPool) bool { return p.Name == name })
		if found = j >= 0; !found {
			return editSkip, nil
		}
		removed = (*pools)[j]
		*pools = slices.Delete(*pools, j, j+1)
		return editWrite, nil
	})
	if err != nil {
		return fmt.Errorf("delete pool %q: %w", name, err)
	}
	if !found {
		return fmt.Errorf("delete pool %q: %w", name, ErrNotFound)
	}
	berr := a.poolWithoutBlocks(ctx, removed)
	if berr == nil {
		return nil
	}
	// A claim got its block in before the pool was removed: put it back.
	rerr := modifyJSON(ctx, a, keyPools, func(pools *[]IPPool, _ bool) (edit, error) {
		for _, q := range *pools {
			if err := removed.Conflict(q); err != nil {
				return editSkip, err
			}
		}
		*pools = append(*pools, removed)
		slices.SortFunc(*pools, func(x, y IPPool) int { return cmp.Compare(x.Name, y.Name) })
		return editWrite, nil
	})
	if rerr != nil {
		return errors.Join(berr, fmt.Errorf("delete pool %q: putting it back failed, so its blocks lie outside every pool "+
			"(Check reports them) until it is created again: %w", name, rerr))
	}
	return berr
}

// poolWithoutBlocks returns an error matching ErrPoolInUse when a block
// of p exists.
func (a *IPAM) poolWithoutBlocks(ctx context.Context, p IPPool) error {
	cidrs, err := a.blockCIDRs(ctx)
	if err != nil {
		return fmt.Errorf("delete pool %q: %w", p.Name, err)
	}
	for _, cidr := range sortedCIDRs(cidrs) {
		if p.CIDR.Overlaps(cidr) {
			return fmt.Errorf("delete pool %q: block %s remains: %w", p.Name, cidr, ErrPoolInUse)
		}
	}
	return nil
}

// Reservations returns every IPReservation.
func (a *IPAM) Reservations(ctx context.Context) ([]IPReservation, error) {
	c, err := a.loadCluster(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Clone(c.reservations), nil
}

// SetReservation creates or replaces a reservation. Addresses already
// allocated inside it stay allocated; no new ones are handed out. A
// reservation needs at least one CIDR, each plain IPv4 or IPv6 (not
// IPv4-mapped, no zone) without host bits; anything else is ErrInvalid.
func (a *IPAM) SetReservation(ctx context.Context, r IPReservation) error {
	if err := validateName(r.Name); err != nil {
		return fmt.Errorf("%w: reservation: %v", ErrInvalid, err)
	}
	if len(r.CIDRs) == 0 {
		return fmt.Errorf("%w: reservation %q has no CIDRs", ErrInvalid, r.Name)
	}
	for _, c := range r.CIDRs {
		switch {
		case !c.IsValid():
			return fmt.Errorf("%w: reservation %q: invalid CIDR %s", ErrInvalid, r.Name, c)
		case c.Addr().Is4In6():
			return fmt.Errorf("%w: reservation %q: CIDR %s is IPv4-mapped IPv6; write it as IPv4", ErrInvalid, r.Name, c)
		case c.Addr().Zone() != "":
			return fmt.Errorf("%w: reservation %q: CIDR %s has a zone", ErrInvalid, r.Name, c)
		case c != c.Masked():
			return fmt.Errorf("%w: reservation %q: CIDR %s has host bits set (did you mean %s?)", ErrInvalid, r.Name, c, c.Masked())
		}
	}
	return modifyJSON(ctx, a, keyReservations, func(rs *[]IPReservation, _ bool) (edit, error) {
		*rs = slices.DeleteFunc(*rs, func(x IPReservation) bool { return x.Name == r.Name })
		*rs = append(*rs, r)
		slices.SortFunc(*rs, func(x, y IPReservation) int { return cmp.Compare(x.Name, y.Name) })
		return editWrite, nil
	})
}

// DeleteReservation removes a reservation by name.
func (a *IPAM) DeleteReservation(ctx context.Context, name string) error {
	found := false
	err := modifyJSON(ctx, a, keyReservations, func(rs *[]IPReservation, _ bool) (edit, error) {
		n := len(*rs)
		*rs = slices.DeleteFunc(*rs, func(x IPReservation) bool { return x.Name == name })
		found = len(*rs) != n
		return editWrite, nil
	})
	if err == nil && !found {
		err = fmt.Errorf("reservation %q: %w", name, ErrNotFound)
	}
	return err
}

// SetNodeLabels records a node's labels, which pool nodeSelectors and
// BorrowWithinLabel are evaluated against. A node never registered has no
// labels. Each key must be a Kubernetes label key (an optional DNS
// subdomain prefix and "/", then a name of at most 63 characters), else
// ErrInvalid; values are not checked.
func (a *IPAM) SetNodeLabels(ctx context.Context, node string, labels map[string]string) error {
	if err := validateName(node); err != nil {
		return fmt.Errorf("%w: node: %v", ErrInvalid, err)
	}
	for k := range labels {
		if errs := content.IsLabelKey(k); len(errs) > 0 {
			return fmt.Errorf("%w: node %q: label key %q: %s", ErrInvalid, node, k, strings.Join(errs, "; "))
		}
	}
	return modifyJSON(ctx, a, nodeKey(node), func(n *nodeRecord, _ bool) (edit, error) {
		n.Labels = labels
		return editWrite, nil
	})
}

// nodeLabels returns the node's labels (shared: read only), decoding them
// only when the node's record has changed since the last call.
func (a *IPAM) nodeLabels(ctx context.Context, node string) (selector.Map, error) {
	key := nodeKey(node)
	kv, err := a.s.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return selector.Map{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node %q: %w", node, err)
	}
	st := keyStamp(kv.Revision, len(kv.Value))
	if l, ok := cached[selector.Map](&a.cache, key, st); ok {
		return l, nil
	}
	var n nodeRecord
	if err := json.Unmarshal(kv.Value, &n); err != nil {
		return nil, fmt.Errorf("read node %q: decode %s: %w", node, key, err)
	}
	a.cache.put(key, st, selector.Map(n.Labels))
	return selector.Map(n.Labels), nil
}

// storedBlock is a decoded block with its revision.
type storedBlock struct {
	block *allocBlock
	rev   int64
}

func (a *IPAM) getBlock(ctx context.Context, cidr netip.Prefix) (storedBlock, error) {
	kv, err := a.s.Get(ctx, blockKey(cidr))
	if err != nil {
		return storedBlock{}, err
	}
	b, err := decodeBlock(kv.Value)
	if err != nil {
		return storedBlock{}, fmt.Errorf("block %s: %w", cidr, err)
	}
	return storedBlock{b, kv.Revision}, nil
}

// listBlocks returns every block, ordered by key.
func (a *IPAM) listBlocks(ctx context.Context) ([]storedBlock, error) {
	l, err := a.s.List(ctx, keyBlocks)
	if err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}
	out := make([]storedBlock, 0, len(l.KVs))
	for _, kv := range l.KVs {
		b, err := decodeBlock(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, storedBlock{b, kv.Revision})
	}
	return out, nil
}

// storedAffinity is an affinity with its revision.
type storedAffinity struct {
	Affinity
	rev int64
}

// listAffinities returns the affinities of node ("" for all nodes).
func (a *IPAM) listAffinities(ctx context.Context, node string) ([]storedAffinity, error) {
	prefix := keyAffinities
	if node != "" {
		prefix += node + "/"
	}
	l, err := a.s.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list affinities: %w", err)
	}
	out := make([]storedAffinity, len(l.KVs))
	for i, kv := range l.KVs {
		st := keyStamp(kv.Revision, len(kv.Value))
		af, ok := cached[Affinity](&a.cache, kv.Key, st)
		if !ok {
			if err := json.Unmarshal(kv.Value, &af); err != nil {
				return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			a.cache.put(kv.Key, st, af)
		}
		out[i] = storedAffinity{af, kv.Revision}
	}
	return out, nil
}
