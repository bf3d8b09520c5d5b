// Package conntrack deletes the conntrack entries that services'
// backends make stale (services.StaleFlow), over netlink
// (vishvananda/netlink, the equivalent of `conntrack -D -p udp
// --orig-dst SVC --reply-src EP`), never by running the conntrack binary.
//
// kube-proxy has to clear these because a UDP flow's conntrack entry
// keeps its DNAT decision for as long as packets keep coming: when the
// endpoint it was sent to goes away, the client's packets keep going to
// the dead address until the entry times out, and packets sent to a
// service while it had no endpoint keep bypassing the DNAT it has later.
// Deleting exactly those entries (matched on protocol, original
// destination and reply source) makes the next packet take the new
// rules, without touching any other flow.
//
// # Design
//
//  1. One netlink dump-and-delete per Clean call for all stale flows
//     (ConntrackDeleteFilters with one filter per flow), per family.
//  2. The seam is the one method used, Handle, satisfied by a
//     *netlink.Handle from netlink.NewHandleAt(ns); tests use a
//     namespace's handle.
//  3. Errors are logged and returned wrapped with ErrClean; a backend
//     does not fail its sync for them (the entries then age out as in
//     kube-proxy before its cleanup).
//
// Thread safety: a Cleaner is safe for concurrent use if its Handle is.
package conntrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/services"
)

// ErrClean is wrapped by Clean's errors.
var ErrClean = errors.New("conntrack cleanup failed")

// ErrInvalidConfig is returned by Clean on a Cleaner without a Handle: one
// that New did not make (nil or a zero value), or that New was given a nil
// Handle.
var ErrInvalidConfig = errors.New("invalid conntrack cleaner config")

// Handle is the part of *netlink.Handle a Cleaner uses.
type Handle interface {
	ConntrackDeleteFilters(table netlink.ConntrackTableType, family netlink.InetFamily, filters ...netlink.CustomConntrackFilter) (uint, error)
}

var _ Handle = (*netlink.Handle)(nil)

// Cleaner deletes stale service flows. The zero value is not usable; make
// one with New (Clean returns ErrInvalidConfig).
type Cleaner struct {
	h   Handle
	log *slog.Logger
}

// New returns a Cleaner on h; log may be nil (slog.Default()).
func New(h Handle, log *slog.Logger) *Cleaner {
	if log == nil {
		log = slog.Default()
	}
	return &Cleaner{h: h, log: log}
}

// filter matches the conntrack entries of one StaleFlow.
type filter struct {
	proto            uint8
	svc              netip.AddrPort
	endpoint         netip.AddrPort
	serviceReplySelf bool
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f filter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	if fl.Forward.Protocol != f.proto || fl.Forward.DstPort != f.svc.Port() {
		return false
	}
	if f.svc.Addr().IsValid() && addrOf(fl.Forward.DstIP) != f.svc.Addr() {
		return false
	}
	replySrc := netip.AddrPortFrom(addrOf(fl.Reverse.SrcIP), fl.Reverse.SrcPort)
	if f.serviceReplySelf {
		// Not DNATed: the reply comes from the address asked.
		return replySrc == netip.AddrPortFrom(addrOf(fl.Forward.DstIP), fl.Forward.DstPort)
	}
	return replySrc == f.endpoint
}

func protoNum(p services.Protocol) (uint8, bool) {
	switch p {
	case "UDP":
		return unix.IPPROTO_UDP, true
	case "SCTP":
		return unix.IPPROTO_SCTP, true
	case "TCP":
		return unix.IPPROTO_TCP, true
	}
	return 0, false
}

// Clean deletes the conntrack entries of every flow in stale and returns
// how many entries went. Unknown protocols are ignored. A Cleaner without
// a Handle (see ErrInvalidConfig) deletes nothing and returns 0 and an
// error wrapping ErrInvalidConfig.
func (c *Cleaner) Clean(_ context.Context, stale []services.StaleFlow) (uint, error) {
	if c == nil || c.h == nil {
		return 0, fmt.Errorf("conntrack cleanup: conntrack.Cleaner has no Handle (make it with New and a non-nil Handle): %w", ErrInvalidConfig)
	}
	byFamily := map[netlink.InetFamily][]netlink.CustomConntrackFilter{}
	for _, s := range stale {
		p, ok := protoNum(s.Protocol)
		if !ok {
			continue
		}
		fam := netlink.InetFamily(unix.AF_INET)
		a := s.Service.Addr()
		if !a.IsValid() {
			a = s.Endpoint.Addr()
		}
		if a.Is6() {
			fam = unix.AF_INET6
		}
		byFamily[fam] = append(byFamily[fam], filter{proto: p, svc: s.Service, endpoint: s.Endpoint, serviceReplySelf: !s.Endpoint.IsValid()})
	}
	var total uint
	var errs []error
	for fam, fs := range byFamily {
		n, err := c.h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, fs...)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: family %d: %w", ErrClean, fam, err))
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		c.log.Warn("conntrack cleanup", "err", err)
	} else if total > 0 {
		c.log.Debug("conntrack cleanup", "deleted", total, "flows", len(stale))
	}
	return total, err
}

// Func adapts Clean to the WithStaleFlows option of both backends,
// services/nftables and services/iptables (errors are logged, see Clean).
func (c *Cleaner) Func() func(context.Context, []services.StaleFlow) {
	return func(ctx context.Context, s []services.StaleFlow) { _, _ = c.Clean(ctx, s) }
}

// NewInNetns returns a Cleaner working in the network namespace at
// nsPath (for example /var/run/netns/node1), on its own netlink handle
// for NETLINK_NETFILTER, and the function that closes that handle. (A
// Handle opened for other netlink families only, such as NETLINK_ROUTE,
// lists and deletes no conntrack entries.)
func NewInNetns(nsPath string, log *slog.Logger) (*Cleaner, func(), error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("conntrack: netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, nil, fmt.Errorf("conntrack: netlink handle in %s: %w", nsPath, err)
	}
	return New(h, log), h.Close, nil
}
