package ipsets

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	clocktesting "k8s.io/utils/clock/testing"
)

func ips(n int, base string) []Member {
	a := netip.MustParseAddr(base)
	out := make([]Member, n)
	for i := range out {
		out[i] = IP(a)
		a = a.Next()
	}
	return out
}

func TestParseMember(t *testing.T) {
	for _, tc := range []struct {
		typ  Type
		fam  Family
		in   string
		want string
		err  bool
	}{
		{HashIP, IPv4, "10.0.0.1", "10.0.0.1", false},
		{HashIP, IPv4, "10.0.0.0/24", "", true},
		{HashIP, IPv4, "fd00::1", "", true},
		{HashIP, IPv6, "fd00::1", "fd00::1", false},
		{HashIP, IPv6, "::ffff:10.0.0.1", "", true},
		{HashNet, IPv4, "10.0.0.0/24", "10.0.0.0/24", false},
		{HashNet, IPv4, "10.0.0.1/24", "", true},
		{HashNet, IPv4, "10.0.0.1", "10.0.0.1", false},
		{HashNet, IPv4, "0.0.0.0/0", "", true},
		{HashIPPort, IPv4, "10.0.0.1,tcp:80", "10.0.0.1,tcp:80", false},
		{HashIPPort, IPv4, "10.0.0.1,icmp:8", "", true},
		{HashIPPort, IPv4, "10.0.0.1,tcp:70000", "", true},
		{HashIPPort, IPv4, "10.0.0.1", "", true},
		{HashIPPortIP, IPv4, "10.0.0.1,tcp:80,10.0.0.1", "10.0.0.1,tcp:80,10.0.0.1", false},
		{HashIPPortIP, IPv6, "fd00::1,udp:53,fd00::2", "fd00::1,udp:53,fd00::2", false},
		{HashIPPortIP, IPv4, "10.0.0.1,tcp:80", "", true},
		{HashIPPortIP, IPv4, "10.0.0.1,tcp:80,fd00::1", "", true},
		{HashIPPort, IPv4, "10.0.0.1,tcp:80,10.0.0.1", "", true},
		{HashNetPort, IPv6, "fd00::/64,sctp:9", "fd00::/64,sctp:9", false},
		{HashNetPort, IPv6, "fe80::1%eth0,udp:1", "", true},
		{Type("bitmap:port"), IPv4, "1", "", true},
		// IPv4-mapped IPv6 is unmapped, as IP and Net do.
		{HashIP, IPv4, "::ffff:10.0.0.1", "10.0.0.1", false},
		{HashNet, IPv4, "::ffff:10.0.0.0/120", "10.0.0.0/24", false},
		{HashNet, IPv6, "::ffff:10.0.0.0/120", "", true},
		{HashIPPortIP, IPv4, "::ffff:10.0.0.1,tcp:80,::ffff:10.0.0.2", "10.0.0.1,tcp:80,10.0.0.2", false},
		// `ipset add` shorthands: a bare port is tcp; protocols in any case.
		{HashIPPort, IPv4, "10.0.0.1,80", "10.0.0.1,tcp:80", false},
		{HashIPPort, IPv4, "10.0.0.1,TCP:80", "10.0.0.1,tcp:80", false},
		{HashNetPort, IPv6, "fd00::/64,UDP:53", "fd00::/64,udp:53", false},
		{HashNetPort, IPv6, "fd00::/64,Udp:53", "", true}, // as ipset: no such alias
		{HashIPPortIP, IPv6, "fd00::1,443,fd00::2", "fd00::1,tcp:443,fd00::2", false},
		// What ParseMember documents it does not take.
		{HashIPPort, IPv4, "10.0.0.1,http", "", true},
		{HashIPPort, IPv4, "10.0.0.1,80-90", "", true},
		{HashIPPort, IPv4, "10.0.0.1,6:80", "", true},
		{HashIP, IPv4, "10.0.0.1-10.0.0.9", "", true},
		{HashIP, IPv4, "localhost", "", true},
		{HashIP, 5, "10.0.0.1", "", true},
	} {
		t.Run(string(tc.typ)+" "+tc.in, func(t *testing.T) {
			m, err := ParseMember(tc.typ, tc.fam, tc.in)
			if tc.err {
				require.Error(t, err)
				if tc.typ.valid() && (tc.fam == IPv4 || tc.fam == IPv6) {
					assert.ErrorIs(t, err, ErrInvalidMember)
				} else {
					assert.ErrorIs(t, err, ErrInvalidType)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, m.String())
		})
	}
}

// TestParseMemberMessages: a wrong family says which family each side is.
func TestParseMemberMessages(t *testing.T) {
	for _, tc := range []struct {
		fam      Family
		in, want string
	}{
		{IPv6, "::ffff:1.2.3.4", "1.2.3.4 is an IPv4 address, the set is inet6"},
		{IPv6, "1.2.3.4", "1.2.3.4 is an IPv4 address, the set is inet6"},
		{IPv4, "fd00::1", "fd00::1 is an IPv6 address, the set is inet"},
	} {
		_, err := ParseMember(HashIP, tc.fam, tc.in)
		assert.ErrorIs(t, err, ErrInvalidMember, tc.in)
		assert.ErrorContains(t, err, tc.want, tc.in)
		assert.ErrorContains(t, err, fmt.Sprintf("(parsing %q)", tc.in), tc.in)
	}
	// A member built with a mapped address by hand (not through IP or Net).
	m := Member{Prefix: netip.PrefixFrom(netip.MustParseAddr("::ffff:1.2.3.4"), 128)}
	assert.ErrorContains(t, m.validate(HashIP, IPv6), "IPv4-mapped")
	assert.ErrorContains(t, m.validate(HashIP, IPv4), "IPv4-mapped")
}

// TestConstructorsUnmap: IP, Net and ParseMember agree on mapped input.
func TestConstructorsUnmap(t *testing.T) {
	assert.Equal(t, IP(netip.MustParseAddr("10.0.0.1")), IP(netip.MustParseAddr("::ffff:10.0.0.1")))
	assert.Equal(t, Net(netip.MustParsePrefix("10.0.0.0/24")), Net(netip.MustParsePrefix("::ffff:10.0.0.7/120")))
	assert.Equal(t, "::/80", Net(netip.MustParsePrefix("::ffff:0:0/80")).String(), "a short mapped prefix stays IPv6 (masked)")
	m, err := ParseMember(HashIP, IPv4, "::ffff:10.0.0.1")
	require.NoError(t, err)
	assert.Equal(t, IP(netip.MustParseAddr("::ffff:10.0.0.1")), m)
}

func TestMaxElemFor(t *testing.T) {
	assert.Equal(t, uint32(1024), maxElemFor(0))
	assert.Equal(t, uint32(1024), maxElemFor(600))
	assert.Equal(t, uint32(2048), maxElemFor(1000))
	assert.Equal(t, uint32(15360), maxElemFor(10000))
	assert.Equal(t, uint32(64512), maxElemFor(43008))
	assert.Equal(t, uint32(66560), maxElemFor(43009), "never the kernel's default 65536")
	assert.Equal(t, uint32(66560), maxElemFor(43690))
	assert.Equal(t, uint32(66560), maxElemFor(44000))
	assert.Equal(t, uint32(67584), maxElemFor(45000))
	for n := 0; n < 200000; n += 97 {
		require.True(t, validMaxElem(maxElemFor(n)), n)
	}
	for _, m := range []uint32{0, 512, 1000, 1025, 65536, 100000} {
		assert.False(t, validMaxElem(m), m)
	}
}

// TestForeignHeaderIsRebuilt: a set of the right name, type and family
// that another program created with options this package never uses (a
// timeout, counters, comments, skbinfo) or a maxelem it never picks is
// drift: InSync is false until Apply swaps in a set made here, under the
// rule that references it. A set as this package makes it is adopted and
// edited in place.
func TestForeignHeaderIsRebuilt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    nl.IpsetCreateOptions
		foreign string
	}{
		{"timeout", nl.IpsetCreateOptions{Timeout: ptr(uint32(3)), MaxElements: 1024}, "timeout 3"},
		{"timeout 0", nl.IpsetCreateOptions{Timeout: ptr(uint32(0)), MaxElements: 1024}, "timeout 0"},
		{"comment and the default maxelem", nl.IpsetCreateOptions{Comments: true}, "comment maxelem 65536"},
		{"counters", nl.IpsetCreateOptions{Counters: true, MaxElements: 2048}, "counters"},
		{"skbinfo", nl.IpsetCreateOptions{Skbinfo: true, MaxElements: 1024}, "skbinfo"},
		{"default maxelem", nl.IpsetCreateOptions{}, "maxelem 65536"},
		{"maxelem below MinMaxElem", nl.IpsetCreateOptions{MaxElements: 512}, "maxelem 512"},
		{"maxelem not a multiple", nl.IpsetCreateOptions{MaxElements: 1500}, "maxelem 1500"},
		{"as made here", nl.IpsetCreateOptions{MaxElements: 2048}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var logs strings.Builder
			f := &swapLog{Fake: NewFake()}
			require.NoError(t, f.IpsetCreate("tabby-web", "hash:ip", tc.opts))
			require.NoError(t, f.IpsetAdd("tabby-web", toEntry(HashIP, IP(netip.MustParseAddr("10.0.0.1")))))
			require.NoError(t, f.Reference("tabby-web"))
			s := New(f, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-web", Type: HashIP, Family: IPv4}, ips(1, "10.0.0.1")))
			require.NoError(t, s.ApplyCreates(ctx)) // reads the kernel, writes nothing here
			assert.Equal(t, tc.foreign == "", s.InSync(), "same members; in sync only if the header is as made here")
			require.NoError(t, s.AddMembers("tabby-web", IP(netip.MustParseAddr("10.0.0.2"))))
			require.NoError(t, s.Apply(ctx))
			assert.True(t, s.InSync())
			maxElem := "1024"
			if tc.foreign == "" {
				maxElem = "2048"
				assert.Empty(t, f.swaps, "adopted and edited in place")
				assert.Empty(t, logs.String())
			} else {
				assert.Equal(t, []string{s.TempName("tabby-web") + " tabby-web"}, f.swaps)
				assert.Contains(t, logs.String(), "set=tabby-web")
				assert.Contains(t, logs.String(), tc.foreign)
			}
			assert.Equal(t, "create tabby-web hash:ip family inet maxelem "+maxElem+"\nadd tabby-web 10.0.0.1\nadd tabby-web 10.0.0.2\n", f.Dump())
			// Nothing is left to do, also after a re-read.
			s.QueueResync()
			calls := f.Calls()
			require.NoError(t, s.Apply(ctx))
			assert.Equal(t, calls, f.Calls())
			assert.True(t, s.InSync())
		})
	}
}

func TestApplyCreatesEditsAndDeletes(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	require.NoError(t, f.IpsetCreate("foreign", "hash:ip", nl.IpsetCreateOptions{}))
	require.NoError(t, f.IpsetCreate("tabby-stale", "hash:net", nl.IpsetCreateOptions{}))
	s := New(f)
	spec := SetSpec{Name: "tabby-web", Type: HashIP, Family: IPv4}
	require.NoError(t, s.SetMembers(spec, ips(3, "10.0.0.1")))
	require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-ports", Type: HashIPPort, Family: IPv6},
		[]Member{IPPort(netip.MustParseAddr("fd00::1"), TCP, 80)}))
	require.NoError(t, s.Apply(ctx))
	assert.True(t, s.InSync())
	assert.Equal(t, `create foreign hash:ip family inet maxelem 65536
create tabby-ports hash:ip,port family inet6 maxelem 1024
add tabby-ports fd00::1,tcp:80
create tabby-web hash:ip family inet maxelem 1024
add tabby-web 10.0.0.1
add tabby-web 10.0.0.2
add tabby-web 10.0.0.3
`, f.Dump())

	// A one-member change is one netlink call.
	calls := f.Calls()
	require.NoError(t, s.RemoveMembers("tabby-web", IP(netip.MustParseAddr("10.0.0.2"))))
	require.NoError(t, s.Apply(ctx))
	assert.Equal(t, calls+1, f.Calls())
	// Nothing pending: no calls.
	require.NoError(t, s.Apply(ctx))
	assert.Equal(t, calls+1, f.Calls())

	s.DeleteSet("tabby-ports")
	require.NoError(t, s.Apply(ctx))
	assert.Equal(t, `create foreign hash:ip family inet maxelem 65536
create tabby-web hash:ip family inet maxelem 1024
add tabby-web 10.0.0.1
add tabby-web 10.0.0.3
`, f.Dump())
}

func TestApplyRejectsBadInput(t *testing.T) {
	s := New(NewFake(), WithPrefix("x-"))
	for _, tc := range []struct{ name, reason string }{
		{"tabby-a", `does not start with "x-"`},
		{"x-", `"x-" has nothing after the prefix "x-"`},
		{"x-a~b", `byte "~" at 3`},
		{"x-" + fmt.Sprint(make([]byte, 40)), "longer than 31 bytes"},
		{"x-a\x00b", `byte "\x00" at 3`},
		{"x-a b", `byte " " at 3`},
		{"x-a\nb", `byte "\n" at 3`},
		{"x-a\tb", `byte "\t" at 3`},
		{"x-a\x7fb", `byte "\x7f" at 3`},
		{"x-é", `byte "\xc3" at 2`},
		{"x-a\"b", `byte "\"" at 3`},
		{"x-a'b", `byte "'" at 3`},
		{"x-a\\b", `byte "\\" at 3`},
	} {
		err := s.SetMembers(SetSpec{Name: tc.name, Type: HashIP, Family: IPv4}, nil)
		assert.ErrorIs(t, err, ErrInvalidName, tc.name)
		assert.ErrorContains(t, err, tc.reason, tc.name)
	}
	for _, name := range []string{"x-a", "x-A.b_c:d/e|f+9", "x-" + strings.Repeat("z", MaxNameLen-2)} {
		assert.NoError(t, s.SetMembers(SetSpec{Name: name, Type: HashIP, Family: IPv4}, nil), name)
		s.DeleteSet(name)
	}
	assert.ErrorIs(t, s.SetMembers(SetSpec{Name: "x-a", Type: "list:set", Family: IPv4}, nil), ErrInvalidType)
	assert.ErrorIs(t, s.SetMembers(SetSpec{Name: "x-a", Type: HashIP, Family: 5}, nil), ErrInvalidType)
	spec := SetSpec{Name: "x-a", Type: HashIP, Family: IPv4}
	assert.ErrorIs(t, s.SetMembers(spec, []Member{IP(netip.MustParseAddr("fd00::1"))}), ErrInvalidMember)
	_, ok := s.Members("x-a")
	assert.False(t, ok, "a rejected SetMembers changes nothing")
	assert.ErrorIs(t, s.AddMembers("x-a", IP(netip.MustParseAddr("10.0.0.1"))), ErrNotFound)
	require.NoError(t, s.SetMembers(spec, nil))
	assert.ErrorIs(t, s.AddMembers("x-a", Member{}), ErrInvalidMember)
}

// swapChecker fails the test if a set that is the target of a swap is not
// complete when swapped, and records the operations.
type swapChecker struct {
	*Fake
	ops []string
}

func (c *swapChecker) IpsetSwap(a, b string) error {
	c.ops = append(c.ops, "swap "+a+" "+b)
	return c.Fake.IpsetSwap(a, b)
}

func TestLargeRewriteSwapsAFullSet(t *testing.T) {
	ctx := context.Background()
	f := &swapChecker{Fake: NewFake()}
	s := New(f)
	spec := SetSpec{Name: "tabby-big", Type: HashNet, Family: IPv4}
	require.NoError(t, s.SetMembers(spec, ips(900, "10.0.0.1")))
	require.NoError(t, s.Apply(ctx))
	require.NoError(t, f.Reference("tabby-big"))
	assert.Empty(t, f.ops, "a new set is filled in place: nothing references it yet")

	// Growing past maxelem (1024) rebuilds in a temporary set with a larger maxelem.
	require.NoError(t, s.SetMembers(spec, ips(2000, "10.1.0.1")))
	require.NoError(t, s.Apply(ctx))
	assert.Equal(t, []string{"swap " + s.TempName("tabby-big") + " tabby-big"}, f.ops)
	dump := f.Dump()
	assert.Contains(t, dump, "create tabby-big hash:net family inet maxelem 3072\n")
	assert.NotContains(t, dump, "~", "the temporary set is destroyed")
	assert.NotContains(t, dump, "10.0.0.1\n")

	// Replacing most members also swaps; a small edit does not.
	f.ops = nil
	require.NoError(t, s.SetMembers(spec, ips(2000, "10.2.0.1")))
	require.NoError(t, s.Apply(ctx))
	assert.Len(t, f.ops, 1)
	require.NoError(t, s.AddMembers("tabby-big", ips(10, "10.3.0.1")...))
	require.NoError(t, s.Apply(ctx))
	assert.Len(t, f.ops, 1)
	got, _ := s.Members("tabby-big")
	assert.Len(t, got, 2010)
}

func TestInUseSetIsKept(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	s := New(f)
	spec := SetSpec{Name: "tabby-a", Type: HashIP, Family: IPv4}
	require.NoError(t, s.SetMembers(spec, ips(1, "10.0.0.1")))
	require.NoError(t, s.Apply(ctx))
	require.NoError(t, f.Reference("tabby-a"))
	s.DeleteSet("tabby-a")
	err := s.Apply(ctx)
	assert.ErrorIs(t, err, ErrInUse)
	assert.True(t, IsInUse(err))
	assert.Contains(t, f.Dump(), "create tabby-a ")
	f.Unreference("tabby-a")
	require.NoError(t, s.Apply(ctx))
	assert.Empty(t, f.Dump())

	// A type change of a referenced set cannot be done: reported, kept pending.
	require.NoError(t, s.SetMembers(spec, ips(1, "10.0.0.1")))
	require.NoError(t, s.Apply(ctx))
	require.NoError(t, f.Reference("tabby-a"))
	require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-a", Type: HashNet, Family: IPv4}, nil))
	assert.ErrorIs(t, s.Apply(ctx), ErrInUse)
	assert.False(t, s.InSync())
	f.Unreference("tabby-a")
	require.NoError(t, s.Apply(ctx))
	assert.Equal(t, "create tabby-a hash:net family inet maxelem 1024\n", f.Dump())
}

func TestResyncRepairsDrift(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	s := New(f)
	require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-a", Type: HashIP, Family: IPv4}, ips(2, "10.0.0.1")))
	require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-b", Type: HashIP, Family: IPv4}, ips(2, "10.0.0.1")))
	require.NoError(t, s.Apply(ctx))
	want := f.Dump()

	require.NoError(t, f.IpsetDestroy("tabby-a"))
	require.NoError(t, f.IpsetDel("tabby-b", toEntry(HashIP, IP(netip.MustParseAddr("10.0.0.1")))))
	require.NoError(t, f.IpsetAdd("tabby-b", toEntry(HashIP, IP(netip.MustParseAddr("10.0.0.9")))))
	require.NoError(t, f.IpsetCreate("tabby-c", "hash:ip", nl.IpsetCreateOptions{}))
	require.NoError(t, f.IpsetCreate(s.TempName("tabby-b"), "hash:ip", nl.IpsetCreateOptions{}))
	require.NoError(t, s.Apply(ctx))
	assert.NotEqual(t, want, f.Dump(), "without a resync, drift is not seen")
	s.QueueResync()
	require.NoError(t, s.Apply(ctx))
	assert.Equal(t, want, f.Dump())
}

// A sync loop that only calls Apply repairs drift once the last listing is
// older than the refresh interval (Felix's ipsetsRefreshInterval), without
// a QueueResync; a negative interval turns that off.
func TestRefreshIntervalRepairsDrift(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []Option
		repaired bool
	}{
		{name: "default 90s", repaired: true},
		{name: "10s", opts: []Option{WithRefreshInterval(10 * time.Second)}, repaired: true},
		{name: "off", opts: []Option{WithRefreshInterval(-1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := NewFake()
			clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
			s := New(f, append(tc.opts, WithClock(clk))...)
			require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-a", Type: HashIP, Family: IPv4}, ips(2, "10.0.0.1")))
			require.NoError(t, s.Apply(ctx))
			want := f.Dump()
			require.NoError(t, f.IpsetDel("tabby-a", toEntry(HashIP, IP(netip.MustParseAddr("10.0.0.1")))))

			clk.SetTime(clk.Now().Add(5 * time.Second))
			require.NoError(t, s.Apply(ctx))
			assert.NotEqual(t, want, f.Dump(), "the last listing is recent: no re-read")

			clk.SetTime(clk.Now().Add(DefaultRefreshInterval))
			require.NoError(t, s.Apply(ctx))
			if tc.repaired {
				assert.Equal(t, want, f.Dump())
			} else {
				assert.NotEqual(t, want, f.Dump())
			}
		})
	}
}

// failingHandle fails IpsetAdd and IpsetAddEntries for one set, at the
// member 10.0.0.2 if it is there, else at the first.
type failingHandle struct {
	*Fake
	fail string
}

func (h *failingHandle) IpsetAdd(name string, e *nl.IPSetEntry) error {
	if name == h.fail {
		return errProtocol
	}
	return h.Fake.IpsetAdd(name, e)
}

func (h *failingHandle) IpsetAddEntries(name string, es []*nl.IPSetEntry) error {
	if name == h.fail {
		for i, e := range es {
			if e.IP.Equal(net.ParseIP("10.0.0.2")) {
				return &EntryError{Index: i, Err: errProtocol}
			}
		}
		return &EntryError{Index: 0, Err: errProtocol}
	}
	return h.Fake.IpsetAddEntries(name, es)
}

// perEntry hides the BatchHandle methods of a handle, so IPSets takes its
// one-call-per-member path.
type perEntry struct{ Handle }

func TestFailedSetStaysPendingAndOthersApply(t *testing.T) {
	for _, batched := range []bool{true, false} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			ctx := context.Background()
			f := &failingHandle{Fake: NewFake(), fail: "tabby-a"}
			var h Handle = f
			if !batched {
				h = perEntry{f}
			}
			s := New(h)
			require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-a", Type: HashIP, Family: IPv4}, ips(3, "10.0.0.1")))
			require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-b", Type: HashIP, Family: IPv4}, ips(1, "10.0.0.1")))
			err := s.Apply(ctx)
			require.Error(t, err)
			want := "add 10.0.0.1 to ipset tabby-a: "
			if batched {
				want = "add 10.0.0.2 to ipset tabby-a: "
			}
			assert.Contains(t, err.Error(), want+errProtocol.Error(), "the member that failed, with the kernel's error")
			assert.ErrorIs(t, err, errProtocol)
			assert.Contains(t, f.Dump(), "add tabby-b 10.0.0.1")
			assert.False(t, s.InSync())
			f.fail = ""
			require.NoError(t, s.Apply(ctx))
			assert.True(t, s.InSync())
			assert.Contains(t, f.Dump(), "add tabby-a 10.0.0.3")
		})
	}
}

// TestBatchedMatchesPerEntry applies the same changes through a Fake's
// batched path and its per-entry path: equal sets, equal call-independent
// errors (a full set names the member that did not fit).
func TestBatchedMatchesPerEntry(t *testing.T) {
	ctx := context.Background()
	run := func(batched bool) (string, []string) {
		f := NewFake()
		var h Handle = f
		if !batched {
			h = perEntry{f}
		}
		s := New(h, WithRewriteThreshold(1000))
		spec := SetSpec{Name: "tabby-hp", Type: HashIPPortIP, Family: IPv6}
		m := func(i int) Member {
			a := netip.AddrFrom16([16]byte{0xfd, 15: byte(i)})
			return IPPortIP(a, TCP, uint16(i), a)
		}
		var errs []string
		step := func(err error) { errs = append(errs, fmt.Sprint(err)) }
		members := make([]Member, 0, 10)
		for i := range 10 {
			members = append(members, m(i))
		}
		step(s.SetMembers(spec, members))
		step(s.Apply(ctx))
		step(s.RemoveMembers(spec.Name, m(1), m(3)))
		step(s.AddMembers(spec.Name, m(20), m(21)))
		step(s.Apply(ctx))
		// Drift: another program takes a member out and puts one in;
		// without a resync, the edit still succeeds on both paths.
		step(f.IpsetDel(spec.Name, toEntry(spec.Type, m(20))))
		step(f.IpsetAdd(spec.Name, toEntry(spec.Type, m(1))))
		step(s.RemoveMembers(spec.Name, m(20)))
		step(s.AddMembers(spec.Name, m(1)))
		step(s.Apply(ctx))
		// A set someone else filled up to one below its maxelem: the first
		// member that does not fit is named.
		step(s.SetMembers(SetSpec{Name: "tabby-full", Type: HashIP, Family: IPv4}, ips(1, "10.0.0.1")))
		step(s.Apply(ctx))
		for _, m := range ips(MinMaxElem-2, "10.1.0.1") {
			step(f.IpsetAdd("tabby-full", toEntry(HashIP, m)))
		}
		step(s.AddMembers("tabby-full", ips(3, "10.0.0.2")...))
		step(s.Apply(ctx))
		return f.Dump(), errs
	}
	bd, be := run(true)
	pd, pe := run(false)
	assert.Equal(t, pd, bd)
	assert.Equal(t, pe, be)
	assert.Equal(t, "add 10.0.0.3 to ipset tabby-full: "+errHashFull.Error(), be[len(be)-1])
}

// TestApplyCreatesThenFill: ApplyCreates makes missing sets empty (and
// touches no existing set); a rule may reference them at once; the
// following Apply swaps a large set's members in whole, edits a small one
// in place, and ends where a plain Apply ends.
func TestApplyCreatesThenFill(t *testing.T) {
	ctx := context.Background()
	desire := func(s *IPSets) {
		require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-big", Type: HashIP, Family: IPv4}, ips(2000, "10.1.0.1")))
		require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-small", Type: HashNet, Family: IPv6}, []Member{Net(netip.MustParsePrefix("fd00::/64"))}))
	}
	plain := NewFake()
	ps := New(plain)
	desire(ps)
	require.NoError(t, ps.Apply(ctx))

	f := &swapLog{Fake: NewFake()}
	s := New(f)
	require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-old", Type: HashIP, Family: IPv4}, ips(1, "10.0.0.1")))
	require.NoError(t, s.Apply(ctx))
	require.NoError(t, s.AddMembers("tabby-old", ips(1, "10.0.0.2")...))
	desire(s)
	require.NoError(t, s.ApplyCreates(ctx))
	assert.Equal(t, `create tabby-big hash:ip family inet maxelem 3072
create tabby-old hash:ip family inet maxelem 1024
add tabby-old 10.0.0.1
create tabby-small hash:net family inet6 maxelem 1024
`, f.Dump())
	assert.False(t, s.InSync())
	require.NoError(t, f.Reference("tabby-big"))
	s.DeleteSet("tabby-old")
	require.NoError(t, s.Apply(ctx))
	assert.True(t, s.InSync())
	assert.Equal(t, []string{s.TempName("tabby-big") + " tabby-big"}, f.swaps, "the large set is swapped in whole")
	assert.Equal(t, plain.Dump(), f.Dump())
	typ, has, ok := f.Set("tabby-big", IP(netip.MustParseAddr("10.1.0.1")))
	assert.True(t, ok && has, "%s", typ)
}

// swapLog records the IpsetSwap calls made to a Fake.
type swapLog struct {
	*Fake
	swaps []string
}

func (h *swapLog) IpsetSwap(a, b string) error {
	h.swaps = append(h.swaps, a+" "+b)
	return h.Fake.IpsetSwap(a, b)
}

// TestInvalidConfig: a prefix that cannot scope ownership makes the IPSets
// refuse to work before it reads or writes anything; the sets of other
// programs (here "foreign", which every name starts with "" would own)
// stay.
func TestInvalidConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []Option
		nilH   bool
		reason string
	}{
		{name: "empty prefix", opts: []Option{WithPrefix("")}, reason: "own every ipset"},
		{name: "too long for a temporary name", opts: []Option{WithPrefix("p" + strings.Repeat("x", MaxPrefixLen))}, reason: "longer than 22 bytes"},
		{name: "space", opts: []Option{WithPrefix("my sets-")}, reason: `byte " " at 2`},
		{name: "tilde", opts: []Option{WithPrefix("a~")}, reason: `byte "~" at 1`},
		{name: "control byte", opts: []Option{WithPrefix("a\nb-")}, reason: `byte "\n" at 1`},
		{name: "non-ASCII", opts: []Option{WithPrefix("é-")}, reason: `byte "\xc3" at 0`},
		{name: "quote", opts: []Option{WithPrefix(`a"-`)}, reason: "at 1"},
		{name: "leading dash", opts: []Option{WithPrefix("-a")}, reason: "starts with '-'"},
		{name: "leading bang", opts: []Option{WithPrefix("!a")}, reason: "starts with '!'"},
		{name: "nil handle", nilH: true, reason: "nil Handle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := NewFake()
			require.NoError(t, f.IpsetCreate("foreign", "hash:ip", nl.IpsetCreateOptions{}))
			var h Handle = f
			if tc.nilH {
				h = nil
			}
			s := New(h, tc.opts...)
			require.ErrorIs(t, s.Err(), ErrInvalidConfig)
			assert.ErrorContains(t, s.Err(), tc.reason)
			spec := SetSpec{Name: s.Prefix() + "a", Type: HashIP, Family: IPv4}
			assert.ErrorIs(t, s.SetMembers(spec, nil), ErrInvalidConfig)
			for _, apply := range []func(context.Context) error{s.Apply, s.ApplyUpdates, s.ApplyCreates, s.ApplyDeletions} {
				assert.ErrorIs(t, apply(ctx), ErrInvalidConfig)
			}
			assert.Equal(t, "create foreign hash:ip family inet maxelem 65536\n", f.Dump())
			assert.Zero(t, f.Calls()-1, "nothing written after the foreign set's create")
		})
	}
}

func TestValidConfig(t *testing.T) {
	for _, p := range []string{DefaultPrefix, "TABBY-", "a", "k8s.io/x:", strings.Repeat("x", MaxPrefixLen)} {
		s := New(NewFake(), WithPrefix(p), WithLogger(nil))
		require.NoError(t, s.Err(), p)
		require.NoError(t, s.SetMembers(SetSpec{Name: p + "a", Type: HashIP, Family: IPv4}, ips(1, "10.0.0.1")), p)
		require.NoError(t, s.SetMembers(SetSpec{Name: p + "b", Type: HashIP, Family: IPv4}, ips(1, "10.0.0.1")), p)
		require.NoError(t, s.Apply(context.Background()), p)
		// A rewrite goes through TempName, which must fit MaxNameLen.
		require.NoError(t, s.SetMembers(SetSpec{Name: p + "a", Type: HashIP, Family: IPv4}, ips(2000, "10.1.0.1")), p)
		require.NoError(t, s.Apply(context.Background()), p)
		assert.True(t, s.InSync(), p)
	}
}

// An entry another program added that this package cannot model (here a
// UDP-Lite port, which the kernel takes in a hash:ip,port set) is drift
// like any other: the set keeps its type and family, so it is rebuilt in a
// temporary set and swapped in even while a rule references it, not
// destroyed and recreated (which the kernel refuses with IPSET_ERR_BUSY,
// so the drift would never be repaired).
func TestUnmodelledEntryIsRebuilt(t *testing.T) {
	ctx := context.Background()
	f := &swapLog{Fake: NewFake()}
	s := New(f)
	spec := SetSpec{Name: "tabby-np", Type: HashIPPort, Family: IPv4}
	want := IPPort(netip.MustParseAddr("10.0.0.1"), TCP, 80)
	require.NoError(t, s.SetMembers(spec, []Member{want}))
	require.NoError(t, s.Apply(ctx))
	require.NoError(t, f.Reference("tabby-np"))

	udplite, port := uint8(136), uint16(80)
	require.NoError(t, f.IpsetAdd("tabby-np", &nl.IPSetEntry{IP: net.ParseIP("10.0.0.2").To4(), Protocol: &udplite, Port: &port}))
	s.QueueResync()
	require.NoError(t, s.Apply(ctx))
	assert.True(t, s.InSync())
	assert.Len(t, f.swaps, 1, "rebuilt by a swap under the rule")
	assert.Equal(t, "create tabby-np hash:ip,port family inet maxelem 1024\nadd tabby-np 10.0.0.1,tcp:80\n", f.Dump())
	require.NoError(t, s.Apply(ctx))
}
