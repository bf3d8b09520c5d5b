package ipam

import (
	"context"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/ipam/store"
)

// cache is the IPAM's one cache layer. It holds two kinds of things.
//
// Decoded values (the cluster configuration, node labels, affinities,
// parsed blocks), keyed by store key. The rule: an entry is used only for
// the exact stamp — the revision (and encoded length) the store hands back
// for its key; three revisions for the cluster configuration — it was
// decoded from. A value read at another revision is a miss and is decoded
// afresh, so a decoded value is never stale, whichever process or backend
// wrote it, and nothing has to invalidate it.
//
// Hints: which block of a node last had room, which blocks were found
// full lately, each node's affinity listing, and which blocks exist. A
// hint only says where to look first; the store settles every decision it
// suggests (a claim's Create, a block's compare-and-swap, a probe), and an
// allocation that is about to fail or stop at the block limit looks again
// without hints. Every write this IPAM makes goes through trackedStore,
// which updates the hints for the key written, so no write path has to
// remember them; writes by other processes are seen when marks expire
// (fullBlockTTL) or when the store's answer contradicts a hint.
type cache struct {
	mu      sync.Mutex
	decoded map[string]cacheEntry

	current sync.Map // hintKey → netip.Prefix: the node's block that last had room

	hintMu sync.Mutex
	full   map[netip.Prefix]time.Time  // blocks found full, and when
	nodes  map[string]cachedAffinities // affinity listings, and when
	known  map[netip.Prefix]bool       // blocks that exist
	loaded bool                        // known was filled from a listing
}

type hintKey struct {
	node string
	v6   bool
}

// stamp identifies the stored value an entry was decoded from.
type stamp [3]int64

// keyStamp is the stamp of one key's value.
func keyStamp(rev int64, n int) stamp { return stamp{rev, int64(n)} }

type cacheEntry struct {
	st stamp
	v  any
}

// maxCacheEntries bounds each map of the cache (an IPAM allocating for one
// node touches a handful of keys; a controller may touch all).
const maxCacheEntries = 1 << 14

// fullBlockTTL is how long a block found full is trusted to stay full, and
// a node's affinity listing to stay complete, without reading again.
const fullBlockTTL = time.Second

// cached returns the value decoded from key's value with stamp st.
func cached[V any](c *cache, key string, st stamp) (V, bool) {
	c.mu.Lock()
	e, ok := c.decoded[key]
	c.mu.Unlock()
	if ok && e.st == st {
		if v, ok := e.v.(V); ok {
			return v, true
		}
	}
	var zero V
	return zero, false
}

// put remembers v, decoded from key's value with stamp st. An entry whose
// stamp starts with a newer revision is kept (a write that succeeded
// already put it); skipping a put only costs a decode later.
func (c *cache) put(key string, st stamp, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.decoded == nil {
		c.decoded = map[string]cacheEntry{}
	}
	old, ok := c.decoded[key]
	if ok && old.st[0] > st[0] {
		return
	}
	if !ok && len(c.decoded) >= maxCacheEntries {
		for k := range c.decoded {
			delete(c.decoded, k)
			break
		}
	}
	c.decoded[key] = cacheEntry{st, v}
}

// wrote updates the hints after a write to key by this IPAM, whatever its
// outcome (a failed write may have been applied; forgetting is always
// safe).
func (c *cache) wrote(key string, op string) {
	switch {
	case strings.HasPrefix(key, keyBlocks):
		cidr, err := netip.ParsePrefix(strings.Replace(strings.TrimPrefix(key, keyBlocks), "-", "/", 1))
		if err != nil {
			return
		}
		c.hintMu.Lock()
		defer c.hintMu.Unlock()
		delete(c.full, cidr) // it may have freed addresses
		switch op {
		case "create":
			c.addKnownLocked(cidr)
		case "delete":
			delete(c.known, cidr)
		}
	case strings.HasPrefix(key, keyAffinities):
		node, _, _ := strings.Cut(strings.TrimPrefix(key, keyAffinities), "/")
		c.forgetNode(node)
	}
}

// markFull records that cidr was found full at now.
func (c *cache) markFull(cidr netip.Prefix, now time.Time) {
	c.hintMu.Lock()
	defer c.hintMu.Unlock()
	if c.full == nil {
		c.full = map[netip.Prefix]time.Time{}
	}
	if len(c.full) >= maxCacheEntries {
		for k, at := range c.full {
			if now.Sub(at) >= fullBlockTTL {
				delete(c.full, k)
			}
		}
		if len(c.full) >= maxCacheEntries {
			clear(c.full)
		}
	}
	c.full[cidr] = now
}

// recentlyFull reports whether cidr was found full less than fullBlockTTL
// ago.
func (c *cache) recentlyFull(cidr netip.Prefix, now time.Time) bool {
	c.hintMu.Lock()
	at, ok := c.full[cidr]
	c.hintMu.Unlock()
	return ok && now.Sub(at) < fullBlockTTL && !now.Before(at)
}

type cachedAffinities struct {
	affs []storedAffinity // shared, read only
	at   time.Time
}

// nodeAffinities returns node's affinity listing if it was made less than
// fullBlockTTL ago.
func (c *cache) nodeAffinities(node string, now time.Time) ([]storedAffinity, bool) {
	c.hintMu.Lock()
	ca, ok := c.nodes[node]
	c.hintMu.Unlock()
	if !ok || now.Sub(ca.at) >= fullBlockTTL || now.Before(ca.at) {
		return nil, false
	}
	return ca.affs, true
}

func (c *cache) putNodeAffinities(node string, affs []storedAffinity, now time.Time) {
	c.hintMu.Lock()
	defer c.hintMu.Unlock()
	if c.nodes == nil {
		c.nodes = map[string]cachedAffinities{}
	}
	if _, ok := c.nodes[node]; !ok && len(c.nodes) >= maxCacheEntries {
		clear(c.nodes)
	}
	c.nodes[node] = cachedAffinities{affs, now}
}

func (c *cache) forgetNode(node string) {
	c.hintMu.Lock()
	delete(c.nodes, node)
	c.hintMu.Unlock()
}

// knownLoaded reports whether the set of existing blocks was ever listed.
func (c *cache) knownLoaded() bool {
	c.hintMu.Lock()
	defer c.hintMu.Unlock()
	return c.loaded
}

// resetKnown replaces the set of existing blocks with a fresh listing.
func (c *cache) resetKnown(cidrs map[netip.Prefix]bool) {
	c.hintMu.Lock()
	defer c.hintMu.Unlock()
	c.known, c.loaded = maps.Clone(cidrs), true
}

// addKnown records that cidr exists (a probe or a Create found it).
func (c *cache) addKnown(cidr netip.Prefix) {
	c.hintMu.Lock()
	defer c.hintMu.Unlock()
	c.addKnownLocked(cidr)
}

func (c *cache) addKnownLocked(cidr netip.Prefix) {
	if c.known == nil {
		c.known = map[netip.Prefix]bool{}
	}
	c.known[cidr] = true
}

// findFree is findFreeIn over the known blocks.
func (c *cache) findFree(cl *cluster, pools []IPPool, node string) (netip.Prefix, error) {
	c.hintMu.Lock()
	defer c.hintMu.Unlock()
	return findFreeIn(cl, pools, node, c.known)
}

// trackedStore is the store as IPAM uses it: every write updates the
// cache's hints for its key (cache.wrote).
type trackedStore struct {
	store.Store
	c *cache
}

func (t trackedStore) Create(ctx context.Context, key string, value []byte) (int64, error) {
	defer t.c.wrote(key, "create")
	return t.Store.Create(ctx, key, value)
}

func (t trackedStore) Update(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error) {
	defer t.c.wrote(key, "update")
	return t.Store.Update(ctx, key, value, ifRevision)
}

func (t trackedStore) Delete(ctx context.Context, key string, ifRevision int64) error {
	defer t.c.wrote(key, "delete")
	return t.Store.Delete(ctx, key, ifRevision)
}

// ListKeys keeps the backend's key-only listing (store.KeyLister).
func (t trackedStore) ListKeys(ctx context.Context, prefix string) ([]string, int64, error) {
	return store.ListKeys(ctx, t.Store, prefix)
}
