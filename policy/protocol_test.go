package policy

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseProtocol(t *testing.T) {
	tests := []struct {
		in      string
		want    Protocol
		wantErr bool
	}{
		{"TCP", ProtoTCP, false},
		{"tcp", ProtoTCP, false},
		{"ICMPv6", ProtoICMPv6, false},
		{"icmpv6", ProtoICMPv6, false},
		{"UDPLite", ProtoUDPLite, false},
		{"SCTP", ProtoSCTP, false},
		{"6", ProtoTCP, false},
		{"47", Protocol(47), false},
		{"255", Protocol(255), false},
		{"0", 0, true},
		{"256", 0, true},
		{"-1", 0, true},
		{"GRE", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseProtocol(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrInvalid)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestProtocolJSON(t *testing.T) {
	tests := []struct {
		in, out string
		want    Protocol
	}{
		{`"TCP"`, `"TCP"`, ProtoTCP},
		{`"udp"`, `"UDP"`, ProtoUDP},
		{`6`, `"TCP"`, ProtoTCP},
		{`"17"`, `"UDP"`, ProtoUDP},
		{`47`, `47`, Protocol(47)},
	}
	for _, tt := range tests {
		var p Protocol
		require.NoError(t, json.Unmarshal([]byte(tt.in), &p), tt.in)
		assert.Equal(t, tt.want, p, tt.in)
		b, err := json.Marshal(p)
		require.NoError(t, err)
		assert.Equal(t, tt.out, string(b), tt.in)
	}
	for _, bad := range []string{`0`, `256`, `1.5`, `"GRE"`, `true`, `{}`} {
		var p Protocol
		assert.Error(t, json.Unmarshal([]byte(bad), &p), bad)
	}
}

// One protocol type: the constants fit a flow, a rule, an endpoint port, a
// service port and the queries that take a protocol.
func TestProtocolComposes(t *testing.T) {
	tcp := ProtoTCP
	r := Rule{Action: Allow, Protocol: &tcp, NotProtocol: &tcp}
	f := Flow{Protocol: ProtoTCP}
	ep := EndpointPort{Name: "http", Protocol: ProtoTCP, Port: 80}
	assert.Equal(t, *r.Protocol, f.Protocol)
	assert.Equal(t, ep.Protocol, f.Protocol)
	assert.True(t, ProtoTCP.SupportsPorts())
	assert.True(t, ProtoSCTP.SupportsPorts())
	assert.False(t, ProtoUDPLite.SupportsPorts(), "Calico matches ports only on TCP, UDP and SCTP")
	assert.False(t, ProtoICMP.SupportsPorts())
	assert.True(t, ProtoICMPv6.IsICMP())
	assert.Equal(t, "ICMPv6", ProtoICMPv6.String())
	assert.Equal(t, "47", Protocol(47).String())
}
