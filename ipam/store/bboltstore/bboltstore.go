// Package bboltstore is the embedded store.Store backend: one bbolt file on
// local disk, shared safely by every process on the machine. Beside it live
// two empty lock files, "<path>.lock" and "<path>.want".
//
// # Design
//
//  1. Cross-process safety. Every access happens inside a "session" that
//     holds an exclusive flock on "<path>.lock" and has the bbolt file open.
//     By default (shared mode) a session is opened on demand and closed when
//     the process goes idle (after a short linger), or, when another process
//     is waiting (it holds a shared lock on "<path>.want"), after it has been
//     held for MaxHold while busy, so other processes — CNI plugin
//     invocations, tabbyctl, a node agent — take turns. WithExclusive keeps one session
//     for the life of the Store: fastest, but no other process can use the
//     file until Close. The lock file is taken with a non-blocking flock
//     polled with a short backoff (bbolt's own lock polls every 50 ms).
//     The wait ends at the lock timeout (WithLockTimeout) or when the
//     operation's context ends, whichever is first (the error then wraps
//     store.ErrUnavailable or the context's error); a write given up
//     while waiting was not written.
//  2. Group commit. Concurrent writes from one process are queued and
//     committed together in one bbolt transaction (one fsync) with no added
//     delay: the first writer commits, writers that arrive meanwhile go in
//     the next transaction. Each write is still an independent
//     compare-and-swap; one failing does not affect the others.
//  3. Revisions. A store-wide revision counter lives in the file; every write
//     takes the next revision and appends a change record to a log bucket.
//     The log keeps the last History changes (default 65536) and serves
//     Watch: in-process writes wake watchers at once, other processes'
//     writes are seen by polling every PollInterval (default 100 ms).
//
// All methods are safe for concurrent use.
package bboltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tabbynet/tabby/ipam/store"
)

var (
	bucketKV   = []byte("kv")
	bucketLog  = []byte("log")
	bucketMeta = []byte("meta")
	metaRev    = []byte("rev")
	metaCompac = []byte("compacted")
)

// Option configures Open. An option given a bad value makes Open fail
// with an error wrapping ErrInvalidOption.
type Option func(*options) error

// ErrInvalidOption: an option was given a bad value.
var ErrInvalidOption = errors.New("invalid bbolt store option")

type options struct {
	exclusive    bool
	lockTimeout  time.Duration
	pollInterval time.Duration
	history      int64
	linger       time.Duration
	maxHold      time.Duration
	noSync       bool
}

// setPositive sets *dst to d, which must be positive.
func setPositive(name string, d time.Duration, dst *time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: %s(%v): must be positive", ErrInvalidOption, name, d)
	}
	*dst = d
	return nil
}

// WithExclusive holds the file open and locked until Close, for a single
// long-running owner. Other processes block (up to their lock timeout).
func WithExclusive() Option { return func(o *options) error { o.exclusive = true; return nil } }

// WithLockTimeout bounds the wait for the file lock (default 30s; must be
// positive); past it an operation fails with store.ErrUnavailable.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) error { return setPositive("WithLockTimeout", d, &o.lockTimeout) }
}

// WithPollInterval sets how often watches look for other processes' writes
// (default 100ms; must be positive).
func WithPollInterval(d time.Duration) Option {
	return func(o *options) error { return setPositive("WithPollInterval", d, &o.pollInterval) }
}

// WithHistory sets how many changes are kept for Watch (default 65536;
// must be positive).
func WithHistory(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithHistory(%d): must be positive", ErrInvalidOption, n)
		}
		o.history = int64(n)
		return nil
	}
}

// WithLinger keeps an idle shared session open this long (default 2ms; 0
// closes it at once), so a burst of operations pays for one open and one
// lock.
func WithLinger(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("%w: WithLinger(%v): negative", ErrInvalidOption, d)
		}
		o.linger = d
		return nil
	}
}

// WithMaxHold bounds how long a busy shared session keeps the lock before it
// gives other processes a turn (default 20ms; must be positive).
func WithMaxHold(d time.Duration) Option {
	return func(o *options) error { return setPositive("WithMaxHold", d, &o.maxHold) }
}

// WithNoSync skips fsync on commit: faster, and a machine crash may lose the
// last writes. For tests and throwaway state only.
func WithNoSync() Option { return func(o *options) error { o.noSync = true; return nil } }

// Store is a store.Store on one bbolt file.
type Store struct {
	path string
	opts options

	mu       sync.Mutex
	cond     *sync.Cond
	closed   bool
	db       *bolt.DB
	lockFile *os.File
	users    int
	opening  bool
	draining bool
	openedAt time.Time
	yield    time.Time // don't reopen before this, to let other processes in
	linger   *time.Timer
	changed  chan struct{} // closed and replaced after each local commit

	wmu        sync.Mutex
	pending    []*writeOp
	committing bool
}

var (
	_ store.Store     = (*Store)(nil)
	_ store.KeyLister = (*Store)(nil)
)

// Open opens (creating if needed) the store file at path. Opening a file
// that has its buckets only reads it; a new file gets them in one commit.
//
// Even a caller that only reads needs write access: every session creates
// (if missing) and flocks "<path>.lock" and "<path>.want" in path's
// directory, and opens the bbolt file read-write, so the directory must be
// writable (a read-only mount or directory fails with the *os.PathError of
// the lock file, e.g. "bbolt: open lock file: ...: read-only file system").
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockTimeout: 30 * time.Second, pollInterval: 100 * time.Millisecond, history: 1 << 16,
		linger: 2 * time.Millisecond, maxHold: 20 * time.Millisecond}
	for _, f := range opts {
		if f == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := f(&o); err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	s := &Store{path: path, opts: o, changed: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	db, err := s.acquire(noStop)
	if err != nil {
		return nil, err
	}
	defer s.release()
	// A write transaction is a durable commit (two fdatasyncs) even when
	// it changes nothing, and a CNI plugin opens the store once per call:
	// look first, create the buckets only in a new file.
	ready := false
	if err := db.View(func(tx *bolt.Tx) error {
		ready = tx.Bucket(bucketKV) != nil && tx.Bucket(bucketLog) != nil && tx.Bucket(bucketMeta) != nil
		return nil
	}); err != nil {
		return nil, fmt.Errorf("bbolt: init %s: %w", path, err)
	}
	if ready {
		return s, nil
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKV, bucketLog, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bbolt: init %s: %w", path, err)
	}
	return s, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// noStop never gives up waiting (Open has no context).
func noStop() error { return nil }

// wake makes acquire look at its stop function again.
func (s *Store) wake() {
	s.mu.Lock()
	s.cond.Broadcast()
	s.mu.Unlock()
}

// acquire returns an open database inside a locked session; pair with
// release. While it waits (for the file lock, or for another goroutine
// opening the session) it calls stop and gives up with stop's error when
// that is not nil; a caller whose stop depends on a context arranges for
// wake to be called when the context ends.
func (s *Store) acquire(stop func() error) (*bolt.DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		switch {
		case s.closed:
			return nil, store.ErrClosed
		case s.db != nil && !s.draining:
			if !s.opts.exclusive && s.opts.maxHold > 0 && time.Since(s.openedAt) > s.opts.maxHold {
				if !s.othersWaiting() {
					s.openedAt = time.Now() // nobody else wants the file: keep it
					continue
				}
				s.draining = true
				if s.users == 0 {
					s.closeSessionLocked()
				}
				continue
			}
			s.users++
			if s.linger != nil {
				s.linger.Stop()
				s.linger = nil
			}
			return s.db, nil
		case s.db == nil && !s.opening:
			s.opening = true
			wait := time.Until(s.yield)
			s.mu.Unlock()
			if wait > 0 {
				time.Sleep(wait)
			}
			db, lf, err := s.openSession(stop)
			s.mu.Lock()
			s.opening = false
			s.cond.Broadcast()
			if err != nil {
				return nil, err
			}
			if s.closed {
				closeSession(db, lf)
				return nil, store.ErrClosed
			}
			s.db, s.lockFile, s.openedAt, s.draining = db, lf, time.Now(), false
			continue
		}
		if err := stop(); err != nil {
			return nil, fmt.Errorf("bbolt: waiting for %s: %w", s.path, err)
		}
		s.cond.Wait()
	}
}

func (s *Store) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.users > 0 {
		return
	}
	s.cond.Broadcast() // Close may be waiting for the last user
	if s.opts.exclusive || s.db == nil {
		return
	}
	if s.draining || s.opts.linger <= 0 {
		s.closeSessionLocked()
		return
	}
	if s.linger == nil {
		s.linger = time.AfterFunc(s.opts.linger, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.linger = nil
			if s.users == 0 && s.db != nil {
				s.closeSessionLocked()
			}
		})
	}
}

func (s *Store) closeSessionLocked() {
	if s.draining {
		// Leave a short gap so processes polling for the lock can get it.
		s.yield = time.Now().Add(time.Millisecond)
	}
	closeSession(s.db, s.lockFile)
	s.db, s.lockFile, s.draining = nil, nil, false
	if s.linger != nil {
		s.linger.Stop()
		s.linger = nil
	}
	s.cond.Broadcast()
}

func closeSession(db *bolt.DB, lf *os.File) {
	_ = db.Close()
	_ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	_ = lf.Close()
}

// othersWaiting reports whether another process (or Store) is waiting for
// the file: waiters hold a shared lock on "<path>.want" while they wait, so
// an exclusive try-lock on it fails.
func (s *Store) othersWaiting() bool {
	f, err := os.OpenFile(s.path+".want", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return true // be fair when unsure
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func (s *Store) openSession(stop func() error) (*bolt.DB, *os.File, error) {
	lf, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("bbolt: open lock file: %w", err)
	}
	// Announce that we wait, so a holder past its MaxHold lets us in.
	if want, err := os.OpenFile(s.path+".want", os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		if syscall.Flock(int(want.Fd()), syscall.LOCK_SH) == nil {
			defer func() {
				_ = syscall.Flock(int(want.Fd()), syscall.LOCK_UN)
				_ = want.Close()
			}()
		} else {
			_ = want.Close()
		}
	}
	deadline := time.Now().Add(s.opts.lockTimeout)
	backoff := 50 * time.Microsecond
	for {
		err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = lf.Close()
			return nil, nil, fmt.Errorf("bbolt: lock %s.lock: %w", s.path, err)
		}
		if err := stop(); err != nil {
			_ = lf.Close()
			return nil, nil, fmt.Errorf("bbolt: lock %s.lock: %w", s.path, err)
		}
		if time.Now().After(deadline) {
			_ = lf.Close()
			return nil, nil, fmt.Errorf("bbolt: lock %s.lock: timed out after %s: %w", s.path, s.opts.lockTimeout, store.ErrUnavailable)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Millisecond)
	}
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: s.opts.lockTimeout, NoSync: s.opts.noSync})
	if err != nil {
		_ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
		_ = lf.Close()
		return nil, nil, fmt.Errorf("bbolt: open %s: %w", s.path, err)
	}
	return db, lf, nil
}

// view runs fn in a read transaction, giving up when ctx ends while it
// waits for the file.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	defer context.AfterFunc(ctx, s.wake)()
	db, err := s.acquire(ctx.Err)
	if err != nil {
		return err
	}
	defer s.release()
	return db.View(fn)
}

func encodeRev(rev int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(rev))
	return b[:]
}

func decodeRev(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// decodeKV reads a kv-bucket value: 8 bytes of revision, then the value.
func decodeKV(key, v []byte) store.KV {
	return store.KV{Key: string(key), Revision: decodeRev(v[:8]), Value: store.Clone(v[8:])}
}

func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.KV{}, fmt.Errorf("bbolt: get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return store.KV{}, err
	}
	var kv store.KV
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("bbolt: get %q: %w", key, store.ErrNotFound)
		}
		kv = decodeKV([]byte(key), v)
		return nil
	})
	return kv, err
}

func (s *Store) List(ctx context.Context, prefix string) (store.ListResult, error) {
	if err := ctx.Err(); err != nil {
		return store.ListResult{}, err
	}
	var res store.ListResult
	err := s.view(ctx, func(tx *bolt.Tx) error {
		res.Revision = decodeRev(tx.Bucket(bucketMeta).Get(metaRev))
		c := tx.Bucket(bucketKV).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && hasPrefix(k, p); k, v = c.Next() {
			res.KVs = append(res.KVs, decodeKV(k, v))
		}
		return nil
	})
	return res, err
}

func (s *Store) ListKeys(ctx context.Context, prefix string) ([]string, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var keys []string
	var rev int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		rev = decodeRev(tx.Bucket(bucketMeta).Get(metaRev))
		c := tx.Bucket(bucketKV).Cursor()
		p := []byte(prefix)
		for k, _ := c.Seek(p); k != nil && hasPrefix(k, p); k, _ = c.Next() {
			keys = append(keys, string(k))
		}
		return nil
	})
	return keys, rev, err
}

func hasPrefix(b, p []byte) bool { return len(b) >= len(p) && string(b[:len(p)]) == string(p) }

// writeOp is one queued compare-and-swap. fn validates before it mutates, so
// an error from fn leaves the transaction untouched for the other ops.
type writeOp struct {
	ctx  context.Context
	fn   func(w *writer) error
	err  error
	done chan struct{}
}

// writer is handed to each op inside the batch transaction.
type writer struct {
	tx  *bolt.Tx
	kv  *bolt.Bucket
	rev int64
	log []byte // scratch
}

func (w *writer) current(key string) (rev int64, exists bool) {
	v := w.kv.Get([]byte(key))
	if v == nil {
		return 0, false
	}
	return decodeRev(v[:8]), true
}

// put writes key at the next revision and logs the change.
func (w *writer) put(typ store.EventType, key string, value []byte) (int64, error) {
	w.rev++
	if typ == store.EventDelete {
		if err := w.kv.Delete([]byte(key)); err != nil {
			return 0, err
		}
	} else {
		v := append(encodeRev(w.rev), value...)
		if err := w.kv.Put([]byte(key), v); err != nil {
			return 0, err
		}
	}
	w.log = append(w.log[:0], byte(typ))
	w.log = binary.AppendUvarint(w.log, uint64(len(key)))
	w.log = append(w.log, key...)
	w.log = append(w.log, value...)
	if err := w.tx.Bucket(bucketLog).Put(encodeRev(w.rev), w.log); err != nil {
		return 0, err
	}
	return w.rev, nil
}

// errFatal marks an error that must abort the whole batch.
type errFatal struct{ error }

// write queues fn for the next group commit and waits for its result.
func (s *Store) write(ctx context.Context, fn func(w *writer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan struct{})}
	s.wmu.Lock()
	s.pending = append(s.pending, op)
	lead := !s.committing
	if lead {
		s.committing = true
	}
	s.wmu.Unlock()
	if lead {
		go s.lead(op)
	}
	select {
	case <-op.done:
		return op.err
	case <-ctx.Done():
	}
	s.wmu.Lock()
	if i := slices.Index(s.pending, op); i >= 0 {
		s.pending = slices.Delete(s.pending, i, i+1)
		s.wmu.Unlock()
		return fmt.Errorf("bbolt: waiting to write %s (not written): %w", s.path, ctx.Err())
	}
	s.wmu.Unlock()
	// In a batch: it leaves the batch while the file lock is awaited, or
	// is committed with it.
	<-op.done
	return op.err
}

// lead commits queued batches until own is done, then hands the queue to a
// new leader goroutine if more ops are waiting.
func (s *Store) lead(own *writeOp) {
	for {
		s.wmu.Lock()
		batch := s.pending
		s.pending = nil
		if len(batch) == 0 {
			s.committing = false
			s.wmu.Unlock()
			return
		}
		s.wmu.Unlock()
		s.commit(batch)
		select {
		case <-own.done:
			s.wmu.Lock()
			more := len(s.pending) > 0
			if !more {
				s.committing = false
			}
			s.wmu.Unlock()
			if more {
				go s.lead(&writeOp{done: closedChan})
			}
			return
		default:
		}
	}
}

// errBatchGone: every write of a batch gave up waiting for the file.
var errBatchGone = errors.New("every write of the batch gave up")

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (s *Store) commit(batch []*writeOp) {
	// While the file lock is awaited, a write whose context ends leaves
	// the batch, certainly not applied.
	for _, op := range batch {
		if op.ctx != nil {
			defer context.AfterFunc(op.ctx, s.wake)()
		}
	}
	db, err := s.acquire(func() error {
		batch = slices.DeleteFunc(batch, func(op *writeOp) bool {
			if op.ctx == nil || op.ctx.Err() == nil {
				return false
			}
			op.err = fmt.Errorf("bbolt: waiting for %s (not written): %w", s.path, op.ctx.Err())
			close(op.done)
			return true
		})
		if len(batch) == 0 {
			return errBatchGone
		}
		return nil
	})
	if errors.Is(err, errBatchGone) {
		return
	}
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			w := &writer{tx: tx, kv: tx.Bucket(bucketKV), rev: decodeRev(meta.Get(metaRev))}
			for _, op := range batch {
				op.err = op.fn(w)
				var fatal errFatal
				if errors.As(op.err, &fatal) {
					return fatal.error
				}
			}
			if err := meta.Put(metaRev, encodeRev(w.rev)); err != nil {
				return err
			}
			return s.compact(tx, w.rev)
		})
		s.release()
	}
	if err != nil {
		err = fmt.Errorf("bbolt: commit %s: %w", s.path, err)
		for _, op := range batch {
			op.err = err
		}
	} else {
		s.mu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
	for _, op := range batch {
		close(op.done)
	}
}

// compact drops log entries older than the retained history.
func (s *Store) compact(tx *bolt.Tx, rev int64) error {
	meta := tx.Bucket(bucketMeta)
	oldest := rev - s.opts.history
	if oldest <= decodeRev(meta.Get(metaCompac)) {
		return nil
	}
	c := tx.Bucket(bucketLog).Cursor()
	for k, _ := c.First(); k != nil && decodeRev(k) <= oldest; k, _ = c.Next() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return meta.Put(metaCompac, encodeRev(oldest))
}

func checkKV(key string) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	if len(key) > bolt.MaxKeySize {
		return fmt.Errorf("%w: longer than %d bytes", store.ErrInvalidKey, bolt.MaxKeySize)
	}
	return nil
}

func fatal(err error) error {
	if err == nil {
		return nil
	}
	return errFatal{err}
}

func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	if err := checkKV(key); err != nil {
		return 0, fmt.Errorf("bbolt: create: %w", err)
	}
	value = store.Clone(value)
	var rev int64
	err := s.write(ctx, func(w *writer) error {
		if _, ok := w.current(key); ok {
			return fmt.Errorf("bbolt: create %q: %w", key, store.ErrExists)
		}
		var err error
		rev, err = w.put(store.EventPut, key, value)
		return fatal(err)
	})
	return rev, err
}

func (s *Store) Update(ctx context.Context, key string, value []byte, ifRevision int64) (int64, error) {
	if err := checkKV(key); err != nil {
		return 0, fmt.Errorf("bbolt: update: %w", err)
	}
	value = store.Clone(value)
	var rev int64
	err := s.write(ctx, func(w *writer) error {
		cur, ok := w.current(key)
		if !ok {
			return fmt.Errorf("bbolt: update %q: %w", key, store.ErrNotFound)
		}
		if ifRevision != 0 && cur != ifRevision {
			return fmt.Errorf("bbolt: update %q at revision %d (now %d): %w", key, ifRevision, cur, store.ErrConflict)
		}
		var err error
		rev, err = w.put(store.EventPut, key, value)
		return fatal(err)
	})
	return rev, err
}

func (s *Store) Delete(ctx context.Context, key string, ifRevision int64) error {
	if err := checkKV(key); err != nil {
		return fmt.Errorf("bbolt: delete: %w", err)
	}
	return s.write(ctx, func(w *writer) error {
		cur, ok := w.current(key)
		if !ok {
			return fmt.Errorf("bbolt: delete %q: %w", key, store.ErrNotFound)
		}
		if ifRevision != 0 && cur != ifRevision {
			return fmt.Errorf("bbolt: delete %q at revision %d (now %d): %w", key, ifRevision, cur, store.ErrConflict)
		}
		_, err := w.put(store.EventDelete, key, nil)
		return fatal(err)
	})
}

// logPage bounds how many changes one watch read returns.
const logPage = 1024

func (s *Store) readLog(rev int64) ([]store.Event, <-chan struct{}, error) {
	s.mu.Lock()
	changed, closed := s.changed, s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, store.ErrClosed
	}
	var evs []store.Event
	err := s.view(context.Background(), func(tx *bolt.Tx) error {
		if rev < decodeRev(tx.Bucket(bucketMeta).Get(metaCompac)) {
			return fmt.Errorf("bbolt: watch after revision %d: %w", rev, store.ErrCompacted)
		}
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(encodeRev(rev + 1)); k != nil && len(evs) < logPage; k, v = c.Next() {
			ev, err := decodeLog(decodeRev(k), v)
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(evs) == logPage {
		return evs, closedChan, nil
	}
	more := make(chan struct{})
	go func() {
		t := time.NewTimer(s.opts.pollInterval)
		defer t.Stop()
		select {
		case <-changed:
		case <-t.C:
		}
		close(more)
	}()
	return evs, more, nil
}

func decodeLog(rev int64, v []byte) (store.Event, error) {
	if len(v) < 2 {
		return store.Event{}, fmt.Errorf("bbolt: corrupt log entry at revision %d", rev)
	}
	n, sz := binary.Uvarint(v[1:])
	if sz <= 0 || uint64(len(v)-1-sz) < n {
		return store.Event{}, fmt.Errorf("bbolt: corrupt log entry at revision %d", rev)
	}
	key := v[1+sz : 1+sz+int(n)]
	return store.Event{Type: store.EventType(v[0]), KV: store.KV{
		Key: string(key), Value: store.Clone(v[1+sz+int(n):]), Revision: rev}}, nil
}

func (s *Store) Watch(ctx context.Context, prefix string, afterRevision int64) (<-chan store.Event, error) {
	if err := store.CheckWatchRevision(afterRevision); err != nil {
		return nil, fmt.Errorf("bbolt: %w", err)
	}
	if afterRevision <= 0 {
		err := s.view(ctx, func(tx *bolt.Tx) error {
			afterRevision = decodeRev(tx.Bucket(bucketMeta).Get(metaRev))
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return store.WatchLog(ctx, prefix, afterRevision, s.readLog), nil
}

// Close closes the file once in-flight operations finish; watches end.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.changed)
	s.changed = make(chan struct{})
	for s.users > 0 || s.opening {
		s.cond.Wait()
	}
	if s.db != nil {
		s.closeSessionLocked()
	}
	return nil
}
