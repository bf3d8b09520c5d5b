package nftables_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/services"
	snft "github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

func newFake(t *testing.T) (*knftables.Fake, *services.Tracker, *snft.Proxier) {
	t.Helper()
	fake := knftables.NewFake(knftables.IPv4Family, snft.DefaultTable)
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	p, err := snft.New(fake, tr, snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
	require.NoError(t, err)
	return fake, tr, p
}

func testDumpDebug(t *testing.T) {
	fake, tr, p := newFake(t)
	tr.OnServiceUpdate(st.Service("kube-system", "dns", "10.96.0.10", st.Port("dns", v1.ProtocolUDP, 53, 0)))
	tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", []st.SlicePort{{Name: "dns", Proto: v1.ProtocolUDP, Port: 53}},
		st.Endpoint{IP: "10.244.1.5", Node: "node-a"}, st.Endpoint{IP: "10.244.2.7", Node: "node-b"}))
	require.NoError(t, p.Sync(context.Background()))
	t.Log(fake.Dump())
}
