package ipsets_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/dataplane/ipsets"
)

func Example() {
	fake := ipsets.NewFake() // in production: ipsets.NewHandle(ns), closed when done
	sets := ipsets.New(fake)
	web := ipsets.SetSpec{Name: "tabby-s-web", Type: ipsets.HashIP, Family: ipsets.IPv4}
	_ = sets.SetMembers(web, []ipsets.Member{
		ipsets.IP(netip.MustParseAddr("10.65.0.2")),
		ipsets.IP(netip.MustParseAddr("10.65.0.3")),
	})
	dns := ipsets.SetSpec{Name: "tabby-n-dns", Type: ipsets.HashNetPort, Family: ipsets.IPv4}
	_ = sets.SetMembers(dns, []ipsets.Member{
		ipsets.NetPort(netip.MustParsePrefix("10.96.0.0/12"), ipsets.UDP, 53),
	})
	if err := sets.Apply(context.Background()); err != nil {
		fmt.Println(err)
	}
	_ = sets.RemoveMembers("tabby-s-web", ipsets.IP(netip.MustParseAddr("10.65.0.3")))
	_ = sets.Apply(context.Background())
	fmt.Print(fake.Dump())
	// Output:
	// create tabby-n-dns hash:net,port family inet maxelem 1024
	// add tabby-n-dns 10.96.0.0/12,udp:53
	// create tabby-s-web hash:ip family inet maxelem 1024
	// add tabby-s-web 10.65.0.2
}
