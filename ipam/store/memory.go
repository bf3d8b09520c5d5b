package store

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
)

// Memory is the in-memory Store: strict (the same errors, ordering and
// revision rules as the real backends, checked by the same conformance
// suite), fast, and gone when the process exits. Use it in tests and
// benchmarks, and as a reference.
type Memory struct {
	// mu orders changes: a write holds it only to take the next revision,
	// set the value and record the change, and List, Watch and Revision
	// hold it for a consistent snapshot. Everything else a write does
	// (validation, the revision check, the ordered index) happens under the
	// key's shard lock, so writes to different keys mostly run in
	// parallel, and Get reads a shard without taking mu at all.
	mu     sync.Mutex
	closed atomic.Bool
	rev    int64
	shards [memoryShards]memoryShard
	seed   maphash.Seed
	// keys holds every entry in key order, for prefix scans; keysMu guards
	// it. Scans take it while holding mu; nothing takes mu while holding
	// it.
	keysMu sync.Mutex
	keys   *btree.BTreeG[indexItem]
	// history is a ring of the last changes (revisions > compacted), so
	// recording one never copies the rest under the lock.
	history    []Event
	histStart  int   // index of the oldest change once the ring is full
	compacted  int64 // the newest revision no longer in history
	maxHistory int
	// changed is closed on the next write; it is made only when a watcher
	// asks for it (since), so writes nobody waits for don't allocate.
	chMu    sync.Mutex
	changed chan struct{}
}

// memoryShards is the number of key shards: enough that writers on two
// cores rarely meet on one.
const memoryShards = 64

// memoryShard maps some keys to their entries; its mu is held for every
// change to one of its keys, from the revision check to the end.
type memoryShard struct {
	mu   sync.RWMutex
	data map[string]*memEntry
	_    [64 - 32]byte // a cache line each
}

// memEntry is one key's value. key never changes; kv changes only under
// both the shard's lock and Memory.mu, so either is enough to read it. An
// entry in the ordered index with revision 0 is being created or deleted,
// and scans skip it.
type memEntry struct {
	key string
	kv  KV
}

// indexItem is an entry in the ordered index, its key held inline so a
// comparison reads one string, not an entry and then its string.
type indexItem struct {
	key string
	e   *memEntry
}

func indexLess(a, b indexItem) bool { return a.key < b.key }

func (m *Memory) shard(key string) *memoryShard {
	return &m.shards[maphash.String(m.seed, key)%memoryShards]
}

var (
	_ Store     = (*Memory)(nil)
	_ KeyLister = (*Memory)(nil)
)

// MemoryOption configures NewMemory. An option given a bad value makes
// NewMemory fail with an error wrapping ErrInvalidOption.
type MemoryOption func(*Memory) error

// ErrInvalidOption: a store option was given a bad value.
var ErrInvalidOption = errors.New("invalid store option")

// WithHistory keeps the last n changes (n ≥ 1; default 65536) for Watch
// with a start revision. Watches starting before the kept history get
// ErrCompacted.
func WithHistory(n int) MemoryOption {
	return func(m *Memory) error {
		if n < 1 {
			return fmt.Errorf("%w: WithHistory(%d): need at least 1", ErrInvalidOption, n)
		}
		m.maxHistory = n
		return nil
	}
}

// NewMemory returns an empty in-memory store at revision 0.
func NewMemory(opts ...MemoryOption) (*Memory, error) {
	m := &Memory{
		keys:       btree.NewG(32, indexLess),
		maxHistory: 1 << 16,
		seed:       maphash.MakeSeed(),
	}
	for i := range m.shards {
		m.shards[i].data = map[string]*memEntry{}
	}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := o(m); err != nil {
			return nil, fmt.Errorf("memory store: %w", err)
		}
	}
	return m, nil
}

// Revision returns the store's current revision.
func (m *Memory) Revision() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev
}

// lookup returns the stored KV itself (not a copy); Get copies its value.
func (m *Memory) lookup(ctx context.Context, key string) (KV, error) {
	if err := ValidateKey(key); err != nil {
		return KV{}, fmt.Errorf("memory: get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return KV{}, err
	}
	if m.closed.Load() {
		return KV{}, ErrClosed
	}
	sh := m.shard(key)
	yieldRLock(&sh.mu)
	var kv KV
	if e := sh.data[key]; e != nil {
		kv = e.kv
	}
	sh.mu.RUnlock()
	if kv.Revision == 0 {
		return KV{}, &keyError{op: "get", key: key, err: ErrNotFound}
	}
	return kv, nil
}

// scan calls fn, holding mu (so no change lands meanwhile), for each
// stored KV whose key starts with prefix, in key order, and returns the
// store's revision.
func (m *Memory) scan(ctx context.Context, prefix string, fn func(KV)) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	yieldLock(&m.mu)
	defer m.mu.Unlock()
	if m.closed.Load() {
		return 0, ErrClosed
	}
	yieldLock(&m.keysMu)
	defer m.keysMu.Unlock()
	m.keys.AscendGreaterOrEqual(indexItem{key: prefix}, func(it indexItem) bool {
		if !strings.HasPrefix(it.key, prefix) {
			return false
		}
		if it.e.kv.Revision != 0 {
			fn(it.e.kv)
		}
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

func (m *Memory) ListKeys(ctx context.Context, prefix string) ([]string, int64, error) {
	var out []string
	rev, err := m.scan(ctx, prefix, func(kv KV) { out = append(out, kv.Key) })
	if err != nil {
		return nil, 0, err
	}
	return out, rev, nil
}

func (m *Memory) Create(ctx context.Context, key string, value []byte) (int64, error) {
	return m.create(ctx, key, Clone(value))
}

func (m *Memory) Update(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error) {
	return m.update(ctx, key, Clone(value), ifRevision)
}

// write runs fn holding key's shard lock, after the checks every write
// makes: a valid key, a live context, an open store. fn finds the key's
// entry (nil when there is none) in the shard.
func (m *Memory) write(ctx context.Context, op, key string, fn func(sh *memoryShard, e *memEntry) (int64, error)) (int64, error) {
	if err := ValidateKey(key); err != nil {
		return 0, fmt.Errorf("memory: %s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if m.closed.Load() {
		return 0, ErrClosed
	}
	sh := m.shard(key)
	yieldLock(&sh.mu)
	defer sh.mu.Unlock()
	return fn(sh, sh.data[key])
}

// checkRevision reports whether e (key's entry, or nil) is at ifRevision
// (0: any revision).
func checkRevision(op, key string, e *memEntry, ifRevision int64) error {
	if e == nil {
		return fmt.Errorf("memory: %s %q: %w", op, key, ErrNotFound)
	}
	if ifRevision != 0 && e.kv.Revision != ifRevision {
		return fmt.Errorf("memory: %s %q at revision %d (now %d): %w", op, key, ifRevision, e.kv.Revision, ErrConflict)
	}
	return nil
}

// commit gives e its next value (value nil and del set: deleted) at a new
// revision and records the change; the shard's lock is held. It fails
// only when the store has been closed.
func (m *Memory) commit(e *memEntry, value []byte, del bool) (int64, error) {
	yieldLock(&m.mu)
	defer m.mu.Unlock()
	if m.closed.Load() {
		return 0, ErrClosed
	}
	m.rev++
	if del {
		e.kv = KV{Key: e.key}
		m.record(Event{Type: EventDelete, KV: KV{Key: e.key, Revision: m.rev}})
	} else {
		e.kv = KV{Key: e.key, Value: value, Revision: m.rev}
		m.record(Event{Type: EventPut, KV: e.kv})
	}
	return m.rev, nil
}

// unindex removes e from the ordered index and its shard; the shard's
// lock is held.
func (m *Memory) unindex(sh *memoryShard, e *memEntry) {
	delete(sh.data, e.key)
	yieldLock(&m.keysMu)
	m.keys.Delete(indexItem{key: e.key})
	m.keysMu.Unlock()
}

// create stores value, which the store owns and never modifies. The entry
// joins the index before it has a revision (scans skip it until then), so
// the index's lock is never taken while holding mu.
func (m *Memory) create(ctx context.Context, key string, value []byte) (int64, error) {
	return m.write(ctx, "create", key, func(sh *memoryShard, e *memEntry) (int64, error) {
		if e != nil {
			return 0, fmt.Errorf("memory: create %q: %w", key, ErrExists)
		}
		e = &memEntry{key: key, kv: KV{Key: key}}
		sh.data[key] = e
		yieldLock(&m.keysMu)
		m.keys.ReplaceOrInsert(indexItem{key, e})
		m.keysMu.Unlock()
		rev, err := m.commit(e, value, false)
		if err != nil {
			m.unindex(sh, e)
		}
		return rev, err
	})
}

// update stores value, which the store owns and never modifies.
func (m *Memory) update(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error) {
	return m.write(ctx, "update", key, func(_ *memoryShard, e *memEntry) (int64, error) {
		if err := checkRevision("update", key, e, ifRevision); err != nil {
			return 0, err
		}
		return m.commit(e, value, false)
	})
}

func (m *Memory) Delete(ctx context.Context, key string, ifRevision int64) error {
	_, err := m.write(ctx, "delete", key, func(sh *memoryShard, e *memEntry) (int64, error) {
		if err := checkRevision("delete", key, e, ifRevision); err != nil {
			return 0, err
		}
		rev, err := m.commit(e, nil, true)
		if err == nil {
			m.unindex(sh, e)
		}
		return rev, err
	})
	return err
}

// record adds to the history, dropping the oldest change once it holds
// maxHistory, and wakes watchers; m.mu is held.
func (m *Memory) record(ev Event) {
	if len(m.history) < m.maxHistory {
		m.history = append(m.history, ev)
	} else {
		m.compacted = m.history[m.histStart].KV.Revision
		m.history[m.histStart] = ev
		m.histStart = (m.histStart + 1) % len(m.history)
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
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return nil, nil, ErrClosed
	}
	if rev < m.compacted {
		return nil, nil, fmt.Errorf("memory: watch after revision %d: %w", rev, ErrCompacted)
	}
	n := len(m.history)
	at := func(i int) *Event { return &m.history[(m.histStart+i)%n] }
	i := sort.Search(n, func(i int) bool { return at(i).KV.Revision > rev })
	m.chMu.Lock() // m.mu is only read-locked: watchers may race to make it
	if m.changed == nil {
		m.changed = make(chan struct{})
	}
	ch := m.changed
	m.chMu.Unlock()
	out := make([]Event, 0, n-i)
	for ; i < n; i++ {
		out = append(out, *at(i))
	}
	return out, ch, nil
}

func (m *Memory) Watch(ctx context.Context, prefix string, afterRevision int64) (<-chan Event, error) {
	if err := CheckWatchRevision(afterRevision); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	m.mu.Lock()
	closed, cur := m.closed.Load(), m.rev
	m.mu.Unlock()
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
	if !m.closed.Load() {
		m.closed.Store(true)
		m.wake()
	}
	return nil
}

// yieldLock and yieldRLock take a lock the way this store wants under
// contention: try it, and while it is held give the processor to another
// goroutine (runtime.Gosched) a few times before blocking. The store's
// critical sections are far shorter than a futex sleep and wake-up, and
// with many goroutines per processor (16 nodes allocating on 2 cores),
// sync.Mutex's blocking left a processor idle about a third of the time;
// yielding keeps both busy. The fallback Lock keeps it fair.
func yieldLock(mu interface {
	TryLock() bool
	Lock()
}) {
	for range lockYields {
		if mu.TryLock() {
			return
		}
		runtime.Gosched()
	}
	mu.Lock()
}

func yieldRLock(mu *sync.RWMutex) {
	for range lockYields {
		if mu.TryRLock() {
			return
		}
		runtime.Gosched()
	}
	mu.RLock()
}

const lockYields = 16
