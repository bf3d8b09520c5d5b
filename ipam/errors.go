package ipam

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrInvalid: bad input (CIDR, block size, selector, config, request).
	ErrInvalid = errors.New("invalid")
	// ErrOverlap: a pool overlaps an existing pool.
	ErrOverlap = errors.New("pool overlaps an existing pool")
	// ErrPoolExhausted: no free address in any pool considered.
	ErrPoolExhausted = errors.New("pools exhausted")
	// ErrBlockLimit: the node may claim no more blocks (maxBlocksPerHost, or
	// autoAllocateBlocks=false) and may not borrow.
	ErrBlockLimit = errors.New("per-node block limit reached")
	// ErrStrictAffinity: free addresses exist only in other nodes' blocks
	// and strict affinity forbids borrowing them.
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
	// ErrReserved: a requested address is in an IPReservation.
	ErrReserved = errors.New("address is reserved")
	// ErrPoolInUse: a pool still has blocks and cannot be deleted.
	ErrPoolInUse = errors.New("pool has blocks")
	// ErrNotFound: a named pool or reservation does not exist.
	ErrNotFound = errors.New("not found")
	// ErrTooManyConflicts: optimistic concurrency gave up after retries.
	ErrTooManyConflicts = errors.New("too many concurrent updates")
)

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
