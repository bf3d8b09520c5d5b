package iptables_test

import (
	"context"
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/services"
	sipt "github.com/tabbynet/tabby/services/iptables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// Render kube-dns into a fake iptables and ask where a DNS query from a
// pod goes.
func Example() {
	fake := ipt.NewFake()
	table, _ := sipt.NewIPTables(ipt.IPv4, ipt.BackendNFT, ipt.WithExecer(fake))
	tracker := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
	// On a node New opens the kernel's ipsets for the hairpin set; over
	// the fake iptables it takes a fake IPSets.
	sets := ipsets.NewFake()
	p, _ := sipt.New(table, tracker, sipt.Config{Family: ipt.IPv4},
		sipt.WithHairpinSet(ipsets.New(sets, ipsets.WithPrefix(sipt.DefaultHairpinSetPrefix(ipt.IPv4)))))

	tracker.OnServiceUpdate(st.Service("kube-system", "kube-dns", "10.96.0.10", st.Port("dns", v1.ProtocolUDP, 53, 0)))
	tracker.OnEndpointSliceUpdate(st.Slice("kube-system", "kube-dns", "kube-dns-1",
		[]st.SlicePort{{Name: "dns", Proto: v1.ProtocolUDP, Port: 53}},
		st.Endpoint{IP: "10.244.1.5", Node: "node-a"}, st.Endpoint{IP: "10.244.2.7", Node: "node-b"}))
	if err := p.Sync(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	outs, _ := sipt.TraceWithSets(fake, sets, nil, sipt.Packet{
		Src: netip.MustParseAddr("10.244.1.5"), Dst: netip.MustParseAddr("10.96.0.10"), Protocol: "udp", DstPort: 53})
	for _, o := range outs {
		fmt.Println(o)
	}
	// Output:
	// DNAT 10.244.1.5:53 masq
	// DNAT 10.244.2.7:53
}
