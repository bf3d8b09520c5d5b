package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tabbynet/tabby/selector"
)

// Decode reports every problem of every document at once: unknown fields,
// values of the wrong type and invalid values together, each with its
// document, kind, name and field path.
func TestDecodeReportsEverythingAtOnce(t *testing.T) {
	input := `apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: ok}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: ns1}
spec:
  order: first
  selectr: all()
  ingress:
  - action: Allow
    source: {selector: "a == "}
  - action: Nope
    protocol: TCP
    destination: {ports: [80]}
  - action: 5
---
apiVersion: v1
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkSet
  metadata: {name: s}
  spec: {nets: [nonsense, 10.0.0.0/8]}
`
	objs, err := Decode([]byte(input))
	require.Error(t, err)
	assert.Nil(t, objs)
	assert.ErrorIs(t, err, ErrInvalid)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)

	type problem struct {
		doc               int
		kind, name, field string
		decode            bool
	}
	var got []problem
	for _, f := range ve.Errors {
		got = append(got, problem{f.Document, f.Kind, f.Name, f.Field, errors.Is(f, ErrDecode)})
	}
	assert.ElementsMatch(t, []problem{
		{2, KindNetworkPolicy, "ns1/p", "spec.ingress[2].action", true}, // wrong type, reported once
		{2, KindNetworkPolicy, "ns1/p", "spec.order", true},
		{2, KindNetworkPolicy, "ns1/p", "spec.selectr", true},
		{2, KindNetworkPolicy, "ns1/p", "spec.ingress[0].source.selector", false},
		{2, KindNetworkPolicy, "ns1/p", "spec.ingress[1].action", false},
		{3, KindGlobalNetworkSet, "s", "items[0].spec.nets[0]", false},
	}, got, "%v", err)

	lines := strings.Split(err.Error(), "\n")
	assert.Len(t, lines, len(ve.Errors), "one problem per line")
	assert.Contains(t, lines, `document 2: NetworkPolicy ns1/p: spec.ingress[1].action: unknown action "Nope", want Allow, Deny, Log or Pass`)
	assert.Contains(t, lines, `document 3: GlobalNetworkSet s: items[0].spec.nets[0]: invalid CIDR "nonsense"`)
}

// A bad selector keeps its type through Validate, FromK8s, Decode and
// NewPolicySet, while the error is also a policy validation error.
func TestSelectorErrorsKeepTheirType(t *testing.T) {
	bad := &NetworkPolicy{ObjectMeta: objMeta("ns1", "p")}
	bad.Spec.Ingress = []Rule{{Action: Allow, Source: EntityRule{Selector: "a == 'x' &"}}}
	gbad := &GlobalNetworkPolicy{ObjectMeta: objMeta("", "g")}
	gbad.Spec.NamespaceSelector = "(("
	_, decodeErr := Decode([]byte(np("ingress: [{action: Allow, source: {selector: \"a == 'x' &\"}}]")))
	_, resolveErr := bad.Resolve()
	_, setErr := NewPolicySet(Resources{NetworkPolicies: []*NetworkPolicy{bad}, GlobalNetworkPolicies: []*GlobalNetworkPolicy{gbad}})

	for name, err := range map[string]error{
		"Validate":        bad.Validate(),
		"Resolve":         resolveErr,
		"global Validate": gbad.Validate(),
		"Decode":          decodeErr,
		"NewPolicySet":    setErr,
	} {
		t.Run(name, func(t *testing.T) {
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalid)
			assert.ErrorIs(t, err, selector.ErrInvalid)
			var pe *selector.ParseError
			require.ErrorAs(t, err, &pe)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			assert.Contains(t, []string{"spec.ingress[0].source.selector", "spec.namespaceSelector"}, fe.Field)
		})
	}
	var ve *ValidationError
	require.ErrorAs(t, setErr, &ve)
	assert.Len(t, ve.Errors, 2, "NewPolicySet reports both policies in one error")
}

func TestNewPolicySetProblemsAreStructured(t *testing.T) {
	p := &NetworkPolicy{ObjectMeta: objMeta("ns1", "p")}
	p.Spec.Tier = "missing"
	_, err := NewPolicySet(Resources{
		NetworkPolicies: []*NetworkPolicy{p},
		Namespaces:      []*Namespace{{Name: "a"}, {Name: "a"}},
	})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Errors, 2)
	assert.Equal(t, FieldError{Kind: KindNetworkPolicy, Name: "ns1/p", Field: "spec.tier", Detail: `"missing": unknown tier`}, withoutErr(ve.Errors[0]))
	assert.ErrorIs(t, ve.Errors[0], ErrUnknownTier)
	assert.Equal(t, FieldError{Kind: KindNamespace, Name: "a", Detail: "duplicate resource"}, withoutErr(ve.Errors[1]))
	assert.ErrorIs(t, ve.Errors[1], ErrDuplicate)
	assert.Equal(t, "NetworkPolicy ns1/p: spec.tier: \"missing\": unknown tier\nNamespace a: duplicate resource", err.Error())
}

func withoutErr(f *FieldError) FieldError {
	c := *f
	c.Err = nil
	return c
}

// A Kubernetes NetworkPolicy whose label selector cannot be converted fails
// FromK8s with an error that is both policy's and selector's ErrInvalid.
func TestFromK8sLabelSelectorErrorKeepsItsType(t *testing.T) {
	knp := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "p"}}
	knp.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Gt", Values: []string{"1"}}}}
	_, err := FromK8s(knp)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrInvalid)
	assert.ErrorIs(t, err, selector.ErrInvalid)
}
