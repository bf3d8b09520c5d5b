// Package ipam is Calico-style block IP address management over a small
// revisioned key/value store (package store: memory, bbolt or etcd).
//
// Pools (IPPool) are carved on demand into aligned blocks (default /26 and
// /122) that are affine to the node that claimed them. In Calico's order
// (libcalico-go autoAssign), a node assigns from its usable affine blocks
// first; if it is at its block limit (maxBlocksPerHost, default 20,
// counting only blocks in pools it may still use) it stops there with
// ErrBlockLimit; else it claims a new block from a pool whose nodeSelector
// matches its labels (SetNodeLabels), starting its search at a random
// place seeded by the node name; and only when no block is left to claim
// does it — unless StrictAffinity is on — borrow a free address from
// another node's block. IPReservations keep automatic assignment away;
// an explicit request (AssignIP, the ipAddrs annotation) may take a
// reserved address, as in Calico. Every assignment is named by a handle
// ("k8s-pod-network.<containerID>") and carries attributes (node,
// namespace, pod, floating IPs). Addresses are released by handle
// (idempotently) or by address.
//
// Callers:
//   - a CNI plugin: ParseAnnotations for the cni.projectcalico.org
//     annotations; Assign (dual stack, all-or-nothing) or AssignIP (requested
//     addresses) on ADD; ReleaseByHandle on DEL; GC with the live handles
//     on CNI GC. AssignedIP.Borrowed says when a /32 route is needed.
//   - a node agent: AffineBlocks + WatchAffinities (advertise and blackhole
//     the node's blocks), BorrowedAddrs + WatchBlocks (/32 routes),
//     ListPools + WatchPools (outgoing NAT per pool, which
//     dataplane/natoutgoing follows), ReleaseEmptyBlocks periodically,
//     ReleaseNode on node deletion.
//   - a platform builder with Calico pool manifests: package ipam/manifest
//     (DecodePools) reads projectcalico.org/v3 IPPool, IPPoolList and
//     kubectl List documents (YAML streams or JSON) strictly into IPPools
//     for CreatePool, filling defaults and checking them with WithDefaults,
//     Validate and Conflict (the checks CreatePool makes) and refusing the
//     Calico settings tabby does not implement (assignmentMode Manual,
//     disableBGPExport, namespaceSelector, the LoadBalancer use) by field
//     path. It lives apart so that ipam imports no YAML parser. Tabby's
//     Priority is read from spec.priority there.
//   - tabbyctl and outside checkers: Usage (per pool, node and block),
//     Check, Allocations and Handles (listings at one store revision),
//     Lookup, ReleaseIPs and ReleaseByHandle.
//
// # Design
//
//  1. No global lock. Every change is a read-modify-compare-and-swap of one
//     key with retries and jittered backoff, so any number of processes on
//     any number of machines can allocate at once. Pools, config and
//     reservations are each one key, so the overlap check and the write of
//     a new pool are atomic.
//  2. Ordering makes crashes harmless. An assignment writes the handle
//     record before the block, so an interruption leaves a handle that
//     over-counts rather than an address no handle can release. A block is
//     claimed as affinity(pending) → block → affinity(confirmed), and given
//     up as affinity(pendingDeletion) → block deleted → affinity deleted.
//     Check reports every state such an interruption can leave, and GC
//     repairs it (TestFaultInjection fails each write of each operation in
//     turn and proves both).
//  3. GC never races live work: it acts only on allocations, handles and
//     affinities (pending ones included) older than its grace period, and
//     only on handles the caller says are dead, scoped by handle prefix
//     and node. A release never lowers a handle's count in a block below
//     what the block holds for it as written, so a GC rebuilding the
//     record in between loses nothing; one GC pass leaves Check clean.
//  4. Writes with an unknown outcome. A write can fail after it was
//     applied (lost connection, leader change, timeout). Only a definite
//     failure (conflict, missing or existing key) undoes a handle count;
//     otherwise the block is read back to settle the outcome (when it is
//     unchanged, it is rewritten as read, so a write still in flight can
//     never land later), and if that fails too the error matches
//     ErrOutcomeUnknown: addresses may stay assigned under the handle,
//     for ReleaseByHandle or GC. An Assign error that does not match it
//     means no address stays assigned (a failed rollback is joined to the
//     error as ErrOutcomeUnknown), but the handle record may still count
//     addresses it does not hold, when undoing its count failed too (it
//     is written first, design 2): it over-counts until ReleaseByHandle
//     removes it or a GC past its grace period rewrites it from the
//     blocks (Check reports it meanwhile).
//     Check reads everything in one List, at one store revision.
//  5. Failures say why: an *AllocationError lists the pools considered and
//     matches exactly one of ErrBlockLimit (the node is at its limit),
//     ErrStrictAffinity (only other nodes' blocks have room),
//     ErrPoolExhausted (nothing free) or ErrNoMatchingPool. Bad input
//     matches ErrInvalid (with the selector package's errors kept for a
//     bad nodeSelector), ErrOverlap, ErrUnknownPool, ErrNotInPool or
//     ErrAddressInUse, and nothing is written. A store that cannot serve
//     (etcd unreachable or without a leader, a bbolt file lock not
//     obtained in time) gives errors matching store.ErrUnavailable, worth
//     retrying; an ended context gives the context's error. Either may
//     also match ErrOutcomeUnknown (design 4).
//  6. Pool order. Requested pools (the ipv4pools / ipv6pools annotation,
//     the CNI config's ipv4_pools, AssignArgs.IPv4Pools) are tried in the
//     order listed, as in Calico (libcalico-go determinePools keeps the
//     request's order, and findUsableBlock and the borrowing loop walk
//     it): a new block comes from the first listed pool that has one
//     left, and borrowing goes pool by pool in that order. Their
//     nodeSelector is ignored; one that is unknown or disabled fails the
//     request, as in Calico. Calico tries the node's existing affine
//     blocks in the order the datastore lists them; tabby tries them in
//     the request's order too, so the order is the same for every step.
//     Beyond Calico: when no pool is requested, pool Priority (higher
//     first, then name) orders the matching pools, for a deterministic
//     choice where Calico takes the listing order; BorrowWithinLabel to
//     borrow only from nodes sharing a label value (zone, rack);
//     ReleaseEmptyBlocksAtOnce and ReleaseLastBlock for ephemeral
//     affinities.
//  7. Blocks and handle records, the values written on every assignment,
//     use compact versioned binary encodings (blocks fuzzed); everything
//     else is JSON.
//
// Configuration: IPAMConfig's defaults are DefaultConfig, not the Go zero
// value, and SetConfig and UpdatePool replace the whole object; read it
// (Config, Pool), modify it and write it back.
//
// An IPAM value holds only a cache of the cluster configuration; it is safe
// for concurrent use, and many IPAM values may share one store.
//
// # Store layout
//
//	ipam/v1/cluster/{config,pools,reservations}   JSON
//	ipam/v1/nodes/<node>                          JSON labels
//	ipam/v1/affinity/<node>/<block>               JSON Affinity
//	ipam/v1/blocks/<block>                        binary block
//	ipam/v1/handles/<handle>                      binary counts per block
//
// (<block> is the CIDR with "/" written as "-".)
//
// # Caching
//
// All caching is one type (cache.go) with one rule for what it decodes:
// a value decoded from the store (cluster configuration, node labels,
// affinities, parsed blocks) is used only when the store hands back
// exactly the revision it was decoded from, so it is never stale, across
// processes and backends. The allocation path writes a block back by
// copying its attribute records verbatim from the parsed copy. Hints —
// which blocks exist (a claim probes one candidate instead of listing
// every block), which were found full in the last second, each node's
// affinity listing from the last second, the node's current block — only
// say where to look first; the store settles every decision they suggest,
// and every write this IPAM makes updates them through a store wrapper,
// so no write path has to remember them. Benchmark figures and the
// commands that produce them are in README.md.
package ipam
