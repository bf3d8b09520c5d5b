package policy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// wep builds a workload endpoint; labels are given as k, v pairs.
func wep(ns, name, ip string, kv ...string) *Endpoint {
	ep := &Endpoint{Name: name, Namespace: ns, Labels: map[string]string{}}
	if ip != "" {
		ep.Addresses = []netip.Addr{netip.MustParseAddr(ip)}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		ep.Labels[kv[i]] = kv[i+1]
	}
	return ep
}

func hep(name, ip string, kv ...string) *Endpoint {
	ep := wep("", name, ip, kv...)
	ep.Kind = HostEndpoint
	return ep
}

// build decodes YAML resources and adds the given endpoints and namespaces.
func build(t testing.TB, yamlDocs string, extra ...Resource) *PolicySet {
	t.Helper()
	var r Resources
	if yamlDocs != "" {
		objs, err := Decode([]byte(yamlDocs))
		require.NoError(t, err)
		r.Add(objs...)
	}
	r.Add(extra...)
	ps, err := NewPolicySet(r)
	require.NoError(t, err)
	return ps
}

func tcp(src, dst string, port uint16) Flow {
	return Flow{Src: peer(src), Dst: peer(dst), Protocol: ProtoTCP, SrcPort: 40000, DstPort: port}
}

// peer reads "ns/name", a host endpoint name prefixed with "hep:", or an IP.
func peer(s string) Peer {
	if a, err := netip.ParseAddr(s); err == nil {
		return IPPeer(a)
	}
	if len(s) > 4 && s[:4] == "hep:" {
		return EndpointPeer(s[4:])
	}
	return EndpointPeer(s)
}

func verdict(t testing.TB, ps *PolicySet, f Flow) *Verdict {
	t.Helper()
	v, err := ps.Evaluate(f)
	require.NoError(t, err)
	return v
}

func objMeta(ns, name string, kv ...string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Labels[kv[i]] = kv[i+1]
	}
	return m
}

// mustProto parses a protocol name or number.
func mustProto(s string) Protocol {
	p, err := ParseProtocol(s)
	if err != nil {
		panic(err)
	}
	return p
}

// requireProblems checks a Validate result: nil when want is empty,
// otherwise a *ValidationError with one problem per fragment in want, each
// fragment appearing in its message.
func requireProblems(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		require.NoError(t, err)
		return
	}
	require.ErrorIs(t, err, ErrInvalid)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Errors, len(want), "%v", err)
	for _, w := range want {
		require.Contains(t, err.Error(), w)
	}
}
