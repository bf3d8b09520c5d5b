package nftables_test

import (
	"context"
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/services"
	"github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// Render kube-dns into a fake nftables table and ask where a DNS query
// from a pod goes.
func Example() {
	fake := knftables.NewFake(knftables.IPv4Family, nftables.DefaultTable)
	tracker := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	p, _ := nftables.New(fake, tracker, nftables.Config{Family: knftables.IPv4Family})

	tracker.OnServiceUpdate(st.Service("kube-system", "kube-dns", "10.96.0.10", st.Port("dns", v1.ProtocolUDP, 53, 0)))
	tracker.OnEndpointSliceUpdate(st.Slice("kube-system", "kube-dns", "kube-dns-1",
		[]st.SlicePort{{Name: "dns", Proto: v1.ProtocolUDP, Port: 53}},
		st.Endpoint{IP: "10.244.1.5", Node: "node-a"}, st.Endpoint{IP: "10.244.2.7", Node: "node-b"}))
	if err := p.Sync(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	outs, _ := nftables.Trace(fake, nftables.DefaultTable, nil, nftables.Packet{
		Src: netip.MustParseAddr("10.244.1.5"), Dst: netip.MustParseAddr("10.96.0.10"), Protocol: "udp", DstPort: 53})
	for _, o := range outs {
		fmt.Println(o)
	}
	// Output:
	// DNAT 10.244.1.5:53 masq
	// DNAT 10.244.2.7:53
}
