package servicestest

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/services"
)

// Tracer is a backend's packet tracer bound to its fake and node
// addresses.
type Tracer func(services.TracePacket) ([]services.TraceOutcome, error)

// Trace traces one packet (addresses as strings) and returns its
// outcomes' String forms; a tracer error fails the test.
func Trace(t testing.TB, tracer Tracer, src, dst, proto string, port uint16, fromHost bool) []string {
	t.Helper()
	outs, err := tracer(services.TracePacket{
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: proto, DstPort: port, FromHost: fromHost})
	require.NoError(t, err)
	var s []string
	for _, o := range outs {
		s = append(s, o.String())
	}
	return s
}

// RunTraceCases checks every case as a subtest.
func RunTraceCases(t *testing.T, cases []TraceCase, tracer Tracer) {
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			if tt.Want == nil {
				_, err := netip.ParseAddr(tt.Dst)
				require.Error(t, err)
				return
			}
			assert.Equal(t, tt.Want, Trace(t, tracer, tt.Src, tt.Dst, tt.Proto, tt.Port, tt.FromHost))
		})
	}
}

// LoadTracker returns a Tracker for node "node-a" holding Many("bench",
// n, k, true): n Services with k endpoints each, for benchmarks.
func LoadTracker(n, k int) *services.Tracker {
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	svcs, slices := Many("bench", n, k, true)
	for i := range svcs {
		tr.OnServiceUpdate(svcs[i])
		tr.OnEndpointSliceUpdate(slices[i])
	}
	return tr
}
