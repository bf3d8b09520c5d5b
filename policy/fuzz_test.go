package policy

import (
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzDecode: no input panics Decode, validation or building a set; what
// decodes re-encodes and decodes again to an equal resource.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		np("ingress: [{action: Allow, protocol: TCP, source: {selector: a == 'b', nets: [10.0.0.0/8]}, destination: {ports: [80, '1:2', http]}}]"),
		gnp("egress: [{action: Allow, protocol: UDP, source: {selector: has(a), ports: [dns, 53], notPorts: [cli]}}]"),
		gnp("namespaceSelector: all()\negress: [{action: Deny, protocol: ICMP, icmp: {type: 8, code: 1}}]\ntypes: [Egress]"),
		"apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {order: 1, defaultAction: Pass}\n",
		"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s, labels: {a: b}}\nspec: {nets: ['fd00::/8']}\n",
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: ns1}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}], ports: [{port: 80, endPort: 90}]}]}\n",
		`{"apiVersion":"projectcalico.org/v3","kind":"NetworkPolicy","metadata":{"name":"j","namespace":"x"},"spec":{"order":1e400}}`,
		"---\n---\n",
		"apiVersion: [",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode(data)
		if err != nil {
			return
		}
		var r Resources
		r.Add(objs...)
		r.Endpoints = []*Endpoint{wep("x", "a", "10.0.0.1", "a", "b"), wep("ns1", "b", "fd00::1")}
		if ps, err := NewPolicySet(r); err == nil {
			_, _ = ps.Evaluate(tcp("x/a", "10.1.2.3", 80))
			_, _ = ps.Evaluate(tcp("8.8.8.8", "x/a", 80))
		}
		for _, o := range objs {
			out, err := yaml.Marshal(o)
			if err != nil {
				t.Fatalf("marshal %T: %v", o, err)
			}
			again, err := Decode(out)
			if err != nil {
				t.Fatalf("re-decode of\n%s\nfailed: %v", out, err)
			}
			// The first encoding may still differ (an empty list written as
			// {} vanishes); from then on it must be stable.
			out2, err := yaml.Marshal(again[0])
			if err != nil {
				t.Fatal(err)
			}
			third, err := Decode(out2)
			if err != nil {
				t.Fatalf("re-decode of\n%s\nfailed: %v", out2, err)
			}
			out3, err := yaml.Marshal(third[0])
			if err != nil || string(out2) != string(out3) {
				t.Fatalf("round trip changed:\n%s\n%s", out2, out3)
			}
		}
	})
}

// FuzzParseProtocol: no input panics; a parsed protocol prints as a string
// that parses back to it, and its JSON reads back to it.
func FuzzParseProtocol(f *testing.F) {
	for _, s := range []string{"TCP", "udp", "ICMPv6", "6", "255", "0", "256", "-1", "", "UDPLite", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseProtocol(s)
		if err != nil {
			return
		}
		if p == 0 {
			t.Fatalf("%q parsed to the zero protocol", s)
		}
		again, err := ParseProtocol(p.String())
		if err != nil || again != p {
			t.Fatalf("%q: %v printed as %q reads back as %v, %v", s, p, p.String(), again, err)
		}
		b, err := p.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON Protocol
		if err := fromJSON.UnmarshalJSON(b); err != nil || fromJSON != p {
			t.Fatalf("%q: JSON %s reads back as %v, %v", s, b, fromJSON, err)
		}
	})
}
