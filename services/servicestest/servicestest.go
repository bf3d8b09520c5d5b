// Package servicestest builds core/v1 Services and discovery/v1
// EndpointSlices for tests of the services package and its backends.
package servicestest

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// Endpoint is one endpoint of Slice.
type Endpoint struct {
	IP   string
	Node string
	// NotReady, Terminating and NotServing set the conditions (default
	// ready, serving, not terminating).
	NotReady, Terminating, NotServing bool
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
