package policy

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"

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
//   - Addresses from status.podIPs (status.podIP when podIPs is empty), or,
//     while the kubelet has not reported them yet, from the annotations a CNI
//     plugin writes as soon as it has wired the pod, in Calico's order:
//     cni.projectcalico.org/podIPs, cni.projectcalico.org/podIP (Calico CNI;
//     comma-separated addresses or host prefixes such as 10.244.1.9/32), then
//     vpc.amazonaws.com/pod-ips (AWS VPC CNI); none while the pod has no IP
//     yet and none once it has finished: phase Succeeded, Failed or
//     Completed, or being deleted (deletionTimestamp set) with
//     cni.projectcalico.org/podIP or vpc.amazonaws.com/pod-ips present and
//     empty, which the CNI plugin writes when it has released the addresses
//     (libcalico-go's IsFinished), since its addresses then return to the
//     pool and may already belong to another pod;
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
	finished := podFinished(pod)
	ips, ipsField, indexed := podIPs(pod)
	for i, ip := range ips {
		a, err := parsePodIP(ip)
		if err != nil {
			p := ipsField
			if indexed {
				p = ipsField.at(i)
			}
			e.add(p, fmt.Sprintf("invalid IP address %q", ip))
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

// The pod annotations that carry a pod's addresses before the kubelet
// reports them in its status (Calico CNI, AWS VPC CNI), as libcalico-go's
// pod conversion reads them.
const (
	annotationCalicoPodIPs = "cni.projectcalico.org/podIPs"
	annotationCalicoPodIP  = "cni.projectcalico.org/podIP"
	annotationAWSPodIPs    = "vpc.amazonaws.com/pod-ips"
)

// podPhaseCompleted is a phase Calico counts as finished though the
// Kubernetes API does not define it.
const podPhaseCompleted corev1.PodPhase = "Completed"

// podFinished reports whether the pod no longer owns its addresses, as
// libcalico-go's IsFinished decides it.
func podFinished(pod *corev1.Pod) bool {
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed, podPhaseCompleted:
		return true
	}
	if pod.DeletionTimestamp == nil {
		return false
	}
	for _, k := range []string{annotationCalicoPodIP, annotationAWSPodIPs} {
		if v, ok := pod.Annotations[k]; ok && v == "" {
			return true // the CNI plugin has released the addresses
		}
	}
	return false
}

// podIPs returns the pod's addresses as written, the field they came from,
// and whether that field is a list (so a bad entry is named by index).
func podIPs(pod *corev1.Pod) ([]string, path, bool) {
	if len(pod.Status.PodIPs) > 0 {
		ips := make([]string, len(pod.Status.PodIPs))
		for i, ip := range pod.Status.PodIPs {
			ips[i] = ip.IP
		}
		return ips, root("status").field("podIPs"), true
	}
	if pod.Status.PodIP != "" {
		return []string{pod.Status.PodIP}, root("status").field("podIP"), false
	}
	for _, k := range []string{annotationCalicoPodIPs, annotationCalicoPodIP, annotationAWSPodIPs} {
		if v := pod.Annotations[k]; v != "" {
			ips := strings.Split(v, ",")
			for i := range ips {
				ips[i] = strings.TrimSpace(ips[i])
			}
			return ips, root("metadata").field("annotations[" + k + "]"), len(ips) > 1
		}
	}
	return nil, path{}, false
}

// parsePodIP parses an address, or a host prefix (10.244.1.9/32) as Calico
// CNI writes in its annotations.
func parsePodIP(s string) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Addr{}, err
		}
		if !p.IsSingleIP() {
			return netip.Addr{}, fmt.Errorf("%s is not a single address", s)
		}
		s = p.Addr().String()
	}
	a, err := netip.ParseAddr(s)
	if err == nil && a.Zone() != "" {
		err = fmt.Errorf("%s has a zone", s)
	}
	return a, err
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
