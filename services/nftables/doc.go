// Package nftables renders the services model into one nftables table,
// in the style of kube-proxy's nftables mode, through
// sigs.k8s.io/knftables.
//
//	nft, _ := nftables.NewInNetns(knftables.IPv4Family, nftables.DefaultTable, "/var/run/netns/node1")
//	// (or knftables.New(knftables.IPv4Family, nftables.DefaultTable) in the current namespace)
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
// A service chain balances over its N endpoints with one rule each,
// `numgen random mod (N-i) == 0 meta l4proto tcp dnat to A:P` (i =
// 0..N-2, then a plain dnat), each endpoint getting 1/N: the iptables
// statistic scheme. Two differences from kube-proxy's layout, both
// measured: no per-service anonymous `numgen … vmap { … }` (binding an
// anonymous map walks the kernel's transaction list, so a 10,000-service
// full sync was quadratic: 120 s), and no chain per endpoint (every `nft`
// run lists all chains of the table, which the kernel does in time
// quadratic in their number: one endpoint change at 30,000 services × 10
// endpoints took a minute). With ClientIP affinity, a rule per endpoint
// before the numgen rules sends a client found in the endpoint's dynamic
// set (timeout = the affinity timeout) there, and every DNAT to it
// refreshes the client's entry (`update @affinity-… { ip saddr }`).
// Hairpin traffic (an endpoint reaching itself through the service) is
// masqueraded in postrouting by `ct status dnat ip saddr . ip daddr
// @hairpin`, a set holding "A . A" for every endpoint address in use
// (reference-counted across service ports). External
// chains masquerade (externalTrafficPolicy Cluster) or, for Local, keep
// the client address and balance over node-local endpoints only; traffic
// to a Local address from the node itself or from a pod (ClusterCIDRs)
// goes to the whole cluster, as in kube-proxy. Addresses with no usable
// endpoint are in no-endpoint-services / no-endpoint-nodeports instead:
// `goto reject-chain` (ICMP port unreachable, so TCP clients get
// "connection refused") when the service has no endpoint at all, `drop`
// when it has endpoints but none local under a Local policy.
//
// Node ports answer on every local address except loopback: unlike
// kube-proxy's iptables mode, there are no node ports on 127.0.0.1 (as
// in kube-proxy's nftables mode; route_localnet is never set).
//
// # Design
//
//  1. Render, diff, one transaction. Each service port renders into the
//     chains, affinity sets and map elements it owns; Sync renders only
//     the ports the tracker reports changed, diffs them against what the
//     last successful Sync wrote, and sends one knftables transaction
//     holding only the difference, ordered so nothing is referenced
//     before it exists or deleted while referenced (element deletions,
//     sets, chains, rules, element additions, stale chains, stale sets).
//     A one-endpoint change therefore costs the same at 1,000 or 30,000
//     services.
//  2. Full resync. The first Sync, the first after a failed transaction
//     and the first after QueueResync recreate the table (`add table;
//     delete table; add table` in the same transaction), so the kernel
//     ends up equal to the model whatever was there. Drift made by
//     another program inside the table is not detected; call
//     QueueResync (for example on a timer) to repair it.
//  3. Conntrack. After a successful transaction Sync hands the UDP/SCTP
//     flows the change made stale (services.StaleFlows) to the
//     WithStaleFlows function (services/conntrack deletes them over
//     netlink), so a replaced UDP endpoint works on the next datagram.
//  4. Tests at two levels: the renderer into knftables.Fake, with Trace
//     following a packet through the fake table (kube-proxy's
//     nftablesTracer), and the same code against the kernel in network
//     namespaces (kernel_test.go) with real TCP and UDP.
//  5. Namespaces. NewInNetns runs each knftables call on a fresh OS
//     thread inside a named namespace, so tests and the lab never touch
//     the root namespace.
//
// Errors: New returns ErrInvalidConfig for an unsupported family; Sync
// returns knftables' error wrapped with the table name (knftables.IsNotFound
// and friends still work on it).
//
// Thread safety: Sync and QueueResync are safe for concurrent use (Sync
// calls are serialised); run Sync from one syncrunner.Runner.
package nftables
