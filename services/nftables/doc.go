// Package nftables renders the services model into one nftables table,
// in the style of kube-proxy's nftables mode, through
// sigs.k8s.io/knftables objects, and writes it to the kernel over
// netlink (Netlink) or through the `nft` CLI (any knftables.Interface).
//
//	nft, _ := nftables.NewNetlink(knftables.IPv4Family, nftables.DefaultTable, "/var/run/netns/node1")
//	// ("" for the current namespace; nftables.NewInNetns / knftables.New for the nft CLI)
//	p, _ := nftables.New(nft, tracker, nftables.Config{Family: knftables.IPv4Family, ClusterCIDRs: podCIDRs},
//		nftables.WithStaleFlows(cleaner.Func()))
//	r, _ := syncrunner.New(p.Sync, syncrunner.Config{MinInterval: time.Second})
//	go r.Run(ctx) // informer handlers: tracker.On...(obj); r.Trigger()
//
// # Table layout
//
// One table, DefaultTable ("tabby-services") of family ip or ip6, owned
// entirely by tabby: nothing outside it is read or written. Base chains
// and their hook priorities (the same as kube-proxy's, see its
// pkg/proxy/nftables/README.md):
//
//	nat-prerouting   nat    prerouting   dstnat (-100)  jump services
//	nat-output       nat    output       dstnat (-100)  jump services
//	nat-postrouting  nat    postrouting  srcnat (100)   jump masquerading
//	filter-input     filter input        -110  ct state new: nodeport-endpoints-check, service-endpoints-check
//	filter-forward   filter forward      -110  ct state new: service-endpoints-check
//	filter-output    filter output       -110  ct state new: service-endpoints-check, nodeport-endpoints-check
//
// The filter chains run before the usual filter priority (0), so a
// firewall in another table sees service traffic already DNATed, and a
// service without endpoints is rejected before anything accepts it.
//
// Dispatch is by verdict maps, so the per-packet cost does not grow with
// the number of services:
//
//	services:  ip daddr . meta l4proto . th dport vmap @service-ips
//	           fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
//
// service-ips maps each cluster IP to `goto service-<ns>/<name>/<proto>/<port>`
// and each external or load-balancer IP to `goto external-…`;
// service-nodeports maps protocol . node port to `goto external-…`.
// These elements and chains exist as long as the service port does,
// whatever its endpoints.
//
// A service chain picks an endpoint with one rule,
//
//	meta l4proto tcp dnat ip addr . port to numgen random mod 720720 map @endpoints-<ns>/<name>/<proto>/<port>
//
// where the service port's endpoint map (typeof numgen : ip daddr . th
// dport, flags interval) gives each of the N endpoints an equal range of
// the 720720 slots: endpoint i owns [i·720720/N, (i+1)·720720/N). 720720
// is lcm(1..16), so the split is exact for every N up to 16 and every
// divisor of 720720; otherwise shares differ by at most 1/720720. The
// external chain of an externalTrafficPolicy Local port balances over
// the node-local endpoints with the same rule and `offset 720720`, a
// second bank of the same map. A bank without elements matches nothing:
// the packet is not DNATed and the endpoints-check chains reject it
// (reject-services / reject-nodeports sets: ICMP port unreachable, so
// TCP clients get "connection refused") when the service has no
// endpoint at all, or drop it (no-endpoint-services /
// no-endpoint-nodeports vmaps) when it has endpoints but none local
// under a Local policy, as kube-proxy does.
//
// Hairpin traffic (an endpoint reaching itself through the service) is
// masqueraded in postrouting by `ct status dnat ip saddr . ip daddr
// @hairpin`, a set holding "A . A" for every endpoint address in use
// (reference-counted across service ports). External chains masquerade
// (externalTrafficPolicy Cluster) or, for Local, keep the client address;
// traffic to a Local address from the node itself or from a pod
// (ClusterCIDRs) goes to the whole cluster, as in kube-proxy.
//
// With ClientIP affinity a service chain instead keeps a rule per
// endpoint: one sending a client found in the endpoint's dynamic set
// (timeout = the affinity timeout) there, then `numgen random mod (N-i)
// == 0 … dnat to A:P` rules (i = 0..N-2, then a plain dnat, each endpoint
// getting 1/N: the iptables statistic scheme), every DNAT refreshing the
// client's entry (`update @affinity-… { ip saddr }`).
//
// Node ports answer on every local address except loopback: unlike
// kube-proxy's iptables mode, there are no node ports on 127.0.0.1 (as
// in kube-proxy's nftables mode; route_localnet is never set).
//
// # Departures from kube-proxy's layout, and why
//
// All measured (README.md):
//
//   - No per-service anonymous `numgen … vmap { … }`: binding an
//     anonymous map walks the kernel's transaction list, so a
//     10,000-service full sync was quadratic (120 s).
//   - No chain per endpoint: every `nft` run lists all chains of the
//     table, in time quadratic in their number (one endpoint change at
//     30,000 services × 10 endpoints took a minute).
//   - Endpoints are elements of a named endpoint map, not rules or
//     verdicts, and "no endpoints" is an element of a plain set (reject)
//     or a `drop` element, not `goto reject-chain`. A transaction that
//     adds a rule (any rule with a nat, fib, meta, lookup or jump
//     expression) or a jump/goto map element makes the kernel re-validate
//     the whole table at commit, walking every chain reachable from the
//     base chains through every verdict-map element: 270 ms at 30,000
//     services × 10 endpoints, per transaction. Element changes in data
//     maps and plain sets skip that walk, so one endpoint change (the
//     endpoint map's ranges, the hairpin set, the reject sets) costs the
//     same at 1,000 or 30,000 services. A change of a service itself
//     (ports, addresses, policies) and any endpoint change of a ClientIP
//     affinity service still rewrite chains and pay the walk.
//
// # Design
//
//  1. Render, diff, one transaction. Each service port renders into the
//     chains, sets, maps and elements it owns; Sync renders only the
//     ports the tracker reports changed, diffs them against what the
//     last successful Sync wrote, and sends one transaction holding only
//     the difference, ordered so nothing is referenced before it exists
//     or deleted while referenced (element deletions, sets, maps,
//     chains, rules, element additions, stale chains, sets and maps).
//  2. Two executors of the same transaction. Netlink sends it as one
//     nf_tables netlink batch (encoded with github.com/google/nftables;
//     the kernel applies all of it or none), compiling the rule text the
//     renderer writes into expressions; any other knftables.Interface
//     (the `nft` CLI, knftables.Fake) gets it as a knftables
//     transaction. The `nft` 1.0.6 CLI lists the table's chains, sets
//     and rules before every transaction and parses every line of a
//     full sync, which made a 10,000-service full sync take 17 s and one
//     endpoint change grow with the table; the netlink batch costs what
//     it carries. TestNetlinkMatchesCLI checks, after a series of syncs
//     in both families, that `nft list table` of a Netlink table equals
//     that of the CLI-written one.
//  3. Full resync. The first Sync, the first after a failed transaction
//     and the first after QueueResync recreate the table (`add table;
//     delete table; add table` in the same transaction), so the kernel
//     ends up equal to the model whatever was there. Drift made by
//     another program inside the table is not detected; call
//     QueueResync (for example on a timer) to repair it.
//  4. Conntrack. After a successful transaction Sync hands the UDP/SCTP
//     flows the change made stale (services.StaleFlows) to the
//     WithStaleFlows function (services/conntrack deletes them over
//     netlink), so a replaced UDP endpoint works on the next datagram.
//  5. Tests at two levels: the renderer into knftables.Fake, with Trace
//     following a packet through the fake table (kube-proxy's
//     nftablesTracer), and the same code against the kernel in network
//     namespaces (kernel_test.go, netlink_test.go: the conformance suite
//     on both executors) with real TCP and UDP.
//  6. Namespaces. NewInNetns runs each knftables call on a fresh OS
//     thread inside a named namespace; NewNetlink opens its netlink
//     socket in the namespace. Tests and the lab never touch the root
//     namespace.
//
// Errors: New and NewNetlink return ErrInvalidConfig for an unsupported
// family; Sync returns the executor's error wrapped with the table name
// (knftables.IsNotFound and friends still work on CLI errors; Netlink
// errors carry the kernel's errno, e.g. errors.Is(err, unix.ENOENT), and
// wrap ErrUnsupportedRule or ErrUnsupportedObject when the transaction
// holds something the netlink executor does not compile).
//
// Thread safety: Sync and QueueResync are safe for concurrent use (Sync
// calls are serialised); run Sync from one syncrunner.Runner. A Netlink
// serialises its transactions.
package nftables
