package conntrack_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/services"
	"github.com/tabbynet/tabby/services/conntrack"
	sipt "github.com/tabbynet/tabby/services/iptables"
	snft "github.com/tabbynet/tabby/services/nftables"
)

// fakeTable holds flows and deletes those a filter matches, as the
// kernel's dump-and-delete does.
type fakeTable struct {
	flows []*netlink.ConntrackFlow
	err   error
}

func (f *fakeTable) ConntrackDeleteFilters(_ netlink.ConntrackTableType, fam netlink.InetFamily, filters ...netlink.CustomConntrackFilter) (uint, error) {
	if f.err != nil {
		return 0, f.err
	}
	var keep []*netlink.ConntrackFlow
	var n uint
	for _, fl := range f.flows {
		hit := false
		for _, flt := range filters {
			hit = hit || (uint8(fam) == fl.FamilyType && flt.MatchConntrackFlow(fl))
		}
		if hit {
			n++
		} else {
			keep = append(keep, fl)
		}
	}
	f.flows = keep
	return n, nil
}

func flow(proto uint8, src, dst, replySrc string) *netlink.ConntrackFlow {
	ap := netip.MustParseAddrPort
	s, d, r := ap(src), ap(dst), ap(replySrc)
	return &netlink.ConntrackFlow{
		FamilyType: unix.AF_INET,
		Forward:    netlink.IPTuple{Protocol: proto, SrcIP: net.IP(s.Addr().AsSlice()), SrcPort: s.Port(), DstIP: net.IP(d.Addr().AsSlice()), DstPort: d.Port()},
		Reverse:    netlink.IPTuple{Protocol: proto, SrcIP: net.IP(r.Addr().AsSlice()), SrcPort: r.Port(), DstIP: net.IP(s.Addr().AsSlice()), DstPort: s.Port()},
	}
}

func TestClean(t *testing.T) {
	ap := netip.MustParseAddrPort
	ft := &fakeTable{flows: []*netlink.ConntrackFlow{
		flow(unix.IPPROTO_UDP, "10.244.3.3:4000", "10.96.0.10:53", "10.244.0.1:5353"),       // stale endpoint
		flow(unix.IPPROTO_UDP, "10.244.3.3:4001", "10.96.0.10:53", "10.244.0.2:5353"),       // other endpoint: kept
		flow(unix.IPPROTO_TCP, "10.244.3.3:4002", "10.96.0.10:53", "10.244.0.1:5353"),       // TCP: kept
		flow(unix.IPPROTO_UDP, "192.168.0.9:4003", "192.168.0.10:30053", "10.244.0.1:5353"), // node port to stale endpoint
		flow(unix.IPPROTO_UDP, "10.244.3.3:4004", "10.96.0.11:53", "10.96.0.11:53"),         // not DNATed
	}}
	c := conntrack.New(ft, nil)
	n, err := c.Clean(context.Background(), []services.StaleFlow{
		{Protocol: "UDP", Service: ap("10.96.0.10:53"), Endpoint: ap("10.244.0.1:5353")},
		{Protocol: "UDP", Service: netip.AddrPortFrom(netip.Addr{}, 30053), Endpoint: ap("10.244.0.1:5353")},
		{Protocol: "UDP", Service: ap("10.96.0.11:53")},
	})
	require.NoError(t, err)
	assert.Equal(t, uint(3), n)
	require.Len(t, ft.flows, 2)
	assert.Equal(t, uint16(4001), ft.flows[0].Forward.SrcPort)
	assert.Equal(t, uint16(4002), ft.flows[1].Forward.SrcPort)

	ft.err = errors.New("boom")
	_, err = c.Clean(context.Background(), []services.StaleFlow{{Protocol: "UDP", Service: ap("10.96.0.10:53")}})
	require.ErrorIs(t, err, conntrack.ErrClean)
}

// Func's value is what both backends' WithStaleFlows take.
func TestFuncFitsBothBackends(t *testing.T) {
	f := conntrack.New(&fakeTable{}, nil).Func()
	assert.NotNil(t, sipt.WithStaleFlows(f))
	assert.NotNil(t, snft.WithStaleFlows(f))
}
