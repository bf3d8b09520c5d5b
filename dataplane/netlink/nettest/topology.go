package nettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/node"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/store"
	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Routing selects how NewTopology connects the nodes' pod blocks.
type Routing int

const (
	// RoutingDirect installs, on every node, a route to each other node's
	// blocks via that node's fabric address (`ip route add BLOCK via
	// NODEIP`): dataplane/node with Encap Never.
	RoutingDirect Routing = iota
	// RoutingVXLAN builds a vxlan.tabby device per node with neighbour, FDB
	// and on-link routes to the other nodes' IPv4 blocks (IPv6 blocks stay
	// direct): dataplane/node with Encap Always, the tunnel address
	// assigned from IPAM (use Tunnel) like Calico's.
	RoutingVXLAN
	// RoutingNone installs no inter-node routes (BGP tests program their
	// own); each node still blackholes its own blocks.
	RoutingNone
)

// Addressing of a topology (Calico-like; see README.md).
const (
	// FabricCIDR is the node underlay: the fabric bridge is .1, node i is .11+i.
	FabricCIDR = "10.99.0.0/24"
	// FabricCIDR6 is the IPv6 underlay: bridge ::1, node i ::11+i (hex).
	FabricCIDR6 = "fd00:99::/64"
	// PoolCIDR and PoolBlockSize are the IPv4 pool of the IPAM a topology
	// makes when WithIPAM is not given (Calico's default block size).
	PoolCIDR      = "10.244.0.0/16"
	PoolBlockSize = 26
	// PoolCIDR6 and PoolBlockSize6 are its IPv6 pool (with IPv6()).
	PoolCIDR6      = "fd00:244::/108"
	PoolBlockSize6 = 122
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
	ipam    *ipam.IPAM
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

// WithIPAM makes the topology take pod and tunnel addresses, and so the
// nodes' blocks, from a (its pools must exist) instead of from a fresh
// in-memory IPAM with PoolCIDR (and PoolCIDR6 with IPv6()). Tests that
// also allocate themselves (a CNI plugin under test) share it this way.
func WithIPAM(a *ipam.IPAM) Option { return func(c *config) { c.ipam = a } }

// Topology is a fabric bridge namespace plus N node namespaces wired to it,
// each with a dataplane/node Dataplane whose blocks come from IPAM, and the
// pods added to them. NewTopology deletes everything in t.Cleanup, even on
// failure; Build + Close do the same outside tests (the lab).
//
//	fabric (br0 10.99.0.1/24) ── n0 ─ node0 eth0 10.99.0.11/24, blocks from IPAM
//	                          ── n1 ─ node1 eth0 10.99.0.12/24, ...
//	node i: tby<hash> ── pod eth0 <IPAM address>/32, default via 169.254.1.1
type Topology struct {
	ID     string
	Fabric *Netns
	cfg    config
	nodes  []*Node

	mu       sync.Mutex
	cleanups []func() error
	clients  int

	syncMu sync.Mutex // serialises Sync
}

// Node is one simulated node.
type Node struct {
	topo  *Topology
	Index int
	// Name is "node<Index>", also its name in IPAM.
	Name string
	NS   *Netns
	// IP and IP6 are the node's fabric addresses (IP6 only with IPv6()).
	IP, IP6 netip.Addr
	// TunnelAddr is the node's VXLAN tunnel address (RoutingVXLAN only),
	// assigned from IPAM with use Tunnel.
	TunnelAddr netip.Addr
	// Dataplane is the node's pod networking: block blackholes, workloads,
	// routes to the other nodes. Workloads, Routes and VXLAN are its parts.
	Dataplane *node.Dataplane
	// Workloads creates pod interfaces in this node.
	Workloads tnl.WorkloadManager
	// Routes owns the node's routes (protocol tnl.ProtocolRoutes).
	Routes *tnl.RouteOwner
	// VXLAN is the overlay (RoutingVXLAN only, else nil).
	VXLAN tnl.VXLANManager

	mu   sync.Mutex
	pods []*Pod
	next int
	host *Pod
}

// Blocks returns the node's blocks (its IPAM affinities as of the last
// Sync), sorted; empty until a pod or tunnel address was assigned on it.
func (n *Node) Blocks() []netip.Prefix { return n.Dataplane.Blocks() }

// NewTopology builds the fabric and the nodes and connects the nodes'
// blocks as WithRouting says; everything is deleted in t.Cleanup. It skips
// the test unless root.
//
//	topo := nettest.NewTopology(t, nettest.Nodes(3))
//	a, b := topo.Node(0).AddPod(t), topo.Node(1).AddPod(t)
//	nettest.ExpectConnect(t, a, b, 8080)
func NewTopology(t testing.TB, opts ...Option) *Topology {
	t.Helper()
	RequireRoot(t)
	topo, err := Build(opts...)
	if err != nil {
		t.Fatalf("nettest: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("nettest: %v", err)
		}
	})
	return topo
}

// Build is NewTopology without a test: the caller must Close the topology
// (the lab does, on exit). On error, what was built is already removed.
func Build(opts ...Option) (*Topology, error) {
	cfg := config{nodes: 2, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.nodes < 1 || cfg.nodes > 200 {
		return nil, fmt.Errorf("%d nodes, want 1..200", cfg.nodes)
	}
	if cfg.ipam == nil {
		a, err := newIPAM(cfg.ipv6)
		if err != nil {
			return nil, err
		}
		cfg.ipam = a
	}
	topo := &Topology{ID: UniqueName("tby"), cfg: cfg}
	if err := topo.build(); err != nil {
		return nil, errors.Join(err, topo.Close())
	}
	return topo, nil
}

// newIPAM makes an in-memory IPAM with PoolCIDR (and PoolCIDR6).
func newIPAM(v6 bool) (*ipam.IPAM, error) {
	ctx := context.Background()
	mem, err := store.NewMemory()
	if err != nil {
		return nil, fmt.Errorf("ipam store: %w", err)
	}
	a, err := ipam.New(mem)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	pools := []ipam.IPPool{{Name: "default-ipv4-ippool", CIDR: netip.MustParsePrefix(PoolCIDR), BlockSize: PoolBlockSize}}
	if v6 {
		pools = append(pools, ipam.IPPool{Name: "default-ipv6-ippool", CIDR: netip.MustParsePrefix(PoolCIDR6), BlockSize: PoolBlockSize6})
	}
	for _, p := range pools {
		if _, err := a.CreatePool(ctx, p); err != nil {
			return nil, fmt.Errorf("ipam pool %s: %w", p.CIDR, err)
		}
	}
	return a, nil
}

// IPAM returns the IPAM the topology assigns addresses from.
func (topo *Topology) IPAM() *ipam.IPAM { return topo.cfg.ipam }

func (topo *Topology) build() error {
	fab, err := topo.newNetns(topo.ID + "-fab")
	if err != nil {
		return err
	}
	topo.Fabric = fab
	fh := fab.Handle()
	br := &nl.Bridge{LinkAttrs: nl.LinkAttrs{Name: "br0", TxQLen: -1}}
	if err := fh.LinkAdd(br); err != nil {
		return fmt.Errorf("add fabric bridge: %w", err)
	}
	if err := fh.LinkSetUp(br); err != nil {
		return fmt.Errorf("fabric bridge up: %w", err)
	}
	if err := fh.AddrAdd(br, addrOf(hostAt(fabric4, 1), 24, false)); err != nil {
		return fmt.Errorf("fabric address: %w", err)
	}
	if topo.cfg.ipv6 {
		if err := fh.AddrAdd(br, addrOf(hostAt(fabric6, 1), 64, true)); err != nil {
			return fmt.Errorf("fabric v6 address: %w", err)
		}
	}
	for i := range topo.cfg.nodes {
		n, err := topo.addNode(i)
		if err != nil {
			return fmt.Errorf("node%d: %w", i, err)
		}
		topo.nodes = append(topo.nodes, n)
	}
	return topo.Sync()
}

// onClose registers f to run at Close, before what was registered earlier.
func (topo *Topology) onClose(f func() error) {
	topo.mu.Lock()
	defer topo.mu.Unlock()
	topo.cleanups = append(topo.cleanups, f)
}

// Close stops listeners, closes handles and deletes every namespace of
// the topology, newest first. Safe to call twice.
func (topo *Topology) Close() error {
	topo.mu.Lock()
	fns := topo.cleanups
	topo.cleanups = nil
	topo.mu.Unlock()
	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		if err := fns[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newNetns creates a namespace owned by the topology. IPv6 duplicate
// address detection is off for the interfaces created in it: tentative
// link-local addresses would stall the first IPv6 packets for a second or two.
func (topo *Topology) newNetns(name string) (*Netns, error) {
	n, err := CreateNetns(name)
	if err != nil {
		return nil, err
	}
	topo.onClose(n.Delete)
	if err := n.Sysctl("net/ipv6/conf/default/accept_dad", "0"); err != nil {
		return nil, err
	}
	return n, nil
}

// Plug connects namespace n (for example one made with NewNetns beside
// the topology: a router, a client) to the fabric bridge: a veth whose
// fabric end is named port and whose other end is eth0 in n, up, with
// addrs (prefixes whose address is n's, e.g. 10.99.0.254/24); gw, when
// valid, becomes n's IPv4 default gateway.
func (topo *Topology) Plug(n *Netns, port string, gw netip.Addr, addrs ...netip.Prefix) error {
	var as []*nl.Addr
	for _, a := range addrs {
		as = append(as, addrOf(a.Addr(), a.Bits(), a.Addr().Is6()))
	}
	return topo.plug(n, port, gw, netip.Addr{}, as...)
}

// fabricGateways are the default gateways of nodes and clients: the
// fabric's first addresses (v6 only on an IPv6 topology).
func (topo *Topology) fabricGateways() (gw4, gw6 netip.Addr) {
	if topo.cfg.ipv6 {
		gw6 = hostAt(fabric6, 1)
	}
	return hostAt(fabric4, 1), gw6
}

// plug is Plug with nl addresses and an optional IPv6 default gateway.
func (topo *Topology) plug(n *Netns, port string, gw4, gw6 netip.Addr, addrs ...*nl.Addr) error {
	fh, h := topo.Fabric.Handle(), n.Handle()
	veth := &nl.Veth{LinkAttrs: nl.LinkAttrs{Name: port, TxQLen: -1}, PeerName: "eth0", PeerNamespace: nl.NsFd(int(n.NS().Fd()))}
	if err := fh.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s to fabric: %w", port, err)
	}
	br, err := fh.LinkByName("br0")
	if err == nil {
		err = fh.LinkSetMaster(veth, br)
	}
	if err == nil {
		err = fh.LinkSetUp(veth)
	}
	if err != nil {
		return fmt.Errorf("attach %s to br0: %w", port, err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0: %w", err)
	}
	for _, a := range addrs {
		if err := h.AddrAdd(eth0, a); err != nil {
			return fmt.Errorf("address %s: %w", a.IPNet, err)
		}
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("eth0 up: %w", err)
	}
	// Nodes need a default route: proxy ARP for 169.254.1.1 only answers
	// when the node has a route to it through another interface.
	if gw4.IsValid() {
		if err := h.RouteAdd(&nl.Route{Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: gw4.AsSlice()}); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
	}
	if gw6.IsValid() {
		gw := &nl.Route{Dst: ipNet(netip.MustParsePrefix("::/0")), Gw: gw6.AsSlice(), LinkIndex: eth0.Attrs().Index}
		if err := h.RouteAdd(gw); err != nil {
			return fmt.Errorf("v6 default route: %w", err)
		}
	}
	return nil
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

func (topo *Topology) addNode(i int) (*Node, error) {
	ns, err := topo.newNetns(fmt.Sprintf("%s-n%d", topo.ID, i))
	if err != nil {
		return nil, err
	}
	n := &Node{topo: topo, Index: i, Name: fmt.Sprintf("node%d", i), NS: ns, IP: hostAt(fabric4, 11+i)}
	cfg := node.Config{Name: n.Name, Netns: ns.Path, Address: netip.PrefixFrom(n.IP, fabric4.Bits())}
	addrs := []*nl.Addr{addrOf(n.IP, 24, false)}
	if topo.cfg.ipv6 {
		n.IP6 = hostAt(fabric6, 0x11+i)
		cfg.Address6 = netip.PrefixFrom(n.IP6, fabric6.Bits())
		addrs = append(addrs, addrOf(n.IP6, 64, true))
	}
	gw4, gw6 := topo.fabricGateways()
	if err := topo.plug(ns, fmt.Sprintf("n%d", i), gw4, gw6, addrs...); err != nil {
		return nil, err
	}
	if topo.cfg.routing == RoutingVXLAN {
		if n.TunnelAddr, err = topo.assignTunnel(n.Name); err != nil {
			return nil, err
		}
		cfg.Encap = tnl.EncapAlways
		cfg.VXLAN = tnl.VXLANConfig{Parent: "eth0", TunnelAddr: n.TunnelAddr}
	}
	d, err := node.New(cfg, node.WithLogger(topo.cfg.log))
	if err != nil {
		return nil, err
	}
	topo.onClose(d.Close)
	n.Dataplane, n.Workloads, n.Routes, n.VXLAN = d, d.Workloads(), d.Routes(), d.VXLAN()
	return n, nil
}

// assignTunnel assigns a node's VXLAN tunnel address from IPAM (use
// Tunnel, as Calico does); it is released at Close.
func (topo *Topology) assignTunnel(nodeName string) (netip.Addr, error) {
	ctx := context.Background()
	handle := "vxlan-tunnel-addr." + topo.ID + "." + nodeName
	r, err := topo.cfg.ipam.Assign(ctx, ipam.AssignArgs{Handle: handle, Node: nodeName, Num4: 1, Use: ipam.UseTunnel})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: tunnel address: %w", nodeName, err)
	}
	topo.onClose(func() error { _, err := topo.cfg.ipam.ReleaseByHandle(ctx, handle); return err })
	return r.IPv4[0].Addr, nil
}

// Sync reads every node's blocks from IPAM (AffineBlocks), gives each node
// its blocks and — unless RoutingNone — the other nodes as peers, and
// reconciles every node. NewPod calls it when a pod's address lies outside
// its node's known blocks (IPAM claimed a new block); call it after
// changing IPAM behind the topology's back.
func (topo *Topology) Sync() error {
	topo.syncMu.Lock()
	defer topo.syncMu.Unlock()
	ctx := context.Background()
	for _, n := range topo.nodes {
		blocks, _, err := topo.cfg.ipam.AffineBlocks(ctx, n.Name)
		if err != nil {
			return fmt.Errorf("%s: affine blocks: %w", n.Name, err)
		}
		if !topo.cfg.ipv6 {
			blocks = slices.DeleteFunc(blocks, func(b netip.Prefix) bool { return b.Addr().Is6() })
		}
		if err := n.Dataplane.SetBlocks(blocks); err != nil {
			return err
		}
	}
	for _, n := range topo.nodes {
		if topo.cfg.routing != RoutingNone {
			var peers []node.Peer
			for _, o := range topo.nodes {
				if o != n {
					peers = append(peers, o.Dataplane.AsPeer())
				}
			}
			if err := n.Dataplane.SetPeers(peers); err != nil {
				return err
			}
		}
		if err := n.Dataplane.Reconcile(ctx); err != nil {
			return err
		}
	}
	return nil
}

// knows reports whether every address lies in a block of the node.
func (n *Node) knows(addrs []netip.Addr) bool {
	blocks := n.Blocks()
	for _, a := range addrs {
		if !slices.ContainsFunc(blocks, func(b netip.Prefix) bool { return b.Contains(a) }) {
			return false
		}
	}
	return true
}

// AddClient adds a namespace on the fabric outside every node, like an
// external client (10.99.0.(200+k)/24, default route via the fabric
// gateway); useful for NodePort and external-IP tests. Its Node is nil.
// The fabric does not route pod blocks: the client reaches node addresses,
// not pods, and pods reach it only through NAT (natOutgoing) or routes the
// test adds (Client.NS.Handle()).
func (topo *Topology) AddClient(t testing.TB) *Pod {
	t.Helper()
	p, err := topo.NewClient()
	if err != nil {
		t.Fatalf("nettest: %v", err)
	}
	return p
}

// NewClient is AddClient without a test.
func (topo *Topology) NewClient() (*Pod, error) {
	topo.mu.Lock()
	k := topo.clients
	topo.clients++
	topo.mu.Unlock()
	if k > 50 {
		return nil, fmt.Errorf("too many clients")
	}
	ns, err := topo.newNetns(fmt.Sprintf("%s-c%d", topo.ID, k))
	if err != nil {
		return nil, err
	}
	p := &Pod{Name: fmt.Sprintf("client%d", k), NS: ns, IP: hostAt(fabric4, 200+k), listeners: map[string]*Listener{}}
	addrs := []*nl.Addr{addrOf(p.IP, 24, false)}
	if topo.cfg.ipv6 {
		p.IP6 = hostAt(fabric6, 0x200+k)
		addrs = append(addrs, addrOf(p.IP6, 64, true))
	}
	topo.onClose(func() error { p.closeListeners(); return nil })
	gw4, gw6 := topo.fabricGateways()
	if err := topo.plug(ns, fmt.Sprintf("c%d", k), gw4, gw6, addrs...); err != nil {
		return nil, fmt.Errorf("client%d: %w", k, err)
	}
	return p, nil
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

// String describes the topology (namespace names, addresses) for logs.
func (topo *Topology) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fabric %s br0 %s\n", topo.Fabric.Name, hostAt(fabric4, 1))
	for _, n := range topo.nodes {
		fmt.Fprintf(&b, "%s %s eth0 %s blocks %v\n", n.Name, n.NS.Name, n.IP, n.Blocks())
		for _, p := range n.Pods() {
			fmt.Fprintf(&b, "  pod %s %s %s host %s\n", p.Name, p.NS.Name, p.IP, p.Result.Host.Name)
		}
	}
	return b.String()
}
