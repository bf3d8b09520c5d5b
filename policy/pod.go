package policy

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// KindPod names a Kubernetes Pod in EndpointFromPod's errors.
const KindPod = "Pod"

// ErrNotWorkload: EndpointFromPod was given a pod that Calico makes no
// workload endpoint of (one on the host's network), so no policy applies to
// it as a workload.
var ErrNotWorkload = errors.New("not a workload endpoint")

// EndpointFromPod converts a Kubernetes Pod into the workload Endpoint
// policy evaluates, as Calico's pod conversion (libcalico-go's workload
// endpoint converter) makes it:
//
//   - name, namespace and a copy of the pod's labels (the implicit
//     projectcalico.org/* labels are added by the model, not here);
//   - ServiceAccount from spec.serviceAccountName (its labels, which a Pod
//     does not carry, are the ServiceAccount resource's: Model's
//     UpdateServiceAccount);
//   - Addresses from status.podIPs (status.podIP when podIPs is empty), none
//     while the pod has no IP yet and none once it has finished (phase
//     Succeeded or Failed), since its addresses then return to the pool;
//   - Ports: the named ports (name and containerPort set) of the containers,
//     then of the init containers, for named-port rules; protocol TCP when not
//     given, UDP, SCTP; a port of another protocol is left out.
//
// A pod with spec.hostNetwork is not a workload: the error wraps
// ErrNotWorkload (Calico's datastore syncer skips such pods). A nil pod, an
// address that does not parse, or a result that Endpoint.Validate rejects
// (a label key the selector language cannot name) returns a
// *ValidationError wrapping ErrInvalid, of kind Pod, naming the field.
func EndpointFromPod(pod *corev1.Pod) (*Endpoint, error) {
	if pod == nil {
		return nil, fmt.Errorf("nil Pod: %w", ErrInvalid)
	}
	key := pod.Namespace + "/" + pod.Name
	if pod.Spec.HostNetwork {
		return nil, fmt.Errorf("pod %s: uses the host's network: %w", key, ErrNotWorkload)
	}
	ep := &Endpoint{
		Name:           pod.Name,
		Namespace:      pod.Namespace,
		Labels:         maps.Clone(pod.Labels),
		ServiceAccount: pod.Spec.ServiceAccountName,
	}
	var e errs
	finished := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	ips := pod.Status.PodIPs
	ipsField := root("status").field("podIPs")
	if len(ips) == 0 && pod.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: pod.Status.PodIP}}
		ipsField = root("status").field("podIP")
	}
	for i, ip := range ips {
		a, err := netip.ParseAddr(ip.IP)
		if err != nil || a.Zone() != "" {
			p := ipsField
			if len(pod.Status.PodIPs) > 0 {
				p = ipsField.at(i)
			}
			e.add(p, fmt.Sprintf("invalid IP address %q", ip.IP))
			continue
		}
		if !finished {
			ep.Addresses = append(ep.Addresses, a)
		}
	}
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.Name == "" || cp.ContainerPort <= 0 || cp.ContainerPort > 65535 {
					continue
				}
				var proto Protocol
				switch cp.Protocol {
				case corev1.ProtocolTCP, "":
					proto = ProtoTCP
				case corev1.ProtocolUDP:
					proto = ProtoUDP
				case corev1.ProtocolSCTP:
					proto = ProtoSCTP
				default:
					continue
				}
				ep.Ports = append(ep.Ports, EndpointPort{Name: cp.Name, Protocol: proto, Port: uint16(cp.ContainerPort)})
			}
		}
	}
	if err := e.result(KindPod, key); err != nil {
		return nil, err
	}
	if err := ep.Validate(); err != nil {
		return nil, err
	}
	return ep, nil
}

// NamespaceFromK8s converts a Kubernetes Namespace into the Namespace policy
// evaluates: its name and a copy of its labels (kubernetes.io/metadata.name
// and projectcalico.org/name are implicit; see Namespace). A nil namespace
// gives nil.
func NamespaceFromK8s(ns *corev1.Namespace) *Namespace {
	if ns == nil {
		return nil
	}
	return &Namespace{Name: ns.Name, Labels: maps.Clone(ns.Labels)}
}
