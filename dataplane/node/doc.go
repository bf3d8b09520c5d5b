// Package node wires one node's pod networking out of dataplane/netlink:
// the pods' veths (Workloads), a blackhole route per local block, and the
// routes to the other nodes' blocks, direct or over VXLAN — what Calico's
// Felix programs for a node from its block affinities. The node agent, the
// CNI plugin, the lab and nettest's topologies all build nodes with it.
//
// Blocks and peers come from the caller; the package allocates nothing and
// does not import ipam. A node agent maps IPAM's state into it:
//
//	blocks, _, _ := ipam.AffineBlocks(ctx, "node0")  // []netip.Prefix
//	d.SetBlocks(blocks)                              // blackhole 10.244.17.0/26
//	d.SetPeers([]node.Peer{{Name: "node1", IP: node1IP, TunnelAddr: node1Tunnel,
//		Blocks: node1Blocks}})                       // 10.244.40.64/26 via ...
//	d.Reconcile(ctx)
//
// and a CNI plugin sets a pod up with the addresses IPAM assigned (with
// VXLAN, give WorkloadSpec.MTU the tunnel's MTU, VXLAN().Config().MTU or
// the parent's MTU minus tnl.VXLANOverhead, as Calico sizes its veths;
// the default 1500 works through path-MTU discovery only):
//
//	res, err := d.Workloads().SetupWorkload(ctx, netlink.WorkloadSpec{
//		ID: "k8s-pod-network." + containerID, Netns: netnsPath,
//		Addresses: []netip.Addr{assigned.Addr}})   // res → CNI result
//
// # What a node programs
//
//	own block B                  blackhole B                       (source "blocks")
//	peer P, IPv4 block B,
//	  not encapsulated           B via P.IP                        (source "peers")
//	  encapsulated (VXLAN)       B via P.TunnelAddr dev vxlan.tabby onlink,
//	                             neighbour P.TunnelAddr → VTEP MAC,
//	                             FDB VTEP MAC → P.IP                (source "vxlan")
//	peer P, IPv6 block B         B via P.IP6                       (source "peers")
//	pod with address A           A dev tby<hash> scope link        (protocol 117, by Workloads)
//
// Config.Encap is the IPv4 pools' vxlanMode: Never routes every peer
// directly (the peers must share the node's subnet, or the kernel answers
// ENETUNREACH: tnl.ErrNextHopUnreachable), Always sends every IPv4 block
// through VXLAN, and CrossSubnet only those of peers outside the node's
// subnet (Config.Address).
//
// # Design
//
//  1. One job. A Dataplane turns (own blocks, peers) into desired state
//     for the managers it drives and reconciles them; policy, services
//     and BGP add their own route sources or tables beside it.
//  2. Pure rendering. Render computes the blackholes, direct routes and
//     VXLAN peers from blocks and peers; it is table-tested without root.
//     SetBlocks, SetPeers, UpsertPeer and RemovePeer validate through it,
//     so a bad input changes nothing.
//  3. Narrow parts. A Dataplane drives a tnl.WorkloadManager, a
//     *tnl.RouteOwner and a tnl.VXLANManager (Parts). New builds the
//     kernel ones in a network namespace; NewFake builds the strict fakes
//     (tnl.FakeWorkloads, tnl.FakeRouteHandle, tnl.FakeVXLAN, each checked
//     against the kernel by a test in dataplane/netlink), so code above a
//     node — the CNI plugin — is tested without root.
//  4. Level-triggered. Setters only change desired state; Reconcile makes
//     the kernel match (the VXLAN device and entries, then every route),
//     writes nothing when it already does, and repairs hand-made damage.
//     Call it after a batch of updates and periodically.
//  5. Restart-safe. Routes are marked with the route protocol
//     (tnl.ProtocolRoutes) and pod veths with their workload ID, so a new
//     Dataplane on the same namespace adopts what an earlier one left.
//     One Dataplane per namespace at a time: two (two agents) own the
//     same route protocol and delete each other's routes. Restarting
//     with Encap Never deletes the VXLAN device an encapsulating agent
//     left (Felix deletes vxlan.calico once VXLAN is disabled).
//
// Routes learned over BGP: give the bgp speaker a RouteOwner of its own,
// with another protocol (tnl.WithProtocol; Calico's BIRD uses its own
// protocol too), not Routes(). Reconcile writes every source of its owner,
// and an agent that starts again reconciles its blocks before its new
// speaker has synced: on a shared owner that first Reconcile deletes every
// route the previous process learned (the "bgp" source is still empty),
// which is the blackhole bgp's startup sync exists to avoid. If the owner
// is shared, wait for the speaker's Synced before the first Reconcile.
//
// Blocks borrowed from another node (ipam's AssignedIP.Borrowed) need a /32
// route on the other nodes; that is BGP's job and not done here.
//
// Thread safety: a Dataplane is safe for concurrent use; the managers
// serialise their own kernel writes.
package node
