package natoutgoing_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/natoutgoing"
	"github.com/tabbynet/tabby/ipam"
)

// Pods of a natOutgoing pool are masqueraded when they leave every pool;
// traffic between pools is not.
func Example() {
	ctx := context.Background()
	iptFake, setsFake := iptables.NewFake(), ipsets.NewFake()
	ipt, _ := iptables.New(iptables.Config{Family: iptables.IPv4, Backend: iptables.BackendNFT}, iptables.WithExecer(iptFake))
	nat, _ := natoutgoing.New(natoutgoing.Config{Family: iptables.IPv4}, ipt, ipsets.New(setsFake))

	pools := []ipam.IPPool{
		{Name: "egress", CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true},
		{Name: "internal", CIDR: netip.MustParsePrefix("10.245.0.0/16")},
		{Name: "no-nat-to", CIDR: netip.MustParsePrefix("192.168.0.0/16"), Disabled: true},
	}
	if err := nat.Apply(ctx, pools); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(setsFake.Dump())
	fmt.Print(iptFake.Dump())
	// Output:
	// create tabby-v4-all-ipam-pools hash:net family inet maxelem 1024
	// add tabby-v4-all-ipam-pools 10.244.0.0/16
	// add tabby-v4-all-ipam-pools 10.245.0.0/16
	// add tabby-v4-all-ipam-pools 192.168.0.0/16
	// create tabby-v4-masq-ipam-pools hash:net family inet maxelem 1024
	// add tabby-v4-masq-ipam-pools 10.244.0.0/16
	// # iptables-nft
	// *nat
	// :PREROUTING ACCEPT [0:0]
	// :INPUT ACCEPT [0:0]
	// :OUTPUT ACCEPT [0:0]
	// :POSTROUTING ACCEPT [0:0]
	// :tabby-nat-outgoing - [0:0]
	// -A POSTROUTING -m comment --comment "tabby:s7SB9txOy90jkPbU" -j tabby-nat-outgoing
	// -A tabby-nat-outgoing -m comment --comment "tabby:Xm60AME3RkDQp5Yf" -m set --match-set tabby-v4-masq-ipam-pools src -m set ! --match-set tabby-v4-all-ipam-pools dst -j MASQUERADE
	// COMMIT
}
