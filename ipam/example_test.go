package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/store"
)

func Example() {
	ctx := context.Background()
	s, err := store.NewMemory()
	if err != nil {
		fmt.Println(err)
		return
	}
	a, err := ipam.New(s)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = a.CreatePool(ctx, ipam.IPPool{Name: "v4", CIDR: netip.MustParsePrefix("10.244.0.0/24"), BlockSize: 28})
	_, _ = a.CreatePool(ctx, ipam.IPPool{Name: "v6", CIDR: netip.MustParsePrefix("fd00:244::/120"), BlockSize: 124})

	// CNI ADD: annotations pick pools; one IPv4 and one IPv6 address.
	req, _ := ipam.ParseAnnotations(map[string]string{ipam.AnnotationIPv4Pools: `["v4"]`}, nil)
	r, err := a.Assign(ctx, ipam.AssignArgs{
		Handle: "k8s-pod-network.abc123", Node: "node-1", Num4: 1, Num6: 1,
		IPv4Pools: req.IPv4Pools, Namespace: "default", Pod: "web-0",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Every address of a block is assignable, its first included, as in
	// Calico; which block a node claims first is seeded by its name.
	for _, ip := range r.All() {
		fmt.Println(ip.Pool, ip.Addr, "in block", ip.Block, "borrowed:", ip.Borrowed)
	}

	// The node agent advertises the node's blocks.
	blocks, _, _ := a.AffineBlocks(ctx, "node-1")
	fmt.Println(len(blocks), "affine blocks")

	// CNI DEL, twice: release by handle is idempotent.
	freed, _ := a.ReleaseByHandle(ctx, "k8s-pod-network.abc123")
	again, _ := a.ReleaseByHandle(ctx, "k8s-pod-network.abc123")
	fmt.Println(len(freed), len(again))

	// Failures say why.
	_, err = a.Assign(ctx, ipam.AssignArgs{Handle: "h", Node: "node-1", Num4: 1, IPv4Pools: []string{"nope"}})
	fmt.Println(errors.Is(err, ipam.ErrUnknownPool))

	// Output:
	// v4 10.244.0.32 in block 10.244.0.32/28 borrowed: false
	// v6 fd00:244::20 in block fd00:244::20/124 borrowed: false
	// 2 affine blocks
	// 2 0
	// true
}

// An outside checker (tabbyctl ipam check) lists every allocation and
// handle at one store revision and checks the store while others work.
func ExampleIPAM_Allocations() {
	ctx := context.Background()
	s, err := store.NewMemory()
	if err != nil {
		fmt.Println(err)
		return
	}
	a, err := ipam.New(s)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = a.CreatePool(ctx, ipam.IPPool{Name: "v4", CIDR: netip.MustParsePrefix("10.244.0.0/24"), BlockSize: 28})
	_, _ = a.Assign(ctx, ipam.AssignArgs{Handle: "k8s-pod-network.abc", Node: "node-1", Num4: 2, Pod: "web-0"})

	allocs, rev, err := a.Allocations(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for al, err := range allocs {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(al.Pool, al.Affinity, al.Attribute.Handle, al.Attribute.Pod, al.Borrowed)
	}
	handles, _, _ := a.Handles(ctx)
	for h := range handles {
		for _, n := range h.Blocks {
			fmt.Println(h.Handle, n)
		}
	}
	r, _ := a.Check(ctx, ipam.CheckOptions{})
	fmt.Println(r.OK(), r.Revision >= rev)

	// Output:
	// v4 node-1 k8s-pod-network.abc web-0 false
	// v4 node-1 k8s-pod-network.abc web-0 false
	// k8s-pod-network.abc 2
	// true true
}
