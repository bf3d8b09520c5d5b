package ipsets

import (
	"testing"

	"github.com/stretchr/testify/assert"
	nl "github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/dataplane/internal/zerotest"
)

// TestZeroValue: an IPSets not made by New (nil or new(IPSets)) never
// panics; its methods return ErrInvalidConfig or, for those below, do
// nothing and return zero values.
func TestZeroValue(t *testing.T) {
	zerotest.Methods[IPSets](t, ErrInvalidConfig,
		"Prefix", "DeleteSet", "Members", "QueueResync", "InSync", "TempName")
}

// TestZeroKernelHandle: a KernelHandle NewHandle did not make acts as a
// closed one: each Handle and BatchHandle method returns ErrClosed
// instead of reaching the caller's namespace through the nil
// vishvananda handle, and Close does nothing.
func TestZeroKernelHandle(t *testing.T) {
	k := &KernelHandle{}
	e := &nl.IPSetEntry{}
	for name, call := range map[string]func() error{
		"IpsetListAll":    func() error { _, err := k.IpsetListAll(); return err },
		"IpsetCreate":     func() error { return k.IpsetCreate("tabby-zero", "hash:ip", nl.IpsetCreateOptions{}) },
		"IpsetDestroy":    func() error { return k.IpsetDestroy("tabby-zero") },
		"IpsetSwap":       func() error { return k.IpsetSwap("tabby-a", "tabby-b") },
		"IpsetAdd":        func() error { return k.IpsetAdd("tabby-zero", e) },
		"IpsetDel":        func() error { return k.IpsetDel("tabby-zero", e) },
		"IpsetAddEntries": func() error { return k.IpsetAddEntries("tabby-zero", []*nl.IPSetEntry{e}) },
		"IpsetDelEntries": func() error { return k.IpsetDelEntries("tabby-zero", []*nl.IPSetEntry{e}) },
	} {
		assert.ErrorIs(t, call(), ErrClosed, name)
	}
	assert.NotPanics(t, k.Close)
}
