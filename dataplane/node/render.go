package node

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
)

// Peer is another node of the cluster as this node routes to it: its
// underlay addresses, its VXLAN tunnel address and its affine blocks (from
// ipam.AffineBlocks on that node, or learned from the datastore).
type Peer struct {
	// Name identifies the peer (the node name); required and unique.
	Name string
	// IP and IP6 are the peer's underlay addresses. IP is required for
	// IPv4 blocks (the next hop of a direct route, the VXLAN FDB
	// destination), IP6 for IPv6 blocks.
	IP, IP6 netip.Addr
	// TunnelAddr is the peer's VXLAN tunnel address (IPv4); required when
	// traffic to the peer is encapsulated.
	TunnelAddr netip.Addr
	// Blocks are the peer's pod blocks, IPv4 and IPv6, masked (e.g.
	// 10.244.17.0/26, fd00:244::1:c0/122).
	Blocks []netip.Prefix
}

// Desired is what Render computes for a node: the routes and overlay
// peers the RouteOwner and the VXLAN manager are told to keep.
type Desired struct {
	// Blackholes has one blackhole route per local block (`ip route add
	// blackhole BLOCK`): a packet for an address of the block that no pod
	// holds is dropped here instead of following the default route out of
	// the node. Pod /32 and /128 routes are more specific and win.
	Blackholes []tnl.Route
	// Direct has the routes to peers' blocks that are not encapsulated
	// (`ip route add BLOCK via PEERIP`): IPv4 blocks of peers the
	// encapsulation mode leaves unencapsulated, and every IPv6 block.
	Direct []tnl.Route
	// VXLAN has the peers reached through the VXLAN device, each with the
	// IPv4 blocks to route to it.
	VXLAN []tnl.VXLANPeer
}

// Render computes a node's desired routes and overlay peers from its own
// blocks and its peers. It is pure. encap and underlay decide per peer
// whether IPv4 blocks go through the VXLAN device (tnl.EncapMode: Always,
// or CrossSubnet for a peer outside underlay) or by a direct route via the
// peer's IP; IPv6 blocks are always routed directly via the peer's IP6,
// whatever encap says: tabby has no IPv6 VXLAN (Calico gives IPv6 pools
// their own vxlanMode and device, vxlan-v6.calico), so an IPv6 peer
// outside the node's IPv6 subnet is unreachable (tnl.ErrNextHopUnreachable
// at Reconcile) unless something else routes to it.
// Output is sorted (blocks by prefix, peers by name).
//
// Errors wrap tnl.ErrInvalidPrefix (a block not valid, not masked or /0, a
// block listed twice by one node, or one block claimed by two nodes: this
// one and a peer, or two peers) or tnl.ErrInvalidSpec (a peer without a name or
// with a duplicate one, without the underlay or tunnel address its
// blocks need, two encapsulated peers with one tunnel address, or a peer
// whose underlay address lies inside a block).
func Render(encap tnl.EncapMode, underlay netip.Prefix, blocks []netip.Prefix, peers []Peer) (Desired, error) {
	var d Desired
	if err := validateBlocks("local", blocks); err != nil {
		return d, err
	}
	for _, b := range sortedBlocks(blocks) {
		d.Blackholes = append(d.Blackholes, tnl.Blackhole(b))
	}
	owner := make(map[netip.Prefix]string, len(blocks))
	for _, b := range blocks {
		owner[b] = "this node"
	}
	tunnels := make(map[netip.Addr]string, len(peers))
	peers = slices.Clone(peers)
	slices.SortFunc(peers, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	for i, p := range peers {
		if p.Name == "" {
			return Desired{}, fmt.Errorf("%w: peer without a name", tnl.ErrInvalidSpec)
		}
		if i > 0 && peers[i-1].Name == p.Name {
			return Desired{}, fmt.Errorf("%w: duplicate peer %s", tnl.ErrInvalidSpec, p.Name)
		}
		if err := validateBlocks("peer "+p.Name, p.Blocks); err != nil {
			return Desired{}, err
		}
		for _, b := range p.Blocks {
			if o, dup := owner[b]; dup {
				return Desired{}, fmt.Errorf("%w: block %s claimed by both %s and peer %s", tnl.ErrInvalidPrefix, b, o, p.Name)
			}
			owner[b] = "peer " + p.Name
		}
		vx := tnl.VXLANPeer{Name: p.Name, NodeIP: p.IP, TunnelAddr: p.TunnelAddr}
		for _, b := range sortedBlocks(p.Blocks) {
			switch {
			case b.Addr().Is6():
				if !p.IP6.Is6() || !unicast(p.IP6) {
					return Desired{}, fmt.Errorf("%w: peer %s has IPv6 block %s but no IPv6 unicast address (%s)", tnl.ErrInvalidSpec, p.Name, b, p.IP6)
				}
				d.Direct = append(d.Direct, tnl.RouteVia(b, p.IP6))
			case !p.IP.Is4() || !unicast(p.IP):
				return Desired{}, fmt.Errorf("%w: peer %s has IPv4 block %s but no IPv4 unicast address (%s)", tnl.ErrInvalidSpec, p.Name, b, p.IP)
			case encap.Encapsulate(underlay, p.IP):
				if !p.TunnelAddr.Is4() || !unicast(p.TunnelAddr) {
					return Desired{}, fmt.Errorf("%w: peer %s is reached over VXLAN but has no IPv4 unicast tunnel address (%s)", tnl.ErrInvalidSpec, p.Name, p.TunnelAddr)
				}
				vx.Blocks = append(vx.Blocks, b)
			default:
				d.Direct = append(d.Direct, tnl.RouteVia(b, p.IP))
			}
		}
		if len(vx.Blocks) > 0 {
			if o, dup := tunnels[vx.TunnelAddr]; dup {
				return Desired{}, fmt.Errorf("%w: peers %s and %s have the same tunnel address %s", tnl.ErrInvalidSpec, o, p.Name, vx.TunnelAddr)
			}
			tunnels[vx.TunnelAddr] = p.Name
			d.VXLAN = append(d.VXLAN, vx)
		}
	}
	// A node's underlay address inside a pod block would be routed into
	// the overlay (or to a blackhole) itself.
	for _, p := range peers {
		for _, ip := range []netip.Addr{p.IP, p.IP6} {
			if b, ok := blockHolding(owner, ip); ok {
				return Desired{}, fmt.Errorf("%w: peer %s: underlay address %s is inside block %s of %s", tnl.ErrInvalidSpec, p.Name, ip, b, owner[b])
			}
		}
	}
	return d, nil
}

// blockHolding returns the block of owner that contains ip, if any.
func blockHolding(owner map[netip.Prefix]string, ip netip.Addr) (netip.Prefix, bool) {
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	for b := range owner {
		if b.Contains(ip) {
			return b, true
		}
	}
	return netip.Prefix{}, false
}

// unicast reports whether a can be a next hop or tunnel endpoint.
func unicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() && a.Zone() == "" &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

func validateBlocks(whose string, blocks []netip.Prefix) error {
	seen := make(map[netip.Prefix]bool, len(blocks))
	for _, b := range blocks {
		if !b.IsValid() || b.Masked() != b || b.Addr().Is4In6() || b.Addr().Zone() != "" || b.Bits() == 0 {
			return fmt.Errorf("%w: %s block %s: want a masked IPv4 or IPv6 prefix, not a default route", tnl.ErrInvalidPrefix, whose, b)
		}
		if seen[b] {
			return fmt.Errorf("%w: %s block %s listed twice", tnl.ErrInvalidPrefix, whose, b)
		}
		seen[b] = true
	}
	return nil
}

func sortedBlocks(blocks []netip.Prefix) []netip.Prefix {
	out := slices.Clone(blocks)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	return out
}
