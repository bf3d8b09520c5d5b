package embedetcd_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/store/etcdstore"
	"github.com/tabbynet/tabby/ipam/store/etcdstore/embedetcd"
)

// Trying IPAM on the etcd store without deploying etcd.
func Example() {
	ctx := context.Background()
	srv, err := embedetcd.Start(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	client, err := srv.Client()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	s, err := etcdstore.New(client)
	if err != nil {
		fmt.Println(err)
		return
	}
	a, err := ipam.New(s)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := a.CreatePool(ctx, ipam.IPPool{Name: "v4", CIDR: netip.MustParsePrefix("10.244.0.0/24"), BlockSize: 28}); err != nil {
		fmt.Println(err)
		return
	}
	r, err := a.Assign(ctx, ipam.AssignArgs{Handle: "k8s-pod-network.abc", Node: "node-1", Num4: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.IPv4[0].Pool, r.IPv4[0].Block.Bits())
	// Output: v4 28
}
