package policy_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

// Compile one Kubernetes-style policy for two local pods on the fakes and
// show what an Apply changes, then what a label change changes.
func Example() {
	iptFake, setFake := iptables.NewFake(), ipsets.NewFake()
	ipt, _ := iptables.New(iptables.Config{Family: iptables.IPv4, Backend: iptables.BackendNFT}, iptables.WithExecer(iptFake))
	c, _ := dppolicy.New(dppolicy.Config{}, ipt, ipsets.New(setFake))

	web := &policy.Endpoint{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"},
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	db := &policy.Endpoint{Name: "db", Namespace: "shop", Labels: map[string]string{"app": "db"},
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}
	np := &policy.NetworkPolicy{}
	np.Name, np.Namespace = "db", "shop"
	np.Spec.Selector = "app == 'db'"
	np.Spec.Ingress = []policy.Rule{{Action: policy.Allow, Protocol: ptr(policy.ProtoTCP),
		Source:      policy.EntityRule{Selector: "app == 'web'"},
		Destination: policy.EntityRule{Ports: []policy.Port{policy.SinglePort(5432)}}}}
	if err := c.Replace(policy.Resources{Endpoints: []*policy.Endpoint{web, db}, NetworkPolicies: []*policy.NetworkPolicy{np}}); err != nil {
		fmt.Println(err)
		return
	}
	_ = c.SetInterface("shop/web", "tby1")
	_ = c.SetInterface("shop/db", "tby2")
	if _, err := c.Apply(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(setFake.Dump())
	fmt.Print(iptFake.Dump())

	// web loses its label: one set member goes, no chain changes.
	web.Labels = map[string]string{"app": "other"}
	_ = c.UpdateEndpoint(web)
	fmt.Print(c.Plan())
	// Output:
	// create tabby-s4-f7b8d4bbc5b8e870 hash:net family inet maxelem 1024
	// add tabby-s4-f7b8d4bbc5b8e870 10.0.0.1
	// # iptables-nft
	// *filter
	// :INPUT ACCEPT [0:0]
	// :FORWARD ACCEPT [0:0]
	// :OUTPUT ACCEPT [0:0]
	// :tabby-FORWARD - [0:0]
	// :tabby-INPUT - [0:0]
	// :tabby-OUTPUT - [0:0]
	// :tabby-from-host-dispatch - [0:0]
	// :tabby-from-wl-dispatch - [0:0]
	// :tabby-fw-tby1 - [0:0]
	// :tabby-fw-tby2 - [0:0]
	// :tabby-pi-3da92de4df766465 - [0:0]
	// :tabby-to-host-dispatch - [0:0]
	// :tabby-to-wl-dispatch - [0:0]
	// :tabby-tw-tby1 - [0:0]
	// :tabby-tw-tby2 - [0:0]
	// -A INPUT -m comment --comment "tabby:7tHT04ty5uJoik7v" -j tabby-INPUT
	// -A FORWARD -m comment --comment "tabby:luZs-0GosH9flkst" -j tabby-FORWARD
	// -A OUTPUT -m comment --comment "tabby:Truy91S27ovJcH90" -j tabby-OUTPUT
	// -A tabby-FORWARD -m comment --comment "tabby:_HdAFGwHU9JfnykC" -m comment --comment "clear tabby marks" -j MARK --set-xmark 0x0/0x30000
	// -A tabby-FORWARD -i tby+ -m comment --comment "tabby:CdC9QSORiaB8Qm8g" -j tabby-from-wl-dispatch
	// -A tabby-FORWARD -o tby+ -m comment --comment "tabby:T8r_kHxII59CF654" -j tabby-to-wl-dispatch
	// -A tabby-FORWARD -m comment --comment "tabby:_Z5loZwwyp3h78Ko" -m comment --comment "policy accepted the packet" -m mark --mark 0x10000/0x10000 -j ACCEPT
	// -A tabby-INPUT -m comment --comment "tabby:X8E0BIXV7m6Z613U" -m comment --comment "clear tabby marks" -j MARK --set-xmark 0x0/0x30000
	// -A tabby-INPUT -i tby+ -m comment --comment "tabby:Jh9qPU_aQlRruElp" -m comment --comment "egress policy of workloads applies to the host" -j tabby-from-wl-dispatch
	// -A tabby-INPUT ! -i tby+ -m comment --comment "tabby:Ne-EvtCRybtxfT-v" -j tabby-from-host-dispatch
	// -A tabby-INPUT -m comment --comment "tabby:qMN57HWlyZqFxCLe" -m comment --comment "policy accepted the packet" -m mark --mark 0x10000/0x10000 -j ACCEPT
	// -A tabby-OUTPUT -m comment --comment "tabby:31gIKBonwvs-g3pt" -m comment --comment "clear tabby marks" -j MARK --set-xmark 0x0/0x30000
	// -A tabby-OUTPUT -o tby+ -m comment --comment "tabby:m7AdKGtOtZ-iB9YH" -m comment --comment "host to workload is allowed" -j RETURN
	// -A tabby-OUTPUT -m comment --comment "tabby:z63StV3_fFEgDm68" -j tabby-to-host-dispatch
	// -A tabby-OUTPUT -m comment --comment "tabby:zSm5V3CPlh27GnqR" -m comment --comment "policy accepted the packet" -m mark --mark 0x10000/0x10000 -j ACCEPT
	// -A tabby-from-wl-dispatch -i tby1 -m comment --comment "tabby:o-9ROhgiKAa2AxaI" -g tabby-fw-tby1
	// -A tabby-from-wl-dispatch -i tby2 -m comment --comment "tabby:mp19Ivzx9GlCWz5V" -g tabby-fw-tby2
	// -A tabby-from-wl-dispatch -m comment --comment "tabby:4wFCERsui2NW5I1F" -m comment --comment "unknown workload interface" -j DROP
	// -A tabby-fw-tby1 -m comment --comment "tabby:fWbl5mYJLtx65z5G" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
	// -A tabby-fw-tby1 -m comment --comment "tabby:oSgo9ZADgrM9CI6O" -m conntrack --ctstate INVALID -j DROP
	// -A tabby-fw-tby1 -m comment --comment "tabby:PaHhyae6Ajk7tNR4" -j MARK --set-xmark 0x0/0x30000
	// -A tabby-fw-tby1 -m comment --comment "tabby:pQ8EuKN2mH9uN_rH" -m comment --comment "profile kns.shop" -j MARK --set-xmark 0x10000/0x10000
	// -A tabby-fw-tby1 -m comment --comment "tabby:SLPdAHhUJl9vt4pv" -j RETURN
	// -A tabby-fw-tby2 -m comment --comment "tabby:msbm-c6TbsozQDaM" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
	// -A tabby-fw-tby2 -m comment --comment "tabby:HVl4U28YuuUXOsSe" -m conntrack --ctstate INVALID -j DROP
	// -A tabby-fw-tby2 -m comment --comment "tabby:GVfq-jepKozsQQq0" -j MARK --set-xmark 0x0/0x30000
	// -A tabby-fw-tby2 -m comment --comment "tabby:jtJ6QuCC5c-fHthY" -m comment --comment "profile kns.shop" -j MARK --set-xmark 0x10000/0x10000
	// -A tabby-fw-tby2 -m comment --comment "tabby:19vRyGlPJSHZ6NF7" -j RETURN
	// -A tabby-pi-3da92de4df766465 -p tcp -m comment --comment "tabby:LSnhKaFV-ZGhkjCm" -m comment --comment "shop/db ingress rule 0 Allow" -m set --match-set tabby-s4-f7b8d4bbc5b8e870 src -m tcp --dport 5432 -j MARK --set-xmark 0x10000/0x10000
	// -A tabby-pi-3da92de4df766465 -m comment --comment "tabby:6KHIqY4zpJu0G9zf" -m mark --mark 0x10000/0x10000 -j RETURN
	// -A tabby-to-wl-dispatch -o tby1 -m comment --comment "tabby:CG5KVz3kr8u73qqS" -g tabby-tw-tby1
	// -A tabby-to-wl-dispatch -o tby2 -m comment --comment "tabby:NDmPEuHnaxRKyGFU" -g tabby-tw-tby2
	// -A tabby-to-wl-dispatch -m comment --comment "tabby:fvgWQgFGKhnN4UKz" -m comment --comment "unknown workload interface" -j DROP
	// -A tabby-tw-tby1 -m comment --comment "tabby:WrQRPfhe19-y7QiC" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
	// -A tabby-tw-tby1 -m comment --comment "tabby:3d7NcU44O9mAkD9E" -m conntrack --ctstate INVALID -j DROP
	// -A tabby-tw-tby1 -m comment --comment "tabby:OfIyfsV9TFy-k7pJ" -j MARK --set-xmark 0x0/0x30000
	// -A tabby-tw-tby1 -m comment --comment "tabby:OeWqYD_whKZCaDZh" -m comment --comment "profile kns.shop" -j MARK --set-xmark 0x10000/0x10000
	// -A tabby-tw-tby1 -m comment --comment "tabby:KYXb1YzbMnebQMjf" -j RETURN
	// -A tabby-tw-tby2 -m comment --comment "tabby:lZ2HEiCm18-F345n" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
	// -A tabby-tw-tby2 -m comment --comment "tabby:SpRAcSXFJDwKg2Fe" -m conntrack --ctstate INVALID -j DROP
	// -A tabby-tw-tby2 -m comment --comment "tabby:azw97ZomwPfVZOyv" -j MARK --set-xmark 0x0/0x30000
	// -A tabby-tw-tby2 -m comment --comment "tabby:Sja0X8b4IQJ68HSu" -m comment --comment "policy shop/db" -m mark --mark 0x0/0x20000 -j tabby-pi-3da92de4df766465
	// -A tabby-tw-tby2 -m comment --comment "tabby:JNAErURHWLnzYYwb" -m mark --mark 0x10000/0x10000 -j RETURN
	// -A tabby-tw-tby2 -m comment --comment "tabby:GZF7ZOdCN-h4yNn1" -m comment --comment "end of tier default: drop if no policy passed the packet" -m mark --mark 0x0/0x20000 -j DROP
	// -A tabby-tw-tby2 -m comment --comment "tabby:DQtymbFTzIEW_832" -m comment --comment "profile kns.shop" -j MARK --set-xmark 0x10000/0x10000
	// -A tabby-tw-tby2 -m comment --comment "tabby:04l8szU6h2o9fqUC" -j RETURN
	// COMMIT
	// update set tabby-s4-f7b8d4bbc5b8e870
	// - 10.0.0.1
}

func ptr[T any](v T) *T { return &v }
