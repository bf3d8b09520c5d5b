package nftables

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
)

// testNetlink returns a fresh namespace (named after prefix) and an ip
// Netlink in it, closed with the test.
func testNetlink(t *testing.T, prefix string) (*nettest.Netns, *Netlink) {
	t.Helper()
	ns := nettest.NewNetns(t, prefix) // skips unless root
	n, err := NewNetlink(knftables.IPv4Family, DefaultTable, ns.Path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return ns, n
}

// TestNetlinkAtomic: a batch the kernel rejects in its last operation
// leaves nothing of its earlier ones, the error carries the errno, and
// the next batch works on a fresh socket.
func TestNetlinkAtomic(t *testing.T) {
	ns, n := testNetlink(t, "svcatom")
	ctx := context.Background()
	list := func() string {
		out, err := exec.Command("nsenter", "--net="+ns.Path, "nft", "list", "table", "ip", DefaultTable).CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	o := &ops{}
	o.Add(&knftables.Table{})
	o.Add(&knftables.Set{Name: "s", Type: "ipv4_addr"})
	require.NoError(t, n.apply(ctx, o))
	before := list()

	o = &ops{}
	o.Add(&knftables.Element{Set: "s", Key: []string{"10.0.0.1"}})
	o.Add(&knftables.Chain{Name: "c"})
	o.Add(&knftables.Rule{Chain: "c", Rule: "jump missing"})
	err := n.apply(ctx, o)
	require.Error(t, err)
	assert.ErrorIs(t, err, unix.ENOENT)
	assert.Equal(t, before, list(), "nothing of the failed batch applied")

	o = &ops{}
	o.Add(&knftables.Element{Set: "s", Key: []string{"10.0.0.2"}})
	require.NoError(t, n.apply(ctx, o))
	assert.Contains(t, list(), "10.0.0.2")

	// A rule form the compiler does not know is refused before anything
	// is sent.
	o = &ops{}
	o.Add(&knftables.Chain{Name: "d"})
	o.Add(&knftables.Rule{Chain: "d", Rule: "counter"})
	assert.ErrorIs(t, n.apply(ctx, o), ErrUnsupportedRule)
}

// FuzzCompileRule: any rule text compiles or fails with an error, never
// a panic.
func FuzzCompileRule(f *testing.F) {
	for _, r := range []string{
		"ct state new jump services",
		"ip daddr . meta l4proto . th dport vmap @service-ips",
		"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport @reject-nodeports reject",
		"meta l4proto tcp dnat ip addr . port to ip daddr . tcp dport . numgen random mod 3 offset 3 map @service-endpoints-tcp",
		"ip saddr @a update @a { ip saddr } meta l4proto tcp dnat to 10.0.0.1:80",
		"numgen random mod 2 == 0 meta l4proto udp dnat to 10.0.0.1:53",
		"meta mark & 0x4000 == 0 return",
		"ip daddr 10.96.0.1 tcp dport 80 ip saddr != @cluster-cidrs jump mark-for-masquerade",
	} {
		f.Add(r, false)
	}
	f.Fuzz(func(t *testing.T, rule string, ip6 bool) {
		_, _ = compiler{ip6: ip6}.compileRule(rule)
	})
}

// TestNetlinkErrorNamesObject: when the kernel refuses a batch, the
// error names the refused operation as the `nft` CLI writes it (a rule;
// the very element of a message of several, found by the kernel's
// extended-ack offset, for plain, interval and verdict-map elements;
// an element after a full sync's base objects, so every message before
// it was counted right), and still wraps the errno.
func TestNetlinkErrorNamesObject(t *testing.T) {
	_, n := testNetlink(t, "svcerr")
	ctx := context.Background()
	o := &ops{}
	o.Add(&knftables.Table{})
	o.Add(&knftables.Chain{Name: "c"})
	o.Add(&knftables.Set{Name: "s", Type: "ipv4_addr"})
	o.Add(&knftables.Set{Name: "iv", Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag}})
	o.Add(&knftables.Map{Name: "m", Type: "ipv4_addr : verdict"})
	o.Add(&knftables.Element{Set: "s", Key: []string{"10.0.0.1"}})
	o.Add(&knftables.Element{Set: "iv", Key: []string{"192.168.0.0/16"}})
	require.NoError(t, n.apply(ctx, o))

	for _, tt := range []struct {
		name  string
		ops   func(o *ops)
		errno error
		want  string
	}{
		{"rule", func(o *ops) {
			o.Add(&knftables.Rule{Chain: "c", Rule: "ip daddr @s drop"})
			o.Add(&knftables.Rule{Chain: "c", Rule: "jump missing"})
		}, unix.ENOENT, ": add rule ip tabby-services c jump missing: "},
		{"deleted element", func(o *ops) {
			o.Add(&knftables.Element{Set: "s", Key: []string{"10.0.0.2"}})
			for _, a := range []string{"10.0.0.1", "10.0.0.7", "10.0.0.2"} {
				o.Delete(&knftables.Element{Set: "s", Key: []string{a}})
			}
		}, unix.ENOENT, ": delete element ip tabby-services s { 10.0.0.7 }: "},
		{"interval element", func(o *ops) {
			for _, p := range []string{"10.0.0.0/24", "172.16.0.0/12", "192.168.1.0/24", "198.51.100.0/24"} {
				o.Add(&knftables.Element{Set: "iv", Key: []string{p}})
			}
		}, unix.EEXIST, ": add element ip tabby-services iv { 192.168.1.0/24 }: "},
		{"map element", func(o *ops) {
			o.Add(&knftables.Element{Map: "m", Key: []string{"10.0.0.1"}, Value: []string{"goto c"}})
			o.Add(&knftables.Element{Map: "m", Key: []string{"10.0.0.2"}, Value: []string{"goto missing"}})
			o.Add(&knftables.Element{Map: "m", Key: []string{"10.0.0.3"}, Value: []string{"goto c"}})
		}, unix.ENOENT, ": add element ip tabby-services m { 10.0.0.2 : goto missing }: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := &ops{}
			tt.ops(o)
			err := n.apply(ctx, o)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.errno)
			assert.Contains(t, err.Error(), tt.want)
		})
	}

	// A full sync's base objects, then 600 service-ips elements (three
	// messages), one of them refused.
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	p, err := New(n, tr, Config{Family: knftables.IPv4Family, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")}})
	require.NoError(t, err)
	o = &ops{}
	p.baseObjects(o)
	for i := range 600 {
		v := "goto " + chainServices
		if i == 400 {
			v = "goto missing"
		}
		addElement(o, verbAdd, element{Map: mapServiceIPs, Key: fmt.Sprintf("10.96.%d.%d . tcp . 80", i>>8, i&0xff), Value: v})
	}
	err = n.apply(ctx, o)
	require.ErrorIs(t, err, unix.ENOENT)
	assert.Contains(t, err.Error(), ": add element ip tabby-services service-ips { 10.96.1.144 . tcp . 80 : goto missing }: ")
}

// FuzzParseAcks: any datagram decodes or fails with an error, never a
// panic; so does looking an offset up in any element message.
func FuzzParseAcks(f *testing.F) {
	// An error (ENOENT) for sequence 7, capped, with an offset of 76.
	msg := []byte{
		44, 0, 0, 0, 2, 0, 0x00, 0x03, 7, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr: NLMSG_ERROR, CAPPED|ACK_TLVS
		0xfe, 0xff, 0xff, 0xff, // -2
		20, 0, 0, 0, 0x0d, 0x0a, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, // the original header
		8, 0, 2, 0, 76, 0, 0, 0, // NLMSGERR_ATTR_OFFS
	}
	f.Add(msg, 76)
	f.Fuzz(func(t *testing.T, b []byte, pos int) {
		acks, err := parseAcks(b)
		if err == nil && len(acks) > 0 && len(b) == len(msg) && string(b) == string(msg) {
			require.ErrorIs(t, acks[0].err, unix.ENOENT)
			require.Equal(t, 76, acks[0].offset)
		}
		_, _ = elementAt(b, pos)
	})
}
