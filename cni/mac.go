package cni

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/dataplane/netlink"
)

// AnnotationHWAddr is the pod annotation naming the MAC of the pod's
// interface, as Calico's CNI plugin reads it
// (docs.tigera.io, "Use a specific MAC address for a pod").
const AnnotationHWAddr = "cni.projectcalico.org/hwAddr"

// ParseMAC parses a MAC for the pod's interface as the tabby plugin takes
// it from runtimeConfig.mac and the hwAddr annotation: any form
// net.ParseMAC reads ("1c:0c:0a:c0:ff:ee", "1c-0c-...", "1c0c.0ac0.ffee"),
// and then only what a veth can carry — 48 bits, unicast, not all zeroes
// (netlink.ValidateMAC). Errors wrap ErrInvalidConfig (CNI code 7).
//
// Calico parses the annotation with net.ParseMAC too and leaves the rest
// to the kernel, which refuses a multicast or zero MAC (EADDRNOTAVAIL)
// after the interface was made; tabby refuses them before anything is.
func ParseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: MAC %q: %w", ErrInvalidConfig, s, err)
	}
	if err := netlink.ValidateMAC(mac); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return mac, nil
}

// runtimeMAC reads runtimeConfig.mac, which a runtime passes when the
// configuration declares the "mac" capability (CNI CONVENTIONS.md; Multus
// fills it from a network selection's "mac"): nil when absent or "".
func runtimeMAC(data []byte) (net.HardwareAddr, error) {
	var c struct {
		RuntimeConfig struct {
			MAC string `json:"mac"`
		} `json:"runtimeConfig"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: runtimeConfig: %w", ErrInvalidConfig, err)
	}
	if c.RuntimeConfig.MAC == "" {
		return nil, nil
	}
	mac, err := ParseMAC(c.RuntimeConfig.MAC)
	if err != nil {
		return nil, fmt.Errorf("runtimeConfig.mac: %w", err)
	}
	return mac, nil
}

// podMAC chooses the MAC of the pod's interface for ADD:
// runtimeConfig.mac when given (it wins, as the runtime's runtimeConfig
// wins over CNI_ARGS and the configuration in the tuning and sriov
// plugins, and as runtimeConfig.ips win over the ipAddrs annotation
// here); otherwise the pod's hwAddr annotation, read only for a
// Kubernetes pod (k8s.isPod) and only from the pod (the namespace's is
// ignored, as in Calico); otherwise nil (netlink.ContainerMAC). An
// annotation that is present is parsed even when empty, as Calico does:
// "" is an invalid MAC. Errors: the resolver's (ErrAnnotationsUnavailable),
// ErrInvalidConfig naming the annotation and the pod.
func podMAC(ctx context.Context, conf *NetConf, k8s K8sArgs, r Resolver) (net.HardwareAddr, error) {
	if conf.runtimeMAC != nil {
		return conf.runtimeMAC, nil
	}
	if !k8s.isPod() || r == nil {
		return nil, nil
	}
	namespace, pod := string(k8s.K8S_POD_NAMESPACE), string(k8s.K8S_POD_NAME)
	podAnn, _, err := r.Annotations(ctx, namespace, pod)
	if err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %w", ErrAnnotationsUnavailable, namespace, pod, err)
	}
	s, ok := podAnn[AnnotationHWAddr]
	if !ok {
		return nil, nil
	}
	mac, err := ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: annotation %s: %w", namespace, pod, AnnotationHWAddr, err)
	}
	return mac, nil
}

// onceResolver asks r once and gives every caller that answer: ADD reads
// the pod's annotations for its MAC and for IPAM, concurrently, with one
// request to the API server. A call for another pod than the first (none
// in the plugin) goes to r.
type onceResolver struct {
	r              Resolver
	once           sync.Once
	namespace, pod string
	podAnn, nsAnn  map[string]string
	err            error
}

// Annotations implements Resolver.
func (o *onceResolver) Annotations(ctx context.Context, namespace, pod string) (map[string]string, map[string]string, error) {
	o.once.Do(func() {
		o.namespace, o.pod = namespace, pod
		o.podAnn, o.nsAnn, o.err = o.r.Annotations(ctx, namespace, pod)
	})
	if o.namespace != namespace || o.pod != pod {
		return o.r.Annotations(ctx, namespace, pod)
	}
	return o.podAnn, o.nsAnn, o.err
}
