package cni_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/cni"
	"github.com/tabbynet/tabby/dataplane/netlink"
)

// The plugin on the fakes: ADD for a pod, a retried ADD, DEL.
func Example() {
	ctx := context.Background()
	wm, _ := netlink.NewFakeWorkloads()
	wm.AddNetns("/run/netns/pod1")
	m, _ := cni.NewMemoryIPAM(ctx, cni.PoolConf{Name: "default", CIDR: netip.MustParsePrefix("10.244.0.0/24")})
	p := cni.New(cni.WithWorkloads(wm), cni.WithIPAM(m))

	conf := []byte(`{"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "tabby",
		"nodename": "node1", "ipam": {"type": "tabby-ipam"}}`)
	args := &skel.CmdArgs{ContainerID: "abc", Netns: "/run/netns/pod1", IfName: "eth0", StdinData: conf,
		Args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod1"}
	r, err := p.Add(ctx, args)
	if err != nil {
		fmt.Println(err)
		return
	}
	res := r.(*current.Result)
	fmt.Println(res.Interfaces[1].Name, res.IPs[0].Address.String(), "via", res.IPs[0].Gateway)

	again, _ := p.Add(ctx, args) // the runtime retried: same address
	fmt.Println(again.(*current.Result).IPs[0].Address.String())

	fmt.Println(p.Del(ctx, args), p.Del(ctx, args)) // idempotent
	held, _ := m.IPsByHandle(ctx, cni.Handle("k8s-pod-network", "abc"))
	fmt.Println(len(held), "addresses held")
	// Output:
	// eth0 10.244.0.128/32 via 169.254.1.1
	// 10.244.0.128/32
	// <nil> <nil>
	// 0 addresses held
}
