package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// The Kubernetes e2e network policy cases, written as Kubernetes YAML,
// converted, and checked against flows.
func TestK8sNetworkPolicyE2E(t *testing.T) {
	pods := func() []Resource {
		web := wep("prod", "web", "10.0.0.1", "app", "web")
		db := wep("prod", "db", "10.0.0.2", "app", "db")
		db.Ports = []EndpointPort{{Name: "pg", Protocol: mustProto("TCP"), Port: 5432}}
		return []Resource{
			web, db,
			wep("dev", "web", "10.0.1.1", "app", "web"),
			wep("dev", "db", "10.0.1.2", "app", "db"),
			&Namespace{Name: "prod", Labels: map[string]string{"kubernetes.io/metadata.name": "prod", "env": "prod"}},
			&Namespace{Name: "dev", Labels: map[string]string{"kubernetes.io/metadata.name": "dev", "env": "dev"}},
		}
	}
	tests := []struct {
		name  string
		yaml  string
		flows []flowCase
	}{
		{
			name: "default deny all ingress",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: prod}
spec:
  podSelector: {}
`,
			flows: []flowCase{
				{"into prod", tcp("dev/web", "prod/db", 5432), Deny, "no rule matched in prod/knp.default.deny-all (Deny)"},
				{"within prod", tcp("prod/web", "prod/db", 5432), Deny, ""},
				{"egress from prod unaffected", tcp("prod/web", "dev/db", 5432), Allow, ""},
			},
		},
		{
			name: "default deny all egress",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Egress]
`,
			flows: []flowCase{
				{"out of prod", tcp("prod/web", "dev/db", 5432), Deny, "egress of prod/web (10.0.0.1): tier default"},
				{"into prod unaffected", tcp("dev/web", "prod/db", 5432), Allow, ""},
			},
		},
		{
			name: "allow all ingress with an empty rule",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: prod}
spec:
  podSelector: {}
  ingress: [{}]
`,
			flows: []flowCase{
				{"anything", tcp("8.8.8.8", "prod/db", 1), Allow, "rule 0 (Allow)"},
			},
		},
		{
			name: "empty ingress list isolates like a missing one",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: empty, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress: []
`,
			flows: []flowCase{
				{"denied", tcp("prod/web", "prod/db", 1), Deny, ""},
				{"other pod unaffected", tcp("prod/db", "prod/web", 1), Allow, ""},
			},
		},
		{
			name: "allow from a namespace",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-dev, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {env: dev}}}]
`,
			flows: []flowCase{
				{"from dev", tcp("dev/web", "prod/db", 5432), Allow, ""},
				{"from prod", tcp("prod/web", "prod/db", 5432), Deny, ""},
				{"external", tcp("8.8.8.8", "prod/db", 5432), Deny, ""},
			},
		},
		{
			name: "allow from every namespace with an empty namespaceSelector",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-all, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {}}]
`,
			flows: []flowCase{
				{"from dev", tcp("dev/web", "prod/db", 5432), Allow, ""},
				{"from prod", tcp("prod/web", "prod/db", 5432), Allow, ""},
				{"external", tcp("8.8.8.8", "prod/db", 5432), Deny, ""},
			},
		},
		{
			name: "allow from a pod in a namespace (both selectors in one peer)",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in-dev, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: dev}}
      podSelector: {matchLabels: {app: web}}
`,
			flows: []flowCase{
				{"dev web", tcp("dev/web", "prod/db", 5432), Allow, ""},
				{"dev db", tcp("dev/db", "prod/db", 5432), Deny, ""},
				{"prod web", tcp("prod/web", "prod/db", 5432), Deny, ""},
			},
		},
		{
			name: "allow from a pod in the same namespace",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-only, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}}]
`,
			flows: []flowCase{
				{"prod web", tcp("prod/web", "prod/db", 5432), Allow, ""},
				{"dev web", tcp("dev/web", "prod/db", 5432), Deny, ""},
			},
		},
		{
			name: "ipBlock with except",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cidr, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24]}}]
`,
			flows: []flowCase{
				{"inside", tcp("prod/web", "prod/db", 1), Allow, ""},
				{"excepted", tcp("dev/web", "prod/db", 1), Deny, ""},
				{"outside", tcp("8.8.8.8", "prod/db", 1), Deny, ""},
			},
		},
		{
			name: "egress to a port range with endPort",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: range, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8}}]
    ports: [{protocol: TCP, port: 32000, endPort: 32768}]
`,
			flows: []flowCase{
				{"low end", tcp("prod/web", "dev/db", 32000), Allow, ""},
				{"high end", tcp("prod/web", "dev/db", 32768), Allow, ""},
				{"above", tcp("prod/web", "dev/db", 32769), Deny, ""},
				{"udp", Flow{Src: peer("prod/web"), Dst: peer("dev/db"), Protocol: ProtoUDP, DstPort: 32000}, Deny, ""},
			},
		},
		{
			name: "named ports",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports: [{port: pg}]
`,
			flows: []flowCase{
				{"by name", tcp("prod/web", "prod/db", 5432), Allow, ""},
				{"other port", tcp("prod/web", "prod/db", 5433), Deny, ""},
				{"udp", Flow{Src: peer("prod/web"), Dst: peer("prod/db"), Protocol: ProtoUDP, DstPort: 5432}, Deny, ""},
			},
		},
		{
			name: "multiple policies are a union",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {env: dev}}}]
`,
			flows: []flowCase{
				{"from a", tcp("prod/web", "prod/db", 5432), Allow, "knp.default.a"},
				{"from b", tcp("dev/db", "prod/db", 1), Allow, "knp.default.b"},
				{"neither", tcp("prod/web", "prod/db", 1), Deny, ""},
			},
		},
		{
			name: "egress rules without policyTypes still apply",
			yaml: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: legacy, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
`,
			flows: []flowCase{
				{"allowed egress", tcp("prod/web", "prod/db", 5432), Allow, ""},
				{"other egress", tcp("prod/web", "dev/db", 5432), Deny, ""},
				{"ingress isolated too", tcp("prod/db", "prod/web", 80), Deny, ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := build(t, tt.yaml, pods()...)
			runFlows(t, ps, tt.flows)
		})
	}
}

func TestFromK8sShape(t *testing.T) {
	objs, err := Decode([]byte(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: shape, namespace: ns1}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - ipBlock: {cidr: 10.1.0.0/16, except: [10.1.2.0/24, 10.1.3.0/24]}
    - namespaceSelector: {}
    ports: [{port: 80}, {port: 81}, {protocol: UDP, port: 53}, {port: 82}, {port: http}, {protocol: SCTP}]
  egress:
  - {}
`))
	require.NoError(t, err)
	np := objs[0].(*NetworkPolicy)
	got, err := yaml.Marshal(np)
	require.NoError(t, err)
	assert.YAMLEq(t, `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: knp.default.shape, namespace: ns1}
spec:
  tier: default
  order: 1000
  selector: (projectcalico.org/orchestrator == "k8s" && app == "db")
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: SCTP
    source: {nets: [10.1.0.0/16], notNets: [10.1.2.0/24, 10.1.3.0/24]}
  - action: Allow
    protocol: SCTP
    source: {selector: projectcalico.org/orchestrator == "k8s", namespaceSelector: all()}
  - action: Allow
    protocol: TCP
    source: {nets: [10.1.0.0/16], notNets: [10.1.2.0/24, 10.1.3.0/24]}
    destination: {ports: ["80:82", http]}
  - action: Allow
    protocol: TCP
    source: {selector: projectcalico.org/orchestrator == "k8s", namespaceSelector: all()}
    destination: {ports: ["80:82", http]}
  - action: Allow
    protocol: UDP
    source: {nets: [10.1.0.0/16], notNets: [10.1.2.0/24, 10.1.3.0/24]}
    destination: {ports: [53]}
  - action: Allow
    protocol: UDP
    source: {selector: projectcalico.org/orchestrator == "k8s", namespaceSelector: all()}
    destination: {ports: [53]}
  egress:
  - action: Allow
`, string(got))
}

func TestFromK8sErrors(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x, namespace: ns1}, spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: "10.0.0.0"}}]}]}}`,
			"spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR"},
		{`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x, namespace: ns1}, spec: {podSelector: {}, egress: [{ports: [{port: 10, endPort: 5}]}]}}`,
			"spec.egress[0].ports[0].port: endPort 5 must be between port 10"},
		{`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x, namespace: ns1}, spec: {podSelector: {matchExpressions: [{key: a, operator: Bogus}]}}}`,
			"spec.podSelector:"},
		{`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x, namespace: ns1}, spec: {podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}}`,
			`spec.ingress[0].ports[0].protocol: unknown protocol "ICMP"`},
		// Kubernetes: "must specify a peer"; not "pods in this namespace".
		{`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x, namespace: ns1}, spec: {podSelector: {}, ingress: [{from: [{}]}]}}`,
			"spec.ingress[0].from[0]: must specify a peer"},
		{`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x, namespace: ns1}, spec: {podSelector: {}, egress: [{to: [{podSelector: {}}, {}]}]}}`,
			"spec.egress[0].to[1]: must specify a peer"},
		// A string port is a name for Kubernetes (IsValidPortName), not a number.
		{`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x, namespace: ns1}, spec: {podSelector: {}, ingress: [{ports: [{port: "80"}]}]}}`,
			`spec.ingress[0].ports[0].port: port name "80"`},
		{`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x, namespace: ns1}, spec: {podSelector: {}, ingress: [{ports: [{port: "1:2"}]}]}}`,
			`spec.ingress[0].ports[0].port: port name "1:2"`},
	}
	ipBlock := func(cidr, except string) string {
		return `{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x, namespace: ns1}, spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: "` +
			cidr + `", except: ["` + except + `"]}}]}]}}`
	}
	exceptWant := func(except, cidr string) string {
		return `spec.ingress[0].from[0].ipBlock.except[0]: "` + except + `" must be a strict subset of cidr "` + cidr + `"`
	}
	tests = append(tests, []struct{ yaml, want string }{
		{ipBlock("10.0.0.0/16", "192.168.0.0/24"), exceptWant("192.168.0.0/24", "10.0.0.0/16")},
		{ipBlock("10.0.0.0/16", "10.0.0.0/16"), exceptWant("10.0.0.0/16", "10.0.0.0/16")},
		{ipBlock("10.0.0.0/16", "10.0.0.0/8"), exceptWant("10.0.0.0/8", "10.0.0.0/16")},
		{ipBlock("10.0.0.0/16", "fd00::/64"), exceptWant("fd00::/64", "10.0.0.0/16")},
		{ipBlock("fd00::/48", "10.0.0.0/24"), exceptWant("10.0.0.0/24", "fd00::/48")},
		{ipBlock("10.0.0.0/16", "10.0.1.0"), `spec.ingress[0].from[0].ipBlock.except[0]: invalid CIDR "10.0.1.0"`},
	}...)
	for _, tt := range tests {
		_, err := Decode([]byte(tt.yaml))
		require.Error(t, err, tt.yaml)
		assert.ErrorIs(t, err, ErrInvalid)
		assert.Contains(t, err.Error(), "document 1: KubernetesNetworkPolicy ns1/x: "+tt.want)
	}
}

func TestSimplifyPorts(t *testing.T) {
	in := []Port{SinglePort(82), NamedPort("b"), SinglePort(80), PortRange(81, 81), SinglePort(90), PortRange(85, 95), NamedPort("b"), SinglePort(84)}
	assert.Equal(t, []Port{PortRange(80, 82), PortRange(84, 95), NamedPort("b")}, SimplifyPorts(in))
	assert.Nil(t, SimplifyPorts(nil))
}
