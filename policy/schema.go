package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/selector"
)

// Prefixes under which an item inherits its namespace's and its service
// account's labels, as Calico's namespace (kns.<ns>) and service-account
// (ksa.<ns>.<sa>) profiles carry them: a namespace label env=prod is
// pcns.env=prod on every endpoint and network set in the namespace.
const (
	LabelPrefixNamespace      = "pcns."
	LabelPrefixServiceAccount = "pcsa."
)

// The label schema
//
// Every selection in this package (the endpoints a policy applies to, the
// items a rule side's selector, namespaceSelector and serviceAccounts pick,
// the items its notSelector excludes) is one selector.Selector evaluated
// against an item's effective labels:
//
//	own labels        the endpoint's or network set's labels, minus the
//	                  reserved ones below (they cannot be set by hand)
//	implicit labels   workload endpoints: projectcalico.org/namespace,
//	                  projectcalico.org/orchestrator=k8s and, with a service
//	                  account, projectcalico.org/serviceaccount; namespaced
//	                  network sets: projectcalico.org/namespace
//	namespace labels  pcns.<key> for each label of the item's namespace, and
//	                  pcns.projectcalico.org/name=<namespace>
//	service account   pcsa.<key> for each label of a workload's service
//	                  account, and pcsa.projectcalico.org/name=<account>
//
// Reserved own labels, dropped: projectcalico.org/namespace and
// projectcalico.org/serviceaccount on items that do not get them
// implicitly (so no host endpoint or global network set can pose as
// namespaced), and every pcns. or pcsa. label (so no pod can pose as being
// in a namespace with other labels).

// prefixSelector returns s with every label key prefixed, as Calico's
// PrefixVisitor rewrites a namespaceSelector to pcns. keys. It rewrites the
// canonical form, whose grammar is fixed (see selector.Selector.String),
// and parses the result; it fails only when a prefixed key is too long.
func prefixSelector(s selector.Selector, prefix string) (selector.Selector, error) {
	c := s.String()
	var b strings.Builder
	b.Grow(len(c) + 4*len(prefix))
	term := true // at the start of a term
	for i := 0; i < len(c); {
		ch := c[i]
		switch {
		case ch == '"' || ch == '\'':
			end := strings.IndexByte(c[i+1:], ch)
			if end < 0 {
				return selector.Nothing(), fmt.Errorf("selector %q: unterminated string in canonical form", c)
			}
			b.WriteString(c[i : i+end+2])
			i += end + 2
			continue
		case !term:
			if strings.HasPrefix(c[i:], "&& ") || strings.HasPrefix(c[i:], "|| ") {
				b.WriteString(c[i : i+3])
				i += 3
				term = true
				continue
			}
		case ch == '!' || ch == '(':
		case strings.HasPrefix(c[i:], "all()"), strings.HasPrefix(c[i:], "global()"):
			n := strings.IndexByte(c[i:], ')') + 1
			b.WriteString(c[i : i+n])
			i += n
			term = false
			continue
		case strings.HasPrefix(c[i:], "has("):
			b.WriteString("has(")
			b.WriteString(prefix)
			i += len("has(")
			term = false
			continue
		default: // a key, then an operator and a value
			b.WriteString(prefix)
			term = false
			continue
		}
		b.WriteByte(ch)
		i++
	}
	out, err := selector.Parse(b.String())
	if err != nil {
		return selector.Nothing(), fmt.Errorf("selector %q with label keys prefixed by %q: %w", c, prefix, err)
	}
	return out, nil
}

// scopeSelector is the selector form of a Scope.
func scopeSelector(s Scope, ns string, nsSel selector.Selector) (selector.Selector, error) {
	switch s {
	case ScopeNamespace:
		return selector.Eq(LabelNamespace, ns), nil
	case ScopeAllNamespaces:
		return selector.Has(LabelNamespace), nil
	case ScopeGlobal:
		return selector.Not(selector.Has(LabelNamespace)), nil
	case ScopeNamespaceSelector:
		return prefixSelector(nsSel, LabelPrefixNamespace)
	default:
		return selector.All(), nil
	}
}

// policyEndpointSelector combines a resolved policy's scope, selector and
// serviceAccountSelector into the selector of the endpoints it applies to.
func policyEndpointSelector(p *ResolvedPolicy) (selector.Selector, error) {
	return combine(p.Scope, p.Namespace, p.NamespaceSelector, nil, p.ServiceAccountSelector, p.Selector)
}

// entitySelector combines an entity match's scope, service-account match
// and selector into one selector, as Calico's GetEntityRuleSelector does.
func entitySelector(m *EntityMatch) (selector.Selector, error) {
	return combine(m.Scope, m.Namespace, m.NamespaceSelector, m.ServiceAccountNames, m.ServiceAccountSelector, m.Selector)
}

// combine is scope && projectcalico.org/serviceaccount in {saNames} &&
// pcsa.<saSel> && sel, in canonical form.
func combine(scope Scope, ns string, nsSel selector.Selector, saNames []string, saSel *selector.Selector, sel selector.Selector) (selector.Selector, error) {
	sc, err := scopeSelector(scope, ns, nsSel)
	if err != nil {
		return selector.Nothing(), err
	}
	parts := []selector.Selector{sc}
	if len(saNames) > 0 {
		parts = append(parts, selector.In(LabelServiceAccount, saNames...))
	}
	if saSel != nil {
		sa, err := prefixSelector(*saSel, LabelPrefixServiceAccount)
		if err != nil {
			return selector.Nothing(), err
		}
		parts = append(parts, sa)
	}
	parts = append(parts, sel)
	out := canonical(parts...)
	if err := out.Err(); err != nil {
		// Parts that parse alone can nest one level too deep together (an
		// || group 100 levels deep under the && of the parts).
		return selector.Nothing(), fmt.Errorf("combined with the scope and service-account parts: %w", err)
	}
	return out, nil
}

// canonical is the conjunction of parts without all() terms and repeats, re-parsed from
// its canonical form so that equal selections are equal selectors however
// they were put together.
func canonical(parts ...selector.Selector) selector.Selector {
	var keep []selector.Selector
	for _, p := range parts {
		if !p.IsAll() && !slices.ContainsFunc(keep, p.Equal) {
			keep = append(keep, p)
		}
	}
	s := selector.And(keep...)
	if out, err := selector.Parse(s.String()); err == nil {
		return out
	}
	return s
}

// selection holds the combined selectors of a policy or an entity match,
// worked out once by Resolve.
type selection struct {
	ok  bool // worked out (false on a hand-built value)
	sel selector.Selector
	not selector.Selector // entity matches with a notSelector

	// The numbers of sel and not in owner's model, noted by the PolicySet
	// that resolved the policy.
	owner       *PolicySet
	num, notNum uint32
}

// EndpointSelector returns the one selector, over the documented label
// schema, of the endpoints the policy applies to: its scope (for a
// NetworkPolicy projectcalico.org/namespace == "<ns>"; for a global one its
// namespaceSelector with keys under pcns.), its serviceAccountSelector (keys
// under pcsa.) and its selector, in canonical form. Network sets may match
// it too; a policy applies to endpoints only.
func (p *ResolvedPolicy) EndpointSelector() selector.Selector {
	if p.selection.ok {
		return p.selection.sel
	}
	s, err := policyEndpointSelector(p)
	if err != nil {
		return selector.Nothing()
	}
	return s
}

// MatchSelector returns the one selector, over the documented label schema,
// of the items (endpoints and network sets) whose addresses the match's
// positive selection covers: the namespace scope, the service-account names
// (projectcalico.org/serviceaccount in {...}) and selector (keys under
// pcsa.) and the selector, in canonical form, as Calico's rule conversion
// builds it. ok is false when the match has no positive selection (any
// address matches). A dataplane keeps one IP set per distinct selector.
func (m *EntityMatch) MatchSelector() (sel selector.Selector, ok bool) {
	if !m.HasSelector {
		return selector.Selector{}, false
	}
	if m.selection.ok {
		return m.selection.sel, true
	}
	s, err := entitySelector(m)
	if err != nil {
		return selector.Nothing(), true
	}
	return s, true
}

// NotMatchSelector returns the notSelector in canonical form: an address
// owned by any item it matches is excluded (it is not combined with the
// namespace scope, as in Calico). ok is false when there is none.
func (m *EntityMatch) NotMatchSelector() (sel selector.Selector, ok bool) {
	if m.NotSelector == nil {
		return selector.Selector{}, false
	}
	if m.selection.ok {
		return m.selection.not, true
	}
	return canonical(*m.NotSelector), true
}

// combineField names the field a combine error is reported on: selector
// when the parts nest too deep together, else other.
func combineField(err error, other string) string {
	if errors.Is(err, selector.ErrUnrepresentable) {
		return "selector"
	}
	return other
}

// resolveSelections works out the combined selectors of a resolved policy
// and its rules, reporting a key that is too long once prefixed.
func resolveSelections(rp *ResolvedPolicy, res *Resolver, e *errs) {
	spec := root("spec")
	s, err := res.combine(rp.Scope, rp.Namespace, rp.NamespaceSelector, nil, rp.ServiceAccountSelector, rp.Selector)
	if err != nil {
		e.add(spec.field(combineField(err, "namespaceSelector")), err.Error())
	}
	rp.selection = selection{ok: true, sel: s}
	for _, d := range []struct {
		name  string
		rules []ResolvedRule
	}{{"ingress", rp.IngressRules}, {"egress", rp.EgressRules}} {
		for i := range d.rules {
			r := &d.rules[i]
			for _, side := range []struct {
				name string
				m    *EntityMatch
			}{{"source", &r.Src}, {"destination", &r.Dst}} {
				m := side.m
				m.selection.ok = true
				if m.HasSelector {
					s, err := res.combine(m.Scope, m.Namespace, m.NamespaceSelector, m.ServiceAccountNames, m.ServiceAccountSelector, m.Selector)
					if err != nil {
						at := spec.field(d.name).at(i).field(side.name)
						if f := combineField(err, ""); f != "" {
							at = at.field(f)
						}
						e.add(at, err.Error())
					}
					m.selection.sel = s
				}
				if m.NotSelector != nil {
					m.selection.not = res.canonical(*m.NotSelector)
				}
			}
		}
	}
}
