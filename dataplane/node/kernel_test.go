package node_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/dataplane/node"
)

// TestKernelDataplane checks what a node programs in a real namespace
// (nettest builds its nodes with node.New): blackholes for its blocks,
// VXLAN routes to the peers' blocks, pods reachable across nodes; then
// that a Dataplane restarted on the same namespace adopts the state
// without writing, and that a block given up loses its blackhole.
func TestKernelDataplane(t *testing.T) {
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(2), nettest.WithRouting(nettest.RoutingVXLAN))
	n0, n1 := topo.Node(0), topo.Node(1)
	a, b := n0.AddPod(t), n1.AddPod(t)
	nettest.ExpectConnect(t, a, b, 8080)
	nettest.ExpectConnect(t, b, a, 8080)

	show := func(args ...string) string {
		out, err := n0.NS.Run(ctx, "ip", append([]string{"route", "show"}, args...)...)
		require.NoError(t, err)
		return out
	}
	block0, block1 := n0.Blocks()[0], n1.Blocks()[0]
	assert.Contains(t, show("proto", "116"), "blackhole "+block0.String())
	assert.Contains(t, show("proto", "116"), block1.String()+" via "+n1.TunnelAddr.String()+" dev vxlan.tabby onlink")
	// An address of the block that no pod holds is dropped on the node,
	// not sent out of its default route.
	free := a.IP.Next().Next()
	out, err := n0.NS.Run(ctx, "ip", "route", "get", free.String())
	assert.Error(t, err, "no route for an unused address of the local block: %s", out)

	// A restarted agent: same config, blocks and peers → nothing to write.
	cfg := n0.Dataplane.Config()
	d, err := node.New(cfg)
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Close()) }()
	require.NoError(t, d.SetBlocks(n0.Blocks()))
	require.NoError(t, d.SetPeers(n0.Dataplane.Peers()))
	plan, err := d.Routes().Plan(ctx)
	require.NoError(t, err)
	assert.True(t, plan.Empty(), plan.String())
	require.NoError(t, d.Reconcile(ctx))
	ids, err := d.Workloads().ListWorkloads(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{a.Spec.ID}, ids)

	// The block goes (IPAM released it): its blackhole goes; the pod's /32 stays.
	require.NoError(t, d.SetBlocks(nil))
	require.NoError(t, d.Reconcile(ctx))
	assert.NotContains(t, show("proto", "116"), "blackhole")
	assert.Contains(t, show("proto", "117"), a.IP.String())

	// Bad input reaches the kernel never.
	require.ErrorIs(t, d.SetBlocks([]netip.Prefix{netip.MustParsePrefix("10.1.2.3/24")}), tnl.ErrInvalidPrefix)
	_, err = node.New(node.Config{Name: "x", Netns: "/var/run/netns/tby-node-nonexistent"})
	require.ErrorIs(t, err, tnl.ErrNetnsNotFound)
	assert.False(t, strings.Contains(show(), "10.1.2.0/24"))
}

// TestKernelSwitchToNever restarts a VXLAN node's agent with Encap Never
// (a pool's vxlanMode set to Never): the first Reconcile deletes the
// vxlan.tabby device with its tunnel address and FDB entries, as Felix
// deletes vxlan.calico, and the pods talk over the direct routes.
func TestKernelSwitchToNever(t *testing.T) {
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(2), nettest.WithRouting(nettest.RoutingVXLAN))
	n0, n1 := topo.Node(0), topo.Node(1)
	a, b := n0.AddPod(t), n1.AddPod(t)
	nettest.ExpectConnect(t, a, b, 8080)
	_, err := n0.NS.Run(ctx, "ip", "link", "show", "vxlan.tabby")
	require.NoError(t, err)

	d := restartNever(t, n0)

	out, err := n0.NS.Run(ctx, "ip", "link", "show", "vxlan.tabby")
	require.Error(t, err, "vxlan.tabby still there: %s", out)
	addrs, err := n0.NS.Run(ctx, "ip", "-4", "addr", "show")
	require.NoError(t, err)
	assert.NotContains(t, addrs, n0.TunnelAddr.String()+"/32")
	routes, err := n0.NS.Run(ctx, "ip", "route", "show", "proto", "116")
	require.NoError(t, err)
	assert.Contains(t, routes, n1.Blocks()[0].String()+" via "+n1.Dataplane.AsPeer().IP.String()+" dev ")
	assert.NotContains(t, routes, "vxlan")
	// n1 switches too; then the pods talk over the direct routes.
	restartNever(t, n1)
	nettest.ExpectConnect(t, a, b, 8080)
	nettest.ExpectConnect(t, b, a, 8080)
	// A second Reconcile writes nothing and succeeds.
	require.NoError(t, d.Reconcile(ctx))
	plan, err := d.Routes().Plan(ctx)
	require.NoError(t, err)
	assert.True(t, plan.Empty(), plan.String())

	// A link of that name that is not VXLAN is not ours: left alone.
	_, err = n0.NS.Run(ctx, "ip", "link", "add", "vxlan.tabby", "type", "bridge")
	require.NoError(t, err)
	require.NoError(t, d.Reconcile(ctx))
	_, err = n0.NS.Run(ctx, "ip", "link", "show", "vxlan.tabby")
	assert.NoError(t, err)
}

// restartNever starts a new agent on n's namespace with n's config, blocks
// and peers but Encap Never, and reconciles it once.
func restartNever(t *testing.T, n *nettest.Node) *node.Dataplane {
	t.Helper()
	cfg := n.Dataplane.Config()
	cfg.Encap = tnl.EncapNever
	d, err := node.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.SetBlocks(n.Blocks()))
	require.NoError(t, d.SetPeers(n.Dataplane.Peers()))
	require.NoError(t, d.Reconcile(context.Background()))
	return d
}
