package ipsets

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	nlnl "github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// kernelHandle returns a KernelHandle bound to a fresh netns.
func kernelHandle(t testing.TB) (*KernelHandle, *nettest.Netns) {
	t.Helper()
	n := nettest.NewNetns(t, "tbipset")
	h, err := NewHandle(netns.NsHandle(n.NS().Fd()))
	require.NoError(t, err)
	t.Cleanup(h.Close)
	if _, _, err := h.IpsetProtocol(); err != nil {
		t.Skipf("kernel test: no ipset support: %v", err)
	}
	return h, n
}

type op struct {
	name string
	do   func(h Handle) error
}

func entry(s string) *nl.IPSetEntry {
	addr, port, _ := strings.Cut(s, ",")
	port, ip2, _ := strings.Cut(port, ",")
	e := &nl.IPSetEntry{}
	a, bits, _ := strings.Cut(addr, "/")
	e.IP = net.IP(netip.MustParseAddr(a).AsSlice())
	if bits != "" {
		var n uint8
		_, _ = fmt.Sscan(bits, &n)
		e.CIDR = n
	}
	if port != "" {
		var proto, n uint16
		var ps string
		ps, portS, _ := strings.Cut(port, ":")
		_, _ = fmt.Sscan(portS, &n)
		pr, _ := parseProtocol(ps)
		proto = uint16(pr)
		p8 := uint8(proto)
		e.Protocol, e.Port = &p8, &n
	}
	if ip2 != "" {
		e.IP2 = net.IP(netip.MustParseAddr(ip2).AsSlice())
	}
	return e
}

func ptr[T any](v T) *T { return &v }

func conformanceOps() []op {
	createOpts := func(name, typ string, o nl.IpsetCreateOptions) op {
		return op{fmt.Sprintf("create %s %s %+v", name, typ, o), func(h Handle) error { return h.IpsetCreate(name, typ, o) }}
	}
	create := func(name, typ string, fam uint8, maxElem uint32) op {
		return op{fmt.Sprintf("create %s %s %d maxelem %d", name, typ, fam, maxElem), func(h Handle) error {
			return h.IpsetCreate(name, typ, nl.IpsetCreateOptions{Family: fam, MaxElements: maxElem})
		}}
	}
	add := func(name, e string) op {
		return op{"add " + name + " " + e, func(h Handle) error { return h.IpsetAdd(name, entry(e)) }}
	}
	del := func(name, e string) op {
		return op{"del " + name + " " + e, func(h Handle) error { return h.IpsetDel(name, entry(e)) }}
	}
	swap := func(a, b string) op {
		return op{"swap " + a + " " + b, func(h Handle) error { return h.IpsetSwap(a, b) }}
	}
	destroy := func(a string) op {
		return op{"destroy " + a, func(h Handle) error { return h.IpsetDestroy(a) }}
	}
	batch := func(verb, name string, es ...string) op {
		return op{verb + "-batch " + name + " " + strings.Join(es, " "), func(h Handle) error {
			entries := make([]*nl.IPSetEntry, len(es))
			for i, e := range es {
				entries[i] = entry(e)
			}
			if verb == "add" {
				return h.(BatchHandle).IpsetAddEntries(name, entries)
			}
			return h.(BatchHandle).IpsetDelEntries(name, entries)
		}}
	}
	addB := func(name string, es ...string) op { return batch("add", name, es...) }
	delB := func(name string, es ...string) op { return batch("del", name, es...) }
	// many returns n hash:ip,port,ip entries (IPv4 from 10.8.0.0, IPv6 in
	// fd08::/64), enough for several MaxBatchMessage messages when n is in
	// the thousands, with bad put at the given indexes.
	many := func(v6 bool, n int, bad map[int]string) []string {
		out := make([]string, n)
		for i := range out {
			a := netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)})
			if v6 {
				a = netip.AddrFrom16([16]byte{0xfd, 0x08, 14: byte(i >> 8), 15: byte(i)})
			}
			out[i] = fmt.Sprintf("%s,udp:%d,%s", a, 1000+i%7, a)
			if b, ok := bad[i]; ok {
				out[i] = b
			}
		}
		return out
	}
	return []op{
		create("tabby-a", "hash:ip", unix.AF_INET, 2),
		create("tabby-a", "hash:ip", unix.AF_INET, 2),
		create("tabby-"+strings.Repeat("x", 26), "hash:ip", unix.AF_INET, 0),
		create("tabby-bad", "hash:nope", unix.AF_INET, 0),
		add("tabby-a", "10.0.0.1"),
		add("tabby-a", "10.0.0.1"),
		add("tabby-a", "fd00::1"),
		add("tabby-a", "10.0.0.2"),
		add("tabby-a", "10.0.0.3"),
		del("tabby-a", "10.0.0.9"),
		del("tabby-a", "10.0.0.2"),
		add("tabby-missing", "10.0.0.1"),
		create("tabby-n", "hash:net", unix.AF_INET, 0),
		add("tabby-n", "10.1.0.0/0"),
		add("tabby-n", "10.1.0.7/24"),
		add("tabby-n", "10.1.0.0/24"),
		add("tabby-n", "10.2.0.5"),
		add("tabby-n", "10.3.0.0/33"),
		create("tabby-6", "hash:net", unix.AF_INET6, 0),
		add("tabby-6", "10.1.0.0/24"),
		add("tabby-6", "fd00::/64"),
		create("tabby-p", "hash:ip,port", unix.AF_INET, 0),
		add("tabby-p", "10.0.0.1,tcp:80"),
		add("tabby-p", "10.0.0.1,udp:80"),
		add("tabby-p", "10.0.0.1,tcp:80"),
		create("tabby-np", "hash:net,port", unix.AF_INET6, 0),
		add("tabby-np", "fd00::/64,sctp:9"),
		del("tabby-np", "fd00::/64,tcp:9"),
		create("tabby-hp", "hash:ip,port,ip", unix.AF_INET, 0),
		add("tabby-hp", "10.0.0.1,tcp:80,10.0.0.1"),
		add("tabby-hp", "10.0.0.1,tcp:80,10.0.0.1"),
		add("tabby-hp", "10.0.0.1,udp:80,10.0.0.2"),
		add("tabby-hp", "10.0.0.1,tcp:80"),
		add("tabby-hp", "10.0.0.1,tcp:80,fd00::1"),
		del("tabby-hp", "10.0.0.1,tcp:80,10.0.0.3"),
		create("tabby-hp6", "hash:ip,port,ip", unix.AF_INET6, 0),
		add("tabby-hp6", "fd00::1,tcp:80,fd00::1"),
		add("tabby-hp6", "fd00::1,sctp:9,fd00::2"),
		swap("tabby-hp", "tabby-hp6"),
		swap("tabby-a", "tabby-6"),
		swap("tabby-a", "tabby-none"),
		swap("tabby-none", "tabby-a"),
		create("tabby-a2", "hash:ip", unix.AF_INET, 0),
		add("tabby-a2", "10.9.9.9"),
		swap("tabby-a", "tabby-a2"),
		destroy("tabby-none"),
		destroy("tabby-a2"),

		// Batched writes: present (add) and absent (del) entries are not
		// errors; the first bad entry stops the batch, the ones before it
		// stay; a missing set is entry 0.
		addB("tabby-b-missing", "10.0.0.1"),
		addB("tabby-a"),
		create("tabby-b", "hash:ip", unix.AF_INET, 4),
		addB("tabby-b", "10.0.0.1", "10.0.0.1", "10.0.0.2"),
		addB("tabby-b", "10.0.0.2", "10.0.0.3", "fd00::1", "10.0.0.4"),
		addB("tabby-b", "10.0.0.3", "10.0.0.5", "10.0.0.6", "10.0.0.7"),
		addB("tabby-b", "10.0.0.5", "10.0.0.1"),
		delB("tabby-b", "10.0.0.9", "10.0.0.2", "10.0.0.2"),
		delB("tabby-b", "10.0.0.1", "fd00::1", "10.0.0.3"),
		delB("tabby-b-missing", "10.0.0.1"),
		{"add-batch tabby-b with a commented and a nil entry", func(h Handle) error {
			c := entry("10.0.0.9")
			c.Comment = "x"
			return h.(BatchHandle).IpsetAddEntries("tabby-b", []*nl.IPSetEntry{entry("10.0.0.8"), c, entry("10.0.0.7")})
		}},
		{"del-batch tabby-b with a nil entry", func(h Handle) error {
			return h.(BatchHandle).IpsetDelEntries("tabby-b", []*nl.IPSetEntry{entry("10.0.0.8"), nil})
		}},
		create("tabby-bn", "hash:net", unix.AF_INET, 0),
		addB("tabby-bn", "10.1.0.7/24", "10.2.0.5", "10.3.0.0/16", "10.4.0.0/0", "10.5.0.0/8"),
		addB("tabby-bn", "10.6.0.0/33"),
		create("tabby-bnp6", "hash:net,port", unix.AF_INET6, 0),
		addB("tabby-bnp6", "fd00::/64,sctp:9", "fd01::/48,udp:53", "fd00::/64,sctp:9"),
		delB("tabby-bnp6", "fd00::/64,tcp:9", "fd01::/48,udp:53"),
		create("tabby-bp", "hash:ip,port", unix.AF_INET, 0),
		addB("tabby-bp", "10.0.0.1,tcp:80", "10.0.0.1,udp:80", "10.0.0.2,sctp:1"),
		// Thousands of hash:ip,port,ip entries span several messages; a bad
		// one in a later message is found, the earlier messages stay.
		create("tabby-bhp", "hash:ip,port,ip", unix.AF_INET, 4096),
		addB("tabby-bhp", many(false, 3000, nil)...),
		addB("tabby-bhp", many(false, 3000, map[int]string{2500: "10.9.0.1,tcp:80,fd00::1"})...),
		delB("tabby-bhp", many(false, 2000, map[int]string{1500: "10.9.0.1,tcp:80"})...),
		create("tabby-bhp6", "hash:ip,port,ip", unix.AF_INET6, 1024),
		addB("tabby-bhp6", many(true, 1500, nil)...),

		// Create options this package never uses are kept and listed
		// (Timeout, CadtFlags); a swap moves them with the entries, as it
		// needs only equal type and family.
		createOpts("tabby-to", "hash:ip", nl.IpsetCreateOptions{Family: unix.AF_INET, Timeout: ptr(uint32(600))}),
		add("tabby-to", "10.0.0.1"),
		createOpts("tabby-to0", "hash:ip", nl.IpsetCreateOptions{Family: unix.AF_INET, Timeout: ptr(uint32(0))}),
		createOpts("tabby-cc", "hash:net,port", nl.IpsetCreateOptions{Family: unix.AF_INET6, Counters: true, Comments: true, Skbinfo: true}),
		add("tabby-cc", "fd00::/64,tcp:1"),
		createOpts("tabby-cm", "hash:ip,port,ip", nl.IpsetCreateOptions{Family: unix.AF_INET, Comments: true, MaxElements: 65536}),
		create("tabby-pl", "hash:ip", unix.AF_INET, 1024),
		add("tabby-pl", "10.0.0.2"),
		swap("tabby-to", "tabby-pl"),
		create("tabby-pl6", "hash:net,port", unix.AF_INET6, 2048),
		swap("tabby-pl6", "tabby-cc"),
	}
}

func TestFakeMatchesKernel(t *testing.T) {
	h, _ := kernelHandle(t)
	fake := NewFake()
	for _, o := range conformanceOps() {
		kerr := o.do(h)
		ferr := o.do(fake)
		assert.Equal(t, fmt.Sprint(kerr), fmt.Sprint(ferr), "%s: kernel %v, fake %v", o.name, kerr, ferr)
	}
	dump := fake.Dump()
	assert.Equal(t, dumpHandle(t, h), dump)
	for _, line := range []string{
		"create tabby-pl hash:ip family inet maxelem 65536 timeout 600\nadd tabby-pl 10.0.0.1\n",
		"create tabby-to hash:ip family inet maxelem 1024\nadd tabby-to 10.0.0.2\n",
		"create tabby-to0 hash:ip family inet maxelem 65536 timeout 0\n",
		"create tabby-pl6 hash:net,port family inet6 maxelem 65536 counters comment skbinfo\nadd tabby-pl6 fd00::/64,tcp:1\n",
		"create tabby-cm hash:ip,port,ip family inet maxelem 65536 comment\n",
	} {
		assert.Contains(t, dump, line, "the options reach both and move with a swap")
	}
}

// dumpHandle renders a real handle's sets like Fake.Dump.
func dumpHandle(t testing.TB, h Handle) string {
	t.Helper()
	res, err := h.IpsetListAll()
	require.NoError(t, err)
	f := NewFake()
	for _, r := range res {
		fam := uint8(r.Family)
		if _, ok := f.sets[r.SetName]; !ok {
			o := nl.IpsetCreateOptions{Family: fam, MaxElements: r.MaxElements, Timeout: r.Timeout,
				Counters: r.CadtFlags&nlnl.IPSET_FLAG_WITH_COUNTERS != 0,
				Comments: r.CadtFlags&nlnl.IPSET_FLAG_WITH_COMMENT != 0,
				Skbinfo:  r.CadtFlags&nlnl.IPSET_FLAG_WITH_SKBINFO != 0}
			require.NoError(t, f.IpsetCreate(r.SetName, r.TypeName, o))
		}
		for i := range r.Entries {
			require.NoError(t, f.IpsetAdd(r.SetName, &r.Entries[i]), "%s %+v", r.SetName, r.Entries[i])
		}
	}
	return f.Dump()
}

// TestKernelApply runs the applier against the kernel in a netns: create,
// edit, rewrite by swap while an iptables rule references the set, drift
// repair, deletion, and a foreign set left alone; once with the batched
// KernelHandle, once with its plain *netlink.Handle (one call per member).
func TestKernelApply(t *testing.T) {
	t.Run("batched", func(t *testing.T) {
		h, n := kernelHandle(t)
		testKernelApply(t, h, n)
	})
	t.Run("per-entry", func(t *testing.T) {
		h, n := kernelHandle(t)
		testKernelApply(t, h.Handle, n)
	})
}

func testKernelApply(t *testing.T, h Handle, n *nettest.Netns) {
	ctx := context.Background()
	require.NoError(t, h.IpsetCreate("other", "hash:ip", nl.IpsetCreateOptions{}))
	s := New(h)
	spec := SetSpec{Name: "tabby-k", Type: HashNetPort, Family: IPv6}
	m := func(i int) Member {
		return NetPort(netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 15: byte(i)}), 120), UDP, uint16(1000+i))
	}
	require.NoError(t, s.SetMembers(spec, []Member{m(1), m(2)}))
	require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-v4", Type: HashIP, Family: IPv4}, ips(1500, "10.0.0.1")))
	require.NoError(t, s.Apply(ctx))
	f := NewFake()
	require.NoError(t, f.IpsetCreate("other", "hash:ip", nl.IpsetCreateOptions{}))
	fs := New(f)
	require.NoError(t, fs.SetMembers(spec, []Member{m(1), m(2)}))
	require.NoError(t, fs.SetMembers(SetSpec{Name: "tabby-v4", Type: HashIP, Family: IPv4}, ips(1500, "10.0.0.1")))
	require.NoError(t, fs.Apply(ctx))
	assert.Equal(t, f.Dump(), dumpHandle(t, h), "the applier leaves the kernel as it leaves the fake")

	// A rule references the set; a full rewrite swaps under it.
	_, err := n.Run(ctx, "iptables", "-w", "-A", "INPUT", "-m", "set", "--match-set", "tabby-v4", "src", "-j", "ACCEPT")
	require.NoError(t, err)
	require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-v4", Type: HashIP, Family: IPv4}, ips(3000, "10.1.0.1")))
	require.NoError(t, s.Apply(ctx))
	out, err := n.Run(ctx, "ipset", "list", "-t", "tabby-v4")
	require.NoError(t, err)
	assert.Contains(t, out, "maxelem 5120")
	assert.Contains(t, out, "Number of entries: 3000")
	assert.Contains(t, out, "References: 1")

	// Drift: another program edits and destroys; a resync repairs.
	_, err = n.Run(ctx, "ipset", "del", "tabby-k", m(1).String())
	require.NoError(t, err)
	_, err = n.Run(ctx, "ipset", "add", "tabby-k", "fd00::/64,tcp:1")
	require.NoError(t, err)
	s.QueueResync()
	require.NoError(t, s.Apply(ctx))
	out, err = n.Run(ctx, "ipset", "save", "tabby-k")
	require.NoError(t, err)
	assert.Contains(t, out, "add tabby-k fd00::/120,udp:1001")
	assert.NotContains(t, out, "tcp:1")

	s.DeleteSet("tabby-k")
	require.NoError(t, s.Apply(ctx))
	out, err = n.Run(ctx, "ipset", "list", "-n")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"other", "tabby-v4"}, strings.Fields(out))

	// A set referenced by a rule is kept, and reported, until the rule goes.
	s.DeleteSet("tabby-v4")
	err = s.Apply(ctx)
	assert.ErrorIs(t, err, ErrInUse)
	_, err = n.Run(ctx, "iptables", "-w", "-D", "INPUT", "-m", "set", "--match-set", "tabby-v4", "src", "-j", "ACCEPT")
	require.NoError(t, err)
	require.NoError(t, s.Apply(ctx))
	out, err = n.Run(ctx, "ipset", "list", "-n")
	require.NoError(t, err)
	assert.Equal(t, []string{"other"}, strings.Fields(out))
}

// TestKernelApplyCreates: a set ApplyCreates made is empty, an iptables
// rule can reference it at once, and the next Apply swaps the members in
// under the reference.
func TestKernelApplyCreates(t *testing.T) {
	ctx := context.Background()
	h, n := kernelHandle(t)
	s := New(h)
	spec := SetSpec{Name: "tabby-c", Type: HashIPPortIP, Family: IPv4}
	members := make([]Member, 100)
	for i := range members {
		a := netip.AddrFrom4([4]byte{10, 0, 1, byte(i)})
		members[i] = IPPortIP(a, UDP, 53, a)
	}
	require.NoError(t, s.SetMembers(spec, members))
	require.NoError(t, s.ApplyCreates(ctx))
	out, err := n.Run(ctx, "ipset", "list", "-t", spec.Name)
	require.NoError(t, err)
	assert.Contains(t, out, "Number of entries: 0")
	_, err = n.Run(ctx, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-m", "set", "--match-set", spec.Name, "dst,dst,src", "-j", "MASQUERADE")
	require.NoError(t, err)
	require.NoError(t, s.Apply(ctx))
	assert.True(t, s.InSync())
	out, err = n.Run(ctx, "ipset", "list", "-t", spec.Name)
	require.NoError(t, err)
	assert.Contains(t, out, "Number of entries: 100")
	assert.Contains(t, out, "References: 1")
	out, err = n.Run(ctx, "ipset", "list", "-n")
	require.NoError(t, err)
	assert.Equal(t, []string{spec.Name}, strings.Fields(out), "the temporary set is gone")
}

// TestKernelForeignHeaderIsRebuilt: sets of the right name, type and
// family that the ipset binary created with options this package never
// uses are swapped for sets made here, under an iptables reference; the
// members of what was a `timeout 1` set then stay. A set as this package
// makes it is adopted as it is.
func TestKernelForeignHeaderIsRebuilt(t *testing.T) {
	ctx := context.Background()
	h, n := kernelHandle(t)
	type want struct{ header, maxElem string }
	sets := []struct {
		create []string
		want   want
	}{
		{[]string{"tabby-web", "hash:ip", "timeout", "1", "maxelem", "1024"}, want{"timeout 1", "1024"}},
		{[]string{"tabby-cm", "hash:ip", "comment", "maxelem", "2048"}, want{"comment", "1024"}},
		{[]string{"tabby-big", "hash:ip"}, want{"maxelem 65536", "1024"}},
		{[]string{"tabby-fa", "hash:ip", "forceadd", "counters", "skbinfo", "maxelem", "1024"}, want{"counters skbinfo forceadd", "1024"}},
		{[]string{"tabby-ok", "hash:ip", "maxelem", "2048", "hashsize", "4096"}, want{"", "2048"}},
	}
	s := New(h)
	for _, set := range sets {
		_, err := n.Run(ctx, "ipset", append([]string{"create"}, set.create...)...)
		require.NoError(t, err)
		_, err = n.Run(ctx, "ipset", "add", set.create[0], "10.0.0.1")
		require.NoError(t, err)
		require.NoError(t, s.SetMembers(SetSpec{Name: set.create[0], Type: HashIP, Family: IPv4}, ips(2, "10.0.0.1")))
	}
	_, err := n.Run(ctx, "iptables", "-w", "-A", "INPUT", "-m", "set", "--match-set", "tabby-web", "src", "-j", "ACCEPT")
	require.NoError(t, err)
	require.NoError(t, s.Apply(ctx))
	assert.True(t, s.InSync())
	for _, set := range sets {
		out, err := n.Run(ctx, "ipset", "list", "-t", set.create[0])
		require.NoError(t, err)
		header, _, _ := strings.Cut(out[strings.Index(out, "Header: "):], "\n")
		for _, word := range []string{"timeout", "comment", "counters", "skbinfo", "forceadd"} {
			assert.NotContains(t, header, word, set.create[0])
		}
		assert.Contains(t, header, "maxelem "+set.want.maxElem, set.create[0])
		assert.Contains(t, out, "Number of entries: 2", set.create[0])
	}
	out, err := n.Run(ctx, "ipset", "list", "-t", "tabby-web")
	require.NoError(t, err)
	assert.Contains(t, out, "References: 1", "swapped under the rule")
	out, err = n.Run(ctx, "ipset", "list", "-t", "tabby-ok")
	require.NoError(t, err)
	assert.Contains(t, out, "hashsize 4096", "adopted, not rebuilt")

	// What was a `timeout 1` set keeps its members past the timeout.
	time.Sleep(1500 * time.Millisecond)
	out, err = n.Run(ctx, "ipset", "list", "tabby-web")
	require.NoError(t, err)
	assert.Contains(t, out, "\n10.0.0.1\n")
	assert.Contains(t, out, "\n10.0.0.2\n")
	s.QueueResync()
	require.NoError(t, s.Apply(ctx))
	assert.True(t, s.InSync())
	out, err = n.Run(ctx, "ipset", "list", "-n")
	require.NoError(t, err)
	assert.NotContains(t, out, "~", "no temporary set left")
}

// TestKernelRefreshRepairsDrift: members another program deletes from, and
// adds to, an owned set in the kernel come back once the refresh interval
// has passed, with Apply alone (no QueueResync).
func TestKernelRefreshRepairsDrift(t *testing.T) {
	h, _ := kernelHandle(t)
	ctx := context.Background()
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	s := New(h, WithRefreshInterval(time.Second), WithClock(clk))
	require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-allow", Type: HashNet, Family: IPv4},
		[]Member{Net(netip.MustParsePrefix("10.0.2.0/24"))}))
	require.NoError(t, s.Apply(ctx))
	want := dumpHandle(t, h)
	require.NoError(t, h.IpsetDel("tabby-allow", entry("10.0.2.0/24")))
	require.NoError(t, h.IpsetAdd("tabby-allow", entry("10.9.9.9/32")))
	require.NoError(t, s.Apply(ctx))
	require.NotEqual(t, want, dumpHandle(t, h), "within the interval nothing is re-read")
	clk.SetTime(clk.Now().Add(2 * time.Second))
	require.NoError(t, s.Apply(ctx))
	assert.Equal(t, want, dumpHandle(t, h))
	assert.True(t, s.InSync())
}

// TestKernelUnmodelledEntryIsRebuilt: entries another program adds to an
// owned hash:ip,port set that this package cannot model (udplite and icmp
// "ports", which the kernel takes) are drift; the set, referenced by a
// rule, is swapped for one holding exactly the desired members.
func TestKernelUnmodelledEntryIsRebuilt(t *testing.T) {
	ctx := context.Background()
	h, n := kernelHandle(t)
	s := New(h)
	require.NoError(t, s.SetMembers(SetSpec{Name: "tabby-np", Type: HashIPPort, Family: IPv4},
		[]Member{IPPort(netip.MustParseAddr("10.0.0.1"), TCP, 80)}))
	require.NoError(t, s.Apply(ctx))
	_, err := n.Run(ctx, "iptables", "-w", "-A", "INPUT", "-m", "set", "--match-set", "tabby-np", "dst,dst", "-j", "ACCEPT")
	require.NoError(t, err)
	for _, e := range []string{"10.0.0.2,udplite:80", "10.0.0.3,icmp:echo-request"} {
		_, err = n.Run(ctx, "ipset", "add", "tabby-np", e)
		require.NoError(t, err)
	}
	s.QueueResync()
	require.NoError(t, s.Apply(ctx))
	assert.True(t, s.InSync())
	out, err := n.Run(ctx, "ipset", "list", "tabby-np")
	require.NoError(t, err)
	assert.Contains(t, out, "References: 1", "swapped under the rule")
	assert.Contains(t, out, "Number of entries: 1")
	assert.Contains(t, out, "\n10.0.0.1,tcp:80\n")
}
