package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tabbynet/tabby/ipam/store"
)

var (
	// ErrInvalid: bad input (CIDR, block size, selector, config, request).
	ErrInvalid = errors.New("invalid")
	// ErrOverlap: a pool overlaps an existing pool.
	ErrOverlap = errors.New("pool overlaps an existing pool")
	// ErrPoolExhausted: no block is left to claim and no free address is
	// left in any block the node may use (its own, or others' when it may
	// borrow), in the pools considered.
	ErrPoolExhausted = errors.New("pools exhausted")
	// ErrBlockLimit: the node's usable blocks are full and it may claim no
	// more: it has its limit of them (maxBlocksPerHost, default 20), or
	// autoAllocateBlocks is false. As in Calico, a node at its limit does
	// not borrow, with or without strict affinity.
	ErrBlockLimit = errors.New("per-node block limit reached")
	// ErrStrictAffinity: no block is left to claim, free addresses exist
	// only in other nodes' blocks, and strict affinity forbids borrowing
	// them.
	ErrStrictAffinity = errors.New("strict affinity forbids borrowing")
	// ErrNoMatchingPool: no enabled pool of the family matches the node
	// (nodeSelector) and the use.
	ErrNoMatchingPool = errors.New("no pool matches")
	// ErrUnknownPool: a requested pool (name or CIDR) does not exist.
	ErrUnknownPool = errors.New("unknown pool")
	// ErrNotInPool: a requested address is outside every enabled pool.
	ErrNotInPool = errors.New("address not in an enabled pool")
	// ErrAddressInUse: a requested address is already allocated.
	ErrAddressInUse = errors.New("address already in use")
	// ErrPoolInUse: a pool still has blocks and cannot be deleted.
	ErrPoolInUse = errors.New("pool has blocks")
	// ErrNotFound: a named pool or reservation does not exist.
	ErrNotFound = errors.New("not found")
	// ErrTooManyConflicts: optimistic concurrency gave up after retries.
	ErrTooManyConflicts = errors.New("too many concurrent updates")
	// ErrOutcomeUnknown: a store write failed in a way that leaves unknown
	// whether it was applied (an etcd client sees this on a lost
	// connection, a leader change or a server-side timeout), and reading
	// the store back did not settle it. Addresses may stay assigned under
	// the request's handle: release them with ReleaseByHandle (a CNI DEL
	// does), or leave them to GC. An error from Assign or AssignIP that
	// does not match ErrOutcomeUnknown means nothing stays assigned.
	ErrOutcomeUnknown = errors.New("outcome of a store write unknown")
)

// definite reports whether a failed store write certainly was not
// applied: the store refused it (revision conflict, missing or existing
// key, bad key, closed store). Anything else — a lost connection, a
// timeout, a cancelled context — may have been applied.
func definite(err error) bool {
	return errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) ||
		errors.Is(err, store.ErrInvalidKey) || errors.Is(err, store.ErrClosed)
}

// unknownWrite is a write to a block, assigning ips, whose outcome is
// unknown; it matches ErrOutcomeUnknown until a rollback settles it.
type unknownWrite struct {
	block  netip.Prefix
	casRev int64 // the revision the write was compare-and-swapped against
	ips    []AssignedIP
	err    error // the store's error
}

func (u *unknownWrite) Error() string {
	return fmt.Sprintf("update block %s: %v: %v", u.block, ErrOutcomeUnknown, u.err)
}

func (u *unknownWrite) Unwrap() []error { return []error{ErrOutcomeUnknown, u.err} }

// settled returns err with its unknownWrite replaced by a plain error
// (the rollback found out that nothing stays assigned).
func settled(err error, u *unknownWrite) error {
	if u == nil {
		return err
	}
	return fmt.Errorf("update block %s failed (rolled back, nothing stays assigned): %w", u.block, u.err)
}

// AllocationError explains why automatic assignment failed. errors.Is on it
// matches its Reason (ErrPoolExhausted, ErrBlockLimit, ErrStrictAffinity,
// ErrNoMatchingPool).
type AllocationError struct {
	Family int    // 4 or 6
	Node   string // the node that asked
	// Pools are the names of the pools considered, in the order tried.
	Pools  []string
	Reason error
	Detail string
}

func (e *AllocationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "assign IPv%d for node %q: %v", e.Family, e.Node, e.Reason)
	if len(e.Pools) > 0 {
		fmt.Fprintf(&b, " (pools considered: %s)", strings.Join(e.Pools, ", "))
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

func (e *AllocationError) Unwrap() error { return e.Reason }

// PoolError is Assign's error for a requested pool that does not exist:
// Pool is the name or CIDR as requested, IPv6 the family of the request
// that named it, and Err ErrUnknownPool (errors.Is matches it). Callers
// that took the pools from somewhere (a CNI plugin, from an annotation)
// use it to say where the name came from.
type PoolError struct {
	Pool string
	IPv6 bool
	Err  error
}

func (e *PoolError) Error() string { return fmt.Sprintf("pool %q: %v", e.Pool, e.Err) }

// Unwrap returns Err.
func (e *PoolError) Unwrap() error { return e.Err }
