package ipsets

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// A closed KernelHandle fails with ErrClosed instead of acting on the
// calling thread's namespace, as a closed vishvananda/netlink Handle does.
// The calls run inside a "caller" namespace standing in for the root
// namespace of an agent; no set may appear there.
func TestKernelHandleUseAfterClose(t *testing.T) {
	ctx := context.Background()
	h, _ := kernelHandle(t)
	h.Close()
	h.Close() // twice: nothing
	caller := nettest.NewNetns(t, "tbipset-caller")
	sets := New(h)
	require.NoError(t, sets.SetMembers(SetSpec{Name: "tabby-closed", Type: HashNet, Family: IPv4}, []Member{IP(netip.MustParseAddr("10.0.0.1"))}))
	calls := []struct {
		name string
		call func() error
	}{
		{"IPSets.ApplyUpdates", func() error { return sets.ApplyUpdates(ctx) }},
		{"IpsetListAll", func() error { _, err := h.IpsetListAll(); return err }},
		{"IpsetCreate", func() error { return h.IpsetCreate("tabby-closed", "hash:net", nl.IpsetCreateOptions{}) }},
		{"IpsetDestroy", func() error { return h.IpsetDestroy("tabby-closed") }},
		{"IpsetSwap", func() error { return h.IpsetSwap("tabby-a", "tabby-b") }},
		{"IpsetAdd", func() error { return h.IpsetAdd("tabby-closed", entry("10.0.0.1")) }},
		{"IpsetDel", func() error { return h.IpsetDel("tabby-closed", entry("10.0.0.1")) }},
		{"IpsetAddEntries", func() error { return h.IpsetAddEntries("tabby-closed", []*nl.IPSetEntry{entry("10.0.0.1")}) }},
		{"IpsetDelEntries", func() error { return h.IpsetDelEntries("tabby-closed", []*nl.IPSetEntry{entry("10.0.0.1")}) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			assert.ErrorIs(t, caller.Do(c.call), ErrClosed)
		})
	}
	out, err := caller.Run(ctx, "ipset", "list", "-n")
	require.NoError(t, err, out)
	assert.Empty(t, out, "no set in the caller's namespace")
}
