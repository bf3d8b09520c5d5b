package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The usual "allow DNS to kube-system" egress policy selects kube-system by
// the kubernetes.io/metadata.name label the API server puts on every
// namespace; hand-built namespaces carry it implicitly, in both the Calico
// and the Kubernetes NetworkPolicy form.
func TestAllowDNSToKubeSystem(t *testing.T) {
	egress := `
  types: [Egress]
  egress:
  - action: Allow
    protocol: UDP
    destination:
      namespaceSelector: kubernetes.io/metadata.name == "kube-system"
      selector: k8s-app == "kube-dns"
      ports: [53]
`
	calico := `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: shop}
spec:
  selector: all()` + egress
	k8s := `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: kube-system}
      podSelector:
        matchLabels: {k8s-app: kube-dns}
    ports:
    - {protocol: UDP, port: 53}
`
	gnp := `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-dns}
spec:
  namespaceSelector: kubernetes.io/metadata.name == "shop"` + egress
	for name, doc := range map[string]string{"calico": calico, "kubernetes": k8s, "global": gnp} {
		t.Run(name, func(t *testing.T) {
			ps := build(t, doc,
				&Namespace{Name: "kube-system"},
				&Namespace{Name: "shop", Labels: map[string]string{LabelMetadataName: "not-shop"}}, // replaced, as the API server does
				wep("kube-system", "coredns", "10.0.9.1", "k8s-app", "kube-dns"),
				wep("other", "fake-dns", "10.0.9.2", "k8s-app", "kube-dns"), // namespace not given: implicit labels only
				wep("shop", "web", "10.0.1.1"),
			)
			udp := func(dst string, port uint16) Flow {
				return Flow{Src: peer("shop/web"), Dst: peer(dst), Protocol: ProtoUDP, SrcPort: 40000, DstPort: port}
			}
			for _, c := range []struct {
				f    Flow
				want Action
			}{
				{udp("kube-system/coredns", 53), Allow},
				{udp("kube-system/coredns", 54), Deny},
				{udp("other/fake-dns", 53), Deny},
				{tcp("shop/web", "kube-system/coredns", 53), Deny},
			} {
				v, err := ps.Evaluate(c.f)
				require.NoError(t, err)
				assert.Equal(t, c.want, v.Action, "%s", v)
			}
		})
	}
}
