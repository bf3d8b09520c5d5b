package services_test

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/services"
	"github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// Services sharing a destination sync into nftables (one element per
// destination in its verdict maps), the owner gets the traffic, and the
// other Service takes over once the owner is deleted.
func TestSharedDestinationSyncs(t *testing.T) {
	tests := []struct {
		name         string
		owner, other *v1.Service
		dst          string
	}{
		{"same external IP", st.Service("ns", "z", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0), st.ExternalIPs("192.0.2.1"), st.Created(1)),
			st.Service("ns", "a", "10.96.0.2", st.Port("http", v1.ProtocolTCP, 80, 0), st.ExternalIPs("192.0.2.1"), st.Created(2)), "192.0.2.1"},
		{"external IP equal to another's cluster IP", st.Service("ns", "z", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0), st.Created(2)),
			st.Service("ns", "a", "10.96.0.2", st.Port("http", v1.ProtocolTCP, 80, 0), st.ExternalIPs("10.96.0.1"), st.Created(1)), "10.96.0.1"},
		{"same cluster IP and port", st.Service("ns", "z", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0), st.Created(1)),
			st.Service("ns", "a", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 0), st.Created(2)), "10.96.0.1"},
		{"same load-balancer IP", st.Service("ns", "z", "10.96.0.1", st.Port("http", v1.ProtocolTCP, 80, 30080), st.LoadBalancer("203.0.113.1"), st.Created(1)),
			st.Service("ns", "a", "10.96.0.2", st.Port("http", v1.ProtocolTCP, 80, 30081), st.LoadBalancer("203.0.113.1"), st.Created(2)), "203.0.113.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			fake := knftables.NewFake(knftables.IPv4Family, nftables.DefaultTable)
			tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, slog.New(slog.DiscardHandler))
			p, err := nftables.New(fake, tr, nftables.Config{Family: knftables.IPv4Family})
			require.NoError(t, err)
			tr.OnServiceUpdate(tt.other)
			tr.OnServiceUpdate(tt.owner)
			tr.OnEndpointSliceUpdate(st.Slice("ns", "z", "z-1", st.WebPorts, st.Endpoint{IP: "10.244.1.1", Node: "node-a"}))
			tr.OnEndpointSliceUpdate(st.Slice("ns", "a", "a-1", st.WebPorts, st.Endpoint{IP: "10.244.2.2", Node: "node-a"}))
			require.NoError(t, p.Sync(ctx))
			trace := func() []string {
				outs, err := nftables.Trace(fake, nftables.DefaultTable, nil, nftables.Packet{
					Src: netip.MustParseAddr("198.51.100.9"), Dst: netip.MustParseAddr(tt.dst), Protocol: "tcp", DstPort: 80})
				require.NoError(t, err)
				var s []string
				for _, o := range outs {
					s = append(s, o.String())
				}
				return s
			}
			assert.Contains(t, trace()[0], "10.244.1.1:8080", "the owner gets the destination")

			tr.OnServiceDelete(tt.owner)
			require.NoError(t, p.Sync(ctx))
			assert.Contains(t, trace()[0], "10.244.2.2:8080", "the other Service takes over")
		})
	}
}
