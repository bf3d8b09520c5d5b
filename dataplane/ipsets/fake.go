package ipsets

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"

	nl "github.com/vishvananda/netlink"
	nlnl "github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Fake is a strict in-memory BatchHandle: it keeps sets and entries as the
// kernel does and returns the kernel's error values for what the kernel
// rejects (duplicate create or add, delete of an absent entry, a full set,
// a wrong family, prefix length 0 in a hash:net type, swap of sets of
// different type or family, destroy of a missing or referenced set).
// It keeps the create options Timeout, Counters, Comments and Skbinfo and
// lists them as the kernel does (IPSetResult.Timeout, CadtFlags), and swap
// moves them with the entries, but entries never expire and carry no
// counters or comments. TestFakeMatchesKernel runs the same operations on
// both.
//
// Reference and Unreference stand in for iptables rules that use a set.
// Fake is safe for concurrent use.
type Fake struct {
	mu   sync.Mutex
	sets map[string]*fakeSet
	// calls counts the mutating calls made (create, destroy, swap, add,
	// del, and one per non-empty batched add or del).
	calls int
}

type fakeSet struct {
	typ     Type
	family  Family
	maxElem uint32
	// timeout is the set's default entry timeout in seconds (nil: none);
	// the fake never expires entries. flags holds the
	// IPSET_FLAG_WITH_COUNTERS, _COMMENT and _SKBINFO create options.
	timeout *uint32
	flags   uint32
	refs    int
	entries map[Member]struct{}
}

var _ BatchHandle = (*Fake)(nil)

// NewFake returns an empty Fake.
func NewFake() *Fake { return &Fake{sets: map[string]*fakeSet{}} }

// Calls returns the number of mutating calls so far: one per create,
// destroy, swap, add or del, and one per non-empty IpsetAddEntries or
// IpsetDelEntries whatever its length.
func (f *Fake) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Reference records a rule referencing name, so that IpsetDestroy fails
// with IPSET_ERR_BUSY until Unreference. ENOENT when name is absent.
func (f *Fake) Reference(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sets[name]
	if s == nil {
		return syscall.ENOENT
	}
	s.refs++
	return nil
}

// Unreference undoes one Reference.
func (f *Fake) Unreference(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.sets[name]; s != nil && s.refs > 0 {
		s.refs--
	}
}

// IpsetCreate implements Handle.
func (f *Fake) IpsetCreate(name, typename string, o nl.IpsetCreateOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if name == "" || len(name) > MaxNameLen {
		return syscall.EINVAL
	}
	t := Type(typename)
	if !t.valid() {
		return errFindType
	}
	var fam Family
	switch o.Family {
	case 0, unix.AF_INET:
		fam = IPv4
	case unix.AF_INET6:
		fam = IPv6
	default:
		return errInvalidFamily
	}
	if _, ok := f.sets[name]; ok {
		if o.Replace {
			return nil
		}
		return syscall.EEXIST
	}
	maxElem := o.MaxElements
	if maxElem == 0 {
		maxElem = 65536
	}
	fs := &fakeSet{typ: t, family: fam, maxElem: maxElem, entries: map[Member]struct{}{}}
	if o.Timeout != nil {
		to := *o.Timeout
		fs.timeout = &to
	}
	for _, opt := range []struct {
		on   bool
		flag uint32
	}{{o.Counters, nlnl.IPSET_FLAG_WITH_COUNTERS}, {o.Comments, nlnl.IPSET_FLAG_WITH_COMMENT}, {o.Skbinfo, nlnl.IPSET_FLAG_WITH_SKBINFO}} {
		if opt.on {
			fs.flags |= opt.flag
		}
	}
	f.sets[name] = fs
	return nil
}

// IpsetDestroy implements Handle.
func (f *Fake) IpsetDestroy(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	s := f.sets[name]
	if s == nil {
		return nil // the kernel (6.x) answers a destroy of a missing set with success
	}
	if s.refs > 0 {
		return errBusy
	}
	delete(f.sets, name)
	return nil
}

// IpsetSwap implements Handle. References stay with the names.
func (f *Fake) IpsetSwap(a, b string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	sa, sb := f.sets[a], f.sets[b]
	if sa == nil {
		return syscall.ENOENT
	}
	if sb == nil {
		return errSetname2
	}
	if sa.typ != sb.typ || sa.family != sb.family {
		return errTypeMismatch
	}
	sa.refs, sb.refs = sb.refs, sa.refs
	f.sets[a], f.sets[b] = sb, sa
	return nil
}

// entryMember decodes e as the kernel would for set s.
func (s *fakeSet) entryMember(e *nl.IPSetEntry) (Member, error) {
	// netlink encodes an address as IPv4 whenever To4 succeeds.
	ip := e.IP.To4()
	if ip == nil {
		ip = e.IP.To16()
	}
	if ip == nil || (s.family == IPv4) != (len(ip) == net.IPv4len) {
		return Member{}, errProtocol
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return Member{}, errProtocol
	}
	bits := a.BitLen()
	if s.typ.isNet() && e.CIDR != 0 {
		if int(e.CIDR) > bits {
			return Member{}, errInvalidCIDR
		}
		bits = int(e.CIDR)
	}
	m := Member{Prefix: netip.PrefixFrom(a, bits).Masked()}
	if s.typ.hasPort() {
		if e.Port == nil {
			return Member{}, errProtocol
		}
		proto := uint8(unix.IPPROTO_TCP)
		if e.Protocol != nil {
			proto = *e.Protocol
		}
		m.Protocol, m.Port = Protocol(proto), *e.Port
	}
	if s.typ.hasIP2() {
		// The kernel needs the second address, of the set's family.
		ip2 := e.IP2.To4()
		if ip2 == nil {
			ip2 = e.IP2.To16()
		}
		if ip2 == nil || (s.family == IPv4) != (len(ip2) == net.IPv4len) {
			return Member{}, errProtocol
		}
		m.Addr2, _ = netip.AddrFromSlice(ip2)
	}
	return m, nil
}

// entry finds set name and decodes e for it; the caller holds f.mu.
func (f *Fake) entry(name string, e *nl.IPSetEntry) (*fakeSet, Member, error) {
	f.calls++
	s := f.sets[name]
	if s == nil {
		return nil, Member{}, syscall.ENOENT
	}
	m, err := s.entryMember(e)
	return s, m, err
}

// IpsetAdd implements Handle.
func (f *Fake) IpsetAdd(name string, e *nl.IPSetEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, m, err := f.entry(name, e)
	if err != nil {
		return err
	}
	if _, ok := s.entries[m]; ok {
		if e.Replace {
			return nil
		}
		return errExist
	}
	if uint32(len(s.entries)) >= s.maxElem {
		return errHashFull
	}
	s.entries[m] = struct{}{}
	return nil
}

// IpsetDel implements Handle.
func (f *Fake) IpsetDel(name string, e *nl.IPSetEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, m, err := f.entry(name, e)
	if err != nil {
		return err
	}
	if _, ok := s.entries[m]; !ok {
		return errExist
	}
	delete(s.entries, m)
	return nil
}

// IpsetAddEntries implements BatchHandle (one call): entries are added in
// order, present ones are left as they are, and the first entry that
// IpsetAdd would reject for another reason stops the batch with an
// *EntryError; the entries before it stay added, as in the kernel.
func (f *Fake) IpsetAddEntries(name string, entries []*nl.IPSetEntry) error {
	return f.batch(name, entries, func(s *fakeSet, m Member) error {
		if _, ok := s.entries[m]; ok {
			return nil
		}
		if uint32(len(s.entries)) >= s.maxElem {
			return errHashFull
		}
		s.entries[m] = struct{}{}
		return nil
	})
}

// IpsetDelEntries implements BatchHandle (one call): as IpsetAddEntries,
// deleting, with absent entries ignored.
func (f *Fake) IpsetDelEntries(name string, entries []*nl.IPSetEntry) error {
	return f.batch(name, entries, func(s *fakeSet, m Member) error {
		delete(s.entries, m)
		return nil
	})
}

func (f *Fake) batch(name string, entries []*nl.IPSetEntry, apply func(*fakeSet, Member) error) error {
	if len(entries) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	s := f.sets[name]
	for i, e := range entries {
		err := checkBatchEntry(e)
		var m Member
		switch {
		case err != nil:
		case s == nil:
			err = syscall.ENOENT
		default:
			m, err = s.entryMember(e)
		}
		if err == nil {
			err = apply(s, m)
		}
		if err != nil {
			return &EntryError{Index: i, Err: err}
		}
	}
	return nil
}

// IpsetListAll implements Handle: one result per set, in name order.
func (f *Fake) IpsetListAll() ([]nl.IPSetResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []nl.IPSetResult
	for _, name := range slices.Sorted(maps.Keys(f.sets)) {
		s := f.sets[name]
		fam := uint8(unix.AF_INET)
		if s.family == IPv6 {
			fam = unix.AF_INET6
		}
		r := nl.IPSetResult{SetName: name, TypeName: string(s.typ), Family: fam, MaxElements: s.maxElem,
			NumEntries: uint32(len(s.entries)), References: uint32(s.refs), CadtFlags: s.flags}
		if s.timeout != nil {
			to := *s.timeout
			r.Timeout = &to
		}
		for m := range s.entries {
			e := toEntry(s.typ, m)
			if !s.typ.isNet() {
				e.CIDR = 0
			}
			r.Entries = append(r.Entries, *e)
		}
		out = append(out, r)
	}
	return out, nil
}

// Set returns the type of set name and whether it holds m, as a packet
// tracer asks; ok is false when there is no such set.
func (f *Fake) Set(name string, m Member) (typ Type, has, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sets[name]
	if !ok {
		return "", false, false
	}
	_, has = s.entries[m]
	return s.typ, has, true
}

// Dump returns the sets in `ipset save` form, sorted, for golden tests:
// one "create NAME TYPE family F maxelem N" line per set (followed by
// " timeout T", " counters", " comment", " skbinfo" for those options)
// and its sorted "add NAME MEMBER" lines.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(f.sets)) {
		s := f.sets[name]
		fmt.Fprintf(&b, "create %s %s family %s maxelem %d", name, s.typ, s.family, s.maxElem)
		if s.timeout != nil {
			fmt.Fprintf(&b, " timeout %d", *s.timeout)
		}
		for _, o := range createFlags() {
			if s.flags&o.flag != 0 {
				b.WriteString(" " + o.word)
			}
		}
		b.WriteByte('\n')
		ms := slices.SortedFunc(maps.Keys(s.entries), compareMembers)
		for _, m := range ms {
			fmt.Fprintf(&b, "add %s %s\n", name, m)
		}
	}
	return b.String()
}
