package services

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// Default node-port range of the API server (--service-node-port-range).
const (
	DefaultNodePortMin = 30000
	DefaultNodePortMax = 32767
)

// DefaultAffinityTimeout is the ClientIP affinity timeout when the Service
// does not set one (core/v1 DefaultClientIPServiceAffinitySeconds).
const DefaultAffinityTimeout = 10800 * time.Second

var (
	// ErrInvalidService is wrapped by errors about a Service the tracker
	// skips (bad addresses, ports, protocols, clashing node ports).
	ErrInvalidService = errors.New("invalid service")
	// ErrInvalidEndpointSlice is wrapped by errors about an EndpointSlice
	// or one of its endpoints the tracker skips.
	ErrInvalidEndpointSlice = errors.New("invalid endpointslice")
	// ErrNodePortClash is wrapped by the err attribute of the Warn log
	// line of a Tracker skipping a Service because another Service owns
	// one of its node ports (see the package doc). No function returns
	// it, and it does not wrap ErrInvalidService: the Service is valid,
	// it lost a claim.
	ErrNodePortClash = errors.New("node port already allocated")
	// ErrDestinationClash is wrapped by the err attribute of the Warn
	// log line of a Tracker dropping one cluster, load-balancer or
	// external IP from a service port because another service port owns
	// that address, protocol and port (see the package doc). No function
	// returns it.
	ErrDestinationClash = errors.New("service destination already claimed")
	// ErrInvalidConfig is wrapped by the Validate methods of
	// NodePortRange, TrackerConfig and AnnounceConfig, and by
	// ServicePorts for a bad NodePortRange, and by HealthServer.Run on a
	// HealthServer that NewHealthServer did not make (nil or a zero value).
	ErrInvalidConfig = errors.New("invalid services config")
)

// NodePortRange is the inclusive range node ports must fall in. The zero
// value means the default, DefaultNodePortMin–DefaultNodePortMax
// (30000–32767, the API server's default --service-node-port-range).
type NodePortRange struct{ Min, Max uint16 }

// Validate returns an error wrapping ErrInvalidConfig unless the range
// is the zero value (the default) or 1 <= Min <= Max.
func (r NodePortRange) Validate() error {
	if r != (NodePortRange{}) && (r.Min == 0 || r.Min > r.Max) {
		return fmt.Errorf("%w: node port range %d-%d: want 1 <= min <= max", ErrInvalidConfig, r.Min, r.Max)
	}
	return nil
}

// LabelServiceProxyName is the Service label naming the proxy that
// serves it instead of kube-proxy (kube-proxy's
// apis.LabelServiceProxyName). kube-proxy watches only Services without
// it, whatever its value; ServicePorts gives no port for them.
const LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"

// proxied reports whether kube-proxy programs the Service at all:
// headless (clusterIP None), ExternalName, not-yet-allocated Services
// and those another proxy serves (LabelServiceProxyName) are not
// proxied.
func proxied(svc *v1.Service) bool {
	if _, other := svc.Labels[LabelServiceProxyName]; other || svc.Spec.Type == v1.ServiceTypeExternalName {
		return false
	}
	return svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != v1.ClusterIPNone
}

// ServicePorts converts a Service into its proxied ports. A headless or
// ExternalName Service, or one labelled LabelServiceProxyName, gives
// none and no error. Any invalid field makes
// the whole Service invalid (error wrapping ErrInvalidService), so a bad
// object never yields half its rules. A nil svc is an error wrapping
// ErrInvalidService; an invalid npr (NodePortRange.Validate) one
// wrapping ErrInvalidConfig.
func ServicePorts(svc *v1.Service, npr NodePortRange) ([]*ServicePort, error) {
	if svc == nil {
		return nil, fmt.Errorf("nil service: %w", ErrInvalidService)
	}
	if err := npr.Validate(); err != nil {
		return nil, err
	}
	if npr == (NodePortRange{}) {
		npr = NodePortRange{DefaultNodePortMin, DefaultNodePortMax}
	}
	if !proxied(svc) {
		return nil, nil
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("service %s/%s: %w: %s", svc.Namespace, svc.Name, ErrInvalidService, fmt.Sprintf(format, a...))
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	var clusterIPs []netip.Addr
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, bad("clusterIP %q", s)
		}
		clusterIPs = append(clusterIPs, a.Unmap())
	}
	var extIPs []netip.Addr
	for _, s := range svc.Spec.ExternalIPs {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, bad("externalIP %q", s)
		}
		extIPs = append(extIPs, a.Unmap())
	}
	var lbIPs []netip.Addr
	var sourceRanges []netip.Prefix
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer {
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP == "" {
				continue // hostname-only ingress: nothing to proxy
			}
			if ing.IPMode != nil && *ing.IPMode != v1.LoadBalancerIPModeVIP {
				// ipMode Proxy: the load balancer delivers to the node
				// or pod address, not to this IP; kube-proxy programs
				// only VIP (or unset) ingress IPs.
				continue
			}
			a, err := netip.ParseAddr(ing.IP)
			if err != nil || a.Zone() != "" {
				return nil, bad("loadBalancer ingress IP %q", ing.IP)
			}
			lbIPs = append(lbIPs, a.Unmap())
		}
		var err error
		if sourceRanges, err = parseSourceRanges(svc.Spec.LoadBalancerSourceRanges); err != nil {
			return nil, bad("%v", err)
		}
	}
	var affinity time.Duration
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		affinity = DefaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			ts := *c.ClientIP.TimeoutSeconds
			if ts <= 0 || ts > 86400 {
				return nil, bad("sessionAffinity timeoutSeconds %d not in 1..86400", ts)
			}
			affinity = time.Duration(ts) * time.Second
		}
	}
	external := svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer || len(extIPs) > 0
	etpLocal := external && svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal
	itpLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == v1.ServiceInternalTrafficPolicyLocal
	var hc uint16
	if etpLocal && svc.Spec.Type == v1.ServiceTypeLoadBalancer {
		if svc.Spec.HealthCheckNodePort < 0 || svc.Spec.HealthCheckNodePort > 65535 {
			return nil, bad("healthCheckNodePort %d", svc.Spec.HealthCheckNodePort)
		}
		hc = uint16(svc.Spec.HealthCheckNodePort)
	}
	// The API server refuses a Service listing one port name, one
	// port and protocol, or one nodePort and protocol twice; so does the
	// model (two rules for one destination would clash in the backends).
	seen := map[ServicePortName]bool{}
	type portProto struct {
		port  int32
		proto Protocol
	}
	seenPort, seenNodePort := map[portProto]bool{}, map[portProto]bool{}
	var out []*ServicePort
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		if proto != v1.ProtocolTCP && proto != v1.ProtocolUDP && proto != v1.ProtocolSCTP {
			return nil, bad("port %q: protocol %q", p.Name, proto)
		}
		if p.Port <= 0 || p.Port > 65535 {
			return nil, bad("port %q: port %d", p.Name, p.Port)
		}
		name := ServicePortName{Namespace: svc.Namespace, Name: svc.Name, Port: p.Name, Protocol: proto}
		if seen[name] {
			return nil, bad("port %q/%s listed twice", p.Name, proto)
		}
		seen[name] = true
		if seenPort[portProto{p.Port, proto}] {
			return nil, bad("port %d/%s listed twice", p.Port, proto)
		}
		seenPort[portProto{p.Port, proto}] = true
		sp := &ServicePort{
			Name: name, ClusterIPs: clusterIPs, Port: uint16(p.Port),
			ExternalIPs: extIPs, LoadBalancerIPs: lbIPs, LoadBalancerSourceRanges: sourceRanges, AffinityTimeout: affinity,
			ExternalPolicyLocal: etpLocal, InternalPolicyLocal: itpLocal, HealthCheckNodePort: hc,
		}
		if p.NodePort != 0 && (svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer) {
			if p.NodePort < int32(npr.Min) || p.NodePort > int32(npr.Max) {
				return nil, bad("port %q: nodePort %d outside %d-%d", p.Name, p.NodePort, npr.Min, npr.Max)
			}
			if seenNodePort[portProto{p.NodePort, proto}] {
				return nil, bad("nodePort %d/%s listed twice", p.NodePort, proto)
			}
			seenNodePort[portProto{p.NodePort, proto}] = true
			sp.NodePort = uint16(p.NodePort)
		}
		out = append(out, sp)
	}
	return out, nil
}

// parseSourceRanges parses spec.loadBalancerSourceRanges. Like
// kube-proxy (MapCIDRsByIPFamily) and the API server's validation, it
// trims surrounding whitespace (the field inherited space-padded values
// from the service.beta.kubernetes.io/load-balancer-source-ranges
// annotation) and keeps the masked network of each range. Unlike
// kube-proxy, which logs and skips an entry it cannot parse (empty
// ones silently), any such entry is an error here, so the whole
// Service is skipped: dropping one entry can only widen who gets in
// (an empty list after skipping means no filtering at all). IPv4
// ranges with leading zeros, which kube-proxy's sloppy parser reads
// as decimal, are refused like the model's other addresses. Zones and
// IPv4-mapped IPv6 ranges are refused too.
func parseSourceRanges(in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return nil, fmt.Errorf("loadBalancerSourceRanges entry %q is not a CIDR", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// sliceKey is a port of an EndpointSlice: its name and protocol, matched
// against the service port with the same name and protocol.
type sliceKey struct {
	port  string
	proto Protocol
}

// sliceEndpoints parses an EndpointSlice into endpoints per port.
// FQDN slices give nothing. Invalid endpoints are skipped and reported
// in the returned errors (each wrapping ErrInvalidEndpointSlice); the
// valid ones are still used.
func sliceEndpoints(s *discovery.EndpointSlice, nodeName, zone string) (map[sliceKey][]Endpoint, []error) {
	if s.AddressType != discovery.AddressTypeIPv4 && s.AddressType != discovery.AddressTypeIPv6 {
		return nil, nil
	}
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("endpointslice %s/%s: %w: %s", s.Namespace, s.Name, ErrInvalidEndpointSlice, fmt.Sprintf(format, a...)))
	}
	var addrs []Endpoint
	for _, ep := range s.Endpoints {
		if len(ep.Addresses) == 0 {
			bad("endpoint without addresses")
			continue
		}
		// Only the first address is used (the API documents the rest as
		// ignored by consumers, kube-proxy included).
		a, err := netip.ParseAddr(ep.Addresses[0])
		if err != nil || a.Zone() != "" || a.Is4() != (s.AddressType == discovery.AddressTypeIPv4) || a.Is4In6() {
			bad("address %q for addressType %s", ep.Addresses[0], s.AddressType)
			continue
		}
		e := Endpoint{Addr: a, Ready: true, Serving: true}
		if c := ep.Conditions.Ready; c != nil {
			e.Ready = *c
		}
		if c := ep.Conditions.Serving; c != nil {
			e.Serving = *c
		} else {
			e.Serving = e.Ready
		}
		if c := ep.Conditions.Terminating; c != nil {
			e.Terminating = *c
		}
		if ep.NodeName != nil {
			e.NodeName = *ep.NodeName
			e.Local = nodeName != "" && e.NodeName == nodeName
		}
		if h := ep.Hints; h != nil {
			e.Hints.HasZoneHints = len(h.ForZones) > 0
			e.Hints.ForZone = zone != "" && slices.ContainsFunc(h.ForZones, func(z discovery.ForZone) bool { return z.Name == zone })
			e.Hints.HasNodeHints = len(h.ForNodes) > 0
			e.Hints.ForNode = nodeName != "" && slices.ContainsFunc(h.ForNodes, func(n discovery.ForNode) bool { return n.Name == nodeName })
		}
		addrs = append(addrs, e)
	}
	out := map[sliceKey][]Endpoint{}
	for _, p := range s.Ports {
		if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			bad("port without a valid number")
			continue
		}
		k := sliceKey{proto: v1.ProtocolTCP}
		if p.Name != nil {
			k.port = *p.Name
		}
		if p.Protocol != nil {
			k.proto = *p.Protocol
		}
		for _, e := range addrs {
			e.Port = uint16(*p.Port)
			out[k] = append(out[k], e)
		}
	}
	return out, errs
}
