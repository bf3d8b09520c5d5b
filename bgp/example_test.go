package bgp_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/tabbynet/tabby/bgp"
	"github.com/tabbynet/tabby/dataplane/netlink"
)

// printer is a RouteProgrammer that prints what it is given.
type printer struct{ programmed chan struct{} }

func (p printer) Upsert(source string, routes ...netlink.Route) error {
	for _, r := range routes {
		fmt.Printf("program %s via %s (source %s)\n", r.Dst, r.NextHops[0].Gateway, source)
	}
	p.programmed <- struct{}{}
	return nil
}

func (printer) Remove(source string, keys ...netlink.RouteKey) {
	for _, k := range keys {
		fmt.Printf("remove %s\n", k.Dst)
	}
}

// Two speakers in one process, on loopback addresses and a free port: node
// 1 advertises its pod block, node 2 programs it.
func Example() {
	ctx := context.Background()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	quiet := slog.New(slog.DiscardHandler)
	nodes := []bgp.Node{
		{Name: "node-1", IPv4: netip.MustParseAddr("127.0.0.31")},
		{Name: "node-2", IPv4: netip.MustParseAddr("127.0.0.32")},
	}
	p := printer{programmed: make(chan struct{}, 1)}
	var speakers []*bgp.Speaker
	for i, n := range nodes {
		var opts []bgp.Option
		if i == 1 {
			opts = append(opts, bgp.WithRouteProgrammer(p, "", nil))
		}
		s, err := bgp.New(bgp.Config{NodeName: n.Name, NodeIP: n.IPv4, ListenAddresses: []netip.Addr{n.IPv4},
			ListenPort: port, StartupSyncTimeout: time.Second}, append(opts, bgp.WithLogger(quiet))...)
		if err != nil {
			fmt.Println(err)
			return
		}
		if err := s.Start(ctx); err != nil {
			fmt.Println(err)
			return
		}
		defer s.Stop()
		speakers = append(speakers, s)
	}
	for _, s := range speakers {
		_ = s.SetTopology(ctx, bgp.Topology{Nodes: nodes}) // node-to-node mesh
	}
	block := netip.MustParsePrefix("10.244.1.0/26")
	_ = speakers[0].Advertise(ctx, bgp.Advertisement{Prefix: block,
		Communities: []bgp.Community{{A: 64512, B: 100}}})

	select {
	case <-p.programmed:
	case <-time.After(30 * time.Second):
		fmt.Println("timeout")
	}
	why := speakers[0].Why(block)
	fmt.Println("node-1 advertises", block, "with", why.Communities, "from", why.Sources)
	// Output:
	// program 10.244.1.0/26 via 127.0.0.31 (source bgp)
	// node-1 advertises 10.244.1.0/26 with [64512:100] from [bgp]
}

// A BGPPeer names BGPFilters; ResolvePeers attaches them, in order, to the
// sessions it makes, and Filter.DecideRoute shows what a rule decides.
func ExampleResolvePeers_filters() {
	noLB := bgp.BGPFilter{Name: "no-lb-to-tor", Export: bgp.Filter{V4: []bgp.FilterRule{
		{Action: bgp.Reject, CIDR: netip.MustParsePrefix("10.96.0.0/12"), MatchOperator: bgp.In, PrefixLength: struct{ Min, Max int }{32, 32}},
		{Action: bgp.Reject, Source: bgp.RemotePeers},
	}}}
	mesh := false
	peers, err := bgp.ResolvePeers(bgp.Config{NodeName: "node-1", NodeIP: netip.MustParseAddr("10.99.0.11"), NodeToNodeMeshEnabled: &mesh},
		bgp.Topology{
			Nodes:      []bgp.Node{{Name: "node-1", IPv4: netip.MustParseAddr("10.99.0.11")}},
			BGPPeers:   []bgp.BGPPeer{{Name: "tor", PeerIP: "10.99.0.1", ASNumber: 65000, Filters: []string{"no-lb-to-tor"}}},
			BGPFilters: []bgp.BGPFilter{noLB},
		})
	if err != nil {
		fmt.Println(err)
		return
	}
	p := peers[0]
	fmt.Println(p.Name, p.Address, p.Filters[0].Name)
	for _, rt := range []bgp.FilterRoute{
		{Prefix: netip.MustParsePrefix("10.96.0.10/32")},
		{Prefix: netip.MustParsePrefix("10.96.0.0/12")},
		{Prefix: netip.MustParsePrefix("10.244.7.0/26"), FromPeer: true},
	} {
		act, rule := p.Filters[0].Export.DecideRoute(rt)
		fmt.Println(rt.Prefix, act, rule)
	}
	// Output:
	// bgppeer/tor 10.99.0.1 no-lb-to-tor
	// 10.96.0.10/32 Reject 0
	// 10.96.0.0/12 Accept -1
	// 10.244.7.0/26 Reject 1
}
