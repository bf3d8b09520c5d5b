// Package deltatracker tracks the desired state of a dataplane against what
// the dataplane holds, and yields the minimal changes that make the two
// agree. It is the generic form of Calico Felix's deltatracker, used by
// every tabby applier (routes, VXLAN neighbours and FDB entries, and later
// ipsets, iptables chains and service NAT).
//
// A Tracker[K, V] holds two maps keyed by K:
//
//   - desired: what the renderer wants (Desired view),
//   - dataplane: what the applier last saw or wrote (Dataplane view),
//
// and keeps two pending sets derived from them:
//
//   - PendingUpdates: keys desired but absent from the dataplane, or present
//     with a value that is not equal to the desired one;
//   - PendingDeletions: keys in the dataplane that are not desired.
//
// An applier writes the pending changes and records each success
// (UpdateApplied after writing an update, DeletionApplied after a
// deletion; or the general Dataplane().Set and Dataplane().Delete), which
// removes it from the pending set; a failed write is simply not recorded
// and stays pending for the next attempt. This is Felix's
// IterActionUpdateDataplane, spelled as a plain call so that iteration can
// use range-over-func (iter.Seq2).
//
// # Design
//
//  1. Pending sets are maintained on every Set/Delete, never recomputed by a
//     full diff, so an update costs O(1) and a sync costs O(changes).
//  2. Resync: Dataplane().ReplaceAll replaces the whole dataplane view from
//     a fresh dump (a periodic resync, or the first sync after a restart),
//     and Desired().ReplaceAll replaces the desired state from a full
//     render; both recompute the pending sets for the keys they touch.
//  3. Equality is injected: New uses == on comparable values, NewFunc takes
//     an equal(desired, dataplane) function, called with the desired value
//     first, so it may be asymmetric (for example "a desired route without
//     a device name matches a kernel route on any device").
//  4. Iteration order of PendingUpdates, PendingDeletions and the views is
//     unspecified (map order); appliers that need a deterministic batch sort
//     the keys themselves. Calling UpdateApplied, DeletionApplied or
//     Dataplane().Set/Delete for the key being visited is allowed during
//     iteration; other mutations during iteration may or may not be seen
//     by it.
//
// Thread safety: a Tracker is not safe for concurrent use; the applier that
// owns it serialises access (as Felix's route table does with its own lock).
package deltatracker
