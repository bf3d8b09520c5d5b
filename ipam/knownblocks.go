package ipam

import (
	"maps"
	"net/netip"
	"sync"
)

// knownBlocks caches which block CIDRs exist, so that claiming a block
// does not list every block in the store: that listing made each claim
// cost O(blocks in the cluster) and dominated allocation once a cluster
// had a few thousand blocks.
//
// The store stays the authority. A claim probes the candidate the cache
// offers and the block's Create settles races, so a missing entry costs
// one probe. An entry for a block that another process has since deleted
// hides that block until the cache is reloaded, which happens when the
// cache says the pools are full and when several probes in a row find it
// wrong; blocks this IPAM deletes leave the cache at once.
type knownBlocks struct {
	mu     sync.Mutex
	loaded bool
	exists map[netip.Prefix]bool
}

func (k *knownBlocks) isLoaded() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.loaded
}

// reset replaces the cache with a fresh listing.
func (k *knownBlocks) reset(cidrs map[netip.Prefix]bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.exists, k.loaded = maps.Clone(cidrs), true
}

func (k *knownBlocks) add(cidr netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.exists == nil {
		k.exists = map[netip.Prefix]bool{}
	}
	k.exists[cidr] = true
}

func (k *knownBlocks) remove(cidr netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.exists, cidr)
}

// findFree is findFreeIn over the cache.
func (k *knownBlocks) findFree(c *cluster, pools []IPPool, node string) (netip.Prefix, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return findFreeIn(c, pools, node, k.exists)
}
