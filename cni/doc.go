// Package cni is tabby's CNI plugin and CNI IPAM plugin as a library, for
// CNI spec 0.3.0 through 1.1.0 (ADD, DEL, CHECK, GC, STATUS, VERSION),
// over package ipam (addresses) and dataplane/netlink (the pod's veth).
// examples/cni builds the two binaries, tabby and tabby-ipam, whose main
// is one call: skel.PluginMainFuncs(cni.New().Funcs(), cni.Supported, ...).
//
// # The tabby plugin (type "tabby")
//
// ADD reads K8S_POD_NAMESPACE, K8S_POD_NAME and IP from CNI_ARGS, asks a
// Resolver for the pod's and namespace's cni.projectcalico.org annotations
// (ipv4pools, ipv6pools, ipAddrs, floatingIPs, hwAddr; StaticAnnotations without a
// cluster) when both K8S_POD_ variables are given (with either missing it
// reads none, as Calico takes its Kubernetes path only with both), assigns addresses under the handle "<network>.<containerID>"
// (Handle) for the node named in the configuration or the host name, and
// makes the veth with netlink.WorkloadManager.SetupWorkloadFunc (workload
// ID = the handle). When ipam.type is tabby-ipam the allocation happens in
// process; any other IPAM plugin (host-local, ...) is delegated to through
// CNI_PATH. The result lists the host interface (index 0), the container
// interface (index 1), the /32 and /128 addresses with the link-local
// gateways, default routes and the configuration's DNS, converted to the
// configuration's cniVersion. Given a prevResult (tabby after another
// plugin in a chain) the result is that one with these appended, their
// interface indices shifted past its interfaces, as the CNI spec asks.
//
// DEL takes the veth off the network (detaches it, design note 5) and
// releases the handle; CHECK
// compares prevResult with the kernel (interfaces, addresses, routes) and
// with the IPAM record; GC removes veths and allocations of this network
// whose container is not in cni.dev/valid-attachments; STATUS pings the
// datastore.
//
// # The tabby-ipam plugin
//
// IPAMPlugin is a standalone IPAM plugin for any CNI plugin (bridge, ptp,
// macvlan). Its "ipam" section (IPAMConf) names the datastore (a bbolt
// file by default, etcd endpoints for a cluster) and may declare pools,
// created when missing, each with an optional gateway that is reserved and
// returned with the pool's prefix length — what ptp and bridge need.
// Without a gateway an address is returned as /32 or /128.
//
// # Errors
//
// Every verb returns a *types.Error (skel prints it as CNI error JSON).
// ADD, CHECK and DEL refuse a CNI_NETNS that is the plugin's own network
// namespace (code 8, ErrOwnNetns) before doing anything: skel checks it
// only after the verb ran. A second ADD of the same container and
// network under another CNI_IFNAME is refused (netlink.ErrNameCollision,
// code 999) and leaves the first attachment as it was.
// Code maps errors to codes: 1 a cniVersion not supported or too old for
// the verb (ErrIncompatibleVersion), 6 not JSON, 7 invalid configuration (also an
// unknown pool; one named by an ipv4pools or ipv6pools annotation is
// reported with the annotation and the pod or namespace holding it), 4
// bad CNI_ARGS, 3 missing netns, 11 datastore unavailable
// or too slow (try again later), 50 STATUS with the datastore down,
// CodePoolExhausted (100) and CodeAddressInUse (101), 999 otherwise.
//
// # Design
//
//  1. One-line mains. The verbs are methods taking skel.CmdArgs, so unit
//     tests call them on netlink.FakeWorkloads and ipam on a memory store
//     (NewMemoryIPAM) without root, and integration tests drive the built
//     binaries through libcni into real network namespaces.
//  2. Narrow seams. The plugin sees addresses only through the IPAM
//     interface (NewIPAM adapts *ipam.IPAM; OpenIPAM opens bbolt or etcd)
//     and interfaces only through netlink.WorkloadManager; the kernel
//     Workloads is constructed in one place (per call, in the runtime's
//     current namespace).
//  3. ADD is all or nothing and retry-safe. A retried ADD (the runtime
//     timed out) finds the handle's addresses with IPsByHandle and reuses
//     them, and the workload setup is idempotent, so the result is the same and
//     no second address is taken. A failed ADD removes the veth and
//     releases what it assigned (not what an earlier ADD of the same
//     container holds).
//  4. DEL is idempotent and bounded: a missing netns, veth or allocation is
//     not an error, and every verb runs under timeout_seconds
//     (DefaultTimeout), which also bounds the bbolt lock wait and the etcd
//     dial, so a stuck datastore gives code 11, never a hung runtime.
//  5. DEL does not wait for the kernel to unregister the veth pair. A
//     link deletion waits for an RCU barrier (the rcu_barrier in
//     netdev_run_todo, ~20 ms here, most of a DEL that deletes; README.md
//     has figures), and the runtime removes the pod namespace right after
//     DEL, which unregisters every link in it, veth peers included, in
//     the kernel's batched namespace cleanup. So DEL detaches the pair
//     (netlink.WorkloadManager.DetachWorkload) while the handle is
//     released: the host end is set down (the kernel drops the host
//     routes through it), then the pod end; the pod end's addresses are
//     removed; both ends are renamed DetachedIfaceName ("tbd-" and the
//     host name's digits, alias "tabby-detached:<handle>"). Nothing routes
//     to or from the pair, the freed address is held by no interface, and
//     the pod's interface name and the host name are free at once, so a
//     runtime that ADDs again into the same namespace gets a new pair.
//     The pair goes with the namespace; a namespace the runtime keeps
//     collects one dead pair per container ID DELed in it until GC (CNI
//     1.1) deletes them — a runtime without GC keeps them until it
//     removes the namespace. Without CNI_NETNS, with the namespace gone,
//     when the pod end is not in it, when an earlier detached pair of the
//     same handle still exists, or when a step fails, DEL deletes the
//     pair and waits, as Calico's and ptp's DEL always do. BenchmarkPodChurn checks that the work left
//     to the namespace cleanup does not come back as a slower next pod.
//  6. ADD overlaps the kernel work with IPAM: the allocation runs on its
//     own goroutine while the node namespace's netlink sockets are opened
//     and SetupWorkloadFunc creates the veth pair (peer in the pod netns,
//     named, host end aliased); the addresses, routes and sysctls follow
//     when IPAM answers. A failed IPAM removes the pair; a failed setup
//     releases the allocation. The debug log's "ADD timing" gives each
//     step's duration.
//  7. GC never races ADD: allocations younger than gc_grace_seconds
//     (DefaultGCGrace) are kept even when their container is not listed,
//     and so are their interfaces (allocations are collected first; an
//     interface goes only when its handle holds nothing afterwards). The
//     one window left is an ADD's first milliseconds, before its
//     allocation commits. GC takes a handle as its network's only when the
//     container ID part has no dot (ownedBy): "<network>.<containerID>"
//     cannot tell network "net" from "net.v2" otherwise.
//  8. Malformed input never panics: ParseConfig, ParseIPAMConfig and
//     ParseArgs are fuzzed.
//
// The ipAddrsNoIpam annotation works as in Calico: only with
// feature_control.ip_addrs_no_ipam in the tabby plugin's configuration
// (otherwise code 7, "requested feature is not enabled"), the addresses
// are used as given, nothing is allocated or released, CHECK compares
// them with the annotation and finds nothing held in IPAM. tabby-ipam on
// its own refuses it (code 7): bypassing IPAM is the plugin's feature,
// as in Calico, where the calico plugin does it and never calls its IPAM.
//
// The pod's MAC (the container interface's, in the result as its "mac")
// is, first to last: runtimeConfig.mac (the "mac" capability of CNI
// CONVENTIONS.md, which Multus fills; it wins as runtimeConfig wins in
// the tuning plugin, and as runtimeConfig.ips win here), the pod's
// cni.projectcalico.org/hwAddr annotation (AnnotationHWAddr; read from
// the pod only, for a pod named by K8S_POD_NAMESPACE and K8S_POD_NAME,
// through the same Resolver request as the IPAM annotations; as in
// Calico it counts when the pod's interface is made, not later), or
// netlink.ContainerMAC of the handle. It is set as the veth pair is
// created, before the pod's end goes up. A value ParseMAC refuses — not a
// MAC, or one a veth cannot carry (not 48-bit, multicast, all zeroes),
// an annotation present but empty included — fails ADD with code 7
// naming runtimeConfig.mac or the annotation and pod, with nothing made
// and what IPAM assigned released (Calico reports these with code 999,
// the multicast and zero ones from the kernel after the veth was made).
// CHECK compares the kernel's MAC with prevResult's (and with
// runtimeConfig.mac when given): a MAC changed behind the plugin's back
// is code 999.
// DEL, GC and STATUS ignore runtimeConfig.mac, so the DEL a runtime sends
// after an ADD it refused still cleans up.
//
// Not supported: the host-local → tabby-ipam migration mode, Windows.
//
// Thread safety: a Plugin and an IPAMPlugin hold only their options and
// are safe for concurrent use when the WorkloadManager and IPAM given are
// (the defaults are). Concurrent plugin processes on one node share the
// bbolt file safely (see ipam/store/bboltstore). With etcd they take the
// host's IPAM lock file (ipam_lock_file, DefaultIPAMLockFile) around
// their IPAM work, as Calico's plugin does: without it, ADDs started
// together on a node that has no block with room each claim a block.
package cni
