package node_test

import (
	"context"
	"fmt"
	"net/netip"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/node"
)

// A node with one block reaches a peer over VXLAN and another one, on the
// same subnet, directly (CrossSubnet); a pod is then set up on it. Here on
// the in-memory fakes; node.New builds the same on the kernel.
func Example() {
	ctx := context.Background()
	d, fakes, err := node.NewFake(node.Config{
		Name:    "node0",
		Address: netip.MustParsePrefix("10.99.0.11/24"),
		Encap:   tnl.EncapCrossSubnet,
		VXLAN:   tnl.VXLANConfig{Parent: "eth0", TunnelAddr: netip.MustParseAddr("10.244.17.0")},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// From ipam.AffineBlocks(ctx, "node0") and the other nodes' affinities.
	_ = d.SetBlocks([]netip.Prefix{netip.MustParsePrefix("10.244.17.0/26")})
	_ = d.SetPeers([]node.Peer{
		{Name: "node1", IP: netip.MustParseAddr("10.99.0.12"), TunnelAddr: netip.MustParseAddr("10.244.40.64"),
			Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.40.64/26")}},
		{Name: "node7", IP: netip.MustParseAddr("10.98.0.17"), TunnelAddr: netip.MustParseAddr("10.244.9.0"),
			Blocks: []netip.Prefix{netip.MustParsePrefix("10.244.9.0/26")}},
	})
	if err := d.Reconcile(ctx); err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range d.Routes().Desired() {
		fmt.Println(r)
	}
	fmt.Println(fakes.VXLAN.Entries())

	// CNI ADD with the address IPAM assigned.
	fakes.Workloads.AddNetns("/var/run/netns/web-0")
	res, err := d.Workloads().SetupWorkload(ctx, tnl.WorkloadSpec{
		ID: "k8s-pod-network.4b1c", Netns: "/var/run/netns/web-0",
		Addresses: []netip.Addr{netip.MustParseAddr("10.244.17.1")},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Container.Name, res.IPs[0].Address, "gw", res.IPs[0].Gateway)
	// The same pod again in another netns under the same interface name: refused.
	_, err = d.Workloads().SetupWorkload(ctx, tnl.WorkloadSpec{ID: "other", Netns: "/var/run/netns/web-0"})
	fmt.Println(err)
	// Output:
	// 10.244.9.0/26 via 10.244.9.0 dev vxlan.tabby onlink
	// blackhole 10.244.17.0/26
	// 10.244.40.64/26 via 10.99.0.12
	// [fdb 66:cc:0a:f4:09:00 dst 10.98.0.17 neigh 10.244.9.0 lladdr 66:cc:0a:f4:09:00]
	// eth0 10.244.17.1/32 gw 169.254.1.1
	// workload other: interface name collision: the pod already has eth0
}
