package policy_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/tabbynet/tabby/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// world is the fixed part of a random test: namespaces and pods with their
// addresses, labels, service accounts and named ports. Its pods are all
// IPv4 or all IPv6 (v6), and the policies generated over it use nets and
// ICMP of that family.
type world struct {
	namespaces []*policy.Namespace
	endpoints  []*policy.Endpoint
	v6         bool
}

// hostBits is the prefix length of one address: 32 or 128.
func (w *world) hostBits() int {
	if w.v6 {
		return 128
	}
	return 32
}

// allNet is the family's everything CIDR: 0.0.0.0/0 or ::/0.
func (w *world) allNet() string {
	if w.v6 {
		return "::/0"
	}
	return "0.0.0.0/0"
}

// icmp is the family's ICMP protocol: ICMP or ICMPv6.
func (w *world) icmp() policy.Protocol {
	if w.v6 {
		return policy.ProtoICMPv6
	}
	return policy.ProtoICMP
}

// otherNet is a net of the other family, which no pod is in: network
// sets may be dual stack, and a rule's nets may all be of the family the
// compiler does not render (then the rule never matches, and its notNets
// exclude nothing).
func (w *world) otherNet(r *rand.Rand) string {
	if w.v6 {
		return pick(r, []string{"10.0.0.1/32", "10.0.0.0/29", "0.0.0.0/0"})
	}
	return pick(r, []string{"fd00::1/128", "fd00::/125", "::/0"})
}

// echoType is the family's ICMP echo request type: 8, or 128 for ICMPv6.
func (w *world) echoType() int {
	if w.v6 {
		return 128
	}
	return 8
}

// probe ports: TCP and UDP, each with two numbers a named port maps to;
// clientPorts are the probes' source ports, which the named ports "cli"
// (TCP) and "ucli" (UDP) map to.
var (
	tcpPorts    = []uint16{80, 8080}
	udpPorts    = []uint16{53, 5353}
	clientPorts = []uint16{20000, 20001}
)

var (
	apps  = []string{"web", "db", "api"}
	roles = []string{"fe", "be"}
	teams = []string{"x", "y"}
	sas   = []string{"sa1", "sa2"}
)

// newWorld makes namespaces ns0..ns2 and one endpoint per address (all of
// one family),
// spread over the namespaces, with random labels and named ports
// "http" (TCP 80 or 8080), "dns" (UDP 53 or 5353) and the client ports
// "cli" (TCP) and "ucli" (UDP), each 20000 or 20001.
func newWorld(r *rand.Rand, addrs []netip.Addr) *world {
	w := &world{v6: len(addrs) > 0 && addrs[0].Is6()}
	for i := range 3 {
		w.namespaces = append(w.namespaces, &policy.Namespace{Name: fmt.Sprintf("ns%d", i),
			Labels: map[string]string{"team": teams[i%2]}})
	}
	for i, a := range addrs {
		w.endpoints = append(w.endpoints, &policy.Endpoint{
			Name: fmt.Sprintf("p%d", i), Namespace: fmt.Sprintf("ns%d", i%3),
			Labels:         map[string]string{"app": apps[r.IntN(len(apps))], "role": roles[r.IntN(len(roles))]},
			ServiceAccount: sas[r.IntN(len(sas))], ServiceAccountLabels: map[string]string{"trust": teams[r.IntN(2)]},
			Addresses: []netip.Addr{a},
			Ports: []policy.EndpointPort{
				{Name: "http", Protocol: policy.ProtoTCP, Port: tcpPorts[r.IntN(2)]},
				{Name: "dns", Protocol: policy.ProtoUDP, Port: udpPorts[r.IntN(2)]},
				{Name: "cli", Protocol: policy.ProtoTCP, Port: clientPorts[r.IntN(2)]},
				{Name: "ucli", Protocol: policy.ProtoUDP, Port: clientPorts[r.IntN(2)]},
			},
		})
	}
	return w
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func ptrTo[T any](v T) *T { return &v }

// randomResources builds a random policy set over w: Kubernetes
// NetworkPolicies (converted with FromK8s) and Calico NetworkPolicies and
// GlobalNetworkPolicies in tiers with Pass and Deny, network sets, named
// ports, nets/notNets (ipBlock with except).
func randomResources(r *rand.Rand, w *world) policy.Resources {
	res := policy.Resources{Namespaces: w.namespaces, Endpoints: w.endpoints}
	t1 := &policy.Tier{}
	t1.Name = "security"
	t1.Spec.Order = ptrTo(100.0)
	if r.IntN(2) == 0 {
		t1.Spec.DefaultAction = ptrTo(policy.Pass)
	}
	res.Tiers = []*policy.Tier{t1}
	// Network sets with some pods' addresses.
	for i := range 2 {
		ns := &policy.NetworkSet{}
		ns.Name, ns.Namespace = fmt.Sprintf("set%d", i), pick(r, w.namespaces).Name
		ns.Labels = map[string]string{"kind": pick(r, []string{"ext", "int"})}
		for range 1 + r.IntN(3) {
			ns.Spec.Nets = append(ns.Spec.Nets, randomNet(r, w))
		}
		if r.IntN(3) == 0 { // dual stack
			ns.Spec.Nets = append(ns.Spec.Nets, w.otherNet(r))
		}
		res.NetworkSets = append(res.NetworkSets, ns)
	}
	g := &policy.GlobalNetworkSet{}
	g.Name = "gset"
	g.Labels = map[string]string{"kind": "ext"}
	g.Spec.Nets = []string{randomNet(r, w)}
	res.GlobalNetworkSets = append(res.GlobalNetworkSets, g)
	if r.IntN(3) == 0 { // everything: hash:net cannot hold a /0 (nor ::/0)
		all := &policy.GlobalNetworkSet{}
		all.Name = "gall"
		all.Labels = map[string]string{"kind": "all"}
		all.Spec.Nets = []string{w.allNet()}
		res.GlobalNetworkSets = append(res.GlobalNetworkSets, all)
	}

	for i := range 1 + r.IntN(5) {
		switch r.IntN(3) {
		case 0:
			np, err := policy.FromK8s(randomK8s(r, w, i))
			if err == nil {
				res.NetworkPolicies = append(res.NetworkPolicies, np)
			}
		case 1:
			np := &policy.NetworkPolicy{}
			np.Name, np.Namespace = fmt.Sprintf("cnp%d", i), pick(r, w.namespaces).Name
			np.Spec = randomSpec(r, w, false)
			res.NetworkPolicies = append(res.NetworkPolicies, np)
		default:
			gnp := &policy.GlobalNetworkPolicy{}
			gnp.Name = fmt.Sprintf("gnp%d", i)
			s := randomSpec(r, w, true)
			gnp.Spec.Tier, gnp.Spec.Order, gnp.Spec.Selector, gnp.Spec.Types = s.Tier, s.Order, s.Selector, s.Types
			gnp.Spec.Ingress, gnp.Spec.Egress = s.Ingress, s.Egress
			if r.IntN(3) == 0 {
				gnp.Spec.NamespaceSelector = "team == '" + pick(r, teams) + "'"
			}
			res.GlobalNetworkPolicies = append(res.GlobalNetworkPolicies, gnp)
		}
	}
	return res
}

// randomNet is a /32 of a pod, or a /30 or /29 around one (IPv6: /128,
// /126, /125).
func randomNet(r *rand.Rand, w *world) string {
	a := pick(r, w.endpoints).Addresses[0]
	bits := w.hostBits() - pick(r, []int{0, 0, 2, 3})
	return netip.PrefixFrom(a, bits).Masked().String()
}

func randomLabelSel(r *rand.Rand) string {
	switch r.IntN(6) {
	case 0:
		return "app == '" + pick(r, apps) + "'"
	case 1:
		return "role == '" + pick(r, roles) + "'"
	case 2:
		return "app in {'" + pick(r, apps) + "', '" + pick(r, apps) + "'}"
	case 3:
		return "app != '" + pick(r, apps) + "' && role == '" + pick(r, roles) + "'"
	case 4:
		return "has(app)"
	}
	return "all()"
}

func randomSpec(r *rand.Rand, w *world, global bool) policy.NetworkPolicySpec {
	var s policy.NetworkPolicySpec
	s.Tier = pick(r, []string{"default", "default", "security", "kube-admin"})
	if r.IntN(4) > 0 {
		s.Order = ptrTo(float64(r.IntN(5) * 10))
	}
	s.Selector = randomLabelSel(r)
	for range r.IntN(3) {
		s.Ingress = append(s.Ingress, randomRule(r, w, true, global))
	}
	for range r.IntN(3) {
		s.Egress = append(s.Egress, randomRule(r, w, false, global))
	}
	switch r.IntN(4) {
	case 0:
		s.Types = []policy.PolicyType{policy.PolicyTypeIngress, policy.PolicyTypeEgress}
	case 1:
		s.Types = []policy.PolicyType{policy.PolicyTypeIngress}
		s.Egress = nil
	}
	return s
}

// randomPorts is a port list for a rule's destination (the probes'
// destination ports and their names) or source (the client ports and
// theirs), now and then with a name of the other protocol or side, which
// no probe matches.
func randomPorts(r *rand.Rand, proto policy.Protocol, src bool) []policy.Port {
	var ps []policy.Port
	nums, name := tcpPorts, "http"
	switch {
	case src && proto == policy.ProtoUDP:
		nums, name = clientPorts, "ucli"
	case src:
		nums, name = clientPorts, "cli"
	case proto == policy.ProtoUDP:
		nums, name = udpPorts, "dns"
	}
	if r.IntN(8) == 0 {
		name = pick(r, []string{"http", "dns", "cli", "ucli"})
	}
	n := 1 + r.IntN(2)
	if r.IntN(6) == 0 {
		n = 9 + r.IntN(6) // more than one multiport match holds (15 slots)
	}
	for range n {
		switch r.IntN(4) {
		case 0:
			ps = append(ps, policy.NamedPort(name))
		case 1:
			lo := pick(r, nums)
			ps = append(ps, policy.PortRange(lo-uint16(r.IntN(3)), lo+uint16(r.IntN(3))))
		default:
			ps = append(ps, policy.SinglePort(pick(r, nums)))
		}
	}
	return ps
}

func randomRule(r *rand.Rand, w *world, ingress, global bool) policy.Rule {
	var rule policy.Rule
	rule.Action = pick(r, []policy.Action{policy.Allow, policy.Allow, policy.Allow, policy.Deny, policy.Pass, policy.Log})
	switch x := r.IntN(12); {
	case x < 7:
		rule.Protocol = ptrTo(pick(r, []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP}))
		if r.IntN(8) == 0 { // Calico accepts both; equal ones never match
			rule.NotProtocol = ptrTo(pick(r, []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP}))
		}
	case x < 9:
		rule.Protocol = ptrTo(w.icmp())
		switch r.IntN(4) {
		case 0:
			rule.ICMP = randomICMP(r, w)
		case 1:
			rule.NotICMP = randomICMP(r, w)
		case 2:
			rule.ICMP, rule.NotICMP = randomICMP(r, w), randomICMP(r, w)
		}
	case x == 9:
		rule.NotProtocol = ptrTo(pick(r, []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP, w.icmp()}))
	case x == 10 && r.IntN(3) == 0:
		rule.NotICMP = randomICMP(r, w) // invalid without protocol ICMP: both sides must refuse it
	}
	peer := &rule.Source // the other end of the flow
	if !ingress {
		peer = &rule.Destination
	}
	switch r.IntN(12) {
	case 0:
		peer.Selector = randomLabelSel(r)
	case 1:
		peer.Selector = randomLabelSel(r)
		peer.NamespaceSelector = pick(r, []string{"all()", "team == 'x'", "team == 'y'"})
	case 2:
		peer.NotSelector = randomLabelSel(r)
	case 3:
		peer.Nets = []string{randomNet(r, w), randomNet(r, w)}
		if r.IntN(2) == 0 {
			peer.NotNets = []string{randomNet(r, w)}
		}
	case 4:
		peer.Selector = "kind == '" + pick(r, []string{"ext", "int"}) + "'"
		if global && r.IntN(2) == 0 {
			peer.NamespaceSelector = "global()"
		}
	case 5:
		peer.ServiceAccounts = &policy.ServiceAccountMatch{Names: []string{pick(r, sas)}}
		if r.IntN(2) == 0 {
			peer.ServiceAccounts.Selector = "trust == '" + pick(r, teams) + "'"
		}
	case 6: // everything but some nets
		peer.Nets = []string{w.allNet()}
		for range r.IntN(3) {
			peer.NotNets = append(peer.NotNets, randomNet(r, w))
		}
	case 7: // selector and nets: both must match
		peer.Selector = randomLabelSel(r)
		peer.Nets = []string{randomNet(r, w)}
		if r.IntN(2) == 0 {
			peer.Nets = append(peer.Nets, randomNet(r, w))
		}
	case 8:
		for range 1 + r.IntN(2) {
			peer.NotNets = append(peer.NotNets, randomNet(r, w))
		}
		if r.IntN(4) == 0 {
			peer.NotNets = append(peer.NotNets, w.allNet())
		}
	case 9:
		peer.Selector = "kind == 'all'"
		if global {
			peer.NamespaceSelector = "global()"
		}
	case 10: // nets of the other family only
		if r.IntN(2) == 0 {
			peer.Nets = []string{w.otherNet(r)}
		} else {
			peer.NotNets = []string{w.otherNet(r)}
		}
	}
	if r.IntN(8) == 0 { // either version: one that does not fit is refused
		rule.IPVersion = ptrTo(pick(r, []int{4, 6}))
	}
	// Ports on either side: destination ports on two rules in three,
	// source ports (the probes' client ports, named or not) on one in
	// three; a side with ports but no selector sometimes gets one, which
	// narrows its named ports to the endpoints it selects.
	if rule.Protocol != nil && !rule.Protocol.IsICMP() {
		for _, side := range []struct {
			m   *policy.EntityRule
			src bool
		}{{&rule.Destination, false}, {&rule.Source, true}} {
			if (side.src && r.IntN(3) > 0) || (!side.src && r.IntN(3) == 0) {
				continue
			}
			if r.IntN(4) == 0 {
				side.m.NotPorts = randomPorts(r, *rule.Protocol, side.src)
			} else {
				side.m.Ports = randomPorts(r, *rule.Protocol, side.src)
			}
			if side.m.Selector == "" && r.IntN(3) == 0 {
				side.m.Selector = randomLabelSel(r)
			}
		}
	}
	return rule
}

// randomICMP is an ICMP type/code match around the echo request (type 8
// code 0; ICMPv6 128 code 0) the kernel test sends: sometimes empty,
// sometimes a type only; the other types are echo reply (0; 129) and one
// the test never sends (13 timestamp; 1 destination unreachable).
func randomICMP(r *rand.Rand, w *world) *policy.ICMPFields {
	var f policy.ICMPFields
	if r.IntN(5) == 0 {
		return &f
	}
	types := []int{8, 8, 0, 13}
	if w.v6 {
		types = []int{128, 128, 129, 1}
	}
	f.Type = ptrTo(pick(r, types))
	if r.IntN(2) == 0 {
		f.Code = ptrTo(pick(r, []int{0, 0, 1}))
	}
	return &f
}

func randomK8s(r *rand.Rand, w *world, i int) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("knp%d", i), Namespace: pick(r, w.namespaces).Name}}
	if r.IntN(3) > 0 {
		np.Spec.PodSelector.MatchLabels = map[string]string{"app": pick(r, apps)}
	}
	peer := func() networkingv1.NetworkPolicyPeer {
		switch r.IntN(4) {
		case 0:
			return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": pick(r, roles)}}}
		case 1:
			return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": pick(r, teams)}}}
		case 2:
			a := pick(r, w.endpoints).Addresses[0]
			if r.IntN(3) == 0 {
				return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: w.allNet(), Except: []string{netip.PrefixFrom(a, w.hostBits()).String()}}}
			}
			cidr := netip.PrefixFrom(a, w.hostBits()-3).Masked()
			return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr.String(), Except: []string{netip.PrefixFrom(a, w.hostBits()).String()}}}
		}
		return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}, NamespaceSelector: &metav1.LabelSelector{}}
	}
	ports := func() []networkingv1.NetworkPolicyPort {
		var out []networkingv1.NetworkPolicyPort
		for range r.IntN(3) {
			proto := pick(r, []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP})
			var p intstr.IntOrString
			switch {
			case r.IntN(3) == 0 && proto == corev1.ProtocolTCP:
				p = intstr.FromString("http")
			case r.IntN(3) == 0:
				p = intstr.FromString("dns")
				proto = corev1.ProtocolUDP
			case proto == corev1.ProtocolTCP:
				p = intstr.FromInt32(int32(pick(r, tcpPorts)))
			default:
				p = intstr.FromInt32(int32(pick(r, udpPorts)))
			}
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p})
		}
		return out
	}
	if r.IntN(4) > 0 {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		for range r.IntN(3) {
			rule := networkingv1.NetworkPolicyIngressRule{Ports: ports()}
			for range r.IntN(3) {
				rule.From = append(rule.From, peer())
			}
			np.Spec.Ingress = append(np.Spec.Ingress, rule)
		}
	}
	if r.IntN(2) == 0 {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		for range r.IntN(3) {
			rule := networkingv1.NetworkPolicyEgressRule{Ports: ports()}
			for range r.IntN(3) {
				rule.To = append(rule.To, peer())
			}
			np.Spec.Egress = append(np.Spec.Egress, rule)
		}
	}
	return np
}
