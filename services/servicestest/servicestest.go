// Package servicestest builds core/v1 Services and discovery/v1
// EndpointSlices for tests of the services package and its backends.
package servicestest

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tabbynet/tabby/services"
)

// Service returns a ClusterIP Service ns/name with clusterIP ip; mods
// adjust it.
func Service(ns, name, ip string, mods ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
		},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

// Port adds a port (name, protocol, port, nodePort; nodePort 0 for none).
func Port(name string, proto v1.Protocol, port, nodePort int32) func(*v1.Service) {
	return func(s *v1.Service) {
		s.Spec.Ports = append(s.Spec.Ports, v1.ServicePort{Name: name, Protocol: proto, Port: port, NodePort: nodePort})
		if nodePort != 0 && s.Spec.Type == v1.ServiceTypeClusterIP {
			s.Spec.Type = v1.ServiceTypeNodePort
		}
	}
}

// LoadBalancer makes a Service type LoadBalancer with the ingress IPs
// ips (status.loadBalancer.ingress[].ip).
func LoadBalancer(ips ...string) func(*v1.Service) {
	return func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
		}
	}
}

// ExternalIPs sets spec.externalIPs.
func ExternalIPs(ips ...string) func(*v1.Service) {
	return func(s *v1.Service) { s.Spec.ExternalIPs = ips }
}

// Created sets metadata.creationTimestamp to sec seconds after the Unix
// epoch (the Tracker orders claims on a shared destination by age).
func Created(sec int64) func(*v1.Service) {
	return func(s *v1.Service) { s.CreationTimestamp = metav1.Unix(sec, 0) }
}

// SourceRanges sets spec.loadBalancerSourceRanges.
func SourceRanges(ranges ...string) func(*v1.Service) {
	return func(s *v1.Service) { s.Spec.LoadBalancerSourceRanges = ranges }
}

// Endpoint is one endpoint of Slice.
type Endpoint struct {
	IP   string
	Node string
	// NotReady, Terminating and NotServing set the conditions (default
	// ready, serving, not terminating).
	NotReady, Terminating, NotServing bool
	// Zones and Nodes are hints.forZones and hints.forNodes (topology-aware
	// routing); none: no hints.
	Zones, Nodes []string
}

// SlicePort is one port of Slice.
type SlicePort struct {
	Name  string
	Proto v1.Protocol
	Port  int32
}

// Slice returns an IPv4 EndpointSlice named name for Service ns/svc.
func Slice(ns, svc, name string, ports []SlicePort, eps ...Endpoint) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discovery.LabelServiceName: svc}},
		AddressType: discovery.AddressTypeIPv4,
	}
	for _, p := range ports {
		s.Ports = append(s.Ports, discovery.EndpointPort{Name: &p.Name, Protocol: &p.Proto, Port: &p.Port})
	}
	for _, e := range eps {
		ready, serving, term := !e.NotReady && !e.Terminating, !e.NotServing, e.Terminating
		ep := discovery.Endpoint{Addresses: []string{e.IP}, Conditions: discovery.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &term}}
		if e.Node != "" {
			ep.NodeName = &e.Node
		}
		if len(e.Zones)+len(e.Nodes) > 0 {
			ep.Hints = &discovery.EndpointHints{}
			for _, z := range e.Zones {
				ep.Hints.ForZones = append(ep.Hints.ForZones, discovery.ForZone{Name: z})
			}
			for _, n := range e.Nodes {
				ep.Hints.ForNodes = append(ep.Hints.ForNodes, discovery.ForNode{Name: n})
			}
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

// Many returns n Services "svc-i" in ns with cluster IPs from 10.96.0.0/12
// (10.96.x.y + i), one TCP port 80 and a NodePort when nodePorts, and
// their slices with k endpoints each from 10.244.0.0/16.
func Many(ns string, n, k int, nodePorts bool) ([]*v1.Service, []*discovery.EndpointSlice) {
	var svcs []*v1.Service
	var sls []*discovery.EndpointSlice
	for i := range n {
		ip := fmt.Sprintf("10.%d.%d.%d", 96+(i>>16)&0xf, (i>>8)&0xff, i&0xff)
		np := int32(0)
		if nodePorts && i < 2768 {
			np = int32(30000 + i)
		}
		name := fmt.Sprintf("svc-%d", i)
		svcs = append(svcs, Service(ns, name, ip, Port("http", v1.ProtocolTCP, 80, np)))
		var eps []Endpoint
		for j := range k {
			x := i*k + j
			eps = append(eps, Endpoint{IP: fmt.Sprintf("10.244.%d.%d", (x>>8)&0xff, x&0xff), Node: "node-a"})
		}
		sls = append(sls, Slice(ns, name, name+"-1", []SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}}, eps...))
	}
	return svcs, sls
}

// Slice ports of Scenario.
var (
	DNSPorts = []SlicePort{{Name: "dns", Proto: v1.ProtocolUDP, Port: 53}}
	WebPorts = []SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}}
	// SCTPPorts is the slice port of Scenario's SCTP Service.
	SCTPPorts = []SlicePort{{Name: "sctp", Proto: v1.ProtocolSCTP, Port: 9900}}
)

// Scenario loads into tr a set of Services covering every feature the
// backends render (the fake and conformance tests of services/nftables
// and services/iptables use it); node "node-a" is local.
func Scenario(tr *services.Tracker) {
	tr.OnServiceUpdate(Service("kube-system", "dns", "10.96.0.10", Port("dns", v1.ProtocolUDP, 53, 0)))
	tr.OnEndpointSliceUpdate(Slice("kube-system", "dns", "dns-1", DNSPorts,
		Endpoint{IP: "10.244.1.5", Node: "node-a"}, Endpoint{IP: "10.244.2.7", Node: "node-b"}))
	// NodePort, cluster policy.
	tr.OnServiceUpdate(Service("default", "web", "10.96.0.20", Port("http", v1.ProtocolTCP, 80, 30080)))
	tr.OnEndpointSliceUpdate(Slice("default", "web", "web-1", WebPorts, Endpoint{IP: "10.244.2.8", Node: "node-b"}))
	// LoadBalancer with externalTrafficPolicy Local and an external IP.
	tr.OnServiceUpdate(Service("default", "lb", "10.96.0.30", Port("http", v1.ProtocolTCP, 80, 30090), func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		s.Spec.ExternalIPs = []string{"192.0.2.1"}
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.7"}}
	}))
	tr.OnEndpointSliceUpdate(Slice("default", "lb", "lb-1", WebPorts,
		Endpoint{IP: "10.244.1.9", Node: "node-a"}, Endpoint{IP: "10.244.2.9", Node: "node-b"}))
	// Local policy with no local endpoint.
	tr.OnServiceUpdate(Service("default", "far", "10.96.0.40", Port("http", v1.ProtocolTCP, 80, 30100), func(s *v1.Service) {
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	}))
	tr.OnEndpointSliceUpdate(Slice("default", "far", "far-1", WebPorts, Endpoint{IP: "10.244.2.10", Node: "node-b"}))
	// No endpoints at all.
	tr.OnServiceUpdate(Service("default", "empty", "10.96.0.50", Port("http", v1.ProtocolTCP, 80, 30110)))
	// internalTrafficPolicy Local, one local endpoint.
	tr.OnServiceUpdate(Service("default", "itp", "10.96.0.60", Port("http", v1.ProtocolTCP, 80, 0), func(s *v1.Service) {
		s.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
	}))
	tr.OnEndpointSliceUpdate(Slice("default", "itp", "itp-1", WebPorts,
		Endpoint{IP: "10.244.1.11", Node: "node-a"}, Endpoint{IP: "10.244.2.11", Node: "node-b"}))
	// Affinity.
	tr.OnServiceUpdate(Service("default", "sticky", "10.96.0.70", Port("http", v1.ProtocolTCP, 80, 0), func(s *v1.Service) {
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	}))
	tr.OnEndpointSliceUpdate(Slice("default", "sticky", "sticky-1", WebPorts, Endpoint{IP: "10.244.1.12", Node: "node-a"}))
	// LoadBalancer with loadBalancerSourceRanges, one of which holds the
	// node's address (NodeIP), so the LB IP as a source is let in too.
	tr.OnServiceUpdate(Service("default", "fw", "10.96.0.90", Port("http", v1.ProtocolTCP, 80, 30130),
		LoadBalancer("203.0.113.8"), SourceRanges("198.51.100.0/24", "192.168.0.0/24", "2001:db8::/32")))
	tr.OnEndpointSliceUpdate(Slice("default", "fw", "fw-1", WebPorts, Endpoint{IP: "10.244.2.13", Node: "node-b"}))
	// Both policies Local (NodePort): the cluster IP and outside clients
	// use the local endpoints only, pods and the node short-circuit to
	// the cluster-wide ones (kube-proxy). "both" has only a remote
	// endpoint, "mixed" a local and a remote one.
	bothLocal := func(s *v1.Service) {
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		s.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
	}
	tr.OnServiceUpdate(Service("default", "both", "10.96.0.81", Port("http", v1.ProtocolTCP, 80, 30140), bothLocal))
	tr.OnEndpointSliceUpdate(Slice("default", "both", "both-1", WebPorts, Endpoint{IP: "10.244.2.14", Node: "node-b"}))
	tr.OnServiceUpdate(Service("default", "mixed", "10.96.0.82", Port("http", v1.ProtocolTCP, 80, 30150), bothLocal))
	tr.OnEndpointSliceUpdate(Slice("default", "mixed", "mixed-1", WebPorts,
		Endpoint{IP: "10.244.1.15", Node: "node-a"}, Endpoint{IP: "10.244.2.15", Node: "node-b"}))
	// SCTP, with a node port.
	tr.OnServiceUpdate(Service("default", "sctp", "10.96.7.7", Port("sctp", v1.ProtocolSCTP, 9000, 30160)))
	tr.OnEndpointSliceUpdate(Slice("default", "sctp", "sctp-1", SCTPPorts, Endpoint{IP: "10.244.2.16", Node: "node-b"}))
	// Topology-aware routing (trafficDistribution PreferSameNode): every
	// endpoint has node hints, one for node-a, so node-a balances over
	// that one only.
	tr.OnServiceUpdate(Service("default", "close", "10.96.0.83", Port("http", v1.ProtocolTCP, 80, 0)))
	tr.OnEndpointSliceUpdate(Slice("default", "close", "close-1", WebPorts,
		Endpoint{IP: "10.244.1.17", Node: "node-a", Nodes: []string{"node-a"}}, Endpoint{IP: "10.244.2.17", Node: "node-b", Nodes: []string{"node-b"}}))
	// Invalid: skipped, others unaffected.
	tr.OnServiceUpdate(Service("default", "bad", "10.96.0.999", Port("http", v1.ProtocolTCP, 80, 0)))
}

// NodeIP is the node address the TraceCases assume.
const NodeIP = "192.168.0.10"

// TraceCase is one packet through a backend that rendered Scenario, and
// its expected outcomes: "DNAT addr:port", "ACCEPT" (left alone),
// "REJECT" or "DROP", with " masq" when the source is masqueraded,
// sorted. Want nil means Dst does not parse (the invalid Service).
type TraceCase struct {
	Name, Src, Dst, Proto string
	Port                  uint16
	FromHost              bool
	Want                  []string
}

// TraceCases are the packets both backends' tracers check against
// Scenario (ClusterCIDRs 10.244.0.0/16, node address NodeIP, also the
// backend's Config.NodeIPs).
// iptablesMode selects where kube-proxy's iptables and nftables modes
// differ: the answer on 127.0.0.1 (the node port in iptables mode,
// nothing in nftables mode), and a port of a cluster IP that no
// Service serves (left alone, so routed on, in iptables mode; rejected
// in nftables mode, its cluster-ips set).
func TraceCases(iptablesMode bool) []TraceCase {
	localhost, unserved := []string{"ACCEPT"}, []string{"REJECT"}
	if iptablesMode {
		localhost, unserved = []string{"DNAT 10.244.2.8:8080 masq"}, []string{"ACCEPT"}
	}
	return []TraceCase{
		{"dns from a pod", "10.244.1.5", "10.96.0.10", "udp", 53, false, []string{"DNAT 10.244.1.5:53 masq", "DNAT 10.244.2.7:53"}},
		{"dns from another pod", "10.244.3.3", "10.96.0.10", "udp", 53, false, []string{"DNAT 10.244.1.5:53", "DNAT 10.244.2.7:53"}},
		{"dns from outside the cluster CIDR is masqueraded", "192.168.0.99", "10.96.0.10", "udp", 53, false, []string{"DNAT 10.244.1.5:53 masq", "DNAT 10.244.2.7:53 masq"}},
		{"dns wrong protocol", "10.244.3.3", "10.96.0.10", "tcp", 53, false, unserved},
		{"unserved port of a cluster IP from the host", "192.168.0.10", "10.96.0.20", "tcp", 81, true, unserved},
		{"unserved port of an iTP Local cluster IP", "10.244.3.3", "10.96.0.81", "tcp", 81, false, unserved},
		{"not a service", "10.244.3.3", "10.96.0.99", "tcp", 80, false, []string{"ACCEPT"}},
		{"nodeport from outside", "192.168.0.99", "192.168.0.10", "tcp", 30080, false, []string{"DNAT 10.244.2.8:8080 masq"}},
		{"nodeport on another address is not ours", "192.168.0.99", "192.168.0.11", "tcp", 30080, false, []string{"ACCEPT"}},
		{"node port on localhost", "127.0.0.1", "127.0.0.1", "tcp", 30080, true, localhost},
		{"local policy keeps the source", "198.51.100.1", "203.0.113.7", "tcp", 80, false, []string{"DNAT 10.244.1.9:8080"}},
		{"local policy on the external IP", "198.51.100.1", "192.0.2.1", "tcp", 80, false, []string{"DNAT 10.244.1.9:8080"}},
		{"local policy node port", "198.51.100.1", "192.168.0.10", "tcp", 30090, false, []string{"DNAT 10.244.1.9:8080"}},
		{"local policy from a pod goes cluster-wide", "10.244.3.3", "203.0.113.7", "tcp", 80, false, []string{"DNAT 10.244.1.9:8080", "DNAT 10.244.2.9:8080"}},
		{"local policy from the node goes cluster-wide masqueraded", "192.168.0.10", "203.0.113.7", "tcp", 80, true, []string{"DNAT 10.244.1.9:8080 masq", "DNAT 10.244.2.9:8080 masq"}},
		{"local policy cluster IP is cluster-wide", "10.244.3.3", "10.96.0.30", "tcp", 80, false, []string{"DNAT 10.244.1.9:8080", "DNAT 10.244.2.9:8080"}},
		{"local policy without local endpoint drops", "198.51.100.1", "192.168.0.10", "tcp", 30100, false, []string{"DROP"}},
		{"no endpoints rejects", "10.244.3.3", "10.96.0.50", "tcp", 80, false, []string{"REJECT"}},
		{"no endpoints rejects the node port", "198.51.100.1", "192.168.0.10", "tcp", 30110, false, []string{"REJECT"}},
		{"no endpoints rejects from the host", "192.168.0.10", "10.96.0.50", "tcp", 80, true, []string{"REJECT"}},
		{"internal policy local", "10.244.3.3", "10.96.0.60", "tcp", 80, false, []string{"DNAT 10.244.1.11:8080"}},
		{"affinity service", "10.244.3.3", "10.96.0.70", "tcp", 80, false, []string{"DNAT 10.244.1.12:8080"}},
		{"source range lets a client reach the LB IP", "198.51.100.1", "203.0.113.8", "tcp", 80, false, []string{"DNAT 10.244.2.13:8080 masq"}},
		{"source outside the ranges is dropped at the LB IP", "198.51.99.1", "203.0.113.8", "tcp", 80, false, []string{"DROP"}},
		{"a pod outside the ranges is dropped at the LB IP", "10.244.3.3", "203.0.113.8", "tcp", 80, false, []string{"DROP"}},
		{"source ranges leave the cluster IP alone", "198.51.99.1", "10.96.0.90", "tcp", 80, false, []string{"DNAT 10.244.2.13:8080 masq"}},
		{"source ranges leave the node port alone", "198.51.99.1", "192.168.0.10", "tcp", 30130, false, []string{"DNAT 10.244.2.13:8080 masq"}},
		{"source ranges apply to the LB IP's port only", "198.51.99.1", "203.0.113.8", "tcp", 81, false, []string{"ACCEPT"}},
		{"the node, in a range, reaches the LB IP", "192.168.0.10", "203.0.113.8", "tcp", 80, true, []string{"DNAT 10.244.2.13:8080 masq"}},
		{"the LB IP as source is let in when a range holds the node", "203.0.113.8", "203.0.113.8", "tcp", 80, true, []string{"DNAT 10.244.2.13:8080 masq"}},
		{"both policies local: a pod reaches the node port's remote endpoint", "10.244.3.3", "192.168.0.10", "tcp", 30140, false, []string{"DNAT 10.244.2.14:8080"}},
		{"both policies local: the node reaches the node port's remote endpoint", "192.168.0.10", "192.168.0.10", "tcp", 30140, true, []string{"DNAT 10.244.2.14:8080 masq"}},
		{"both policies local: outside without local endpoint drops", "198.51.100.1", "192.168.0.10", "tcp", 30140, false, []string{"DROP"}},
		{"both policies local: the cluster IP without local endpoint drops", "10.244.3.3", "10.96.0.81", "tcp", 80, false, []string{"DROP"}},
		{"both policies local: a pod's node port goes cluster-wide", "10.244.3.3", "192.168.0.10", "tcp", 30150, false, []string{"DNAT 10.244.1.15:8080", "DNAT 10.244.2.15:8080"}},
		{"both policies local: the node's node port goes cluster-wide", "192.168.0.10", "192.168.0.10", "tcp", 30150, true, []string{"DNAT 10.244.1.15:8080 masq", "DNAT 10.244.2.15:8080 masq"}},
		{"both policies local: outside uses the local endpoint", "198.51.100.1", "192.168.0.10", "tcp", 30150, false, []string{"DNAT 10.244.1.15:8080"}},
		{"both policies local: the cluster IP uses the local endpoint", "10.244.3.3", "10.96.0.82", "tcp", 80, false, []string{"DNAT 10.244.1.15:8080"}},
		{"node hints: the endpoint hinted for this node", "10.244.3.3", "10.96.0.83", "tcp", 80, false, []string{"DNAT 10.244.1.17:8080"}},
		{"sctp cluster IP", "10.244.3.3", "10.96.7.7", "sctp", 9000, false, []string{"DNAT 10.244.2.16:9900"}},
		{"sctp node port from outside", "198.51.100.1", "192.168.0.10", "sctp", 30160, false, []string{"DNAT 10.244.2.16:9900 masq"}},
		{"sctp service's port over tcp is not served", "10.244.3.3", "10.96.7.7", "tcp", 9000, false, unserved},
		{"invalid service skipped", "10.244.3.3", "10.96.0.999", "tcp", 80, false, nil},
	}
}

// LocalHealthCheck makes a Service a LoadBalancer with
// externalTrafficPolicy Local and healthCheckNodePort port (Kubernetes
// allocates that port only for this combination).
func LocalHealthCheck(port int32) func(*v1.Service) {
	return func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		s.Spec.HealthCheckNodePort = port
	}
}
