// Package nettest builds throwaway network-namespace topologies for kernel
// tests: a fabric bridge, N simulated nodes and Calico-style pods, with
// everything deleted in t.Cleanup even when the test fails. The nodes are
// dataplane/node Dataplanes and the pod addresses come from ipam, so every
// test that uses nettest also tests them. The CNI, policy, services, BGP
// tests and the lab build on it. README.md in this directory lists the
// kernel facts the layout depends on and the pitfalls met on the way.
//
//	func TestSomething(t *testing.T) {
//		topo := nettest.NewTopology(t, nettest.Nodes(3))   // skips unless root
//		a := topo.Node(0).AddPod(t)
//		b := topo.Node(1).AddPod(t)
//		nettest.ExpectConnect(t, a, b, 8080)               // starts a listener in b
//		nettest.ExpectMatrix(t, topo.Pods(), 8080, nettest.AllowAll)
//	}
//
// # Layout
//
//	fabric netns: br0 10.99.0.1/24 (fd00:99::1/64 with IPv6())
//	node i netns: eth0 10.99.0.(11+i)/24 on br0, default via 10.99.0.1,
//	              ip_forward=1, a dataplane/node Dataplane named "node<i>":
//	              a blackhole per block IPAM made affine to it, routes to
//	              the other nodes' blocks (direct, or over vxlan.tabby with
//	              RoutingVXLAN), Workloads for its pods
//	pod k on i:   eth0 <address from IPAM on node i>/32, default via
//	              169.254.1.1, host side tby<hash>
//
//	client k:     eth0 10.99.0.(200+k)/24 on br0 (Topology.AddClient), an
//	              external client that reaches node addresses, not pods
//
// Addresses come from an IPAM: by default a fresh in-memory one with the
// pool PoolCIDR (blocks of PoolBlockSize) and, with IPv6(), PoolCIDR6;
// WithIPAM shares one with the test. AddPod makes one ipam Assign on the
// pod's node (handle = the workload ID) and DeletePod releases it; with
// RoutingVXLAN each node also gets a tunnel address (use Tunnel). So a
// node's blocks are whatever IPAM claimed for it (Node.Blocks), none until
// its first assignment; when a pod's address lands in a block the node did
// not have yet, AddPod re-reads every node's affinities and re-routes
// (Topology.Sync). PodAddrs gives a pod caller-managed addresses instead.
//
// Node.Host() is a Pod view of a node's own namespace (host-network
// servers, NodePort checks). Outside tests (the lab), Build returns a
// Topology that the caller Closes; NewPod, DeletePod, NewClient, Serve and
// Reach are the error-returning forms of AddPod, RemovePod, AddClient,
// Listen and ExpectConnect/ExpectUDP.
//
// Routing between nodes is RoutingDirect (routes to other nodes' blocks
// via their node IP, the default), RoutingVXLAN, or RoutingNone (for BGP
// tests that program routes themselves through Node.Routes, under a
// source of their own).
//
// # Running programs inside a namespace
//
// Namespaces are named and bind-mounted under /var/run/netns like
// `ip netns add`, so any tool can enter them:
//
//	ip netns exec <Netns.Name> socat TCP-LISTEN:8080,fork SYSTEM:'echo hi'
//	nsenter --net=<Netns.Path> bird -f -c bird.conf -s $D/bird.ctl -P $D/bird.pid
//
// Netns.Command / Pod.Command build such an exec.Cmd, Netns.Run runs it and
// returns the output, and Netns.Start starts a daemon (BIRD, socat) whose
// process group is stopped in t.Cleanup before the namespace is deleted.
// In-process code uses Netns.Do, which runs a function on an OS thread
// that has entered the namespace (sockets created there belong to it), or
// Netns.Handle for a netlink handle bound to it.
//
// # Design
//
//  1. Pleasant first: one call builds a topology, one call adds a pod,
//     one call asserts a connection; the defaults are Calico's (README.md).
//  2. Dogfooding: nodes are dataplane/node Dataplanes (Workloads,
//     RouteOwner, VXLAN from dataplane/netlink) and addresses come from
//     ipam, so every test that uses nettest also tests them.
//  3. Isolation: every namespace name carries a random suffix
//     (UniqueName), nothing touches the root namespace, and no traffic
//     leaves the namespaces the topology created.
//  4. Cleanup that cannot be forgotten: every namespace, handle and
//     listener is registered on the topology as it is made and removed
//     newest first by Close (t.Cleanup with NewTopology), also when
//     building fails half-way.
//  5. Deterministic verdicts: listeners bind to the pod's own addresses
//     and answer with the serving pod's name, so ExpectConnect proves
//     which pod answered (and UDP answers leave from the address asked,
//     also in a namespace with several); probes have
//     deadlines (ConnectTimeout for expected success, NoConnectTimeout for
//     expected failure), and ExpectMatrix probes all pairs concurrently
//     and prints the whole matrix on failure.
//
// Helpers take testing.TB and must be called from the test's goroutine
// (they may call t.Fatal). ProbeMatrix and Pod.Probe are safe to call
// concurrently.
package nettest
