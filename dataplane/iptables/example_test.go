package iptables_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/dataplane/iptables"
)

func Example() {
	fake := iptables.NewFake() // in production: iptables.WithNetns(name) or the default OSExecer
	ipt, err := iptables.New(iptables.Config{Family: iptables.IPv4, Backend: iptables.BackendNFT},
		iptables.WithExecer(fake))
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = ipt.ReplaceChains(iptables.Filter, []iptables.Chain{{
		Name: "tabby-tw-web",
		Rules: []iptables.Rule{
			{Match: iptables.Match().ConntrackState(iptables.StateRelated, iptables.StateEstablished), Action: iptables.Accept{}},
			{Match: iptables.Match().Protocol(iptables.TCP).DestPorts(80).SourceNet(netip.MustParsePrefix("10.65.0.0/16")),
				Action: iptables.Accept{}},
			{Action: iptables.Drop{}, Comment: "default deny"},
		},
	}})
	_ = ipt.SetHook(iptables.Filter, "FORWARD", []iptables.Rule{
		{Match: iptables.Match().OutInterface("tabby+"), Action: iptables.Jump{Chain: "tabby-tw-web"}},
	})
	if err := ipt.Apply(context.Background()); err != nil {
		fmt.Println(err)
	}
	fmt.Print(fake.Dump())
	// Output:
	// # iptables-nft
	// *filter
	// :INPUT ACCEPT [0:0]
	// :FORWARD ACCEPT [0:0]
	// :OUTPUT ACCEPT [0:0]
	// :tabby-tw-web - [0:0]
	// -A FORWARD -o tabby+ -m comment --comment "tabby:il_eLGbc1uNase2Y" -j tabby-tw-web
	// -A tabby-tw-web -m comment --comment "tabby:mTLnti91BZAT0SkJ" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
	// -A tabby-tw-web -s 10.65.0.0/16 -p tcp -m comment --comment "tabby:tjcGiRVBUeZYe3m_" -m tcp --dport 80 -j ACCEPT
	// -A tabby-tw-web -m comment --comment "tabby:8mAX4eAH9bp6jwxF" -m comment --comment "default deny" -j DROP
	// COMMIT
}
