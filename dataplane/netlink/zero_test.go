package netlink

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	nl "github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/dataplane/internal/zerotest"
)

// TestZeroValue: a RouteOwner, VXLAN or Workloads not made by its
// constructor (nil or a zero value) never panics and never acts on the
// caller's namespace; its methods return ErrInvalidSpec or, for those
// listed, do nothing and return zero values.
func TestZeroValue(t *testing.T) {
	t.Run("RouteOwner", func(t *testing.T) {
		zerotest.Methods[RouteOwner](t, ErrInvalidSpec, "Protocol", "Remove", "Desired")
	})
	t.Run("VXLAN", func(t *testing.T) {
		zerotest.Methods[VXLAN](t, ErrInvalidSpec, "Config", "Peers")
	})
	t.Run("Workloads", func(t *testing.T) {
		zerotest.Methods[Workloads](t, ErrInvalidSpec, "Close", "HostNetns", "HostIfaceName")
	})
}

// TestZeroKernelHandle: a KernelHandle NewKernelHandle did not make acts
// as a closed one: each method it guards returns ErrClosed instead of
// reaching the caller's namespace through the nil vishvananda handle, and
// Close does nothing. (The embedded handle's other methods are not
// called: on a nil handle they do act on the caller's namespace, as the
// type's doc says.)
func TestZeroKernelHandle(t *testing.T) {
	k := &KernelHandle{}
	var link nl.Link = &nl.Dummy{LinkAttrs: nl.LinkAttrs{Name: "tabby-zero"}}
	for name, call := range map[string]func() error{
		"LinkList":            func() error { _, err := k.LinkList(); return err },
		"LinkByName":          func() error { _, err := k.LinkByName("lo"); return err },
		"RouteListFiltered":   func() error { _, err := k.RouteListFiltered(0, &nl.Route{}, 0); return err },
		"RouteAdd":            func() error { return k.RouteAdd(&nl.Route{}) },
		"RouteReplace":        func() error { return k.RouteReplace(&nl.Route{}) },
		"RouteDel":            func() error { return k.RouteDel(&nl.Route{}) },
		"LinkAdd":             func() error { return k.LinkAdd(link) },
		"LinkDel":             func() error { return k.LinkDel(link) },
		"LinkSetUp":           func() error { return k.LinkSetUp(link) },
		"LinkSetMTU":          func() error { return k.LinkSetMTU(link, 1400) },
		"LinkSetHardwareAddr": func() error { return k.LinkSetHardwareAddr(link, nil) },
		"AddrList":            func() error { _, err := k.AddrList(link, 0); return err },
		"AddrReplace":         func() error { return k.AddrReplace(link, &nl.Addr{}) },
		"NeighList":           func() error { _, err := k.NeighList(0, 0); return err },
		"NeighSet":            func() error { return k.NeighSet(&nl.Neigh{}) },
		"NeighDel":            func() error { return k.NeighDel(&nl.Neigh{}) },
		"RouteBatch":          func() error { return errors.Join(k.RouteBatch(make([]RouteOp, 2))...) },
	} {
		assert.ErrorIs(t, call(), ErrClosed, name)
	}
	assert.NotPanics(t, k.Close)
	assert.NotPanics(t, k.Close, "twice")
}
