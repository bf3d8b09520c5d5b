package policy

import (
	"maps"
	"slices"
)

func copyFloat(f *float64) *float64 {
	if f == nil {
		return nil
	}
	v := *f
	return &v
}

func copyInt(i *int) *int {
	if i == nil {
		return nil
	}
	v := *i
	return &v
}

// DeepCopy returns an independent copy.
func (t *Tier) DeepCopy() *Tier {
	if t == nil {
		return nil
	}
	out := &Tier{TypeMeta: t.TypeMeta}
	t.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec.Order = copyFloat(t.Spec.Order)
	if t.Spec.DefaultAction != nil {
		a := *t.Spec.DefaultAction
		out.Spec.DefaultAction = &a
	}
	return out
}

// DeepCopy returns an independent copy.
func (p *NetworkPolicy) DeepCopy() *NetworkPolicy {
	if p == nil {
		return nil
	}
	out := &NetworkPolicy{TypeMeta: p.TypeMeta, Spec: p.Spec}
	p.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	s := &out.Spec
	s.Order, s.Types, s.Ingress, s.Egress = copyPolicyParts(s.Order, s.Types, s.Ingress, s.Egress)
	return out
}

// DeepCopy returns an independent copy.
func (p *GlobalNetworkPolicy) DeepCopy() *GlobalNetworkPolicy {
	if p == nil {
		return nil
	}
	out := &GlobalNetworkPolicy{TypeMeta: p.TypeMeta, Spec: p.Spec}
	p.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	s := &out.Spec
	s.Order, s.Types, s.Ingress, s.Egress = copyPolicyParts(s.Order, s.Types, s.Ingress, s.Egress)
	return out
}

// copyPolicyParts copies what the two policy specs hold by reference.
func copyPolicyParts(o *float64, t []PolicyType, in, eg []Rule) (*float64, []PolicyType, []Rule, []Rule) {
	return copyFloat(o), slices.Clone(t), copyRules(in), copyRules(eg)
}

func copyRules(rs []Rule) []Rule {
	if rs == nil {
		return nil
	}
	out := make([]Rule, len(rs))
	for i := range rs {
		out[i] = *rs[i].DeepCopy()
	}
	return out
}

// DeepCopy returns an independent copy.
func (r *Rule) DeepCopy() *Rule {
	if r == nil {
		return nil
	}
	out := *r
	out.IPVersion = copyInt(r.IPVersion)
	if r.Protocol != nil {
		p := *r.Protocol
		out.Protocol = &p
	}
	if r.NotProtocol != nil {
		p := *r.NotProtocol
		out.NotProtocol = &p
	}
	out.ICMP = r.ICMP.DeepCopy()
	out.NotICMP = r.NotICMP.DeepCopy()
	out.Source = *r.Source.DeepCopy()
	out.Destination = *r.Destination.DeepCopy()
	if r.HTTP != nil {
		out.HTTP = &HTTPMatch{Methods: slices.Clone(r.HTTP.Methods), Paths: slices.Clone(r.HTTP.Paths)}
	}
	if r.Metadata != nil {
		out.Metadata = &RuleMetadata{Annotations: maps.Clone(r.Metadata.Annotations)}
	}
	return &out
}

// DeepCopy returns an independent copy.
func (f *ICMPFields) DeepCopy() *ICMPFields {
	if f == nil {
		return nil
	}
	return &ICMPFields{Type: copyInt(f.Type), Code: copyInt(f.Code)}
}

// DeepCopy returns an independent copy.
func (er *EntityRule) DeepCopy() *EntityRule {
	if er == nil {
		return nil
	}
	out := *er
	out.Nets = slices.Clone(er.Nets)
	out.NotNets = slices.Clone(er.NotNets)
	out.Ports = slices.Clone(er.Ports)
	out.NotPorts = slices.Clone(er.NotPorts)
	if er.ServiceAccounts != nil {
		out.ServiceAccounts = &ServiceAccountMatch{Names: slices.Clone(er.ServiceAccounts.Names), Selector: er.ServiceAccounts.Selector}
	}
	if er.Services != nil {
		s := *er.Services
		out.Services = &s
	}
	return &out
}

// DeepCopy returns an independent copy.
func (n *NetworkSet) DeepCopy() *NetworkSet {
	if n == nil {
		return nil
	}
	out := &NetworkSet{TypeMeta: n.TypeMeta, Spec: NetworkSetSpec{Nets: slices.Clone(n.Spec.Nets)}}
	n.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// DeepCopy returns an independent copy.
func (n *GlobalNetworkSet) DeepCopy() *GlobalNetworkSet {
	if n == nil {
		return nil
	}
	out := &GlobalNetworkSet{TypeMeta: n.TypeMeta, Spec: NetworkSetSpec{Nets: slices.Clone(n.Spec.Nets)}}
	n.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// DeepCopy returns an independent copy.
func (e *Endpoint) DeepCopy() *Endpoint {
	if e == nil {
		return nil
	}
	out := *e
	out.Labels = maps.Clone(e.Labels)
	out.ServiceAccountLabels = maps.Clone(e.ServiceAccountLabels)
	out.Addresses = slices.Clone(e.Addresses)
	out.Ports = slices.Clone(e.Ports)
	out.Profiles = slices.Clone(e.Profiles)
	return &out
}

// DeepCopy returns an independent copy.
func (n *Namespace) DeepCopy() *Namespace {
	if n == nil {
		return nil
	}
	return &Namespace{Name: n.Name, Labels: maps.Clone(n.Labels)}
}
