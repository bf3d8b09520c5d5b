package policy

import (
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tabbynet/tabby/selector"
)

// checkMeta checks apiVersion/kind (when set) and the name and namespace.
func checkMeta(tm metav1.TypeMeta, om *metav1.ObjectMeta, kind string, namespaced bool, e *errs) {
	if tm.APIVersion != "" && tm.APIVersion != APIVersion {
		e.add(root("apiVersion"), fmt.Sprintf("must be %s, got %q", APIVersion, tm.APIVersion))
	}
	if tm.Kind != "" && tm.Kind != kind {
		e.add(root("kind"), fmt.Sprintf("must be %s, got %q", kind, tm.Kind))
	}
	md := root("metadata")
	if msg := checkName(om.Name); msg != "" {
		e.add(md.field("name"), msg)
	}
	switch {
	case namespaced && om.Namespace == "":
		e.add(md.field("namespace"), "required")
	case namespaced:
		if msg := checkDNSLabel(om.Namespace); msg != "" {
			e.add(md.field("namespace"), msg)
		}
	case om.Namespace != "":
		e.add(md.field("namespace"), fmt.Sprintf("must be empty: %s is not namespaced", kind))
	}
	for k := range om.Labels {
		if err := selector.ValidateKey(k); err != nil {
			e.addErr(md.field("labels"), fmt.Errorf("label %q: %w", k, err))
		}
	}
}

func metaName(om *metav1.ObjectMeta) string {
	if om.Namespace == "" {
		return om.Name
	}
	return om.Namespace + "/" + om.Name
}

// Validate reports every problem with the tier, or nil.
func (t *Tier) Validate() error {
	var e errs
	checkMeta(t.TypeMeta, &t.ObjectMeta, KindTier, false, &e)
	if msg := checkDNSLabel(t.Name); checkName(t.Name) == "" && msg != "" {
		e.add(root("metadata").field("name"), msg)
	}
	sp := root("spec")
	checkOrder(t.Spec.Order, sp.field("order"), &e)
	if want, ok := builtinTierOrder(t.Name); ok && (t.Spec.Order == nil || *t.Spec.Order != want) {
		e.add(sp.field("order"), fmt.Sprintf("the %s tier's order must be %v", t.Name, want))
	}
	if a := t.Spec.DefaultAction; a != nil && *a != Deny && *a != Pass {
		e.add(sp.field("defaultAction"), fmt.Sprintf("must be Deny or Pass, got %q", *a))
	}
	return e.result(KindTier, t.Name)
}

func builtinTierOrder(name string) (float64, bool) {
	switch name {
	case TierDefault:
		return OrderDefault, true
	case TierKubeAdmin:
		return OrderKubeAdmin, true
	case TierKubeBaseline:
		return OrderKubeBaseline, true
	}
	return 0, false
}

// BuiltinTiers returns Calico's built-in tiers: kube-admin (order 1,000,
// default action Pass), default (1,000,000, Deny) and kube-baseline
// (10,000,000, Pass). A PolicySet adds any of them that it is not given.
func BuiltinTiers() []*Tier {
	mk := func(name string, order float64, a Action) *Tier {
		return &Tier{
			TypeMeta:   metav1.TypeMeta{APIVersion: APIVersion, Kind: KindTier},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       TierSpec{Order: &order, DefaultAction: &a},
		}
	}
	return []*Tier{
		mk(TierKubeAdmin, OrderKubeAdmin, Pass),
		mk(TierDefault, OrderDefault, Deny),
		mk(TierKubeBaseline, OrderKubeBaseline, Pass),
	}
}

func (p *NetworkPolicy) fields() policyFields {
	s := &p.Spec
	return policyFields{
		name: p.Name, namespace: p.Namespace, tier: s.Tier, order: s.Order,
		ingress: s.Ingress, egress: s.Egress, sel: s.Selector, saSel: s.ServiceAccountSelector,
		types: s.Types,
	}
}

func (p *GlobalNetworkPolicy) fields() policyFields {
	s := &p.Spec
	return policyFields{
		global: true, name: p.Name, tier: s.Tier, order: s.Order,
		ingress: s.Ingress, egress: s.Egress, sel: s.Selector, saSel: s.ServiceAccountSelector,
		nsSel: s.NamespaceSelector, types: s.Types,
		doNotTrack: s.DoNotTrack, preDNAT: s.PreDNAT, applyOnForward: s.ApplyOnForward,
	}
}

// Resolve validates the policy and returns it ready to evaluate or compile.
func (p *NetworkPolicy) Resolve() (*ResolvedPolicy, error) {
	return (*Resolver)(nil).ResolveNetworkPolicy(p)
}

// Validate reports every problem with the policy, or nil.
func (p *NetworkPolicy) Validate() error {
	_, err := p.Resolve()
	return err
}

// Resolve validates the policy and returns it ready to evaluate or compile.
func (p *GlobalNetworkPolicy) Resolve() (*ResolvedPolicy, error) {
	return (*Resolver)(nil).ResolveGlobalNetworkPolicy(p)
}

// Validate reports every problem with the policy, or nil.
func (p *GlobalNetworkPolicy) Validate() error {
	_, err := p.Resolve()
	return err
}

func checkNetworkSet(om *metav1.ObjectMeta, spec *NetworkSetSpec, e *errs) []netip.Prefix {
	if _, ok := om.Labels[LabelNamespace]; ok {
		e.add(root("metadata").field("labels"), LabelNamespace+" is set by the system and cannot be a label here")
	}
	var v4, v6 bool
	return resolveNets(spec.Nets, root("spec").field("nets"), e, &v4, &v6)
}

// Validate reports every problem with the network set, or nil.
func (n *NetworkSet) Validate() error {
	var e errs
	checkMeta(n.TypeMeta, &n.ObjectMeta, KindNetworkSet, true, &e)
	checkNetworkSet(&n.ObjectMeta, &n.Spec, &e)
	return e.result(KindNetworkSet, metaName(&n.ObjectMeta))
}

// Validate reports every problem with the global network set, or nil.
func (n *GlobalNetworkSet) Validate() error {
	var e errs
	checkMeta(n.TypeMeta, &n.ObjectMeta, KindGlobalNetworkSet, false, &e)
	checkNetworkSet(&n.ObjectMeta, &n.Spec, &e)
	return e.result(KindGlobalNetworkSet, n.Name)
}

// Validate reports every problem with the endpoint, or nil.
func (ep *Endpoint) Validate() error {
	var e errs
	kind := string(ep.Kind)
	switch ep.Kind {
	case "", WorkloadEndpoint:
		kind = string(WorkloadEndpoint)
		if msg := checkDNSLabel(ep.Namespace); msg != "" {
			e.add(root("namespace"), msg)
		}
	case HostEndpoint:
		if ep.Namespace != "" {
			e.add(root("namespace"), "must be empty for a host endpoint")
		}
		if ep.ServiceAccount != "" || len(ep.ServiceAccountLabels) > 0 {
			e.add(root("serviceAccount"), "host endpoints have no service account")
		}
	default:
		e.add(root("kind"), fmt.Sprintf("unknown kind %q, want WorkloadEndpoint or HostEndpoint", ep.Kind))
	}
	if msg := checkName(ep.Name); msg != "" {
		e.add(root("name"), msg)
	}
	for k := range ep.Labels {
		if err := selector.ValidateKey(k); err != nil {
			e.addErr(root("labels"), fmt.Errorf("label %q: %w", k, err))
		}
	}
	for i, a := range ep.Addresses {
		if !a.IsValid() || a.Zone() != "" {
			e.add(root("addresses").at(i), "invalid address")
		}
	}
	for i, port := range ep.Ports {
		checkEndpointPort(port, true, root("ports").at(i), &e)
	}
	return e.result(kind, ep.Key())
}

// Validate reports every problem with the namespace, or nil.
func (n *Namespace) Validate() error {
	var e errs
	if msg := checkDNSLabel(n.Name); msg != "" {
		e.add(root("name"), msg)
	}
	for k := range n.Labels {
		if err := selector.ValidateKey(k); err != nil {
			e.addErr(root("labels"), fmt.Errorf("label %q: %w", k, err))
		}
	}
	return e.result("Namespace", n.Name)
}

// Validate reports every problem with the service endpoints, or nil.
func (s *ServiceEndpoints) Validate() error {
	var e errs
	if msg := checkName(s.Name); msg != "" {
		e.add(root("name"), msg)
	}
	if msg := checkDNSLabel(s.Namespace); msg != "" {
		e.add(root("namespace"), msg)
	}
	for i, a := range s.Addresses {
		if !a.IsValid() || a.Zone() != "" {
			e.add(root("addresses").at(i), "invalid address")
		}
	}
	for i, port := range s.Ports {
		checkEndpointPort(port, false, root("ports").at(i), &e)
	}
	return e.result("ServiceEndpoints", s.Namespace+"/"+s.Name)
}

// checkEndpointPort checks a port an endpoint listens on; the name is
// required for an Endpoint's named port, optional for a service's.
func checkEndpointPort(port EndpointPort, nameRequired bool, p path, e *errs) {
	if port.Name != "" || nameRequired {
		if err := validatePortName(port.Name); err != nil {
			e.add(p.field("name"), err.Error())
		}
	}
	if !port.Protocol.SupportsPorts() {
		e.add(p.field("protocol"), fmt.Sprintf("must be TCP, UDP or SCTP, got %q", port.Protocol.String()))
	}
	if port.Port == 0 {
		e.add(p.field("port"), "must be 1-65535")
	}
}
