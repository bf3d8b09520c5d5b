package ipsets

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"

	"github.com/tabbynet/tabby/dataplane/deltatracker"
)

// Handle is the slice of *netlink.Handle (github.com/vishvananda/netlink)
// that IPSets uses. The real implementation is KernelHandle (NewHandle),
// bound to one network namespace, which also implements BatchHandle; a
// plain *netlink.Handle from netlink.NewHandleAt(ns,
// unix.NETLINK_NETFILTER) works too, one netlink message per member. Fake
// is the in-memory one. Errors are the kernel's: syscall.Errno (ENOENT for
// a missing set) or nl.IPSetError.
type Handle interface {
	// IpsetListAll dumps every set with its entries (`ipset list`). A large
	// set may come back split over several results with the same name.
	IpsetListAll() ([]nl.IPSetResult, error)
	// IpsetCreate creates a set; IPSET_ERR_EXIST if the name is taken
	// (`ipset create NAME TYPE family F maxelem N`).
	IpsetCreate(name, typename string, opts nl.IpsetCreateOptions) error
	// IpsetDestroy destroys a set; ENOENT if absent, IPSET_ERR_BUSY if a
	// rule references it (`ipset destroy NAME`).
	IpsetDestroy(name string) error
	// IpsetSwap exchanges the contents of two sets of the same type and
	// family, leaving references with the names (`ipset swap A B`).
	IpsetSwap(a, b string) error
	// IpsetAdd adds an entry; IPSET_ERR_EXIST if present (`ipset add`).
	IpsetAdd(name string, e *nl.IPSetEntry) error
	// IpsetDel deletes an entry; IPSET_ERR_EXIST if absent (`ipset del`).
	IpsetDel(name string, e *nl.IPSetEntry) error
}

var _ Handle = (*nl.Handle)(nil)

// DefaultPrefix is the name prefix of the sets tabby owns.
const DefaultPrefix = "tabby-"

// DefaultRefreshInterval is how old the last listing of the kernel's sets
// may be before an Apply lists them again to find drift: Felix's
// ipsetsRefreshInterval default, and dataplane/iptables'
// DefaultRefreshInterval.
const DefaultRefreshInterval = 90 * time.Second

// Option configures New. A nil Option is ignored.
type Option func(*IPSets)

// WithPrefix sets the name prefix of owned sets (default DefaultPrefix).
// Sets whose name does not start with it are never read, written or
// destroyed; every owned set that is not desired is destroyed, so the
// prefix must be one no other program's set names start with (end it with
// a separator, as "tabby-" does).
//
// The prefix is 1 to MaxPrefixLen bytes of printable ASCII other than
// space, '~', quotes and backslash, not starting with '-' or '!' (so that
// every set name is one iptables-restore argument and a temporary set name
// fits MaxNameLen). Any other prefix makes New's IPSets unusable: Err,
// SetMembers and every Apply method return an error wrapping
// ErrInvalidConfig, and nothing is read or written.
func WithPrefix(p string) Option { return func(s *IPSets) { s.prefix = p } }

// MaxPrefixLen is the longest prefix WithPrefix accepts: MaxNameLen less
// the 9 bytes TempName appends ('~' and 8 hex digits).
const MaxPrefixLen = MaxNameLen - 9

// WithLogger sets the logger (default, and when l is nil: discard).
func WithLogger(l *slog.Logger) Option {
	return func(s *IPSets) {
		if l != nil {
			s.log = l
		}
	}
}

// WithRewriteThreshold sets the number of pending member changes from
// which a set that exists is rebuilt in a temporary set and swapped in,
// rather than edited in place (default 64; the rebuild is also chosen only
// when the changes touch at least half of the desired members).
func WithRewriteThreshold(n int) Option { return func(s *IPSets) { s.rewriteMin = n } }

// WithRefreshInterval sets how old the last listing of the kernel's sets
// may be before the next Apply (ApplyUpdates, ApplyCreates or
// ApplyDeletions) lists them again and repairs what another program
// changed, as Felix does every ipsetsRefreshInterval (default
// DefaultRefreshInterval, 90 s). Zero keeps the default; a negative d turns
// the periodic listing off (QueueResync and failed writes still cause one).
// A sync loop (dataplane/syncrunner) whose MaxInterval is at most d repairs
// ipset drift within about d + MaxInterval.
func WithRefreshInterval(d time.Duration) Option {
	return func(s *IPSets) {
		if d != 0 {
			s.refresh = d
		}
	}
}

// WithClock sets the clock that ages the last listing (default: the real
// clock); nil keeps the default.
func WithClock(c clock.PassiveClock) Option {
	return func(s *IPSets) {
		if c != nil {
			s.clock = c
		}
	}
}

type setMeta struct {
	Type   Type
	Family Family
}

type setState struct {
	members *deltatracker.Tracker[Member, struct{}]
	maxElem uint32 // of the kernel set; 0 when absent
	// foreign says how the kernel set's header differs from one this
	// package creates ("timeout 3", "maxelem 65536", ...); "" when it
	// does not, or the set is absent. Such a set is rebuilt and swapped.
	foreign string
}

// IPSets keeps the owned ipsets of one network namespace equal to a
// desired state held in memory. See the package doc. The zero value is not
// usable; make one with New (its methods that return an error return
// ErrInvalidConfig, the others do nothing and return zero values).
type IPSets struct {
	h          Handle
	prefix     string
	log        *slog.Logger
	rewriteMin int
	refresh    time.Duration
	clock      clock.PassiveClock

	// cfgErr is the configuration error New found (ErrInvalidConfig), or nil.
	cfgErr error

	mu     sync.Mutex
	sets   *deltatracker.Tracker[string, setMeta]
	state  map[string]*setState
	resync bool
	// lastRead is when the kernel's sets were last listed.
	lastRead time.Time
}

// New returns an IPSets that programs sets through h. Nothing is read or
// written until the first Apply, which first lists the kernel's sets.
//
// New does not fail: an option value it cannot work with (a prefix that
// cannot scope ownership, see WithPrefix; a nil h) makes the returned
// IPSets refuse to work, and Err reports why. Check Err after New when the
// options come from configuration.
func New(h Handle, opts ...Option) *IPSets {
	s := &IPSets{
		h:          h,
		prefix:     DefaultPrefix,
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		rewriteMin: 64,
		refresh:    DefaultRefreshInterval,
		clock:      clock.RealClock{},
		sets:       deltatracker.New[string, setMeta](),
		state:      map[string]*setState{},
		resync:     true,
	}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	switch err := checkPrefix(s.prefix); {
	case err != nil:
		s.cfgErr = err
	case h == nil:
		s.cfgErr = fmt.Errorf("%w: nil Handle", ErrInvalidConfig)
	}
	return s
}

// Err returns nil if New's options are usable, else the error wrapping
// ErrInvalidConfig that SetMembers, AddMembers, RemoveMembers and the
// Apply methods return; for an IPSets that New did not make (nil or a zero
// value) that error says so.
func (s *IPSets) Err() error {
	if !s.made() {
		return fmt.Errorf("ipsets.IPSets has no configuration (make it with New): %w", ErrInvalidConfig)
	}
	return s.cfgErr
}

// made reports whether New made s: only New sets the set tracker, which is
// never changed afterwards, so reading it needs no lock.
func (s *IPSets) made() bool { return s != nil && s.sets != nil }

// checkPrefix returns an error wrapping ErrInvalidConfig unless p is a
// usable owner prefix (see WithPrefix).
func checkPrefix(p string) error {
	switch {
	case p == "":
		// Every name starts with "": ApplyDeletions would destroy every set
		// of the namespace.
		return fmt.Errorf("%w: empty prefix would own every ipset", ErrInvalidConfig)
	case len(p) > MaxPrefixLen:
		return fmt.Errorf("%w: prefix %q is longer than %d bytes (a temporary set name would not fit)", ErrInvalidConfig, p, MaxPrefixLen)
	case p[0] == '-' || p[0] == '!':
		return fmt.Errorf("%w: prefix %q starts with %q", ErrInvalidConfig, p, p[0])
	}
	return checkNameBytes(ErrInvalidConfig, "prefix ", p)
}

// badNameByte returns the index of the first byte of s that cannot be in a
// set name (a control byte, space, non-ASCII, '~', a quote or a
// backslash), or -1.
func badNameByte(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= '~' || c == '"' || c == '\'' || c == '\\' {
			return i
		}
	}
	return -1
}

// checkNameBytes returns an error wrapping sentinel that names the first
// byte of s (a prefix or a set name; what starts the message) that cannot
// be in a set name, or nil.
func checkNameBytes(sentinel error, what, s string) error {
	if i := badNameByte(s); i >= 0 {
		return fmt.Errorf("%w: %s%q has byte %q at %d (want printable ASCII other than space, '~', quotes and backslash)", sentinel, what, s, s[i:i+1], i)
	}
	return nil
}

// Prefix returns the owned-name prefix.
func (s *IPSets) Prefix() string {
	if !s.made() {
		return ""
	}
	return s.prefix
}

func (s *IPSets) owned(name string) bool { return strings.HasPrefix(name, s.prefix) }

func (s *IPSets) checkSpec(spec SetSpec) error {
	switch {
	case !s.owned(spec.Name):
		return fmt.Errorf("%w: %q does not start with %q", ErrInvalidName, spec.Name, s.prefix)
	case len(spec.Name) == len(s.prefix):
		return fmt.Errorf("%w: %q has nothing after the prefix %q", ErrInvalidName, spec.Name, s.prefix)
	case len(spec.Name) > MaxNameLen:
		return fmt.Errorf("%w: %q is longer than %d bytes", ErrInvalidName, spec.Name, MaxNameLen)
	case badNameByte(spec.Name) >= 0:
		return checkNameBytes(ErrInvalidName, "", spec.Name)
	case !spec.Type.valid():
		return fmt.Errorf("set %s: %w: %q", spec.Name, ErrInvalidType, spec.Type)
	case spec.Family != IPv4 && spec.Family != IPv6:
		return fmt.Errorf("set %s: %w: family %d", spec.Name, ErrInvalidType, spec.Family)
	}
	return nil
}

func (s *IPSets) stateOf(name string) *setState {
	st := s.state[name]
	if st == nil {
		st = &setState{members: deltatracker.New[Member, struct{}]()}
		s.state[name] = st
	}
	return st
}

// SetMembers makes spec a desired set holding exactly members (duplicates
// are ignored). It validates everything first and changes nothing on error:
// the name (ErrInvalidName), the type (ErrInvalidType) and each member
// (ErrInvalidMember). Changing the type or family of a set recreates it.
func (s *IPSets) SetMembers(spec SetSpec, members []Member) error {
	if err := s.Err(); err != nil {
		return err
	}
	if err := s.checkSpec(spec); err != nil {
		return err
	}
	for _, m := range members {
		if err := m.validate(spec.Type, spec.Family); err != nil {
			return fmt.Errorf("set %s: %w", spec.Name, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sets.Desired().Set(spec.Name, setMeta{spec.Type, spec.Family})
	st := s.stateOf(spec.Name)
	st.members.Desired().ReplaceAll(func(yield func(Member, struct{}) bool) {
		for _, m := range members {
			if !yield(m, struct{}{}) {
				return
			}
		}
	})
	return nil
}

// AddMembers adds members to the desired set name; ErrNotFound if name is
// not desired, ErrInvalidMember if a member does not fit (nothing is added).
func (s *IPSets) AddMembers(name string, members ...Member) error {
	return s.editMembers(name, members, true)
}

// RemoveMembers removes members from the desired set name (absent ones are
// ignored); ErrNotFound if name is not desired.
func (s *IPSets) RemoveMembers(name string, members ...Member) error {
	return s.editMembers(name, members, false)
}

func (s *IPSets) editMembers(name string, members []Member, add bool) error {
	if err := s.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	meta, ok := s.sets.Desired().Get(name)
	if !ok {
		return fmt.Errorf("set %s: %w", name, ErrNotFound)
	}
	if add {
		for _, m := range members {
			if err := m.validate(meta.Type, meta.Family); err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
		}
	}
	d := s.stateOf(name).members.Desired()
	for _, m := range members {
		if add {
			d.Set(m, struct{}{})
		} else {
			d.Delete(m)
		}
	}
	return nil
}

// DeleteSet removes name from the desired state; ApplyDeletions destroys it.
// Deleting a set that is not desired does nothing.
func (s *IPSets) DeleteSet(name string) {
	if !s.made() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sets.Desired().Delete(name)
	if st := s.state[name]; st != nil {
		st.members.Desired().DeleteAll()
	}
}

// Members returns the desired members of name sorted by Member.String
// order (address, then protocol and port), and whether name is desired.
func (s *IPSets) Members(name string) ([]Member, bool) {
	if !s.made() {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sets.Desired().Get(name); !ok {
		return nil, false
	}
	var out []Member
	for m := range s.state[name].members.Desired().All() {
		out = append(out, m)
	}
	slices.SortFunc(out, compareMembers)
	return out, true
}

func compareMembers(a, b Member) int {
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
		cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port), a.Addr2.Compare(b.Addr2))
}

// QueueResync makes the next Apply re-read every owned set from the kernel
// first, so that drift (a set destroyed or edited by another program) is
// repaired.
func (s *IPSets) QueueResync() {
	if !s.made() {
		return
	}
	s.mu.Lock()
	s.resync = true
	s.mu.Unlock()
}

// InSync reports whether the last known kernel state equals the desired one.
func (s *IPSets) InSync() bool {
	if !s.made() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.sets.InSync() {
		return false
	}
	for _, st := range s.state {
		if !st.members.InSync() || st.foreign != "" {
			return false
		}
	}
	return true
}

// Apply is ApplyUpdates followed by ApplyDeletions.
func (s *IPSets) Apply(ctx context.Context) error {
	if err := s.Err(); err != nil {
		return err
	}
	return errors.Join(s.ApplyUpdates(ctx), s.ApplyDeletions(ctx))
}

// ApplyUpdates creates desired sets and writes member changes; it destroys
// nothing but its own temporary sets. Callers that also program rules
// referencing the sets run ApplyUpdates before writing the rules and
// ApplyDeletions after, as Felix does, so a rule never names a missing set.
// Errors name the set and are joined; a failed set stays pending and the
// next Apply re-reads the kernel first.
func (s *IPSets) ApplyUpdates(ctx context.Context) error {
	return s.applyEach(ctx, func(name string) bool {
		want, _ := s.sets.Desired().Get(name)
		have, exists := s.sets.Dataplane().Get(name)
		st := s.state[name]
		return !exists || have != want || !st.members.InSync() || uint32(st.members.Desired().Len()) > st.maxElem ||
			st.foreign != ""
	}, s.applySet)
}

// ApplyCreates creates, empty, every desired set the kernel does not hold
// yet (with the maxelem its desired members need), and nothing else, so
// that rules naming the sets can be written while ApplyUpdates fills them
// (services/iptables overlaps the fill with its iptables-restore this
// way). ApplyUpdates then treats such a set as an existing one: it builds
// the members in a temporary set and swaps them in at once when they are
// WithRewriteThreshold or more, and edits it in place otherwise; a rule
// that matches it before that sees it empty. Errors are ApplyUpdates'.
func (s *IPSets) ApplyCreates(ctx context.Context) error {
	return s.applyEach(ctx, func(name string) bool {
		_, exists := s.sets.Dataplane().Get(name)
		return !exists
	}, func(name string) error {
		meta, _ := s.sets.Desired().Get(name)
		return s.createEmpty(name, meta)
	})
}

// applyEach reads the kernel if needed, then runs apply on each desired
// set that pick selects, in name order, joining the errors; a failure
// makes the next call re-read the kernel.
func (s *IPSets) applyEach(ctx context.Context, pick func(name string) bool, apply func(name string) error) error {
	if err := s.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadIfNeeded(); err != nil {
		return err
	}
	var names []string
	for name := range s.sets.Desired().All() {
		if pick(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := apply(name); err != nil {
			errs = append(errs, err)
			s.resync = true
		}
	}
	return errors.Join(errs...)
}

func (s *IPSets) applySet(name string) error {
	want, _ := s.sets.Desired().Get(name)
	have, exists := s.sets.Dataplane().Get(name)
	st := s.state[name]
	n := st.members.Desired().Len()
	changes := st.members.NumPendingUpdates() + st.members.NumPendingDeletions()
	switch {
	case !exists:
		return s.createAndFill(name, want)
	case have != want:
		// Swap needs the same type and family: destroy and recreate.
		// The destroy fails (ErrInUse) while a rule references the set.
		if err := s.destroy(name); err != nil {
			return err
		}
		return s.createAndFill(name, want)
	case st.foreign != "":
		// Options this package never sets (a timeout, counters, ...) or
		// a maxelem it never picks: another program made the set. Swap in
		// one made here; the swap also moves the header.
		s.log.Info("ipset header differs from what this package creates; rebuilding it", "set", name, "header", st.foreign)
		return s.rewrite(name, want)
	case uint32(n) > st.maxElem || (changes >= s.rewriteMin && 2*changes >= n):
		return s.rewrite(name, want)
	}
	return s.edit(name, want)
}

func (s *IPSets) create(name string, meta setMeta, n int) (uint32, error) {
	maxElem := maxElemFor(n)
	fam := uint8(unix.AF_INET)
	if meta.Family == IPv6 {
		fam = unix.AF_INET6
	}
	if err := s.h.IpsetCreate(name, string(meta.Type), nl.IpsetCreateOptions{Family: fam, MaxElements: maxElem}); err != nil {
		return 0, fmt.Errorf("create ipset %s (%s %s maxelem %d): %w", name, meta.Type, meta.Family, maxElem, err)
	}
	return maxElem, nil
}

func (s *IPSets) fill(name, into string, meta setMeta) error {
	return s.write(into, meta.Type, s.desiredSorted(name), true)
}

// write adds (add) or deletes members of the kernel set name of type t, in
// order: in batches when the handle is a BatchHandle, else one IpsetAdd or
// IpsetDel per member. A member already present (add) or absent (delete)
// is not an error. It stops at the first member that fails and names it.
func (s *IPSets) write(name string, t Type, members []Member, add bool) error {
	wrap := func(m Member, err error) error {
		if add {
			return fmt.Errorf("add %s to ipset %s: %w", m, name, err)
		}
		return fmt.Errorf("delete %s from ipset %s: %w", m, name, err)
	}
	if b, ok := s.h.(BatchHandle); ok {
		if len(members) == 0 {
			return nil
		}
		entries := make([]*nl.IPSetEntry, len(members))
		for i, m := range members {
			entries[i] = toEntry(t, m)
		}
		write := b.IpsetDelEntries
		if add {
			write = b.IpsetAddEntries
		}
		err := write(name, entries)
		var ee *EntryError
		if errors.As(err, &ee) && ee.Index >= 0 && ee.Index < len(members) {
			return wrap(members[ee.Index], ee.Err)
		}
		if err != nil {
			return wrap(members[0], err)
		}
		return nil
	}
	write := s.h.IpsetDel
	if add {
		write = s.h.IpsetAdd
	}
	for _, m := range members {
		if err := write(name, toEntry(t, m)); err != nil && !IsExist(err) {
			return wrap(m, err)
		}
	}
	return nil
}

func (s *IPSets) desiredSorted(name string) []Member {
	st := s.state[name]
	out := make([]Member, 0, st.members.Desired().Len())
	for m := range st.members.Desired().All() {
		out = append(out, m)
	}
	slices.SortFunc(out, compareMembers)
	return out
}

// createAndFill creates a set that no rule can reference yet (it did not
// exist) and fills it in place.
func (s *IPSets) createAndFill(name string, meta setMeta) error {
	if err := s.createEmpty(name, meta); err != nil {
		return err
	}
	st := s.state[name]
	if err := s.fill(name, name, meta); err != nil {
		return err
	}
	s.markMembersInSync(st)
	s.log.Debug("created ipset", "set", name, "type", meta.Type, "members", st.members.Desired().Len())
	return nil
}

// createEmpty creates set name, sized for its desired members, and
// records it as existing and empty.
func (s *IPSets) createEmpty(name string, meta setMeta) error {
	st := s.state[name]
	maxElem, err := s.create(name, meta, st.members.Desired().Len())
	if err != nil {
		return err
	}
	s.sets.Dataplane().Set(name, meta)
	st.maxElem, st.foreign = maxElem, ""
	st.members.Dataplane().ReplaceAll(noMembers)
	return nil
}

func (s *IPSets) markMembersInSync(st *setState) {
	st.members.Dataplane().ReplaceAll(st.members.Desired().All())
}

// TempName returns the name of the temporary set used to rebuild name:
// the prefix, '~' and 8 hex digits of a hash of name.
func (s *IPSets) TempName(name string) string {
	if !s.made() {
		return ""
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return fmt.Sprintf("%s~%08x", s.prefix, h.Sum32())
}

// rewrite builds the full member list in a temporary set and swaps it in,
// so rules referencing name never see it half-filled.
func (s *IPSets) rewrite(name string, meta setMeta) error {
	tmp := s.TempName(name)
	if _, ok := s.sets.Dataplane().Get(tmp); ok {
		if err := s.destroy(tmp); err != nil {
			return err
		}
	}
	st := s.state[name]
	maxElem, err := s.create(tmp, meta, st.members.Desired().Len())
	if err != nil {
		return err
	}
	s.sets.Dataplane().Set(tmp, meta) // stale until destroyed below
	if err := s.fill(name, tmp, meta); err != nil {
		return err
	}
	if err := s.h.IpsetSwap(tmp, name); err != nil {
		return fmt.Errorf("swap ipset %s into %s: %w", tmp, name, err)
	}
	st.maxElem, st.foreign = maxElem, ""
	s.markMembersInSync(st)
	s.log.Debug("rewrote ipset", "set", name, "members", st.members.Desired().Len())
	return s.destroy(tmp)
}

// edit applies the pending member changes in place: deletions first, so
// the set never exceeds its maxelem, then additions (one batch each with a
// BatchHandle).
func (s *IPSets) edit(name string, meta setMeta) error {
	st := s.state[name]
	dels := sortedKeys(st.members.PendingDeletions())
	if err := s.write(name, meta.Type, dels, false); err != nil {
		return err // the caller re-reads the kernel before the next Apply
	}
	for _, m := range dels {
		st.members.Dataplane().Delete(m)
	}
	adds := sortedKeys(st.members.PendingUpdates())
	if err := s.write(name, meta.Type, adds, true); err != nil {
		return err
	}
	for _, m := range adds {
		st.members.Dataplane().Set(m, struct{}{})
	}
	return nil
}

func noMembers(func(Member, struct{}) bool) {}

func sortedKeys(seq func(func(Member, struct{}) bool)) []Member {
	var out []Member
	for m := range seq {
		out = append(out, m)
	}
	slices.SortFunc(out, compareMembers)
	return out
}

func (s *IPSets) destroy(name string) error {
	err := s.h.IpsetDestroy(name)
	if err != nil && !IsNotFound(err) {
		if IsInUse(err) {
			return fmt.Errorf("destroy ipset %s: %w (%w)", name, ErrInUse, err)
		}
		return fmt.Errorf("destroy ipset %s: %w", name, err)
	}
	s.sets.Dataplane().Delete(name)
	if st := s.state[name]; st != nil {
		st.members.Dataplane().ReplaceAll(noMembers)
		st.maxElem, st.foreign = 0, ""
		if _, desired := s.sets.Desired().Get(name); !desired {
			delete(s.state, name)
		}
	}
	return nil
}

// ApplyDeletions destroys owned sets that are not desired, including
// leftovers of earlier runs. A set still referenced by a rule is kept and
// reported with an error wrapping ErrInUse; it is retried next time.
func (s *IPSets) ApplyDeletions(ctx context.Context) error {
	if err := s.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadIfNeeded(); err != nil {
		return err
	}
	var names []string
	for name := range s.sets.PendingDeletions() {
		names = append(names, name)
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := s.destroy(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *IPSets) loadIfNeeded() error {
	if !s.resync && (s.refresh < 0 || s.clock.Since(s.lastRead) < s.refresh) {
		return nil
	}
	readAt := s.clock.Now()
	results, err := s.h.IpsetListAll()
	if err != nil {
		return fmt.Errorf("list ipsets: %w", err)
	}
	type kset struct {
		meta    setMeta
		maxElem uint32
		foreign []string
		members []Member
		// unmodelled counts the entries fromEntry refused.
		unmodelled int
	}
	found := map[string]*kset{}
	for _, r := range results {
		if !s.owned(r.SetName) {
			continue
		}
		k := found[r.SetName]
		if k == nil {
			var fam Family // no family: never desired, so recreated
			switch r.Family {
			case unix.AF_INET:
				fam = IPv4
			case unix.AF_INET6:
				fam = IPv6
			}
			k = &kset{meta: setMeta{Type(r.TypeName), fam}}
			found[r.SetName] = k
		}
		// The header (maxelem, timeout, flags) comes with the first
		// result of a set only.
		if r.MaxElements != 0 {
			k.maxElem = r.MaxElements
		}
		k.foreign = append(k.foreign, foreignHeader(&r)...)
		for i := range r.Entries {
			m, err := fromEntry(k.meta.Type, k.meta.Family, &r.Entries[i])
			if err != nil {
				// An entry we cannot model (another program's, such as a
				// udplite or icmp port): drift. The set's type and family
				// are still what the kernel says, so a desired set of
				// that shape is rebuilt and swapped in (which works under
				// a rule's reference, unlike destroy and create); any
				// other is recreated or destroyed.
				if k.unmodelled == 0 {
					k.foreign = append(k.foreign, fmt.Sprintf("entry %s", entryString(&r.Entries[i])))
				}
				k.unmodelled++
				continue
			}
			k.members = append(k.members, m)
		}
	}
	s.sets.Dataplane().ReplaceAll(func(yield func(string, setMeta) bool) {
		for name, k := range found {
			if !yield(name, k.meta) {
				return
			}
		}
	})
	for name, st := range s.state {
		if _, ok := found[name]; !ok {
			st.members.Dataplane().ReplaceAll(noMembers)
			st.maxElem, st.foreign = 0, ""
		}
	}
	for name, k := range found {
		st := s.stateOf(name)
		st.maxElem = k.maxElem
		if !validMaxElem(k.maxElem) {
			k.foreign = append(k.foreign, fmt.Sprintf("maxelem %d", k.maxElem))
		}
		if k.unmodelled > 1 {
			k.foreign = append(k.foreign, fmt.Sprintf("(%d entries not modelled)", k.unmodelled))
		}
		st.foreign = strings.Join(k.foreign, " ")
		st.members.Dataplane().ReplaceAll(func(yield func(Member, struct{}) bool) {
			for _, m := range k.members {
				if !yield(m, struct{}{}) {
					return
				}
			}
		})
	}
	s.resync, s.lastRead = false, readAt
	return nil
}

// foreignHeader lists the create options in r's header that this package
// never sets, in `ipset save` words ("timeout 3", "counters"); none in a
// set it created.
func foreignHeader(r *nl.IPSetResult) []string {
	var out []string
	if r.Timeout != nil {
		out = append(out, fmt.Sprintf("timeout %d", *r.Timeout))
	}
	rest := r.CadtFlags
	for _, f := range createFlags() {
		if rest&f.flag != 0 {
			out = append(out, f.word)
			rest &^= f.flag
		}
	}
	if rest != 0 {
		out = append(out, fmt.Sprintf("flags %#x", rest))
	}
	return out
}

// entryString describes a kernel entry for logs: address, protocol and
// port, second address, as far as the entry has them.
func entryString(e *nl.IPSetEntry) string {
	var b strings.Builder
	b.WriteString(e.IP.String())
	if e.CIDR != 0 {
		fmt.Fprintf(&b, "/%d", e.CIDR)
	}
	if e.Protocol != nil {
		fmt.Fprintf(&b, ",proto %d", *e.Protocol)
	}
	if e.Port != nil {
		fmt.Fprintf(&b, ":%d", *e.Port)
	}
	if e.IP2 != nil {
		fmt.Fprintf(&b, ",%s", e.IP2)
	}
	return b.String()
}

// toEntry converts a member to the netlink entry for a set of type t.
func toEntry(t Type, m Member) *nl.IPSetEntry {
	a := m.Prefix.Addr()
	e := &nl.IPSetEntry{IP: net.IP(a.AsSlice())}
	if t.isNet() {
		e.CIDR = uint8(m.Prefix.Bits())
	}
	if t.hasPort() {
		p, port := uint8(m.Protocol), m.Port
		e.Protocol, e.Port = &p, &port
	}
	if t.hasIP2() {
		e.IP2 = net.IP(m.Addr2.AsSlice())
	}
	return e
}

// fromEntry converts a kernel entry of a set of type t and family f.
func fromEntry(t Type, f Family, e *nl.IPSetEntry) (Member, error) {
	a, ok := netip.AddrFromSlice(e.IP)
	if !ok {
		return Member{}, fmt.Errorf("%w: address %v", ErrInvalidMember, e.IP)
	}
	a = a.Unmap()
	if f == IPv6 && a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	bits := a.BitLen()
	if t.isNet() && e.CIDR != 0 {
		bits = int(e.CIDR)
	}
	m := Member{Prefix: netip.PrefixFrom(a, bits)}
	if t.hasPort() {
		if e.Protocol == nil || e.Port == nil {
			return Member{}, fmt.Errorf("%w: entry without port", ErrInvalidMember)
		}
		m.Protocol, m.Port = Protocol(*e.Protocol), *e.Port
	}
	if t.hasIP2() {
		a2, ok := netip.AddrFromSlice(e.IP2)
		if !ok {
			return Member{}, fmt.Errorf("%w: entry without second address", ErrInvalidMember)
		}
		a2 = a2.Unmap()
		if f == IPv6 && a2.Is4() {
			a2 = netip.AddrFrom16(a2.As16())
		}
		m.Addr2 = a2
	}
	if err := m.validate(t, f); err != nil {
		return Member{}, err
	}
	return m, nil
}
