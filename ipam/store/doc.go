// Package store defines Store, the revisioned key/value seam under package
// ipam, with Memory, its strict in-memory implementation.
//
// Backends: Memory (here; tests and benchmarks), bboltstore (one local
// file shared by every process on the machine; the embedded default) and
// etcdstore (etcd v3, for clusters). All three pass one conformance suite,
// storetest.Run.
//
// # Design
//
//  1. The interface is the narrowest thing compare-and-swap IPAM needs:
//     Get, List(prefix), Create (must not exist), Update and Delete with an
//     optional expected revision, and Watch(prefix, afterRevision). No
//     multi-key transactions: callers order single-key writes so that any
//     prefix of them is recoverable.
//  2. Revisions are store-wide and increase with every write (etcd's
//     model). KV.Revision is a key's last-modified revision; List returns
//     the revision it was taken at, and Watch from that revision misses
//     nothing and repeats nothing.
//  3. Errors are wrapped sentinels (ErrNotFound, ErrExists, ErrConflict,
//     ErrCompacted, ErrInvalidKey, ErrClosed, ErrUnavailable) with Is* predicates; every
//     backend returns the same ones for the same situations.
//  4. Values are copied in and out; callers may reuse their slices.
//  5. KeyLister is an optional extra (all three backends have it) for
//     key-only listings, which save bbolt and etcd copying every value;
//     ListKeys falls back to List.
//     Optional interfaces exist only where a real backend benefits:
//     KeyLister is the one.
//
// Memory keeps a bounded history (WithHistory) for Watch and is safe for
// concurrent use.
package store
