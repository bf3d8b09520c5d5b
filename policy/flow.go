package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// KindFlow names a Flow in its validation errors.
const KindFlow = "Flow"

// Validate reports every problem that makes the flow one no Calico rule
// could see, as a *ValidationError wrapping ErrInvalid (nil when valid):
//
//   - protocol: required (the zero Protocol); this problem also wraps
//     ErrNoProtocol;
//   - srcPort, dstPort: only on TCP, UDP and SCTP, the protocols whose ports
//     Calico matches (Protocol.SupportsPorts); dstPort is then required
//     (1-65535), srcPort may be 0 for "not known" (it then matches only
//     rules without source ports, or whose ranges include 0, never a
//     source named port);
//   - icmp: only on ICMP and ICMPv6 flows, and type 255 is refused as
//     Calico refuses it in rules (types 0-254, codes 0-255);
//   - http: only on TCP flows (Calico's HTTP match is for TCP), with a
//     method and a path that are not empty and hold no white space.
//
// That ICMP is IPv4-only and ICMPv6 IPv6-only is checked by Evaluate, once
// the peers' addresses are known.
func (f *Flow) Validate() error {
	var e errs
	switch {
	case f.Protocol == 0:
		e.addErr(root("protocol"), fmt.Errorf("required: a protocol name or 1-255: %w", ErrNoProtocol))
	case f.Protocol.SupportsPorts():
		if f.DstPort == 0 {
			e.add(root("dstPort"), fmt.Sprintf("required for %s: 1-65535", f.Protocol))
		}
	default:
		for _, p := range []struct {
			name string
			port uint16
		}{{"srcPort", f.SrcPort}, {"dstPort", f.DstPort}} {
			if p.port != 0 {
				e.add(root(p.name), fmt.Sprintf("must be 0: Calico matches ports only on TCP, UDP and SCTP, not %s", f.Protocol))
			}
		}
	}
	if f.ICMP != nil {
		switch {
		case f.Protocol != 0 && !f.Protocol.IsICMP():
			e.add(root("icmp"), fmt.Sprintf("only on ICMP and ICMPv6 flows, not %s", f.Protocol))
		case f.ICMP.Type == 255:
			e.add(root("icmp").field("type"), "must be 0-254: 255 is reserved, as in Calico's rules")
		}
	}
	if h := f.HTTP; h != nil {
		if f.Protocol != 0 && f.Protocol != ProtoTCP {
			e.add(root("http"), fmt.Sprintf("only on TCP flows, not %s", f.Protocol))
		}
		if h.Method == "" || strings.ContainsAny(h.Method, " \t\r\n") {
			e.add(root("http").field("method"), fmt.Sprintf("invalid HTTP method %q", h.Method))
		}
		if h.Path == "" || strings.ContainsAny(h.Path, " \t\r\n") {
			e.add(root("http").field("path"), fmt.Sprintf("invalid HTTP path %q", h.Path))
		}
	}
	return e.result(KindFlow, "")
}

// checkFamily refuses ICMP on IPv6 and ICMPv6 on IPv4, as Calico refuses
// rules that combine them with the other ipVersion.
func (f *Flow) checkFamily(ipVersion int) error {
	var e errs
	switch {
	case f.Protocol == ProtoICMP && ipVersion != 4:
		e.add(root("protocol"), "ICMP needs IPv4 addresses; use ICMPv6 for IPv6")
	case f.Protocol == ProtoICMPv6 && ipVersion != 6:
		e.add(root("protocol"), "ICMPv6 needs IPv6 addresses; use ICMP for IPv4")
	}
	return e.result(KindFlow, "")
}

// checkPeerAddresses refuses a peer that names an endpoint and an IP that is
// not one of the endpoint's addresses: a workload sends and receives on its
// own addresses only.
func (ps *PolicySet) checkPeerAddresses(f *Flow) error {
	var e errs
	for _, p := range []struct {
		name string
		peer Peer
	}{{"src", f.Src}, {"dst", f.Dst}} {
		if p.peer.Endpoint == "" || !p.peer.IP.IsValid() {
			continue
		}
		ep, err := ps.Endpoint(p.peer.Endpoint)
		if err != nil {
			continue // reported as ErrUnknownEndpoint
		}
		ip := p.peer.IP.Unmap()
		if !slices.ContainsFunc(ep.Addresses, func(a netip.Addr) bool { return a.Unmap() == ip }) {
			e.add(root(p.name).field("ip"), fmt.Sprintf("%s is not an address of endpoint %s", ip, p.peer.Endpoint))
		}
	}
	return e.result(KindFlow, "")
}
