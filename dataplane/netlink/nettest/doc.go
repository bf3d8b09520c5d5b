// Package nettest builds throwaway network-namespace topologies for kernel
// tests: a fabric bridge, N simulated nodes and Calico-style pods, wired as
// ../shared/LAB.md describes, with everything deleted in t.Cleanup even
// when the test fails. The CNI, policy, services, BGP tests and the lab
// build on it.
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
//	              ip_forward=1, block 10.244.(i+1).0/26 (fd00:244:0:i+1::/122),
//	              Workloads, RouteOwner (KernelHandle) and, with
//	              RoutingVXLAN, a vxlan.tabby device
//	pod k on i:   eth0 10.244.(i+1).(k+1)/32, default via 169.254.1.1,
//	              host side tby<hash> set up by dataplane/netlink Workloads
//
//	client k:     eth0 10.99.0.(200+k)/24 on br0 (Topology.AddClient), an
//	              external client that reaches node addresses, not pods
//
// Node.Host() is a Pod view of a node's own namespace (host-network
// servers, NodePort checks). Outside tests (the lab), Build returns a
// Topology that the caller Closes; NewPod, DeletePod, NewClient are the
// error-returning forms of AddPod, RemovePod, AddClient.
//
// Routing between nodes is RoutingDirect (routes to other blocks via their
// node IP, the default), RoutingVXLAN, or RoutingNone (for BGP tests that
// program routes themselves through Node.Routes).
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
//     one call asserts a connection; defaults follow LAB.md.
//  2. Dogfooding: pods are set up with dataplane/netlink Workloads and
//     nodes route with its RouteOwner and VXLAN, so every test that uses
//     nettest also tests the dataplane.
//  3. Isolation: every namespace name carries a random suffix
//     (UniqueName), nothing touches the root namespace, and no traffic
//     leaves the namespaces the topology created.
//  4. Cleanup that cannot be forgotten: every namespace, handle and
//     listener is registered on the topology as it is made and removed
//     newest first by Close (t.Cleanup with NewTopology), also when
//     building fails half-way.
//  5. Deterministic verdicts: listeners answer with the serving pod's
//     name, so ExpectConnect proves which pod answered; probes have
//     deadlines (ConnectTimeout for expected success, NoConnectTimeout for
//     expected failure), and ExpectMatrix probes all pairs concurrently
//     and prints the whole matrix on failure.
//
// Helpers take testing.TB and must be called from the test's goroutine
// (they may call t.Fatal). ProbeMatrix and Pod.Probe are safe to call
// concurrently.
package nettest
