package nftables

import (
	"context"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// TestNetlinkAtomic: a batch the kernel rejects in its last operation
// leaves nothing of its earlier ones, the error carries the errno, and
// the next batch works on a fresh socket.
func TestNetlinkAtomic(t *testing.T) {
	ns := nettest.NewNetns(t, "svcatom") // skips unless root
	n, err := NewNetlink(knftables.IPv4Family, DefaultTable, ns.Path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
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
	err = n.apply(ctx, o)
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
