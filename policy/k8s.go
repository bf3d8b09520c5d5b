package policy

import (
	"cmp"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tabbynet/tabby/selector"
	"github.com/tabbynet/tabby/selector/k8sselector"
)

// FromK8s converts a Kubernetes networking/v1 NetworkPolicy into the Calico
// NetworkPolicy Calico itself would make of it:
//
//   - named knp.default.<name>, in the same namespace, tier default,
//     order 1000;
//   - the pod selector (and every peer pod selector) gets
//     projectcalico.org/orchestrator == "k8s" added, so it selects pods only;
//   - a peer's namespaceSelector {} becomes all() (every namespace), a
//     missing one leaves the rule in the policy's namespace;
//   - ipBlock.cidr becomes nets and each except becomes notNets of the same
//     rule; as Kubernetes requires, each except must be a strict subset of
//     the cidr (inside it and longer), so of the same IP family;
//   - one Allow rule per (protocol × peer), ports of one protocol merged
//     into ranges, endPort as "port:endPort", a port with no protocol TCP,
//     and a rule without ports has no protocol;
//   - types from policyTypes; none given means Ingress, plus Egress when
//     there are egress rules.
//
// As the Kubernetes API server does, it rejects a peer with none of
// podSelector, namespaceSelector and ipBlock, and a string port that is not
// a port name ("80", "1:2").
//
// The result is validated. An invalid input (a bad CIDR, selector or port)
// returns a *ValidationError (wrapping ErrInvalid) of kind
// KubernetesNetworkPolicy naming the Kubernetes fields; a selector problem
// keeps its selector error (errors.Is(err, selector.ErrInvalid)). A problem
// found only in the converted policy names that policy's fields.
func FromK8s(np *networkingv1.NetworkPolicy) (*NetworkPolicy, error) {
	if np == nil {
		return nil, fmt.Errorf("nil NetworkPolicy: %w", ErrInvalid)
	}
	var e errs
	spec := root("spec")
	podSel, err := k8sPodSelector(&np.Spec.PodSelector)
	if err != nil {
		e.addErr(spec.field("podSelector"), err)
	}
	order := float64(K8sPolicyOrder)
	out := &NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: APIVersion, Kind: KindNetworkPolicy},
		ObjectMeta: metav1.ObjectMeta{
			Name:      K8sPolicyPrefix + np.Name,
			Namespace: np.Namespace,
		},
		Spec: NetworkPolicySpec{
			Tier:     TierDefault,
			Order:    &order,
			Selector: podSel,
		},
	}
	for i, r := range np.Spec.Ingress {
		rules := k8sRules(r.From, r.Ports, true, spec.field("ingress").at(i), &e)
		out.Spec.Ingress = append(out.Spec.Ingress, rules...)
	}
	for i, r := range np.Spec.Egress {
		rules := k8sRules(r.To, r.Ports, false, spec.field("egress").at(i), &e)
		out.Spec.Egress = append(out.Spec.Egress, rules...)
	}
	ingress, egress := false, false
	for i, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		default:
			e.add(spec.field("policyTypes").at(i), fmt.Sprintf("unknown policy type %q", t))
		}
	}
	if len(np.Spec.PolicyTypes) == 0 {
		ingress = true
		egress = len(np.Spec.Egress) > 0
	}
	if ingress {
		out.Spec.Types = append(out.Spec.Types, PolicyTypeIngress)
	}
	if egress {
		out.Spec.Types = append(out.Spec.Types, PolicyTypeEgress)
	}
	if err := e.result(KindKubernetesNetworkPolicy, metaName(&np.ObjectMeta)); err != nil {
		return nil, err
	}
	if err := out.Validate(); err != nil {
		return nil, err // names the converted policy, knp.default.<name>, and its fields
	}
	return out, nil
}

func k8sPodSelector(ls *metav1.LabelSelector) (string, error) {
	s := selector.Eq(LabelOrchestrator, OrchestratorK8s)
	if ls != nil {
		ks, err := k8sselector.FromLabelSelector(ls)
		if err != nil {
			return "", err
		}
		if !ks.IsAll() {
			s = s.And(ks)
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	return s.String(), nil
}

type k8sPeer struct {
	sel, nsSel    string
	nets, notNets []string
}

func k8sRules(peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, ingress bool, p path, e *errs) []Rule {
	peerField, portField := "from", "ports"
	if !ingress {
		peerField = "to"
	}
	var cps []k8sPeer
	for i := range peers {
		pp := p.field(peerField).at(i)
		peer := &peers[i]
		if peer.IPBlock != nil {
			if peer.PodSelector != nil || peer.NamespaceSelector != nil {
				e.add(pp, "ipBlock cannot be combined with podSelector or namespaceSelector")
			}
			cp := k8sPeer{}
			cidr, err := parseNet(peer.IPBlock.CIDR)
			cidrOK := err == nil && containsSlash(peer.IPBlock.CIDR)
			if !cidrOK {
				e.add(pp.field("ipBlock").field("cidr"), fmt.Sprintf("invalid CIDR %q", peer.IPBlock.CIDR))
			} else {
				cp.nets = []string{cidr.String()}
			}
			for j, ex := range peer.IPBlock.Except {
				ep := pp.field("ipBlock").field("except").at(j)
				pfx, err := parseNet(ex)
				switch {
				case err != nil || !containsSlash(ex):
					e.add(ep, fmt.Sprintf("invalid CIDR %q", ex))
				case cidrOK && (pfx.Bits() <= cidr.Bits() || !cidr.Contains(pfx.Addr())):
					// As Kubernetes validates an ipBlock (which also
					// rules out an except of the other IP family).
					e.add(ep, fmt.Sprintf("%q must be a strict subset of cidr %q", ex, peer.IPBlock.CIDR))
				default:
					cp.notNets = append(cp.notNets, pfx.String())
				}
			}
			cps = append(cps, cp)
			continue
		}
		if peer.PodSelector == nil && peer.NamespaceSelector == nil {
			// As Kubernetes validates a peer: an empty one is an error, not
			// "pods in this namespace".
			e.add(pp, "must specify a peer: podSelector, namespaceSelector or ipBlock")
			continue
		}
		cp := k8sPeer{}
		sel, err := k8sPodSelector(peer.PodSelector)
		if err != nil {
			e.addErr(pp.field("podSelector"), err)
		}
		cp.sel = sel
		if peer.NamespaceSelector != nil {
			ns, err := k8sselector.FromLabelSelector(peer.NamespaceSelector)
			if err == nil {
				err = ns.Err()
			}
			if err != nil {
				e.addErr(pp.field("namespaceSelector"), err)
			}
			cp.nsSel = ns.String()
		}
		cps = append(cps, cp)
	}
	if len(cps) == 0 {
		cps = []k8sPeer{{}} // no peers: any source/destination
	}

	// Group ports by protocol; nil means every port of that protocol, and
	// the key "" (no ports at all) means any protocol.
	byProto := map[string][]Port{}
	allPorts := map[string]bool{}
	if len(ports) == 0 {
		allPorts[""] = true
	}
	for i := range ports {
		kp := &ports[i]
		proto := string(corev1.ProtocolTCP)
		if kp.Protocol != nil {
			proto = string(*kp.Protocol)
		}
		pp := p.field(portField).at(i)
		switch proto {
		case string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP):
		default:
			e.add(pp.field("protocol"), fmt.Sprintf("unknown protocol %q", proto))
			continue
		}
		if kp.Port == nil {
			if kp.EndPort != nil {
				e.add(pp.field("endPort"), "requires port")
			}
			allPorts[proto] = true
			continue
		}
		port, err := k8sPort(kp.Port, kp.EndPort)
		if err != nil {
			e.add(pp.field("port"), err.Error())
			continue
		}
		byProto[proto] = append(byProto[proto], port)
	}
	protos := make([]string, 0, len(byProto)+len(allPorts))
	for k := range byProto {
		protos = append(protos, k)
	}
	for k := range allPorts {
		protos = append(protos, k)
	}
	slices.Sort(protos)
	protos = slices.Compact(protos)

	var rules []Rule
	for _, proto := range protos {
		var rp *Protocol
		var rports []Port
		if proto != "" {
			pr, _ := ParseProtocol(proto) // TCP, UDP or SCTP, checked above
			rp = &pr
			if !allPorts[proto] {
				rports = SimplifyPorts(byProto[proto])
			}
		}
		for _, cp := range cps {
			r := Rule{Action: Allow}
			if rp != nil {
				pr := *rp
				r.Protocol = &pr
			}
			peer := EntityRule{Selector: cp.sel, NamespaceSelector: cp.nsSel, Nets: cp.nets, NotNets: cp.notNets}
			if ingress {
				r.Source = peer
				r.Destination.Ports = slices.Clone(rports)
			} else {
				r.Destination = peer
				r.Destination.Ports = slices.Clone(rports)
			}
			rules = append(rules, r)
		}
	}
	return rules
}

func containsSlash(s string) bool { return slices.Contains([]byte(s), '/') }

func k8sPort(p *intstr.IntOrString, end *int32) (Port, error) {
	if p.Type == intstr.String {
		if end != nil {
			return Port{}, fmt.Errorf("endPort cannot be used with named port %q", p.StrVal)
		}
		// Kubernetes reads a string port as a name (an IANA service name,
		// which needs a letter), never as a number or range: "80" and
		// "1:2" are errors there, so they are here.
		if err := validatePortName(p.StrVal); err != nil {
			return Port{}, err
		}
		return NamedPort(p.StrVal), nil
	}
	if p.IntVal < 1 || p.IntVal > 65535 {
		return Port{}, fmt.Errorf("port %d out of range 1-65535", p.IntVal)
	}
	if end == nil {
		return SinglePort(uint16(p.IntVal)), nil
	}
	if *end < p.IntVal || *end > 65535 {
		return Port{}, fmt.Errorf("endPort %d must be between port %d and 65535", *end, p.IntVal)
	}
	return PortRange(uint16(p.IntVal), uint16(*end)), nil
}

// SimplifyPorts merges numeric ports and ranges that overlap or touch into
// the fewest ranges, in ascending order, followed by the named ports in
// their first-seen order without duplicates.
func SimplifyPorts(ports []Port) []Port {
	var nums, named []Port
	for _, p := range ports {
		if p.IsNamed() {
			if !slices.Contains(named, p) {
				named = append(named, p)
			}
			continue
		}
		nums = append(nums, p)
	}
	slices.SortFunc(nums, func(a, b Port) int {
		return cmp.Or(cmp.Compare(a.MinPort, b.MinPort), cmp.Compare(a.MaxPort, b.MaxPort))
	})
	var out []Port
	for _, p := range nums {
		if n := len(out); n > 0 && int(p.MinPort) <= int(out[n-1].MaxPort)+1 {
			out[n-1].MaxPort = max(out[n-1].MaxPort, p.MaxPort)
			continue
		}
		out = append(out, p)
	}
	return append(out, named...)
}
