package services

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// StaleFlow names conntrack entries that must be deleted after a sync
// because they would keep sending UDP or SCTP packets where they no
// longer belong (TCP is left alone: a reset tells the client).
//
//   - Endpoint valid: flows to Service that were DNATed to Endpoint, where
//     Endpoint no longer serves (gone, or neither ready nor serving:
//     kube-proxy's stale endpoint cleanup; an endpoint that serves but
//     is no longer balanced over, being terminating or left out by
//     topology hints, keeps its flows, as in kube-proxy) or
//     Service is no longer a destination of the port (its cluster IP
//     changed, an external or load-balancer IP or the node port went):
//     kube-proxy's cleanup of deleted UDP cluster IPs, and of flows to a
//     service address not replied by its endpoints.
//   - Endpoint zero: flows to Service that were not DNATed (their reply
//     comes from Service itself): created while the service had no
//     endpoint, or before Service was a destination of the port (an
//     external IP, load-balancer IP or node port added, a new cluster
//     IP), they would bypass the DNAT the service has now.
//
// Service.Addr() is the zero Addr for a node port: any local address
// with that destination port.
type StaleFlow struct {
	Protocol Protocol
	Service  netip.AddrPort
	Endpoint netip.AddrPort
}

// String is "UDP 10.96.0.10:53 -> 10.244.0.1:5353", with "*:PORT" for a
// node port and "(not DNATed)" for a zero Endpoint.
func (s StaleFlow) String() string {
	svc, ep := s.Service.String(), s.Endpoint.String()
	if !s.Service.Addr().IsValid() {
		svc = fmt.Sprintf("*:%d", s.Service.Port())
	}
	if !s.Endpoint.IsValid() {
		ep = "(not DNATed)"
	}
	return fmt.Sprintf("%s %s -> %s", s.Protocol, svc, ep)
}

// StaleFlows compares a service port's previous and new resolved state
// (either may be nil) and lists the flows to delete, for the addresses
// of family is6. The list is sorted.
func StaleFlows(old, cur *Resolved, is6 bool) []StaleFlow {
	ref := cur
	if ref == nil {
		ref = old
	}
	if ref == nil || ref.Port.Name.Protocol == v1.ProtocolTCP {
		return nil
	}
	fam := func(a netip.Addr) bool { return a.Is6() == is6 }
	endpoints := func(r *Resolved) map[netip.AddrPort]bool {
		m := map[netip.AddrPort]bool{}
		if r != nil {
			for _, e := range slices.Concat(r.Endpoints.Cluster, r.Endpoints.Local, r.Endpoints.Serving) {
				if fam(e.Addr) {
					m[e.AddrPort()] = true
				}
			}
		}
		return m
	}
	dests := func(sp *ServicePort) []netip.AddrPort {
		var out []netip.AddrPort
		for _, a := range slices.Concat(sp.ClusterIPs, sp.ExternalIPs, sp.LoadBalancerIPs) {
			if fam(a) {
				out = append(out, netip.AddrPortFrom(a, sp.Port))
			}
		}
		if sp.NodePort != 0 {
			out = append(out, netip.AddrPortFrom(netip.Addr{}, sp.NodePort))
		}
		return out
	}
	was, now := endpoints(old), endpoints(cur)
	var out []StaleFlow
	if old != nil {
		kept := map[netip.AddrPort]bool{}
		if cur != nil {
			for _, d := range dests(cur.Port) {
				kept[d] = true
			}
		}
		for e := range was {
			for _, d := range dests(old.Port) {
				// An endpoint that no longer serves, or a destination
				// the port no longer has (a new cluster IP, an external
				// IP, load-balancer IP or node port removed): flows
				// to it would keep reaching e, and once the address
				// serves another Service, take that one's clients.
				if !now[e] || !kept[d] {
					out = append(out, StaleFlow{Protocol: ref.Port.Name.Protocol, Service: d, Endpoint: e})
				}
			}
		}
	}
	if cur != nil && len(now) > 0 {
		had := map[netip.AddrPort]bool{}
		if old != nil && len(was) > 0 {
			for _, d := range dests(old.Port) {
				had[d] = true
			}
		}
		// The port's destinations when it had no endpoint, or a
		// destination it gained (a new cluster IP, an external or
		// load-balancer IP or node port added): flows to it that were
		// not DNATed would bypass the DNAT it has now.
		for _, d := range dests(cur.Port) {
			if !had[d] {
				out = append(out, StaleFlow{Protocol: ref.Port.Name.Protocol, Service: d})
			}
		}
	}
	slices.SortFunc(out, func(a, b StaleFlow) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out)
}
