package netlink_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/syncrunner"
)

// A node agent and a BGP route programmer share one RouteOwner through
// named sources; Plan shows the diff, Reconcile applies it, and a second
// Reconcile writes nothing. Here on the in-memory fake; in production the
// handle is tnl.NewKernelHandle("/var/run/netns/<node>") (or "" for the
// current namespace).
func Example() {
	ctx := context.Background()
	kernel := tnl.NewFakeRouteHandle()
	kernel.AddLink("eth0", netip.MustParsePrefix("10.99.0.11/24"))
	owner, err := tnl.NewRouteOwner(kernel)
	if err != nil {
		fmt.Println(err)
		return
	}

	_ = owner.Set("blocks", []tnl.Route{
		{Dst: netip.MustParsePrefix("10.244.1.0/26"), Type: tnl.RouteBlackhole},
	})
	_ = owner.Upsert("bgp",
		tnl.Route{Dst: netip.MustParsePrefix("10.244.2.0/26"), NextHops: []tnl.NextHop{{Gateway: netip.MustParseAddr("10.99.0.12")}}},
		tnl.Route{Dst: netip.MustParsePrefix("10.96.0.0/12"), NextHops: []tnl.NextHop{
			{Gateway: netip.MustParseAddr("10.99.0.12")}, {Gateway: netip.MustParseAddr("10.99.0.13")},
		}},
	)
	plan, _ := owner.Plan(ctx)
	fmt.Print(plan)
	res, _ := owner.Reconcile(ctx)
	fmt.Printf("%+v\n", res)
	res, _ = owner.Reconcile(ctx)
	fmt.Printf("%+v\n", res)
	// Output:
	// + 10.96.0.0/12 nexthop via 10.99.0.12 nexthop via 10.99.0.13
	// + blackhole 10.244.1.0/26
	// + 10.244.2.0/26 via 10.99.0.12
	// {Added:3 Replaced:0 Deleted:0}
	// {Added:0 Replaced:0 Deleted:0}
}

func ExampleHostIfaceName() {
	name := tnl.HostIfaceName(tnl.DefaultHostPrefix, "k8s-pod-network.4b1c0ffee")
	fmt.Println(len(name) <= 15, name[:3])
	// Output: true tby
}

func ExampleDiff() {
	desired := []tnl.Route{
		{Dst: netip.MustParsePrefix("10.244.3.0/26"), NextHops: []tnl.NextHop{{Gateway: netip.MustParseAddr("10.99.0.14")}}},
	}
	inKernel := []tnl.Route{
		{Dst: netip.MustParsePrefix("10.244.3.0/26"), NextHops: []tnl.NextHop{{Gateway: netip.MustParseAddr("10.99.0.13"), Dev: "eth0"}}},
		{Dst: netip.MustParsePrefix("10.244.9.0/26"), Type: tnl.RouteBlackhole},
	}
	fmt.Print(tnl.Diff(desired, inKernel))
	// Output:
	// ~ 10.244.3.0/26 via 10.99.0.14
	// - blackhole 10.244.9.0/26
}

// A node agent drives the RouteOwner with a syncrunner: route updates
// (here one BGP route) call Trigger, the runner reconciles at most once a
// second, retries failures with backoff, and resyncs every minute to
// repair drift.
func ExampleRouteOwner_syncrunner() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kernel := tnl.NewFakeRouteHandle()
	kernel.AddLink("eth0", netip.MustParsePrefix("10.99.0.11/24"))
	owner, err := tnl.NewRouteOwner(kernel)
	if err != nil {
		fmt.Println(err)
		return
	}
	runner, err := syncrunner.New(func(ctx context.Context) error {
		res, err := owner.Reconcile(ctx)
		fmt.Printf("reconciled: %+v\n", res)
		cancel() // end the example after one sync
		return err
	}, syncrunner.Config{MinInterval: time.Second, MaxInterval: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = owner.Upsert("bgp", tnl.RouteVia(netip.MustParsePrefix("10.244.2.0/26"), netip.MustParseAddr("10.99.0.12")))
	runner.Trigger()
	fmt.Println(runner.Run(ctx))
	// Output:
	// reconciled: {Added:1 Replaced:0 Deleted:0}
	// context canceled
}

// A CNI ADD makes the pod's veth pair while IPAM chooses its address;
// the function given runs while the pair is created, and its addresses
// are then configured (here on the fake).
func ExampleFakeWorkloads_SetupWorkloadFunc() {
	ctx := context.Background()
	w, _ := tnl.NewFakeWorkloads()
	w.AddNetns("/var/run/netns/pod1")
	spec := tnl.WorkloadSpec{ID: "k8s-pod-network.c1", Netns: "/var/run/netns/pod1"}
	res, err := w.SetupWorkloadFunc(ctx, spec, func(ctx context.Context) ([]netip.Addr, error) {
		ids, _ := w.ListWorkloads(ctx)
		fmt.Println("while IPAM assigns:", ids, w.PodLinks(spec.Netns))
		return []netip.Addr{netip.MustParseAddr("10.244.1.7")}, nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.IPs[0].Address, "via", res.IPs[0].Gateway, w.HostRoutes())
	// Output:
	// while IPAM assigns: [k8s-pod-network.c1] [eth0 lo]
	// 10.244.1.7/32 via 169.254.1.1 [10.244.1.7/32 dev tby07ac9c63d2db]
}
