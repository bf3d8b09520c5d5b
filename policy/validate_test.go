package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/tabbynet/tabby/selector"
)

func gnp(spec string) string {
	return "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n" + indent(spec)
}

func np(spec string) string {
	return "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: ns1}\nspec:\n" + indent(spec)
}

func indent(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

// formProblems are the TestDecodeRejects cases that are problems with the
// form of the input (ErrDecode) rather than invalid values.
var formProblems = map[string]bool{
	"unknown protocol": true, "protocol out of range": true, "unknown field": true, "wrong type": true,
	"bad port": true, "wrong apiVersion": true, "unknown kind": true, "malformed YAML": true, "not a mapping": true,
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // every one must appear
	}{
		{"bad selector", np("ingress:\n- action: Allow\n- action: Allow\n- action: Allow\n  source: {selector: \"a == 'x' &&\"}"),
			[]string{"spec.ingress[2].source.selector: ", "unexpected end of input"}},
		{"bad CIDR", np("egress: [{action: Allow, destination: {nets: [10.0.0.0/33]}}]"),
			[]string{`spec.egress[0].destination.nets[0]: invalid CIDR "10.0.0.0/33"`}},
		{"ports without protocol", np("ingress: [{action: Allow, destination: {ports: [80]}}]"),
			[]string{"spec.ingress[0].destination.ports: ports require protocol TCP, UDP or SCTP"}},
		{"ports on ICMP", np("ingress: [{action: Allow, protocol: ICMP, source: {notPorts: [80]}}]"),
			[]string{"spec.ingress[0].source.notPorts: ports require protocol"}},
		{"named port in source without protocol", np("ingress: [{action: Allow, source: {notPorts: [http]}}]"),
			[]string{"spec.ingress[0].source.notPorts: ports require protocol TCP, UDP or SCTP"}},
		{"unknown action", np("ingress: [{action: Accept}]"),
			[]string{`spec.ingress[0].action: unknown action "Accept"`}},
		{"missing action", np("ingress: [{protocol: TCP}]"),
			[]string{"spec.ingress[0].action: required"}},
		{"HTTP on UDP", np("ingress: [{action: Allow, protocol: UDP, http: {methods: [GET]}}]"),
			[]string{"spec.ingress[0].protocol: must be TCP in a rule with http"}},
		{"HTTP on Deny", np("ingress: [{action: Deny, http: {methods: [GET]}}]"),
			[]string{"spec.ingress[0].http: only valid in Allow rules"}},
		{"HTTP in egress", np("egress: [{action: Allow, http: {paths: [{exact: /a, prefix: /b}]}}]"),
			[]string{"spec.egress[0].http: not allowed in egress rules", "spec.egress[0].http.paths[0]: exactly one of exact and prefix"}},
		{"negative order", np("order: -1"), []string{"spec.order: must not be negative"}},
		{"ICMP code without type", np("ingress: [{action: Allow, protocol: ICMP, icmp: {code: 1}}]"),
			[]string{"spec.ingress[0].icmp.code: requires type"}},
		{"ICMP type range", np("ingress: [{action: Allow, protocol: ICMP, icmp: {type: 255}}]"),
			[]string{"spec.ingress[0].icmp.type: must be 0-254"}},
		{"ICMP without ICMP protocol", np("ingress: [{action: Allow, icmp: {type: 8}}]"),
			[]string{"spec.ingress[0].icmp: requires protocol ICMP or ICMPv6"}},
		{"notICMP without protocol", np("selector: app == 'db'\ningress: [{action: Allow, notICMP: {type: 8}}]"),
			[]string{"spec.ingress[0].notICMP: requires protocol ICMP or ICMPv6"}},
		{"notICMP with TCP", np("egress: [{action: Deny, protocol: TCP, notICMP: {type: 0, code: 0}}]"),
			[]string{"spec.egress[0].notICMP: requires protocol ICMP or ICMPv6"}},
		{"empty notICMP with notProtocol", np("ingress: [{action: Allow, notProtocol: ICMP, notICMP: {}}]"),
			[]string{"spec.ingress[0].notICMP: requires protocol ICMP or ICMPv6"}},
		{"ICMP with IPv6", np("ingress: [{action: Allow, protocol: ICMP, ipVersion: 6}]"),
			[]string{"spec.ingress[0].ipVersion: must be 4 with protocol ICMP"}},
		{"bad ipVersion", np("ingress: [{action: Allow, ipVersion: 5}]"),
			[]string{"spec.ingress[0].ipVersion: must be 4 or 6"}},
		{"mixed families", np("ingress: [{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {nets: ['fd00::/8']}}]"),
			[]string{"spec.ingress[0]: rule mixes IPv4 and IPv6"}},
		{"unknown protocol", np("ingress: [{action: Allow, protocol: GRE}]"),
			[]string{`spec.ingress[0].protocol: unknown protocol "GRE"`}},
		{"protocol out of range", np("ingress: [{action: Allow, notProtocol: 256}]"),
			[]string{`spec.ingress[0].notProtocol: unknown protocol "256"`}},
		{"services with selector", np("egress: [{action: Allow, destination: {services: {name: s}, selector: a == 'b', nets: [10.0.0.0/8]}}]"),
			[]string{"spec.egress[0].destination.services: cannot be combined with selector", "spec.egress[0].destination.services: cannot be combined with nets"}},
		{"services in ingress destination", np("ingress: [{action: Allow, destination: {services: {name: s}}}]"),
			[]string{"spec.ingress[0].destination.services: not allowed in an ingress rule's destination"}},
		{"services with ports", np("egress: [{action: Allow, protocol: TCP, destination: {services: {name: s}, ports: [80]}}]"),
			[]string{"spec.egress[0].destination.ports: cannot be combined with services"}},
		{"global service needs a namespace", gnp("egress: [{action: Allow, destination: {services: {name: s}}}]"),
			[]string{"spec.egress[0].destination.services.namespace: required in a global policy"}},
		{"global() in a selector", gnp("selector: global()"),
			[]string{"spec.selector: global() is only valid as an entity rule's namespaceSelector"}},
		{"global() combined", np("ingress: [{action: Allow, source: {namespaceSelector: global() && a == 'b'}}]"),
			[]string{"spec.ingress[0].source.namespaceSelector: global() must be the whole namespaceSelector"}},
		{"bad types", np("types: [Ingress, Ingress, Sideways]"),
			[]string{`spec.types[1]: type "Ingress" listed more than once`, `spec.types[2]: unknown type "Sideways"`}},
		{"preDNAT rules", gnp("preDNAT: true\ndoNotTrack: true\negress: [{action: Allow}]"),
			[]string{"spec.preDNAT: preDNAT and doNotTrack cannot both be true", "spec.preDNAT: a preDNAT policy cannot have egress", "spec.applyOnForward: must be true"}},
		{"namespace on a global policy", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p, namespace: x}\n",
			[]string{"metadata.namespace: must be empty"}},
		{"missing namespace", "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p}\n",
			[]string{"metadata.namespace: required"}},
		{"bad name", "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: Bad_Name, namespace: x}\n",
			[]string{`metadata.name: "Bad_Name": a lowercase RFC 1123 subdomain`}},
		{"bad tier default action", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {defaultAction: Allow}\n",
			[]string{"spec.defaultAction: must be Deny or Pass"}},
		{"built-in tier order", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: default}\nspec: {order: 5}\n",
			[]string{"spec.order: the default tier's order must be 1e+06"}},
		{"network set CIDR", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [nonsense]}\n",
			[]string{`spec.nets[0]: invalid CIDR "nonsense"`}},
		{"network set namespace label", "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: s, namespace: x, labels: {projectcalico.org/namespace: other}}\n",
			[]string{"metadata.labels: projectcalico.org/namespace is set by the system"}},
		{"unknown field", np("ingress:\n- action: Allow\n  source: {selectr: all()}"),
			[]string{"spec.ingress[0].source.selectr: unknown field"}},
		{"wrong type", np("order: first\ningress: {action: Allow}"),
			[]string{"spec.order: must be a number, got a string", "spec.ingress: must be a list, got a mapping"}},
		{"bad port", np("ingress: [{action: Allow, protocol: TCP, destination: {ports: ['90:80', 70000, 'Bad!']}}]"),
			[]string{"spec.ingress[0].destination.ports[0]: port range \"90:80\": minimum is above maximum",
				"spec.ingress[0].destination.ports[1]: port must be a number 0-65535",
				"spec.ingress[0].destination.ports[2]: port name \"Bad!\""}},
		{"wrong apiVersion", "apiVersion: v1\nkind: NetworkPolicy\n", []string{"apiVersion: must be projectcalico.org/v3"}},
		{"unknown kind", "apiVersion: projectcalico.org/v3\nkind: Policy\n", []string{`kind: unknown kind "Policy"`}},
		{"malformed YAML", "apiVersion: [", []string{"malformed YAML"}},
		{"not a mapping", "- a\n- b\n", []string{"a resource must be a mapping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode([]byte(tt.doc))
			require.Error(t, err)
			assert.Nil(t, objs, "nothing is returned on error")
			assert.ErrorIs(t, err, ErrInvalid)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			for _, f := range ve.Errors {
				assert.Equal(t, 1, f.Document)
			}
			// Only problems with the form of the input are ErrDecode.
			assert.Equal(t, formProblems[tt.name], errors.Is(err, ErrDecode))
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestValidationErrorType(t *testing.T) {
	p := &NetworkPolicy{}
	p.Name, p.Namespace = "x", "ns1"
	p.Spec.Ingress = []Rule{{Action: "Nope"}, {Action: Allow, Source: EntityRule{Selector: "(("}}}
	err := p.Validate()
	require.ErrorIs(t, err, ErrInvalid)
	var ve *ValidationError
	require.True(t, errors.As(err, &ve))
	require.Len(t, ve.Errors, 2, "every problem is reported")
	assert.Equal(t, "spec.ingress[0].action", ve.Errors[0].Field)
	assert.Equal(t, "spec.ingress[1].source.selector", ve.Errors[1].Field)
	for _, f := range ve.Errors {
		assert.Equal(t, "NetworkPolicy", f.Kind)
		assert.Equal(t, "ns1/x", f.Name)
		assert.Zero(t, f.Document, "not decoded")
	}
}

func TestNewPolicySetRejects(t *testing.T) {
	good := &NetworkPolicy{}
	good.Name, good.Namespace = "p", "ns1"
	other := good.DeepCopy()
	other.Spec.Tier = "missing"
	other.Name = "q"
	_, err := NewPolicySet(Resources{
		NetworkPolicies: []*NetworkPolicy{good, good.DeepCopy(), other},
		Endpoints:       []*Endpoint{wep("ns1", "a", "10.0.0.1"), wep("ns1", "a", "10.0.0.2"), {Name: "b"}},
	})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrDuplicate)
	assert.ErrorIs(t, err, ErrUnknownTier)
	assert.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "WorkloadEndpoint b: namespace: required")
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Errors, 4, "every problem in one error: %v", err)
}

func TestRoundTrip(t *testing.T) {
	docs := []string{
		gnp(`
tier: security
order: 10.5
selector: app == "web"
namespaceSelector: env == "prod"
serviceAccountSelector: team == "a"
types: [Ingress, Egress]
ingress:
- action: Allow
  ipVersion: 4
  protocol: TCP
  source:
    nets: [10.0.0.0/8]
    notNets: [10.1.0.0/16]
    selector: role == "lb"
    namespaceSelector: global()
    notSelector: has(bad)
    serviceAccounts: {names: [a, b], selector: x == "y"}
  destination:
    ports: [80, "8000:8080", http]
    notPorts: [8010]
  http:
    methods: [GET]
    paths: [{exact: /a}, {prefix: /b/}]
  metadata: {annotations: {why: because}}
- action: Deny
  protocol: ICMP
  icmp: {type: 8, code: 0}
  notICMP: {type: 0}
- action: Pass
  notProtocol: 47
- action: Allow
  protocol: UDP
  notProtocol: UDP
egress:
- action: Log
- action: Allow
  destination: {services: {name: db, namespace: prod}}
`),
		"apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100, defaultAction: Pass}\n",
		"apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: s, namespace: ns1, labels: {a: b}}\nspec: {nets: [1.2.3.0/24, 'fd00::/64']}\n",
		"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [1.2.3.4/32]}\n",
	}
	for _, d := range docs {
		objs, err := Decode([]byte(d))
		require.NoError(t, err, d)
		require.Len(t, objs, 1)
		out, err := yaml.Marshal(objs[0])
		require.NoError(t, err)
		assert.YAMLEq(t, d, string(out))
		// DeepCopy is equal and independent.
		switch o := objs[0].(type) {
		case *GlobalNetworkPolicy:
			c := o.DeepCopy()
			assert.Equal(t, o, c)
			c.Spec.Ingress[0].Source.ServiceAccounts.Names[0] = "changed"
			*c.Spec.Order = 1
			assert.Equal(t, "a", o.Spec.Ingress[0].Source.ServiceAccounts.Names[0])
			assert.Equal(t, 10.5, *o.Spec.Order)
		case *Tier:
			assert.Equal(t, o, o.DeepCopy())
		case *NetworkSet:
			assert.Equal(t, o, o.DeepCopy())
		case *GlobalNetworkSet:
			assert.Equal(t, o, o.DeepCopy())
		}
	}
}

func TestDecodeMultiDocument(t *testing.T) {
	objs, err := Decode([]byte(`---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: a}
---

---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: b}
`))
	require.NoError(t, err)
	require.Len(t, objs, 2)
	assert.IsType(t, &Tier{}, objs[0])
	assert.IsType(t, &GlobalNetworkSet{}, objs[1])

	// One bad document fails the whole input, naming it.
	_, err = Decode([]byte("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: a}\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: B}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `document 2: Tier B: metadata.name: "B"`)
}

func TestDecodeLists(t *testing.T) {
	objs, err := Decode([]byte(`
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: a, namespace: ns1}
  spec: {podSelector: {}}
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkSet
  metadata: {name: b}
---
apiVersion: projectcalico.org/v3
kind: TierList
items:
- metadata: {name: c}
`))
	require.NoError(t, err)
	require.Len(t, objs, 3)
	assert.Equal(t, "knp.default.a", objs[0].(*NetworkPolicy).Name)
	assert.IsType(t, &GlobalNetworkSet{}, objs[1])
	assert.Equal(t, "c", objs[2].(*Tier).Name)

	_, err = Decode([]byte("apiVersion: v1\nkind: List\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: Tier\n  metadata: {name: x}\n  spec: {order: -1}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "document 1: Tier x: items[0].spec.order: must not be negative")
}

func TestDefaultTypes(t *testing.T) {
	assert.Equal(t, []PolicyType{PolicyTypeIngress}, DefaultTypes(0, 0))
	assert.Equal(t, []PolicyType{PolicyTypeIngress}, DefaultTypes(2, 0))
	assert.Equal(t, []PolicyType{PolicyTypeEgress}, DefaultTypes(0, 1))
	assert.Equal(t, []PolicyType{PolicyTypeIngress, PolicyTypeEgress}, DefaultTypes(1, 1))
}

func TestPortAndProtocolJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Port
		out  string
	}{
		{"80", SinglePort(80), "80"},
		{`"80"`, SinglePort(80), "80"},
		{`"1:2"`, PortRange(1, 2), `"1:2"`},
		{`"http-alt"`, NamedPort("http-alt"), `"http-alt"`},
	} {
		var p Port
		require.NoError(t, p.UnmarshalJSON([]byte(c.in)))
		assert.Equal(t, c.want, p)
		b, err := p.MarshalJSON()
		require.NoError(t, err)
		assert.Equal(t, c.out, string(b))
	}
	var pr Protocol
	require.NoError(t, pr.UnmarshalJSON([]byte(`"tcp"`)))
	assert.Equal(t, ProtoTCP, pr)
	require.NoError(t, pr.UnmarshalJSON([]byte(`"132"`)))
	assert.Equal(t, Protocol(132), pr)
	assert.Equal(t, ProtoSCTP, pr)
	assert.True(t, pr.SupportsPorts())
	require.Error(t, pr.UnmarshalJSON([]byte(`{}`)))
}

// A namespaceSelector or serviceAccountSelector that parses is resolved
// up to the nesting limit: the label-prefixed copy Resolve makes re-parses
// its canonical form. Nesting beyond the limit is reported on the field
// itself as a *selector.ParseError; parts that parse alone but nest too
// deep once combined (an || group at the limit under the parts' &&) are
// reported on the selector, never resolved to a selector that matches
// nothing.
func TestDeepNamespaceSelector(t *testing.T) {
	nested := func(n int) string {
		return strings.Repeat(`a == "x" || b == "y" && (`, n) + `z == "1"` + strings.Repeat(")", n)
	}
	gnp := func(sel string) *GlobalNetworkPolicy {
		return &GlobalNetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "deep"},
			Spec:       GlobalNetworkPolicySpec{NamespaceSelector: sel, ServiceAccountSelector: sel},
		}
	}
	rp, err := gnp(nested(49)).Resolve() // 98 levels in canonical form
	require.NoError(t, err)
	require.NoError(t, rp.EndpointSelector().Err())
	assert.True(t, rp.EndpointSelector().Evaluate(selector.Map{"pcns.a": "x", "pcsa.a": "x"}))

	_, err = gnp(nested(50)).Resolve() // 100 levels alone, 101 once combined
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "spec.selector: combined with the scope and service-account parts: brackets nested deeper than 100")

	np := &NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deep", Namespace: "ns"},
		Spec:       NetworkPolicySpec{Ingress: []Rule{{Action: Allow, Source: EntityRule{Selector: nested(50)}}}},
	}
	_, err = np.Resolve()
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "spec.ingress[0].source.selector: combined")

	_, err = gnp(nested(60)).Resolve()
	var pe *selector.ParseError
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, err.Error(), "spec.namespaceSelector: brackets nested deeper than 100")
	assert.NotContains(t, err.Error(), "prefixed")
}
