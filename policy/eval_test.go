package policy

import (
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Three pods in two namespaces, a host endpoint and sets used by most cases.
func fixture() []Resource {
	return []Resource{
		wep("prod", "web", "10.0.0.1", "app", "web", "tier", "frontend"),
		wep("prod", "db", "10.0.0.2", "app", "db"),
		wep("dev", "web", "10.0.1.1", "app", "web"),
		hep("node1-eth0", "192.168.0.10", "role", "node"),
		&Namespace{Name: "prod", Labels: map[string]string{"env": "prod"}},
		&Namespace{Name: "dev", Labels: map[string]string{"env": "dev"}},
	}
}

type flowCase struct {
	name string
	flow Flow
	want Action
	// trace, when set, must appear in the verdict's String().
	trace string
}

func runFlows(t *testing.T, ps *PolicySet, cases []flowCase) {
	t.Helper()
	for _, c := range cases {
		v := verdict(t, ps, c.flow)
		assert.Equal(t, c.want, v.Action, "%s\n%s", c.name, v)
		if c.trace != "" {
			assert.Contains(t, v.String(), c.trace, c.name)
		}
	}
}

func TestEvaluateSemantics(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		extra []Resource
		flows []flowCase
	}{
		{
			name: "no policy: profiles allow workloads",
			flows: []flowCase{
				{"pod to pod", tcp("prod/web", "prod/db", 5432), Allow, "no policy applies → profile kns.prod (Allow)"},
				{"external to pod", tcp("8.8.8.8", "prod/db", 5432), Allow, "egress of 8.8.8.8: not an endpoint"},
			},
		},
		{
			name: "host endpoint with no policy and no profile denies",
			flows: []flowCase{
				{"pod to host", tcp("prod/web", "hep:node1-eth0", 22), Deny, "profile (none) (Deny)"},
			},
		},
		{
			name: "types default to ingress when there are no egress rules",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: lockdown, namespace: prod}
spec:
  selector: app == 'db'
`,
			flows: []flowCase{
				{"ingress isolated", tcp("prod/web", "prod/db", 5432), Deny, "tier default → end of tier, no rule matched in prod/lockdown (Deny)"},
				{"egress not isolated", tcp("prod/db", "prod/web", 80), Allow, ""},
			},
		},
		{
			name: "types default to egress when there are only egress rules",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: out, namespace: prod}
spec:
  selector: app == 'db'
  egress:
  - action: Allow
    protocol: TCP
    destination: {ports: [53]}
`,
			flows: []flowCase{
				{"ingress untouched", tcp("prod/web", "prod/db", 5432), Allow, ""},
				{"egress allowed port", tcp("prod/db", "prod/web", 53), Allow, "policy prod/out rule 0 (Allow)"},
				{"egress other port denied", tcp("prod/db", "prod/web", 80), Deny, ""},
			},
		},
		{
			name: "explicit types with no egress rules deny all egress",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: both, namespace: prod}
spec:
  selector: app == 'db'
  types: [Ingress, Egress]
  ingress: [{action: Allow}]
`,
			flows: []flowCase{
				{"ingress allowed", tcp("prod/web", "prod/db", 5432), Allow, ""},
				{"egress denied", tcp("prod/db", "prod/web", 80), Deny, ""},
			},
		},
		{
			name: "order: lower first, nil last, ties by name",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a-unordered, namespace: prod}
spec:
  selector: all()
  ingress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: z-deny, namespace: prod}
spec:
  order: 10
  selector: all()
  ingress: [{action: Deny, protocol: TCP, destination: {ports: [22]}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b-allow, namespace: prod}
spec:
  order: 10
  selector: all()
  ingress: [{action: Allow, protocol: TCP, destination: {ports: ["20:30"]}}]
`,
			flows: []flowCase{
				{"tie broken by name: b-allow first", tcp("prod/web", "prod/db", 22), Allow, "policy prod/b-allow rule 0 (Allow)"},
				{"unordered policy last", tcp("prod/web", "prod/db", 80), Allow, "policy prod/a-unordered rule 0 (Allow)"},
			},
		},
		{
			name: "log records and continues; a log-only policy ends in deny",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: log-all, namespace: prod}
spec:
  order: 1
  selector: all()
  ingress: [{action: Log}]
`,
			flows: []flowCase{
				{"log then deny", tcp("prod/web", "prod/db", 80), Deny, "tier default → policy prod/log-all rule 0 (Log) → end of tier, no rule matched in prod/log-all (Deny)"},
			},
		},
		{
			name: "pass skips to the next tier that applies; last tier passes to profiles",
			yaml: `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 200}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.pass-web}
spec:
  tier: security
  selector: app == 'web' || app == 'db'
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [23]}}
  - {action: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.only-dev}
spec:
  tier: platform
  selector: projectcalico.org/namespace == 'dev'
  ingress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress: [{action: Pass}]
`,
			flows: []flowCase{
				{"deny in first tier", tcp("prod/web", "prod/db", 23), Deny, "tier security → policy security.pass-web rule 0 (Deny)"},
				// platform does not apply to prod/db, so Pass goes straight to default.
				{"pass to default tier, then pass to profiles", tcp("prod/web", "prod/db", 80), Allow,
					"tier security → policy security.pass-web rule 1 (Pass); tier default → policy prod/db rule 0 (Pass) → profile kns.prod (Allow)"},
				{"pass into a tier that denies", tcp("prod/web", "dev/web", 80), Deny,
					"tier security → policy security.pass-web rule 1 (Pass); tier platform → policy platform.only-dev rule 0 (Deny)"},
			},
		},
		{
			name: "tier default action Pass",
			yaml: `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: soft}
spec: {order: 5, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: soft.nothing}
spec:
  tier: soft
  selector: all()
  ingress: [{action: Deny, protocol: UDP}]
`,
			flows: []flowCase{
				{"tcp passes through", tcp("prod/web", "prod/db", 80), Allow, "tier soft → end of tier, no rule matched in soft.nothing (Pass) → profile kns.prod (Allow)"},
			},
		},
		{
			name: "built-in tiers: kube-admin before default before kube-baseline",
			yaml: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: baseline-deny}
spec:
  tier: kube-baseline
  selector: all()
  ingress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: admin-allow-dns}
spec:
  tier: kube-admin
  selector: all()
  ingress: [{action: Allow, protocol: UDP, destination: {ports: [53]}}]
`,
			flows: []flowCase{
				{"admin allows", Flow{Src: peer("prod/web"), Dst: peer("prod/db"), Protocol: ProtoUDP, DstPort: 53}, Allow, "tier kube-admin → policy admin-allow-dns rule 0 (Allow)"},
				{"admin passes, baseline denies", tcp("prod/web", "prod/db", 80), Deny, "tier kube-admin → end of tier, no rule matched in admin-allow-dns (Pass); tier kube-baseline → policy baseline-deny rule 0 (Deny)"},
			},
		},
		{
			name: "rule namespaceSelector: empty means the policy's namespace in a NetworkPolicy",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: from-web, namespace: prod}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
`,
			flows: []flowCase{
				{"same namespace", tcp("prod/web", "prod/db", 5432), Allow, ""},
				{"other namespace", tcp("dev/web", "prod/db", 5432), Deny, ""},
			},
		},
		{
			name: "rule namespaceSelector: empty means every namespace in a GlobalNetworkPolicy",
			yaml: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: from-web}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
`,
			flows: []flowCase{
				{"same namespace", tcp("prod/web", "prod/db", 5432), Allow, ""},
				{"other namespace", tcp("dev/web", "prod/db", 5432), Allow, ""},
			},
		},
		{
			name: "rule namespaceSelector matches namespace labels; all() every namespace",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: from-dev, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [1]}, source: {namespaceSelector: env == 'dev', selector: app == 'web'}}
  - {action: Allow, protocol: TCP, destination: {ports: [2]}, source: {namespaceSelector: all()}}
  - {action: Allow, protocol: TCP, destination: {ports: [3]}, source: {namespaceSelector: projectcalico.org/name == 'prod'}}
`,
			extra: []Resource{&GlobalNetworkSet{ObjectMeta: objMeta("", "internet", "kind", "external"), Spec: NetworkSetSpec{Nets: []string{"8.0.0.0/8"}}}},
			flows: []flowCase{
				{"dev web by ns labels", tcp("dev/web", "prod/db", 1), Allow, ""},
				{"prod web not dev", tcp("prod/web", "prod/db", 1), Deny, ""},
				{"all() any namespace", tcp("dev/web", "prod/db", 2), Allow, ""},
				{"all() not global set", tcp("8.8.8.8", "prod/db", 2), Deny, ""},
				{"all() not host endpoint", tcp("hep:node1-eth0", "prod/db", 2), Deny, ""},
				{"by namespace name", tcp("prod/web", "prod/db", 3), Allow, ""},
			},
		},
		{
			name: "namespaceSelector global() selects global network sets and host endpoints only",
			yaml: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: internet, labels: {kind: external}}
spec: {nets: [8.0.0.0/8]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partner, namespace: prod, labels: {kind: external}}
spec: {nets: [9.0.0.0/8]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: ext, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - {action: Allow, source: {namespaceSelector: global(), selector: kind == 'external'}}
  - {action: Allow, source: {selector: kind == 'external'}}
`,
			flows: []flowCase{
				{"global set", tcp("8.8.8.8", "prod/db", 1), Allow, "rule 0 (Allow)"},
				{"namespaced set in policy namespace", tcp("9.9.9.9", "prod/db", 1), Allow, "rule 1 (Allow)"},
				{"unknown address", tcp("7.7.7.7", "prod/db", 1), Deny, ""},
			},
		},
		{
			name: "notSelector matches external addresses, selector !X does not",
			yaml: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: neg}
spec:
  selector: app == 'db'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [1]}, source: {notSelector: app == 'web'}}
  - {action: Allow, protocol: TCP, destination: {ports: [2]}, source: {selector: "!(app == 'web')"}}
`,
			flows: []flowCase{
				{"external via notSelector", tcp("8.8.8.8", "prod/db", 1), Allow, ""},
				{"external via !selector", tcp("8.8.8.8", "prod/db", 2), Deny, ""},
				{"web via notSelector", tcp("prod/web", "prod/db", 1), Deny, ""},
				// The host endpoint's own egress denies (no profile), but its
				// ingress at db is allowed by the negated selector.
				{"host endpoint via !selector", tcp("hep:node1-eth0", "prod/db", 2), Deny, "policy neg rule 1 (Allow)"},
			},
		},
		{
			name: "notSelector alone in a namespaced policy is confined to the namespace",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: neg, namespace: prod}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {notSelector: app == 'nothing'}}]
`,
			flows: []flowCase{
				{"same namespace", tcp("prod/web", "prod/db", 1), Allow, ""},
				{"other namespace", tcp("dev/web", "prod/db", 1), Deny, ""},
				{"external", tcp("8.8.8.8", "prod/db", 1), Deny, ""},
			},
		},
		{
			name: "nets and notNets",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: nets, namespace: prod}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {nets: [10.0.0.0/16, 8.0.0.0/8], notNets: [10.0.1.0/24]}}]
`,
			flows: []flowCase{
				{"in nets", tcp("prod/web", "prod/db", 1), Allow, ""},
				{"in notNets", tcp("dev/web", "prod/db", 1), Deny, ""},
				{"external in nets", tcp("8.1.2.3", "prod/db", 1), Allow, ""},
				{"outside", tcp("7.1.2.3", "prod/db", 1), Deny, ""},
			},
		},
		{
			name: "protocol, notProtocol, ipVersion, ICMP",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: protos, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - {action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}}
  - {action: Deny, protocol: ICMP}
  - {action: Allow, protocol: 17, ipVersion: 4}
  - {action: Allow, notProtocol: TCP}
`,
			flows: []flowCase{
				{"echo request", Flow{Src: peer("prod/web"), Dst: peer("prod/db"), Protocol: ProtoICMP, ICMP: &ICMPInfo{Type: 8}}, Allow, "rule 0"},
				{"echo code 1", Flow{Src: peer("prod/web"), Dst: peer("prod/db"), Protocol: ProtoICMP, ICMP: &ICMPInfo{Type: 8, Code: 1}}, Deny, "rule 1"},
				{"udp by number", Flow{Src: peer("prod/web"), Dst: peer("prod/db"), Protocol: ProtoUDP, DstPort: 9}, Allow, "rule 2"},
				{"sctp via notProtocol", Flow{Src: peer("prod/web"), Dst: peer("prod/db"), Protocol: ProtoSCTP, DstPort: 9}, Allow, "rule 3"},
				{"tcp", tcp("prod/web", "prod/db", 9), Deny, ""},
			},
		},
		{
			name: "IPv6, ipVersion and notICMP",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: v6, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - {action: Deny, ipVersion: 6, protocol: ICMPv6, notICMP: {type: 128}}
  - {action: Allow, ipVersion: 6, source: {nets: ['fd00::/64']}}
  - {action: Allow, ipVersion: 4, protocol: TCP}
`,
			extra: []Resource{
				&Endpoint{Name: "v6db", Namespace: "prod", Labels: map[string]string{"app": "db"}, Addresses: []netip.Addr{netip.MustParseAddr("fd00::2")}},
				&Endpoint{Name: "v6web", Namespace: "prod", Addresses: []netip.Addr{netip.MustParseAddr("fd00::1")}},
			},
			flows: []flowCase{
				{"echo request not denied", Flow{Src: peer("prod/v6web"), Dst: peer("prod/v6db"), Protocol: ProtoICMPv6, ICMP: &ICMPInfo{Type: 128}}, Allow, "rule 1"},
				{"other ICMPv6 denied", Flow{Src: peer("prod/v6web"), Dst: peer("prod/v6db"), Protocol: ProtoICMPv6, ICMP: &ICMPInfo{Type: 1}}, Deny, "rule 0"},
				{"v6 tcp by nets", tcp("prod/v6web", "prod/v6db", 80), Allow, "rule 1"},
				{"v6 outside nets", tcp("fd01::1", "prod/v6db", 80), Deny, ""},
				{"v4 tcp by ipVersion", tcp("prod/web", "prod/db", 80), Allow, "rule 2"},
			},
		},
		{
			name: "ports, port ranges, notPorts, source ports",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: ports, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: ["8000:8080", 443], notPorts: [8010]}}
  - {action: Allow, protocol: TCP, source: {ports: [1000]}, destination: {ports: [22]}}
`,
			flows: []flowCase{
				{"in range", tcp("prod/web", "prod/db", 8080), Allow, ""},
				{"single", tcp("prod/web", "prod/db", 443), Allow, ""},
				{"excluded", tcp("prod/web", "prod/db", 8010), Deny, ""},
				{"source port mismatch", tcp("prod/web", "prod/db", 22), Deny, ""},
				{"source port match", Flow{Src: peer("prod/web"), Dst: peer("prod/db"), Protocol: ProtoTCP, SrcPort: 1000, DstPort: 22}, Allow, ""},
			},
		},
		{
			name: "service accounts by name and selector",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: sa, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [1]}, source: {serviceAccounts: {names: [frontend]}}}
  - {action: Allow, protocol: TCP, destination: {ports: [2]}, source: {serviceAccounts: {selector: team == 'a'}}}
`,
			extra: []Resource{
				&Endpoint{Name: "api", Namespace: "prod", ServiceAccount: "frontend", ServiceAccountLabels: map[string]string{"team": "a"},
					Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.5")}},
			},
			flows: []flowCase{
				{"by name", tcp("prod/api", "prod/db", 1), Allow, ""},
				{"by SA labels", tcp("prod/api", "prod/db", 2), Allow, ""},
				{"no SA", tcp("prod/web", "prod/db", 1), Deny, ""},
			},
		},
		{
			name: "policy serviceAccountSelector and GNP namespaceSelector",
			yaml: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: sa}
spec:
  serviceAccountSelector: team == 'a'
  ingress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: devns}
spec:
  namespaceSelector: env == 'dev'
  ingress: [{action: Deny}]
`,
			extra: []Resource{
				&Endpoint{Name: "api", Namespace: "prod", ServiceAccount: "x", ServiceAccountLabels: map[string]string{"team": "a"},
					Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.5")}},
			},
			flows: []flowCase{
				{"SA selected", tcp("prod/web", "prod/api", 1), Deny, "policy sa rule 0"},
				{"other SA", tcp("prod/api", "prod/web", 1), Allow, ""},
				{"dev namespace", tcp("prod/web", "dev/web", 1), Deny, "policy devns rule 0"},
			},
		},
		{
			name: "named ports resolve per endpoint and are filtered by the positive selector",
			yaml: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: cluster, labels: {kind: cluster}}
spec: {nets: [10.0.0.0/16]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: named}
spec:
  selector: has(app)
  egress:
  - {action: Deny, protocol: TCP, destination: {selector: kind == 'cluster', ports: [pg]}}
  - {action: Allow, protocol: TCP, destination: {selector: app == 'db', ports: [pg]}}
  - {action: Allow, protocol: TCP, destination: {ports: [http]}}
  - {action: Deny, protocol: TCP, destination: {selector: app == 'web', notPorts: [pg]}}
`,
			flows: []flowCase{
				// db's address is in the "cluster" set, which rule 0 selects, but
				// the named port belongs to db, which rule 0 does not select.
				{"named port of an endpoint the selector does not select", tcp("prod/web", "prod/db", 5432), Allow, "rule 1"},
				{"number without the name", tcp("prod/web", "prod/db", 5433), Deny, "end of tier"},
				{"http on any endpoint", tcp("prod/db", "dev/web", 8080), Allow, "rule 2"},
				{"notPorts excludes the named port", tcp("prod/db", "dev/web", 5432), Deny, "end of tier"},
				{"notPorts lets other ports match", tcp("prod/db", "dev/web", 9999), Deny, "rule 3"},
				{"external address never has a named port", tcp("prod/db", "8.8.8.8", 8080), Deny, "end of tier"},
			},
		},
		{
			name: "services",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: svc, namespace: prod}
spec:
  selector: app == 'web'
  egress:
  - {action: Allow, destination: {services: {name: db}}}
  ingress:
  - {action: Allow, source: {services: {name: lb, namespace: dev}}}
`,
			extra: []Resource{
				&ServiceEndpoints{Name: "db", Namespace: "prod", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Ports: []EndpointPort{{Protocol: mustProto("TCP"), Port: 5432}}},
				&ServiceEndpoints{Name: "lb", Namespace: "dev", Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.1")}},
			},
			flows: []flowCase{
				{"to service port", tcp("prod/web", "prod/db", 5432), Allow, ""},
				{"to other port", tcp("prod/web", "prod/db", 22), Deny, ""},
				{"from service", tcp("dev/web", "prod/web", 80), Allow, ""},
				{"from elsewhere", tcp("prod/db", "prod/web", 80), Deny, ""},
			},
		},
		{
			name: "HTTP match",
			yaml: `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: http, namespace: prod}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    protocol: TCP
    http:
      methods: [GET]
      paths: [{exact: /healthz}, {prefix: /api/}]
`,
			flows: []flowCase{
				{"matching", withHTTP(tcp("prod/web", "prod/db", 80), "GET", "/api/v1"), Allow, "GET /api/v1"},
				{"method", withHTTP(tcp("prod/web", "prod/db", 80), "POST", "/api/v1"), Deny, ""},
				{"path", withHTTP(tcp("prod/web", "prod/db", 80), "GET", "/admin"), Deny, ""},
				{"no HTTP information", tcp("prod/web", "prod/db", 80), Deny, ""},
			},
		},
		{
			name: "untracked and pre-DNAT policies are not part of the filter evaluation",
			yaml: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: raw}
spec:
  selector: all()
  doNotTrack: true
  applyOnForward: true
  ingress: [{action: Deny}]
`,
			flows: []flowCase{
				{"not applied", tcp("prod/web", "prod/db", 80), Allow, "no policy applies"},
			},
		},
		{
			name: "host endpoint with the default-allow profile and a policy",
			yaml: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: ssh}
spec:
  selector: role == 'node'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [22]}}]
`,
			extra: []Resource{&Endpoint{Kind: HostEndpoint, Name: "node2-eth0", Labels: map[string]string{"x": "y"}, Profiles: []string{DefaultAllowProfile},
				Addresses: []netip.Addr{netip.MustParseAddr("192.168.0.11")}}},
			flows: []flowCase{
				{"ssh allowed", tcp("prod/web", "hep:node1-eth0", 22), Allow, ""},
				{"http denied", tcp("prod/web", "hep:node1-eth0", 80), Deny, ""},
				{"default-allow profile", tcp("prod/web", "hep:node2-eth0", 80), Allow, "profile projectcalico-default-allow (Allow)"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := append(fixture(), tt.extra...)
			if strings.Contains(tt.name, "named ports") {
				for _, e := range extra {
					if ep, ok := e.(*Endpoint); ok && ep.Name == "db" {
						ep.Ports = []EndpointPort{{Name: "pg", Protocol: mustProto("TCP"), Port: 5432}}
					}
					if ep, ok := e.(*Endpoint); ok && ep.Name == "web" {
						ep.Ports = []EndpointPort{{Name: "http", Protocol: mustProto("TCP"), Port: 8080}, {Name: "pg", Protocol: mustProto("TCP"), Port: 5432}}
					}
				}
			}
			ps := build(t, tt.yaml, extra...)
			runFlows(t, ps, tt.flows)
		})
	}
}

func withHTTP(f Flow, method, p string) Flow {
	f.HTTP = &HTTPRequest{Method: method, Path: p}
	return f
}

func TestEvaluateErrors(t *testing.T) {
	ps := build(t, "", fixture()...)
	_, err := ps.Evaluate(tcp("prod/nope", "prod/db", 1))
	require.ErrorIs(t, err, ErrUnknownEndpoint)
	_, err = ps.Evaluate(Flow{Src: Peer{}, Dst: peer("prod/db"), Protocol: ProtoUDP, DstPort: 53})
	require.ErrorIs(t, err, ErrNoAddress)
	_, err = ps.Evaluate(tcp("::1", "prod/db", 1))
	require.ErrorIs(t, err, ErrNoAddress)
}

func TestTraceStructure(t *testing.T) {
	ps := build(t, `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a, namespace: prod}
spec:
  order: 1
  selector: all()
  ingress: [{action: Log}, {action: Allow, protocol: TCP}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b, namespace: prod}
spec:
  order: 2
  selector: app == 'db'
  ingress: [{action: Deny}]
`, fixture()...)
	v := verdict(t, ps, tcp("prod/web", "prod/db", 80))
	require.Equal(t, Allow, v.Action)
	require.Len(t, v.Ingress.Tiers, 1)
	tt := v.Ingress.Tiers[0]
	assert.Equal(t, "default", tt.Tier)
	assert.Equal(t, []string{"prod/a", "prod/b"}, tt.Policies)
	assert.Equal(t, []RuleRef{{Tier: "default", Policy: "prod/a", Rule: 0, Action: Log}}, tt.Logged)
	ref, ok := v.Ingress.Decider()
	require.True(t, ok)
	assert.Equal(t, RuleRef{Tier: "default", Policy: "prod/a", Rule: 1, Action: Allow}, ref)
	_, ok = v.Egress.Decider()
	assert.False(t, ok, "profiles decided egress")

	js, err := json.Marshal(v.Ingress)
	require.NoError(t, err)
	assert.Contains(t, string(js), `"direction":"ingress"`)
	var d Direction
	require.NoError(t, d.UnmarshalText([]byte("egress")))
	assert.Equal(t, Egress, d)
	require.ErrorIs(t, d.UnmarshalText([]byte("up")), ErrInvalid)
}

func TestQueries(t *testing.T) {
	ps := build(t, `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: all-web}
spec:
  order: 5
  selector: app == 'web'
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: raw}
spec:
  selector: app == 'db'
  doNotTrack: true
  applyOnForward: true
  ingress: [{action: Allow}]
`, fixture()...)

	pols, err := ps.PoliciesFor("prod/db")
	require.NoError(t, err)
	assert.Equal(t, []string{"prod/db", "raw"}, keys(pols))

	tiers, err := ps.TiersFor("prod/db", Ingress)
	require.NoError(t, err)
	require.Len(t, tiers, 1)
	assert.Equal(t, []string{"prod/db"}, keys(tiers[0].Policies))
	tiers, err = ps.TiersFor("prod/db", Egress)
	require.NoError(t, err)
	assert.Empty(t, tiers)

	eps, err := ps.EndpointsFor("all-web")
	require.NoError(t, err)
	var names []string
	for _, e := range eps {
		names = append(names, e.Key())
	}
	assert.Equal(t, []string{"dev/web", "prod/web"}, names)
	_, err = ps.EndpointsFor("nope")
	require.ErrorIs(t, err, ErrUnknownPolicy)
	_, err = ps.PoliciesFor("nope")
	require.ErrorIs(t, err, ErrUnknownEndpoint)

	rp, err := ps.Policy("prod/db")
	require.NoError(t, err)
	mem, ok := ps.SelectorMembers(&rp.IngressRules[0].Src)
	require.True(t, ok)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}, mem)

	_, ok = ps.ServiceMembers(&rp.IngressRules[0].Src)
	assert.False(t, ok)

	m, err := ps.Matrix([]string{"prod/web", "prod/db", "dev/web"}, ProtoTCP, 5432)
	require.NoError(t, err)
	assert.Equal(t, [][]bool{
		{true, true, true},
		{true, false, true},
		{true, false, true},
	}, m.Allowed)
	assert.Contains(t, m.String(), "prod/db")
}

func keys(ps []*ResolvedPolicy) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Key)
	}
	return out
}

// Evaluate fills per-endpoint caches on first use; concurrent first uses
// must agree with sequential ones (run with -race).
func TestConcurrentEvaluate(t *testing.T) {
	res := benchWorld(200)
	res.Endpoints = res.Endpoints[:300]
	seq, err := NewPolicySet(res)
	require.NoError(t, err)
	par, err := NewPolicySet(res)
	require.NoError(t, err)
	var flows []Flow
	for i := range 300 {
		flows = append(flows, Flow{Src: IPPeer(res.Endpoints[i].Addresses[0]), Dst: IPPeer(res.Endpoints[(i*7)%300].Addresses[0]), Protocol: ProtoTCP, DstPort: uint16(8000 + i%100)})
	}
	want := make([]string, len(flows))
	for i, f := range flows {
		want[i] = verdict(t, seq, f).String()
	}
	var wg sync.WaitGroup
	got := make([][]string, 4)
	for w := range got {
		got[w] = make([]string, len(flows))
		wg.Go(func() {
			for i, f := range flows {
				v, err := par.Evaluate(f)
				if err == nil {
					got[w][i] = v.String()
				}
			}
		})
	}
	wg.Wait()
	for w := range got {
		assert.Equal(t, want, got[w])
	}
}

func TestCompilerHelpers(t *testing.T) {
	db := wep("prod", "db", "10.0.0.2", "app", "db")
	db.Ports = []EndpointPort{{Name: "pg", Protocol: mustProto("TCP"), Port: 5432}}
	web := wep("dev", "web", "10.0.1.1", "app", "web")
	web.Ports = []EndpointPort{{Name: "pg", Protocol: mustProto("UDP"), Port: 9}}
	ps := build(t, `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: ext, labels: {app: db}}
spec: {nets: [8.8.8.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: dev}
spec:
  egress:
  - {action: Allow, protocol: TCP, destination: {selector: app == 'db', namespaceSelector: all(), ports: [pg], notSelector: has(x)}}
  - {action: Allow, destination: {services: {name: s, namespace: prod}}}
`, db, web, &ServiceEndpoints{Name: "s", Namespace: "prod", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")},
		Ports: []EndpointPort{{Protocol: mustProto("TCP"), Port: 5432}, {Protocol: mustProto("UDP"), Port: 53}}})
	rp, err := ps.Policy("dev/p")
	require.NoError(t, err)
	dst := &rp.EgressRules[0].Dst
	assert.Equal(t, ScopeAllNamespaces, dst.Scope)
	mem, ok := ps.SelectorMembers(dst)
	require.True(t, ok)
	// namespaceSelector all() leaves out the global network set.
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32")}, mem)
	notMem, ok := ps.NotSelectorMembers(dst)
	require.True(t, ok)
	assert.Empty(t, notMem)
	assert.Equal(t, []NamedPortMember{{Addr: netip.MustParseAddr("10.0.0.2"), Protocol: ProtoTCP, Port: 5432}},
		ps.NamedPortMembers(dst, "pg", ProtoTCP))
	svc, ok := ps.ServiceMembers(&rp.EgressRules[1].Dst)
	require.True(t, ok)
	assert.Equal(t, []NamedPortMember{
		{Addr: netip.MustParseAddr("10.0.0.2"), Protocol: ProtoTCP, Port: 5432},
		{Addr: netip.MustParseAddr("10.0.0.2"), Protocol: ProtoUDP, Port: 53},
	}, svc)
	assert.Equal(t, []string{"kube-admin", "default", "kube-baseline"}, ps.Tiers())
	assert.Len(t, ps.Policies(), 1)
	assert.Len(t, ps.Endpoints(), 2)
	_, err = ps.Endpoint("prod/db")
	require.NoError(t, err)
}

// TestEvaluateSourceNamedPorts: a named port in a rule's source matches the
// flow's source address and port against the named ports of the endpoints
// the source selects (all endpoints without a selector; a notSelector does
// not narrow them), as Felix's SrcNamedPortIpSetIds (src,src) do.
func TestEvaluateSourceNamedPorts(t *testing.T) {
	cli := func(proto string, port uint16) []EndpointPort {
		return []EndpointPort{{Name: "cli", Protocol: mustProto(proto), Port: port}}
	}
	endpoints := func() []Resource {
		web, db, devWeb := wep("prod", "web", "10.0.0.1", "app", "web"), wep("prod", "db", "10.0.0.2", "app", "db"), wep("dev", "web", "10.0.1.1", "app", "web")
		web.Ports, db.Ports, devWeb.Ports = cli("TCP", 40000), cli("TCP", 40001), cli("UDP", 40000)
		return []Resource{web, db, devWeb,
			&Namespace{Name: "prod"}, &Namespace{Name: "dev"},
			&GlobalNetworkSet{ObjectMeta: objMeta("", "cluster", "kind", "cluster"), Spec: NetworkSetSpec{Nets: []string{"10.0.0.0/16"}}}}
	}
	from := func(src string, port uint16, proto Protocol, dst string) Flow {
		return Flow{Src: peer(src), Dst: peer(dst), Protocol: proto, SrcPort: port, DstPort: 80}
	}
	tcpP, udpP := ProtoTCP, ProtoUDP
	tests := []struct {
		name  string
		yaml  string
		flows []flowCase
	}{{
		name: "ingress",
		yaml: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: src}
spec:
  selector: all()
  ingress:
  - {action: Deny, protocol: TCP, source: {selector: kind == 'cluster', ports: [cli]}}
  - {action: Allow, protocol: TCP, source: {selector: app == 'web', ports: [cli]}}
  - {action: Allow, protocol: UDP, source: {ports: [cli]}}
  - {action: Deny, protocol: TCP, source: {notSelector: app == 'web', notPorts: [cli]}}
  - {action: Allow, protocol: TCP, source: {notSelector: app == 'web', ports: [cli]}}
`,
		flows: []flowCase{
			// The network set holds web's address but has no named ports.
			{"the selected endpoint's own port", from("prod/web", 40000, tcpP, "prod/db"), Allow, "policy src rule 1"},
			{"another source port", from("prod/web", 40001, tcpP, "prod/db"), Deny, "end of tier"},
			{"unknown source port", from("prod/web", 0, tcpP, "prod/db"), Deny, "end of tier"},
			{"the port is another endpoint's", from("prod/db", 40000, tcpP, "prod/web"), Deny, "policy src rule 3"},
			{"notPorts excludes the source's own port; no selector means every endpoint",
				from("prod/db", 40001, tcpP, "prod/web"), Allow, "policy src rule 4"},
			{"the named port is UDP", from("dev/web", 40000, udpP, "prod/db"), Allow, "policy src rule 2"},
			{"TCP flow, UDP named port", from("dev/web", 40000, tcpP, "prod/db"), Deny, "end of tier"},
			{"an external address has no named ports", from("8.8.8.8", 40000, udpP, "prod/db"), Deny, "end of tier"},
		},
	}, {
		name: "egress: the policy's own endpoint is the source",
		yaml: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: out}
spec:
  selector: app == 'db'
  egress: [{action: Allow, protocol: TCP, source: {ports: [cli, 22]}}]
`,
		flows: []flowCase{
			{"its named port", from("prod/db", 40001, tcpP, "prod/web"), Allow, "policy out rule 0"},
			{"a numeric port beside it", from("prod/db", 22, tcpP, "prod/web"), Allow, "policy out rule 0"},
			{"web's named port number", from("prod/db", 40000, tcpP, "prod/web"), Deny, "end of tier"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runFlows(t, build(t, tt.yaml, endpoints()...), tt.flows)
		})
	}
}

// TestSourcePortUnknown: a flow without SrcPort is matched as from port 0:
// source ports match it only in a range from 0, named ones never, notPorts
// unless they hold 0; Verdict.String shows the source port when it is set.
func TestSourcePortUnknown(t *testing.T) {
	web, db := wep("prod", "web", "10.0.0.1", "app", "web"), wep("prod", "db", "10.0.0.2", "app", "db")
	web.Ports = []EndpointPort{{Name: "cli", Protocol: ProtoTCP, Port: 40000}}
	policyWith := func(source string) *PolicySet {
		return build(t, `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, protocol: TCP, source: `+source+`}]
`, web, db, &Namespace{Name: "prod"})
	}
	flow := func(srcPort uint16) Flow {
		return Flow{Src: peer("prod/web"), Dst: peer("prod/db"), Protocol: ProtoTCP, SrcPort: srcPort, DstPort: 5432}
	}
	tests := []struct {
		source  string
		srcPort uint16
		want    Action
		header  string
	}{
		{"{ports: [cli]}", 0, Deny, "Deny TCP prod/web (10.0.0.1) → prod/db (10.0.0.2):5432"},
		{"{ports: [cli]}", 40000, Allow, "Allow TCP prod/web (10.0.0.1):40000 → prod/db (10.0.0.2):5432"},
		{"{ports: [40000]}", 0, Deny, ""},
		{`{ports: ["0:1024"]}`, 0, Allow, ""},
		{"{notPorts: [cli]}", 0, Allow, ""},
		{`{notPorts: ["0:1024"]}`, 0, Deny, ""},
	}
	for _, tt := range tests {
		v := verdict(t, policyWith(tt.source), flow(tt.srcPort))
		assert.Equal(t, tt.want, v.Action, "%s from port %d\n%s", tt.source, tt.srcPort, v)
		if tt.header != "" {
			assert.Equal(t, tt.header, strings.SplitN(v.String(), "\n", 2)[0])
		}
	}
}
