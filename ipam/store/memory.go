package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/google/btree"
)

// Memory is the in-memory Store: strict (the same errors, ordering and
// revision rules as the real backends, checked by the same conformance
// suite), fast, and gone when the process exits. Use it in tests and
// benchmarks, and as a reference.
type Memory struct {
	mu      sync.RWMutex
	closed  bool
	rev     int64
	data    map[string]KV
	keys    *btree.BTreeG[string] // keys of data, ordered for prefix scans
	history []Event               // changes with KV.Revision > compacted, in order
	// compacted is the newest revision no longer in history.
	compacted  int64
	maxHistory int
	// changed is closed on the next write; it is made only when a watcher
	// asks for it (since), so writes nobody waits for don't allocate.
	chMu    sync.Mutex
	changed chan struct{}
}

var (
	_ Store        = (*Memory)(nil)
	_ KeyLister    = (*Memory)(nil)
	_ Viewer       = (*Memory)(nil)
	_ StringWriter = (*Memory)(nil)
)

// MemoryOption configures NewMemory.
type MemoryOption func(*Memory)

// WithHistory keeps at least the last n changes (at most 2n) for Watch
// with a start revision (default 65536). Watches starting before the kept
// history get ErrCompacted.
func WithHistory(n int) MemoryOption {
	return func(m *Memory) {
		if n > 0 {
			m.maxHistory = n
		}
	}
}

// NewMemory returns an empty in-memory store at revision 0.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{
		data:       map[string]KV{},
		keys:       btree.NewOrderedG[string](32),
		maxHistory: 1 << 16,
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Revision returns the store's current revision.
func (m *Memory) Revision() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rev
}

// lookup returns the stored KV itself (not a copy): Get copies its value,
// GetView hands out a read-only view.
func (m *Memory) lookup(ctx context.Context, key string) (KV, error) {
	if err := ValidateKey(key); err != nil {
		return KV{}, fmt.Errorf("memory: get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return KV{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return KV{}, ErrClosed
	}
	kv, ok := m.data[key]
	if !ok {
		return KV{}, &keyError{op: "get", key: key, err: ErrNotFound}
	}
	return kv, nil
}

// scan calls fn, under the read lock, for each stored KV whose key starts
// with prefix, in key order, and returns the store's revision.
func (m *Memory) scan(ctx context.Context, prefix string, fn func(KV)) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	m.keys.AscendGreaterOrEqual(prefix, func(k string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		fn(m.data[k])
		return true
	})
	return m.rev, nil
}

func (m *Memory) Get(ctx context.Context, key string) (KV, error) {
	kv, err := m.lookup(ctx, key)
	if err != nil {
		return KV{}, err
	}
	kv.Value = Clone(kv.Value)
	return kv, nil
}

func (m *Memory) List(ctx context.Context, prefix string) (ListResult, error) {
	var out []KV
	rev, err := m.scan(ctx, prefix, func(kv KV) {
		kv.Value = Clone(kv.Value)
		out = append(out, kv)
	})
	if err != nil {
		return ListResult{}, err
	}
	return ListResult{KVs: out, Revision: rev}, nil
}

// GetView is Get without the copy: the view is the stored value itself,
// which Memory never modifies (a write stores a fresh copy).
func (m *Memory) GetView(ctx context.Context, key string) (KVView, error) {
	kv, err := m.lookup(ctx, key)
	if err != nil {
		return KVView{}, err
	}
	return KVView{Key: kv.Key, Value: bytesView(kv.Value), Revision: kv.Revision}, nil
}

// ListView is List without the copies (see GetView).
func (m *Memory) ListView(ctx context.Context, prefix string) ([]KVView, int64, error) {
	out := make([]KVView, 0, 4)
	rev, err := m.scan(ctx, prefix, func(kv KV) {
		out = append(out, KVView{Key: kv.Key, Value: bytesView(kv.Value), Revision: kv.Revision})
	})
	if err != nil {
		return nil, 0, err
	}
	return out, rev, nil
}

func (m *Memory) ListKeys(ctx context.Context, prefix string) ([]string, int64, error) {
	var out []string
	rev, err := m.scan(ctx, prefix, func(kv KV) { out = append(out, kv.Key) })
	if err != nil {
		return nil, 0, err
	}
	return out, rev, nil
}

func (m *Memory) CreateString(ctx context.Context, key string, value string) (int64, error) {
	return m.create(ctx, key, bytesOf(value))
}

// UpdateString is Update keeping value itself rather than a copy.
func (m *Memory) UpdateString(ctx context.Context, key string, value string, ifRevision int64) (int64, error) {
	return m.update(ctx, key, bytesOf(value), ifRevision)
}

func (m *Memory) Create(ctx context.Context, key string, value []byte) (int64, error) {
	return m.create(ctx, key, Clone(value))
}

func (m *Memory) Update(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error) {
	return m.update(ctx, key, Clone(value), ifRevision)
}

// write runs fn under the write lock after the checks every write makes: a
// valid key, a live context, an open store.
func (m *Memory) write(ctx context.Context, op, key string, fn func() (int64, error)) (int64, error) {
	if err := ValidateKey(key); err != nil {
		return 0, fmt.Errorf("memory: %s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	return fn()
}

// checkRevision reports whether key exists at ifRevision (0: any revision);
// m.mu is held.
func (m *Memory) checkRevision(op, key string, ifRevision int64) error {
	cur, ok := m.data[key]
	if !ok {
		return fmt.Errorf("memory: %s %q: %w", op, key, ErrNotFound)
	}
	if ifRevision != 0 && cur.Revision != ifRevision {
		return fmt.Errorf("memory: %s %q at revision %d (now %d): %w", op, key, ifRevision, cur.Revision, ErrConflict)
	}
	return nil
}

// create stores value, which the store owns and never modifies.
func (m *Memory) create(ctx context.Context, key string, value []byte) (int64, error) {
	return m.write(ctx, "create", key, func() (int64, error) {
		if _, ok := m.data[key]; ok {
			return 0, fmt.Errorf("memory: create %q: %w", key, ErrExists)
		}
		m.keys.ReplaceOrInsert(key)
		return m.put(key, value), nil
	})
}

// update stores value, which the store owns and never modifies.
func (m *Memory) update(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error) {
	return m.write(ctx, "update", key, func() (int64, error) {
		if err := m.checkRevision("update", key, ifRevision); err != nil {
			return 0, err
		}
		return m.put(key, value), nil
	})
}

func (m *Memory) Delete(ctx context.Context, key string, ifRevision int64) error {
	_, err := m.write(ctx, "delete", key, func() (int64, error) {
		if err := m.checkRevision("delete", key, ifRevision); err != nil {
			return 0, err
		}
		delete(m.data, key)
		m.keys.Delete(key)
		m.rev++
		m.record(Event{Type: EventDelete, KV: KV{Key: key, Revision: m.rev}})
		return m.rev, nil
	})
	return err
}

// put stores value (the store's own copy) under key at a new revision;
// m.mu is held.
func (m *Memory) put(key string, value []byte) int64 {
	m.rev++
	kv := KV{Key: key, Value: value, Revision: m.rev}
	m.data[key] = kv
	m.record(Event{Type: EventPut, KV: kv})
	return m.rev
}

// record appends to the history and wakes watchers; m.mu is held.
func (m *Memory) record(ev Event) {
	m.history = append(m.history, ev)
	// Trim in batches (the history may grow to twice the limit), so each
	// write costs O(1) amortized.
	if len(m.history) >= 2*m.maxHistory {
		n := len(m.history) - m.maxHistory
		m.compacted = m.history[n-1].KV.Revision
		m.history = append(make([]Event, 0, 2*m.maxHistory), m.history[n:]...)
	}
	m.wake()
}

// wake closes the channel watchers wait on, if any; m.mu is held for
// writing.
func (m *Memory) wake() {
	m.chMu.Lock()
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
	m.chMu.Unlock()
}

// since returns the history after rev (copied) and the channel that will be
// closed on the next write.
func (m *Memory) since(rev int64) ([]Event, <-chan struct{}, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, nil, ErrClosed
	}
	if rev < m.compacted {
		return nil, nil, fmt.Errorf("memory: watch after revision %d: %w", rev, ErrCompacted)
	}
	i := sort.Search(len(m.history), func(i int) bool { return m.history[i].KV.Revision > rev })
	m.chMu.Lock() // m.mu is only read-locked: watchers may race to make it
	if m.changed == nil {
		m.changed = make(chan struct{})
	}
	ch := m.changed
	m.chMu.Unlock()
	return append([]Event(nil), m.history[i:]...), ch, nil
}

func (m *Memory) Watch(ctx context.Context, prefix string, afterRevision int64) (<-chan Event, error) {
	m.mu.RLock()
	closed, cur := m.closed, m.rev
	m.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if afterRevision <= 0 {
		afterRevision = cur
	}
	return WatchLog(ctx, prefix, afterRevision, m.since), nil
}

// keyError is fmt.Errorf("memory: %s %q: %w", op, key, err), formatted
// only when asked: a missing key is an everyday answer, not worth a
// Sprintf.
type keyError struct {
	op, key string
	err     error
}

func (e *keyError) Error() string { return fmt.Sprintf("memory: %s %q: %v", e.op, e.key, e.err) }
func (e *keyError) Unwrap() error { return e.err }

// Close ends all watches; later calls fail with ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		m.wake()
	}
	return nil
}
