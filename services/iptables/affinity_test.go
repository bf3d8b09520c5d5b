package iptables_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// TestAffinityTimeout: sessionAffinityConfig.clientIP.timeoutSeconds
// is the `recent --rcheck --seconds` of the Service's affinity rules
// (the default, 10800 s, is in the goldens), and a change of it alone is
// rendered.
func TestAffinityTimeout(t *testing.T) {
	for _, layout := range []string{"hairpin set", "hairpin chains"} {
		t.Run(layout, func(t *testing.T) {
			fake, tr, p := newFake(t)
			trc := tracer(fake)
			if layout == "hairpin set" {
				var sets *ipsets.Fake
				fake, sets, tr, p = newSetFake(t)
				trc = setTracer(fake, sets)
			}
			sticky := func(sec int32) {
				tr.OnServiceUpdate(st.Service("default", "sticky", "10.96.0.70", st.Port("http", v1.ProtocolTCP, 80, 0), func(s *v1.Service) {
					s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
					s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(sec)}}
				}))
			}
			sticky(60)
			tr.OnEndpointSliceUpdate(st.Slice("default", "sticky", "sticky-1", st.WebPorts, st.Endpoint{IP: "10.244.1.12", Node: "node-a"}))
			require.NoError(t, p.Sync(context.Background()))
			assert.Contains(t, fake.Dump(), "--rcheck --seconds 60 ")
			assert.NotContains(t, fake.Dump(), "--seconds 10800")
			assert.Equal(t, []string{"DNAT 10.244.1.12:8080"}, st.Trace(t, trc, "10.244.3.3", "10.96.0.70", "tcp", 80, false))

			sticky(120)
			require.NoError(t, p.Sync(context.Background()))
			assert.Contains(t, fake.Dump(), "--rcheck --seconds 120 ")
			assert.NotContains(t, fake.Dump(), "--seconds 60 ")
		})
	}
}
