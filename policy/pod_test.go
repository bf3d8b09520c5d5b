package policy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func testPod(mod func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db", Labels: map[string]string{"app": "db"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "db-sa",
			Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{Name: "pg", ContainerPort: 5432},
				{ContainerPort: 9000, HostPort: 9000}, // unnamed: no named port
				{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			}}},
			InitContainers: []corev1.Container{{Name: "i", Ports: []corev1.ContainerPort{
				{Name: "sctp", ContainerPort: 7, Protocol: corev1.ProtocolSCTP},
				{Name: "odd", ContainerPort: 8, Protocol: "QUIC"},
			}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.2",
			PodIPs: []corev1.PodIP{{IP: "10.0.0.2"}, {IP: "fd00::2"}}},
	}
	if mod != nil {
		mod(p)
	}
	return p
}

func TestEndpointFromPod(t *testing.T) {
	ports := []EndpointPort{{"pg", ProtoTCP, 5432}, {"dns", ProtoUDP, 53}, {"sctp", ProtoSCTP, 7}}
	both := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")}
	tests := []struct {
		name  string
		mod   func(*corev1.Pod)
		addrs []netip.Addr
	}{
		{"running, dual stack", nil, both},
		{"podIP only", func(p *corev1.Pod) { p.Status.PodIPs = nil }, both[:1]},
		{"no IP yet", func(p *corev1.Pod) { p.Status.PodIPs, p.Status.PodIP = nil, "" }, nil},
		{"succeeded: addresses returned to the pool", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, nil},
		{"failed", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, nil},
		{"completed (a phase Calico counts as finished)", func(p *corev1.Pod) { p.Status.Phase = "Completed" }, nil},
		// Before the kubelet reports the addresses, the CNI plugin's
		// annotations give them, as libcalico-go's getPodIPs reads them.
		{"pending: Calico CNI's podIPs annotation", func(p *corev1.Pod) {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending}
			p.Annotations = map[string]string{annotationCalicoPodIPs: "10.0.0.2/32,fd00::2/128", annotationCalicoPodIP: "10.0.0.9/32"}
		}, both},
		{"pending: Calico CNI's podIP annotation", func(p *corev1.Pod) {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending}
			p.Annotations = map[string]string{annotationCalicoPodIP: "10.0.0.2/32"}
		}, both[:1]},
		{"pending: AWS VPC CNI's annotation, plain addresses", func(p *corev1.Pod) {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending}
			p.Annotations = map[string]string{annotationAWSPodIPs: "10.0.0.2, fd00::2"}
		}, both},
		{"status wins over the annotations", func(p *corev1.Pod) {
			p.Annotations = map[string]string{annotationCalicoPodIPs: "10.9.9.9/32"}
		}, both},
		{"terminating, Calico CNI released the addresses", func(p *corev1.Pod) {
			p.DeletionTimestamp = &metav1.Time{}
			p.Annotations = map[string]string{annotationCalicoPodIP: "", annotationCalicoPodIPs: ""}
		}, nil},
		{"terminating, AWS VPC CNI released the addresses", func(p *corev1.Pod) {
			p.DeletionTimestamp = &metav1.Time{}
			p.Annotations = map[string]string{annotationAWSPodIPs: ""}
		}, nil},
		{"terminating, still wired (grace period)", func(p *corev1.Pod) {
			p.DeletionTimestamp = &metav1.Time{}
			p.Annotations = map[string]string{annotationCalicoPodIP: "10.0.0.2/32"}
		}, both},
		{"not terminating: an empty annotation alone changes nothing", func(p *corev1.Pod) {
			p.Annotations = map[string]string{annotationCalicoPodIP: ""}
		}, both},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod(tt.mod)
			ep, err := EndpointFromPod(pod)
			require.NoError(t, err)
			assert.Equal(t, &Endpoint{Name: "db", Namespace: "shop", Labels: map[string]string{"app": "db"},
				ServiceAccount: "db-sa", Addresses: tt.addrs, Ports: ports}, ep)
			ep.Labels["app"] = "changed"
			assert.Equal(t, "db", pod.Labels["app"], "labels are copied")
		})
	}
}

func TestEndpointFromPodErrors(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		is   error
		msg  string
	}{
		{"nil", nil, ErrInvalid, "nil Pod"},
		{"host network", testPod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), ErrNotWorkload, "pod shop/db: uses the host's network"},
		{"bad podIPs", testPod(func(p *corev1.Pod) { p.Status.PodIPs[1].IP = "fd00::zz" }), ErrInvalid,
			`Pod shop/db: status.podIPs[1]: invalid IP address "fd00::zz"`},
		{"bad podIP", testPod(func(p *corev1.Pod) { p.Status.PodIPs, p.Status.PodIP = nil, "10.0.0" }), ErrInvalid,
			`Pod shop/db: status.podIP: invalid IP address "10.0.0"`},
		{"bad podIPs annotation", testPod(func(p *corev1.Pod) {
			p.Status.PodIPs, p.Status.PodIP = nil, ""
			p.Annotations = map[string]string{annotationCalicoPodIPs: "10.0.0.2/32,10.0.1.0/24"}
		}), ErrInvalid, `Pod shop/db: metadata.annotations[cni.projectcalico.org/podIPs][1]: invalid IP address "10.0.1.0/24"`},
		{"bad podIP annotation", testPod(func(p *corev1.Pod) {
			p.Status.PodIPs, p.Status.PodIP = nil, ""
			p.Annotations = map[string]string{annotationCalicoPodIP: "fe80::1%eth0"}
		}), ErrInvalid, `Pod shop/db: metadata.annotations[cni.projectcalico.org/podIP]: invalid IP address "fe80::1%eth0"`},
		{"label the selector language cannot name", testPod(func(p *corev1.Pod) { p.Labels = map[string]string{"a b": "x"} }), ErrInvalid,
			`labels: label "a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, err := EndpointFromPod(tt.pod)
			require.ErrorIs(t, err, tt.is)
			assert.ErrorContains(t, err, tt.msg)
			assert.Nil(t, ep)
		})
	}
}

// TestEndpointFromPodWithK8sPolicy is the embedder's path that had no
// conversion: a NetworkPolicy naming a named port, pods and namespaces as an
// informer gives them, and a flow decided on the pod's container port.
func TestEndpointFromPodWithK8sPolicy(t *testing.T) {
	pg := intstr.FromString("pg")
	np, err := FromK8s(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &pg}},
			}},
		},
	})
	require.NoError(t, err)
	var r Resources
	r.Add(np)
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "shop"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other"}},
	} {
		r.Add(NamespaceFromK8s(ns))
	}
	for _, p := range []*corev1.Pod{
		testPod(nil),
		testPod(func(p *corev1.Pod) {
			p.Name, p.Labels, p.Spec.Containers, p.Spec.InitContainers = "api", map[string]string{"app": "api"}, nil, nil
			p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.1"}}
		}),
		testPod(func(p *corev1.Pod) {
			p.Namespace, p.Name, p.Labels = "other", "api", map[string]string{"app": "api"}
			p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.1.1"}}
		}),
	} {
		ep, err := EndpointFromPod(p)
		require.NoError(t, err)
		r.Add(ep)
	}
	ps, err := NewPolicySet(r)
	require.NoError(t, err)
	for _, tt := range []struct {
		src   string
		port  uint16
		allow bool
	}{
		{"shop/api", 5432, true},
		{"shop/api", 80, false},
		{"other/api", 5432, false},
	} {
		v, err := ps.Evaluate(Flow{Src: EndpointPeer(tt.src), Dst: EndpointPeer("shop/db"), Protocol: ProtoTCP, DstPort: tt.port})
		require.NoError(t, err)
		assert.Equal(t, tt.allow, v.Allowed(), "%v", v)
	}
	assert.Nil(t, NamespaceFromK8s(nil))
}
