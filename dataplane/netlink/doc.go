// Package netlink plumbs pods, routes and overlays into the Linux kernel
// for tabby, reconciled by diff. It is the kernel base of the CNI plugin,
// the BGP route programmer, the node agent and every kernel test (through
// its sibling package nettest).
//
// Three managers, each bound to one network namespace (a node), each
// writing only what it owns:
//
//   - Workloads: SetupWorkload creates a pod's veth pair — host end named
//     HostIfaceName("tby", workloadID) (15 bytes, SHA-256 based, owner
//     recorded in the link alias "tabby:<ID>"), MAC ee:ee:ee:ee:ee:ee;
//     pod end eth0 created directly in the pod netns, MAC
//     WorkloadSpec.MAC (chosen, as Calico's cni.projectcalico.org/hwAddr;
//     checked and repaired like the rest) or ContainerMAC(workloadID) — with MTU, /32 and /128 addresses,
//     default routes via 169.254.1.1 (IPv4, answered by proxy ARP) and via
//     fe80::ecee:eeff:feee:eeee (IPv6, the host veth's link-local
//     address), host routes to each pod address (protocol 117), and the
//     sysctls proxy_arp=1, proxy_delay=0, forwarding=1, route_localnet=1
//     (IPv6: accept_dad=0, accept_ra=0, forwarding=1). It returns, once
//     both veth ends run (the pod is reachable), what a CNI result needs.
//     Proxy ARP answers for 169.254.1.1 only when the host namespace has a
//     route to it through another interface (a default route, as every
//     node has; not a blackhole): without one, IPv4 pods reach nothing.
//     SetupWorkloadFunc does the same for a caller still choosing the
//     addresses (a CNI ADD while IPAM assigns): it makes the pair while a
//     given function returns them, then configures it.
//     TeardownWorkload (by ID, idempotent, needs no pod netns),
//     CheckWorkload (CNI CHECK), ListWorkloads (CNI GC). DetachWorkload
//     (CNI DEL) takes a workload off the network without waiting for the
//     kernel to unregister its pair (an RCU barrier, ~20 ms): both ends
//     down and renamed DetachedIfaceName ("tbd-…", alias
//     "tabby-detached:<ID>"), addresses and routes gone; the kernel
//     deletes the pair with the pod namespace, RemoveDetached (CNI GC)
//     when the runtime keeps the namespace.
//   - RouteOwner: desired routes — blackholes for local blocks, remote
//     blocks via a next hop, ECMP routes (one multipath route), /32s for
//     borrowed addresses, on-link routes via the VXLAN device, any table —
//     from named sources ("blocks", "bgp", "vxlan", ...), reconciled
//     against the kernel: add missing, replace changed, delete stale routes
//     carrying its protocol number (ProtocolRoutes = 116), never touch
//     others. Plan is the dry run.
//   - VXLAN: the vxlan.tabby device (VNI 4096, port 4789, MTU = underlay
//     − 50, MAC derived from the tunnel address by VTEPMAC), one permanent
//     neighbour and one FDB entry per remote node, and the on-link routes
//     to remote blocks (through the RouteOwner), updated as nodes come and
//     go. EncapMode (a pool's vxlanMode/ipipMode: Never, Always,
//     CrossSubnet) decides per peer between the tunnel and a plain route.
//     IPIP is modelled by EnsureIPIP, which returns ErrNotSupported on
//     kernels without ipip (like the test machines).
//
// # Route protocol numbers
//
// `ip route show proto 116` lists the RouteOwner's routes and
// `ip route show proto 117` the workload host routes. Neither number is
// used by the kernel (0-4), gated/ra/mrt (8-10), zebra (11), BIRD (12),
// dnrouted..dhcp (13-16), mrouted (17), keepalived (18), babel (42),
// openr (99) or FRR (186-192). WithProtocol picks another one.
//
// # Design
//
//  1. Narrow seams. Each manager consumes a small interface (RouteHandle,
//     OverlayHandle) satisfied by a *netlink.Handle from
//     netlink.NewHandleAt — never the package-level netlink functions — or
//     by KernelHandle, which adds pipelined route batches. FakeRouteHandle
//     is the strict in-memory fake (EEXIST, ESRCH, ENODEV, ENETUNREACH
//     like the kernel) used by the unit tests. Upwards, Workloads and VXLAN
//     are consumed through WorkloadManager and VXLANManager (dataplane/node,
//     the CNI plugin), with the strict fakes FakeWorkloads and FakeVXLAN.
//  2. Desired state and diff are pure. Route, its Validate and Key, and
//     Diff(desired, owned) Plan need no root and are table-tested. The
//     appliers hold a dataplane/deltatracker Tracker (Felix's
//     deltatracker): RouteOwner keeps the union of its sources as the
//     desired side as they change and resyncs the kernel side from a dump
//     on each Plan/Reconcile, then writes only the pending updates and
//     deletions; VXLAN does the same for its neighbour (tunnel IP → MAC)
//     and FDB (MAC → node IP) entries. Drive Reconcile from a
//     dataplane/syncrunner Runner to coalesce bursts and resync
//     periodically. For a producer that streams changes (learned BGP
//     routes), RouteOwner.Apply writes the pending delta without the dump
//     and falls back to a full Reconcile first, after a failed write and
//     every WithResyncInterval (default one minute), which repairs drift.
//  3. Ownership by marking. The kernel is the state: after a crash, a new
//     RouteOwner with the same desired routes writes nothing (no
//     flapping), deletes only stale routes of its own protocol, and reports
//     a desired route whose key a foreign route holds as ErrForeignRoute
//     instead of overwriting it. Host veths carry their workload ID in the
//     alias, so a name collision is detected, never clobbered. A pair a
//     crash left before its alias was set is still the workload's when
//     its shape says so (HostMAC, no alias, its peer in the pod netns or,
//     for TeardownWorkload, in another netns), so setup and DEL repair it.
//  4. Batching. KernelHandle sends up to 256 route messages per sendmsg
//     with only the last asking for an ack, so the kernel answers only
//     failures: ~2 system calls per 256 routes instead of 2 per route;
//     the next chunk is encoded while the kernel processes the current one.
//     SetupWorkload uses the same pipeline: one round trip creates the
//     veth pair and reads back both ifindexes; then one batch on the host
//     (alias, proxy_arp and forwarding through IFLA_AF_SPEC, link up,
//     proxy_delay through RTM_SETNEIGHTBL, host routes) and one in the pod
//     (addresses, link up, routes), in parallel. Only the IPv6 sysctls go
//     through /proc. The messages are github.com/jsimonetti/rtnetlink/v2
//     types (RouteMessage, LinkMessage with its veth driver,
//     AddressMessage; IFLA_AF_SPEC and RTM_SETNEIGHTBL, which it has no
//     type for, through mdlayher/netlink's attribute encoder), sent and
//     acknowledged as a batch by a github.com/mdlayher/netlink Conn;
//     reads and everything else use vishvananda/netlink.
//  5. Nothing half-created. A failed SetupWorkload deletes the veth it
//     made, and so does SetupWorkloadFunc when the address function fails; validation happens before any write; Reconcile carries on past
//     per-route failures and returns them joined (errors.Is works on each).
//  6. Namespace hygiene. Sockets for a pod are opened by switching the
//     calling OS thread (locked meanwhile) into the pod netns and back, as
//     netlink.NewHandleAt does; if the switch back ever failed the thread
//     stays locked so it is never reused. Sysctls are written from a thread
//     that entered the namespace (containernetworking ns.Do), or directly
//     when the calling thread is already there (a CNI plugin).
//
// Errors wrap sentinels (ErrInvalidPrefix, ErrInvalidRoute, ErrInvalidName,
// ErrInvalidSpec, ErrNetnsNotFound, ErrLinkNotFound, ErrNextHopUnreachable,
// ErrForeignRoute, ErrNameCollision, ErrNotSupported, ErrMismatch,
// ErrInvalidOption, ErrBatchLost, ErrNotReady, ErrClosed) with the object
// acted on. A closed Workloads or KernelHandle answers ErrClosed: a closed
// vishvananda/netlink Handle would act on the calling thread's namespace.
//
// Options: each constructor takes its own option type, so an option it
// would ignore does not compile, and an option with a bad value makes it
// fail with ErrInvalidOption: NewRouteOwner takes RouteOwnerOption
// (WithProtocol, WithResyncInterval), NewWorkloads WorkloadsOption (WithHostPrefix), NewVXLAN
// VXLANOption; WithLogger is an Option, which all of them take.
//
// Thread safety: RouteOwner, Workloads, VXLAN and KernelHandle are safe for
// concurrent use; each serialises its own kernel writes. Reconcile does a
// full dump and diff: coalesce bursts of updates (for example BGP) into
// one Reconcile or Apply rather than calling it per update (a
// dataplane/syncrunner Runner does that).
//
// # Tests
//
// Unit tests run the model, Diff and RouteOwner on FakeRouteHandle (no
// root); fuzz tests cover the route codec, the link-answer decoder, names
// and the convergence of Diff. Kernel tests (root; skipped otherwise)
// build nettest topologies: TCP/UDP between pods on 2 and 3 nodes with
// direct routes and VXLAN, IPv6 and IPv6-only pods, ECMP as one multipath
// route, route ownership beside foreign routes, repair of hand-deleted
// routes, neighbours and FDB entries, the workload lifecycle (setup,
// idempotent re-setup, CHECK, repair, teardown, roll back), bad input, and
// TestFakeMatchesKernel, which replays the same writes on the fake and on a
// real namespace and requires the same outcomes (TestFakeWorkloadsMatchKernel
// and TestFakeVXLANMatchesKernel do the same for FakeWorkloads and
// FakeVXLAN). TestKernelSetupReturnsReachable connects from each new pod
// straight after SetupWorkload, under CPU load, with a deadline below the
// ARP retry. TestInteropBIRD runs BIRD
// 2 beside a RouteOwner (skipped when bird is not installed).
//
// # Performance
//
// BenchmarkWorkloadSetupTeardown and BenchmarkRouteOwner10k compare with
// `ip -batch` in the same run; figures and the command are in README.md.
package netlink
