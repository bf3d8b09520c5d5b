package nftables_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	snft "github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// stickyService is a ClientIP-affinity Service with timeoutSeconds sec
// and one endpoint.
func stickyService(tr *services.Tracker, sec int32) {
	tr.OnServiceUpdate(st.Service("default", "sticky", "10.96.0.70", st.Port("http", v1.ProtocolTCP, 80, 0), func(s *v1.Service) {
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(sec)}}
	}))
	tr.OnEndpointSliceUpdate(st.Slice("default", "sticky", "sticky-1", st.WebPorts, st.Endpoint{IP: "10.244.1.12", Node: "node-a"}))
}

// TestAffinityTimeout: sessionAffinityConfig.clientIP.timeoutSeconds
// is the timeout of the Service's affinity sets (the default, 10800 s,
// is TestTrace's).
func TestAffinityTimeout(t *testing.T) {
	fake, tr, p := newFake(t)
	stickyService(tr, 60)
	require.NoError(t, p.Sync(context.Background()))
	assert.Contains(t, fake.Dump(), "timeout 60s")
	assert.NotContains(t, fake.Dump(), "timeout 10800s")
	assert.Equal(t, []string{"DNAT 10.244.1.12:8080"}, trace(t, fake, "10.244.3.3", "10.96.0.70", "tcp", 80, false))
}

// TestKernelAffinityTimeoutChange: a change of timeoutSeconds alone
// reaches the kernel's affinity set on an incremental sync, through each
// executor. (The sync re-adds the set with the new timeout, which the
// kernel applies to the existing set; knftables.Fake keeps the old one,
// so this is a kernel test.)
func TestKernelAffinityTimeoutChange(t *testing.T) {
	for _, executor := range []string{"cli", "netlink"} {
		t.Run(executor, func(t *testing.T) {
			ns := nettest.NewNetns(t, "svcaff") // skips unless root
			ctx := context.Background()
			nft := newExecutor(t, executor, knftables.IPv4Family, ns.Path)
			tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
			p, err := snft.New(nft, tr, snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
			require.NoError(t, err)
			list := func() string {
				t.Helper()
				out, err := ns.Run(ctx, "nft", "list", "set", "ip", snft.DefaultTable, "affinity-default/sticky/tcp/http__10.244.1.12/8080")
				require.NoError(t, err, out)
				return out
			}
			stickyService(tr, 60)
			require.NoError(t, p.Sync(ctx))
			assert.Contains(t, list(), "timeout 1m")
			stickyService(tr, 120)
			require.NoError(t, p.Sync(ctx))
			assert.Contains(t, list(), "timeout 2m")
		})
	}
}
