package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// KV is one key with its value and the revision of its last modification.
type KV struct {
	Key   string
	Value []byte
	// Revision is the store revision at which the key was last written
	// (etcd's ModRevision). It is the token Update and Delete compare.
	Revision int64
}

// ListResult is the answer to List: the matching keys in ascending key order
// and the store revision the listing was taken at. Watching from Revision
// sees every change made after the listing, and nothing before it.
type ListResult struct {
	KVs      []KV
	Revision int64
}

// EventType says what happened to a key.
type EventType int

const (
	// EventPut is a create or an update; Event.KV holds the new value.
	EventPut EventType = iota + 1
	// EventDelete is a deletion; Event.KV.Value is nil and Event.KV.Revision
	// is the revision of the deletion.
	EventDelete
	// EventError ends a watch stream; Event.Err says why (ErrCompacted when
	// the requested start revision is no longer available).
	EventError
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventError:
		return "error"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one change seen by Watch.
type Event struct {
	Type EventType
	KV   KV
	Err  error
}

// Store is a small revisioned key/value store with compare-and-swap, the one
// seam between the IPAM logic and its datastore.
//
// Keys are non-empty strings; values are opaque bytes that the store copies
// on the way in and out, so callers may reuse their slices. Every write
// advances one store-wide revision. All methods are safe for concurrent use
// by many goroutines, and the real backends by many processes.
//
// Errors are wrapped; test them with errors.Is against ErrNotFound,
// ErrExists, ErrConflict and ErrCompacted, or with the Is* predicates.
type Store interface {
	// Get returns the key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns every key starting with prefix (all keys for ""), in
	// ascending key order. No match is an empty result, not an error.
	List(ctx context.Context, prefix string) (ListResult, error)
	// Create writes a key that must not exist (else ErrExists) and returns
	// its new revision.
	Create(ctx context.Context, key string, value []byte) (int64, error)
	// Update overwrites an existing key (else ErrNotFound). When ifRevision
	// is non-zero the key's current revision must equal it (else
	// ErrConflict). It returns the new revision.
	Update(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error)
	// Delete removes an existing key (else ErrNotFound). When ifRevision is
	// non-zero the key's current revision must equal it (else ErrConflict).
	Delete(ctx context.Context, key string, ifRevision int64) error
	// Watch streams, in revision order, the changes to keys under prefix
	// made after revision afterRevision (0 means "from now"; negative is
	// ErrInvalidRevision, see CheckWatchRevision). The channel is
	// closed when ctx is done or after an EventError event. A consumer that
	// falls behind a backend's retained history gets ErrCompacted.
	Watch(ctx context.Context, prefix string, afterRevision int64) (<-chan Event, error)
	// Close releases the store's resources. Outstanding watches end.
	Close() error
}

// CheckWatchRevision is every backend's check of Watch's afterRevision:
// 0 (from now) or a positive revision; negative wraps ErrInvalidRevision.
func CheckWatchRevision(afterRevision int64) error {
	if afterRevision < 0 {
		return fmt.Errorf("watch after revision %d: %w", afterRevision, ErrInvalidRevision)
	}
	return nil
}

// KeyLister is implemented by stores that can list keys without values, so
// callers that need only the keys (IPAM looking for a free block among
// thousands) don't copy every value. All three backends implement it; use
// ListKeys, which falls back to List for stores that don't.
type KeyLister interface {
	// ListKeys returns the keys under prefix in ascending order and the
	// store revision, like List without the values.
	ListKeys(ctx context.Context, prefix string) ([]string, int64, error)
}

// ListKeys lists the keys under prefix, without values when s can.
func ListKeys(ctx context.Context, s Store, prefix string) ([]string, int64, error) {
	if kl, ok := s.(KeyLister); ok {
		return kl.ListKeys(ctx, prefix)
	}
	l, err := s.List(ctx, prefix)
	if err != nil {
		return nil, 0, err
	}
	keys := make([]string, len(l.KVs))
	for i, kv := range l.KVs {
		keys[i] = kv.Key
	}
	return keys, l.Revision, nil
}

var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("key not found")
	// ErrExists: Create of a key that already exists.
	ErrExists = errors.New("key already exists")
	// ErrConflict: the key's revision is not the one the caller expected.
	ErrConflict = errors.New("revision conflict")
	// ErrCompacted: a watch asked for history the store no longer keeps.
	ErrCompacted = errors.New("revision compacted")
	// ErrInvalidKey: an empty key.
	ErrInvalidKey = errors.New("invalid key")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrInvalidRevision: a negative watch revision.
	ErrInvalidRevision = errors.New("invalid revision")
	// ErrUnavailable: the store could not be reached or used in time — etcd
	// unreachable, without a leader or timing out a request; a bbolt file
	// lock not obtained within its lock timeout. Worth retrying later. A
	// write failing with it may or may not have been applied. (An ended
	// context comes back as the context's error instead.)
	ErrUnavailable = errors.New("store unavailable")
)

// IsNotFound reports whether err wraps ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsExists reports whether err wraps ErrExists.
func IsExists(err error) bool { return errors.Is(err, ErrExists) }

// IsConflict reports whether err wraps ErrConflict.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// ValidateKey returns an error wrapping ErrInvalidKey for keys no backend
// accepts. Backends call it first so they all reject the same keys.
func ValidateKey(key string) error {
	if key == "" || strings.ContainsRune(key, 0) {
		return fmt.Errorf("%q: %w", key, ErrInvalidKey)
	}
	return nil
}

// Clone copies b, keeping nil as nil and empty as empty.
func Clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append([]byte{}, b...)
}
