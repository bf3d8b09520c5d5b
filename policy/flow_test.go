package policy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFlowValidate(t *testing.T) {
	icmp := func(typ, code uint8) *ICMPInfo { return &ICMPInfo{Type: typ, Code: code} }
	http := &HTTPRequest{Method: "GET", Path: "/"}
	tests := []struct {
		name string
		f    Flow
		want []string // field: detail fragments, every one must appear; none means valid
	}{
		{"tcp", Flow{Protocol: ProtoTCP, SrcPort: 40000, DstPort: 80}, nil},
		{"tcp without source port", Flow{Protocol: ProtoTCP, DstPort: 80}, nil},
		{"sctp", Flow{Protocol: ProtoSCTP, DstPort: 9}, nil},
		{"icmp echo", Flow{Protocol: ProtoICMP, ICMP: icmp(8, 0)}, nil},
		{"icmp without type", Flow{Protocol: ProtoICMP}, nil},
		{"other protocol", Flow{Protocol: Protocol(47)}, nil},
		{"http on tcp", Flow{Protocol: ProtoTCP, DstPort: 80, HTTP: http}, nil},
		{"no protocol", Flow{DstPort: 80}, []string{"protocol: required"}},
		{"tcp without destination port", Flow{Protocol: ProtoTCP}, []string{"dstPort: required for TCP"}},
		{"ports on icmp", Flow{Protocol: ProtoICMP, SrcPort: 1, DstPort: 2}, []string{"srcPort: must be 0", "dstPort: must be 0"}},
		{"ports on UDPLite", Flow{Protocol: ProtoUDPLite, DstPort: 53}, []string{"dstPort: must be 0: Calico matches ports only on TCP, UDP and SCTP, not UDPLite"}},
		{"icmp info on tcp", Flow{Protocol: ProtoTCP, DstPort: 80, ICMP: icmp(8, 0)}, []string{"icmp: only on ICMP and ICMPv6 flows, not TCP"}},
		{"icmp type 255", Flow{Protocol: ProtoICMPv6, ICMP: icmp(255, 0)}, []string{"icmp.type: must be 0-254"}},
		{"http on udp", Flow{Protocol: ProtoUDP, DstPort: 80, HTTP: http}, []string{"http: only on TCP flows, not UDP"}},
		{"empty http", Flow{Protocol: ProtoTCP, DstPort: 80, HTTP: &HTTPRequest{}}, []string{"http.method: invalid", "http.path: invalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = "Flow: " + w
			}
			requireProblems(t, tt.f.Validate(), want)
		})
	}
}

// A flow with no protocol used to evaluate to "Allow 0"; it is an error,
// and so is every flow Validate refuses or whose ICMP version does not match
// its addresses.
func TestEvaluateRefusesInvalidFlows(t *testing.T) {
	ps := build(t, "", fixture()...)
	v, err := ps.Evaluate(Flow{Src: peer("prod/web"), Dst: peer("prod/db")})
	assert.Nil(t, v)
	require.ErrorIs(t, err, ErrNoProtocol)
	require.ErrorIs(t, err, ErrInvalid)

	_, err = ps.Evaluate(Flow{Src: peer("prod/web"), Dst: peer("prod/db"), Protocol: ProtoICMP, DstPort: 80})
	require.ErrorIs(t, err, ErrInvalid)
	assert.NotErrorIs(t, err, ErrNoProtocol)

	_, err = ps.Evaluate(Flow{Src: peer("prod/web"), Dst: peer("prod/db"), Protocol: ProtoICMPv6})
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "ICMPv6 needs IPv6 addresses")

	_, err = ps.Evaluate(Flow{Src: Peer{Endpoint: "prod/web", IP: netip.MustParseAddr("10.9.9.9")}, Dst: peer("prod/db"), Protocol: ProtoTCP, DstPort: 80})
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "Flow: src.ip: 10.9.9.9 is not an address of endpoint prod/web")
	web, err := ps.Endpoint("prod/web")
	require.NoError(t, err)
	_, err = ps.Evaluate(Flow{Src: Peer{Endpoint: "prod/web", IP: web.Addresses[0]}, Dst: peer("prod/db"), Protocol: ProtoTCP, DstPort: 80})
	require.NoError(t, err, "an endpoint with one of its own addresses")

	_, err = ps.Matrix(nil, 0, 80)
	require.ErrorIs(t, err, ErrNoProtocol, "Matrix evaluates through Evaluate")
}
