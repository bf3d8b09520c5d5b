package nettest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Routing selects how NewTopology connects the nodes' pod blocks.
type Routing int

const (
	// RoutingDirect installs, on every node, a route to each other node's
	// block via that node's fabric address (`ip route add BLOCK via NODEIP`).
	RoutingDirect Routing = iota
	// RoutingVXLAN builds a vxlan.tabby device per node with neighbour, FDB
	// and on-link routes to the other nodes' blocks.
	RoutingVXLAN
	// RoutingNone installs no inter-node routes (BGP tests program their own).
	RoutingNone
)

// routeSource is the RouteOwner source nettest uses for direct routes.
const routeSource = "nettest"

// Addressing of a topology (Calico-like; see LAB.md).
const (
	// FabricCIDR is the node underlay: the fabric bridge is .1, node i is .11+i.
	FabricCIDR = "10.99.0.0/24"
	// FabricCIDR6 is the IPv6 underlay: bridge ::1, node i ::11+i (hex).
	FabricCIDR6 = "fd00:99::/64"
)

var (
	fabric4 = netip.MustParsePrefix(FabricCIDR)
	fabric6 = netip.MustParsePrefix(FabricCIDR6)
)

type config struct {
	nodes   int
	ipv6    bool
	routing Routing
	podMTU  int
	log     *slog.Logger
}

// Option configures NewTopology.
type Option func(*config)

// Nodes sets the number of nodes (default 2, at most 200).
func Nodes(n int) Option { return func(c *config) { c.nodes = n } }

// IPv6 makes the topology dual stack: nodes and pods get IPv6 addresses too.
func IPv6() Option { return func(c *config) { c.ipv6 = true } }

// WithRouting selects how node blocks are connected (default RoutingDirect).
func WithRouting(r Routing) Option { return func(c *config) { c.routing = r } }

// PodMTU sets the MTU of pod interfaces (default 1500; use 1450 or less for
// bulk traffic over VXLAN).
func PodMTU(mtu int) Option { return func(c *config) { c.podMTU = mtu } }

// WithLogger passes a logger to the dataplane objects (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// Topology is a fabric bridge namespace plus N node namespaces wired to it,
// each with Workloads and a RouteOwner from dataplane/netlink, and the pods
// added to them. Everything is deleted in t.Cleanup, even on failure.
//
//	fabric (br0 10.99.0.1/24) ── n0 ─ node0 eth0 10.99.0.11/24, block 10.244.1.0/26
//	                          ── n1 ─ node1 eth0 10.99.0.12/24, block 10.244.2.0/26 ...
//	node i: tby<hash> ── pod eth0 10.244.(i+1).k/32, default via 169.254.1.1
type Topology struct {
	t      testing.TB
	ID     string
	Fabric *Netns
	cfg    config
	nodes  []*Node
}

// Node is one simulated node.
type Node struct {
	topo  *Topology
	Index int
	// Name is "node<Index>".
	Name string
	NS   *Netns
	// IP and IP6 are the node's fabric addresses (IP6 only with IPv6()).
	IP, IP6 netip.Addr
	// Block and Block6 are the node's pod blocks: 10.244.(i+1).0/26 and fd00:244:0:(i+1)::/122.
	Block, Block6 netip.Prefix
	// Workloads creates pod interfaces in this node.
	Workloads *tnl.Workloads
	// Kernel is the node's netlink handle (with route batching).
	Kernel *tnl.KernelHandle
	// Routes owns the node's routes (protocol tnl.ProtocolRoutes).
	Routes *tnl.RouteOwner
	// VXLAN is set with RoutingVXLAN.
	VXLAN *tnl.VXLAN

	mu   sync.Mutex
	pods []*Pod
	next int
}

// NewTopology builds the fabric and the nodes and connects the nodes'
// blocks as WithRouting says. It skips the test unless root.
//
//	topo := nettest.NewTopology(t, nettest.Nodes(3))
//	a, b := topo.Node(0).AddPod(t), topo.Node(1).AddPod(t)
//	nettest.ExpectConnect(t, a, b, 8080)
func NewTopology(t testing.TB, opts ...Option) *Topology {
	t.Helper()
	RequireRoot(t)
	cfg := config{nodes: 2, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.nodes < 1 || cfg.nodes > 200 {
		t.Fatalf("nettest: %d nodes, want 1..200", cfg.nodes)
	}
	id := UniqueName("tby")
	topo := &Topology{t: t, ID: id, cfg: cfg}
	topo.Fabric = newNetnsNamed(t, id+"-fab")
	fh := topo.Fabric.Handle()
	br := &nl.Bridge{LinkAttrs: nl.LinkAttrs{Name: "br0", TxQLen: -1}}
	must(t, fh.LinkAdd(br), "add fabric bridge")
	must(t, fh.LinkSetUp(br), "fabric bridge up")
	must(t, fh.AddrAdd(br, addrOf(hostAt(fabric4, 1), 24, false)), "fabric address")
	if cfg.ipv6 {
		must(t, fh.AddrAdd(br, addrOf(hostAt(fabric6, 1), 64, true)), "fabric v6 address")
	}
	for i := range cfg.nodes {
		topo.nodes = append(topo.nodes, topo.addNode(i))
	}
	switch cfg.routing {
	case RoutingDirect:
		topo.RouteDirect()
	case RoutingVXLAN:
		topo.RouteVXLAN()
	}
	return topo
}

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("nettest: %s: %v", what, err)
	}
}

// hostAt returns the n-th address of p.
func hostAt(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return a
}

func addrOf(a netip.Addr, bits int, nodad bool) *nl.Addr {
	ad := &nl.Addr{IPNet: ipNet(netip.PrefixFrom(a, bits))}
	if nodad {
		ad.Flags = unix.IFA_F_NODAD
	}
	return ad
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (topo *Topology) addNode(i int) *Node {
	t := topo.t
	n := &Node{
		topo: topo, Index: i, Name: fmt.Sprintf("node%d", i),
		NS:     newNetnsNamed(t, fmt.Sprintf("%s-n%d", topo.ID, i)),
		IP:     hostAt(fabric4, 11+i),
		Block:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i + 1), 0}), 26),
		Block6: netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0x02, 0x44, 0, 0, 0, byte(i + 1)}), 122),
	}
	fh, h := topo.Fabric.Handle(), n.NS.Handle()
	port := fmt.Sprintf("n%d", i)
	veth := &nl.Veth{LinkAttrs: nl.LinkAttrs{Name: port, TxQLen: -1}, PeerName: "eth0", PeerNamespace: nl.NsFd(int(n.NS.NS().Fd()))}
	must(t, fh.LinkAdd(veth), "node veth")
	br, err := fh.LinkByName("br0")
	must(t, err, "find br0")
	must(t, fh.LinkSetMaster(veth, br), "attach node to bridge")
	must(t, fh.LinkSetUp(veth), "fabric port up")
	eth0, err := h.LinkByName("eth0")
	must(t, err, "node eth0")
	must(t, h.AddrAdd(eth0, addrOf(n.IP, 24, false)), "node address")
	if topo.cfg.ipv6 {
		n.IP6 = hostAt(fabric6, 0x11+i)
		must(t, h.AddrAdd(eth0, addrOf(n.IP6, 64, true)), "node v6 address")
	}
	must(t, h.LinkSetUp(eth0), "node eth0 up")
	// A default route is required: proxy ARP for 169.254.1.1 only answers
	// when the node has a route to it through another interface.
	must(t, h.RouteAdd(&nl.Route{Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: hostAt(fabric4, 1).AsSlice()}), "node default route")
	if topo.cfg.ipv6 {
		must(t, h.RouteAdd(&nl.Route{Dst: ipNet(netip.MustParsePrefix("::/0")), Gw: hostAt(fabric6, 1).AsSlice(), LinkIndex: eth0.Attrs().Index}), "node v6 default route")
	}
	w, err := tnl.NewWorkloads(n.NS.Path, tnl.WithLogger(topo.cfg.log))
	must(t, err, "workloads")
	t.Cleanup(func() { _ = w.Close() })
	must(t, w.EnableForwarding(), "enable forwarding")
	n.Workloads = w
	kh, err := tnl.NewKernelHandle(n.NS.Path)
	must(t, err, "kernel handle")
	t.Cleanup(kh.Close)
	n.Kernel = kh
	n.Routes = tnl.NewRouteOwner(kh, tnl.WithLogger(topo.cfg.log))
	return n
}

// Node returns node i (0-based).
func (topo *Topology) Node(i int) *Node { return topo.nodes[i] }

// Nodes returns all nodes.
func (topo *Topology) Nodes() []*Node { return topo.nodes }

// Pods returns every pod of every node, in node then creation order.
func (topo *Topology) Pods() []*Pod {
	var out []*Pod
	for _, n := range topo.nodes {
		out = append(out, n.Pods()...)
	}
	return out
}

// DirectRoutes returns the routes node n needs to reach the other nodes'
// blocks through the fabric.
func (topo *Topology) DirectRoutes(n *Node) []tnl.Route {
	var rs []tnl.Route
	for _, o := range topo.nodes {
		if o == n {
			continue
		}
		rs = append(rs, tnl.Route{Dst: o.Block, NextHops: []tnl.NextHop{{Gateway: o.IP}}})
		if topo.cfg.ipv6 {
			rs = append(rs, tnl.Route{Dst: o.Block6, NextHops: []tnl.NextHop{{Gateway: o.IP6}}})
		}
	}
	return rs
}

// RouteDirect (re)programs direct routes between all nodes' blocks.
func (topo *Topology) RouteDirect() {
	topo.t.Helper()
	for _, n := range topo.nodes {
		must(topo.t, n.Routes.Set(routeSource, topo.DirectRoutes(n)), "set direct routes")
		_, err := n.Routes.Reconcile(context.Background())
		must(topo.t, err, n.Name+": reconcile direct routes")
	}
}

// RouteVXLAN removes direct routes and connects the nodes' IPv4 blocks over
// VXLAN (device vxlan.tabby, VNI 4096, port 4789, tunnel address = the
// block's first address). IPv6 blocks keep direct routes.
func (topo *Topology) RouteVXLAN() {
	t := topo.t
	t.Helper()
	for _, n := range topo.nodes {
		var keep []tnl.Route
		for _, r := range topo.DirectRoutes(n) {
			if r.Dst.Addr().Is6() {
				keep = append(keep, r)
			}
		}
		must(t, n.Routes.Set(routeSource, keep), "drop direct routes")
		if n.VXLAN == nil {
			v, err := tnl.NewVXLAN(n.Kernel, n.Routes, tnl.VXLANConfig{
				Parent: "eth0", LocalIP: n.IP, TunnelAddr: n.Block.Addr(),
			}, tnl.WithLogger(topo.cfg.log))
			must(t, err, "vxlan")
			n.VXLAN = v
		}
		var peers []tnl.VXLANPeer
		for _, o := range topo.nodes {
			if o != n {
				peers = append(peers, tnl.VXLANPeer{Name: o.Name, NodeIP: o.IP, TunnelAddr: o.Block.Addr(), Blocks: []netip.Prefix{o.Block}})
			}
		}
		must(t, n.VXLAN.SetPeers(peers), "vxlan peers")
		must(t, n.VXLAN.Reconcile(context.Background()), n.Name+": reconcile vxlan")
	}
}

// String describes the topology (namespace names, addresses) for logs.
func (topo *Topology) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fabric %s br0 %s\n", topo.Fabric.Name, hostAt(fabric4, 1))
	for _, n := range topo.nodes {
		fmt.Fprintf(&b, "%s %s eth0 %s block %s\n", n.Name, n.NS.Name, n.IP, n.Block)
		for _, p := range n.Pods() {
			fmt.Fprintf(&b, "  pod %s %s %s host %s\n", p.Name, p.NS.Name, p.IP, p.Result.Host.Name)
		}
	}
	return b.String()
}
