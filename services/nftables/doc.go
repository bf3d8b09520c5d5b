// Package nftables renders the services model into one nftables table,
// in the style of kube-proxy's nftables mode, through
// sigs.k8s.io/knftables objects, and writes it to the kernel over
// netlink (Netlink) or through the `nft` CLI (any knftables.Interface).
//
//	nft, _ := nftables.NewNetlink(knftables.IPv4Family, nftables.DefaultTable, "/var/run/netns/node1")
//	// ("" for the current namespace; nftables.NewInNetns / knftables.New for the nft CLI)
//	p, _ := nftables.New(nft, tracker, nftables.Config{Family: knftables.IPv4Family, ClusterCIDRs: podCIDRs, NodeIPs: nodeIPs,
//		ServiceCIDRs: serviceCIDRs}, // (the family's; p.SetServiceCIDRs on a ServiceCIDR change)
//		nftables.WithStaleFlows(cleaner.Func()))
//	r, _ := syncrunner.New(p.Sync, syncrunner.Config{MinInterval: time.Second})
//	go r.Run(ctx) // informer handlers: tracker.On...(obj); r.Trigger()
//
// # Table layout
//
// One table, DefaultTable ("tabby-services") of family ip or ip6, owned
// entirely by tabby: nothing outside it is read or written. Base chains
// and their hook priorities (kube-proxy's, see its
// pkg/proxy/nftables/README.md, except filter-output-post-dnat below):
//
//	nat-prerouting          nat    prerouting   dstnat (-100)  jump services
//	nat-output              nat    output       dstnat (-100)  jump services
//	nat-postrouting         nat    postrouting  srcnat (100)   jump masquerading
//	filter-prerouting       filter prerouting   -110  ct state new jump firewall-check
//	filter-output-pre-dnat  filter output       -110  ct state new jump firewall-check
//	filter-input            filter input        -110  ct state new: nodeport-endpoints-check, service-endpoints-check
//	filter-forward          filter forward      -110  ct state new: service-endpoints-check, cluster-ips-check
//	filter-output-post-dnat filter output       -90   ct state new: service-endpoints-check, nodeport-endpoints-check, cluster-ips-check
//
// The filter chains run before the usual filter priority (0), so a
// firewall in another table sees service traffic already DNATed, and a
// service without endpoints is rejected before anything accepts it.
// kube-proxy checks the node's own traffic before DNAT (filter-output,
// -110); here it is checked after (-90), so a connection from the node
// that its external chain short-circuited to the cluster-wide endpoints
// (below) is not dropped by the externalTrafficPolicy Local drop
// element of the address or node port it was sent to. Only packets left
// undone by NAT meet the checks, on every path.
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
// These elements and the two chains exist as long as the service port
// does, whatever its endpoints.
//
// Endpoints are chosen in shared dispatch chains, endpoints-<proto> (a
// port's internal endpoints) and external-endpoints-<proto> (its
// external ones: node-local under externalTrafficPolicy Local), through
// two maps per protocol, service-endpoints-<proto> (typeof ip daddr .
// tcp dport . numgen : ip daddr . tcp dport) and
// nodeport-endpoints-<proto> (tcp dport . numgen : …). A port with N
// endpoints owns the slots B+N(N-1)/2 … B+N(N-1)/2+N-1 of each of its
// destinations (B = 0 for the internal bank, 2^31 for the external one),
// slot i mapping to endpoint i. The dispatch chain holds one rule per
// endpoint count N in use among its ports,
//
//	meta l4proto tcp dnat ip addr . port to ip daddr . tcp dport . numgen random mod N offset B+N(N-1)/2 map @service-endpoints-tcp
//
// (as written; `nft list` prints it as `dnat ip to ip daddr . tcp dport .
// numgen ...`, and the hook priorities by name where one fits: `dstnat`,
// `dstnat - 10`, `srcnat`; by number otherwise, e.g. -110)
// (then the same per N for node ports, after `fib daddr type local`):
// the slot ranges of different N do not overlap, so the rule for N only
// finds ports with N endpoints, each getting exactly 1/N. A lookup that
// finds nothing does not match; a packet that leaves the chain without
// DNAT is rejected by the endpoints-check chains (reject-services /
// reject-nodeports sets: ICMP port unreachable, so TCP clients get
// "connection refused") when the service has no endpoint at all, or
// dropped (no-endpoint-services / no-endpoint-nodeports vmaps) when it
// has endpoints but none local under a Local policy, as kube-proxy does.
// A service chain is `[masquerade rule per cluster IP] goto
// endpoints-<proto>`; an external chain masquerades (Cluster) or, for
// Local, keeps the client address, sends traffic from the node itself
// (masqueraded) or from a pod (ClusterCIDRs) to endpoints-<proto> (the
// whole cluster, whatever internalTrafficPolicy says, as kube-proxy
// does: its externally accessible ports always use their Cluster
// endpoints, for this short-circuit), and the rest to
// external-endpoints-<proto>. The cluster-wide endpoints of the external
// addresses and node port are then internal-bank slots of those keys,
// next to the cluster IPs' own (node-local under internalTrafficPolicy
// Local). With ClientIP affinity the short-circuit goes to the service
// chain, or, under internalTrafficPolicy Local, to a
// cluster-<ns>/<name>/<proto>/<port> chain balancing over the
// cluster-wide endpoints with the same per-endpoint affinity sets. A port
// balances over at most 65,535 endpoints (the first ones). Per new
// connection the dispatch chain costs one hash lookup per endpoint count
// in use up to the port's own: it grows with the number of distinct
// endpoint counts (tens in a real cluster), not with the number of
// services.
//
// loadBalancerSourceRanges (kube-proxy's firewall-ips map and firewall
// chains): firewall-check is `ip daddr . meta l4proto . th dport vmap
// @firewall-ips`, run for new connections before DNAT (prerouting and
// output, priority -110). A port with a load-balancer IP and a source
// range of the table's family maps each of its load-balancer IPs .
// protocol . port to `goto firewall-<ns>/<name>/<proto>/<port>`, whose
// one rule is `ip saddr != @firewall-sources-<…> drop`; the set
// (interval flag) holds the family's ranges, nested ones folded into
// the outer (an interval set refuses overlaps), plus the load-balancer
// IPs themselves when a range holds one of Config.NodeIPs
// (services.ServicePort.FirewallSources, kube-proxy's allowFromNode).
// An allowed packet returns from the chain and is DNATed as usual.
// kube-proxy jumps to firewall-check from filter-prerouting and from
// its filter-output chain; here output has its own base chain,
// filter-output-pre-dnat, at the same priority as filter-output, so
// Trace follows it before NAT.
// These exist whatever the endpoints, as in kube-proxy's nftables mode,
// so without endpoints an allowed source is rejected and another one
// dropped. Cluster IPs, node ports and external IPs are never filtered.
// Changing the ranges is only set-element changes. kube-proxy writes
// the ranges as an anonymous set in the rule; a named set per port
// keeps a range change to elements (no rule rewrite, so no table-wide
// re-validation) and is what the netlink executor compiles.
//
// Unserved ports of a cluster IP (kube-proxy's nftables mode, its
// cluster-ips set): the cluster-ips set holds every cluster IP of the
// table's family that some service port has (reference-counted across
// ports, an element change when the first port of an address comes or
// the last goes), and cluster-ips-check, `ip daddr @cluster-ips reject`,
// runs for new connections after DNAT (forward and output): a packet
// still addressed to a cluster IP was not DNATed, so its port (or
// protocol) is not served, and the client gets ICMP port unreachable
// ("connection refused") at once instead of the packet leaving toward
// the default route and timing out.
//
// Unallocated addresses of the service CIDRs (kube-proxy's nftables
// mode, "Drop traffic to unallocated ClusterIPs", KEP-3866; followed:
// kubernetes/kubernetes pkg/proxy/nftables/proxier.go, setupNFTables and
// OnServiceCIDRsChanged): with Config.ServiceCIDRs (kube-proxy takes
// them from the ServiceCIDR objects, formerly --service-cluster-ip-range;
// one Proxier per family, each with its family's prefixes), an interval
// set service-cidrs holds them and cluster-ips-check gets a second rule,
// `ip daddr @service-cidrs drop`, after the reject rule. So a new
// connection, forwarded (from a pod) or from the node itself (output,
// after DNAT), to an address inside the CIDRs that NAT left alone is
// rejected when it is a cluster IP in use (an unserved port) and
// silently dropped otherwise (an unallocated address): it does not leave
// the node toward the default gateway. Both families alike (the ip6
// table drops in `ip6 daddr @service-cidrs`). Traffic to the node itself
// (input) is not checked, nor are replies and established connections
// (`ct state new`). With no CIDRs (the default, or SetServiceCIDRs(nil))
// neither the set nor the rule exists and such addresses are left alone,
// as kube-proxy writes no drop rule for an empty list. kube-proxy writes
// the CIDRs as an anonymous set in the rule and rewrites it every sync;
// here the named set makes a change of the CIDRs (Proxier.SetServiceCIDRs,
// kube-proxy's OnServiceCIDRsChanged, applied by the next Sync) element
// changes only, and only the first CIDR (or removing the last) adds (or
// removes) the set and the rule. services/iptables, as kube-proxy's
// iptables mode, has neither check.
//
// Hairpin traffic (an endpoint reaching itself through the service) is
// masqueraded in postrouting by `ct status dnat ip saddr . ip daddr
// @hairpin`, a set holding "A . A" for every endpoint address in use
// (reference-counted across service ports).
//
// With ClientIP affinity a service keeps a rule per endpoint in its own
// chains: one sending a client found in the endpoint's dynamic set
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
//   - Endpoints are elements of shared maps, not rules or verdicts, and
//     "no endpoints" is an element of a plain set (reject) or a `drop`
//     element, not `goto reject-chain`. Measured on kernel 6.18 at
//     30,000 services × 10 endpoints: a transaction that adds a rule (any
//     rule with a nat, fib, meta, lookup or jump expression) or a
//     jump/goto map element makes the kernel re-validate the whole table
//     at commit, walking every chain reachable from the base chains
//     through every verdict-map element (270 ms per transaction); sets
//     are found by name in a list, so a named map per service made a
//     full sync quadratic (30,000 services: 110 s); and every element
//     added to a map is checked against every rule bound to it, so a
//     dispatch rule per service on a shared map was quadratic too
//     (10,000 services: 24 s). Hence one rule per endpoint count in
//     shared chains: replacing an endpoint, or moving a port to an
//     endpoint count another port already has, is only element changes
//     (the endpoint maps, the hairpin set, the reject sets) and costs the
//     same at 1,000 or 30,000 services. A count no port had before (or
//     the last port leaving one) rewrites one dispatch chain, and a
//     change of the service itself (ports, addresses, policies) or any
//     endpoint change of a ClientIP affinity service rewrites its chains;
//     those pay the walk.
//   - One pair of endpoint maps per protocol, keyed by `tcp dport`
//     rather than `meta l4proto . th dport`: `nft` 1.0.6 refuses to add
//     a rule reading a map whose typeof holds `th dport` once the map
//     exists ("conflicting protocols specified").
//
// # Design
//
//  1. Render, diff, one transaction. Each service port renders into the
//     chains, sets, maps and elements it owns; Sync renders only the
//     ports the tracker reports changed, diffs them against what the
//     last successful Sync wrote, and sends one transaction holding only
//     the difference, ordered so nothing is referenced before it exists
//     or deleted while referenced (element deletions, sets, chains,
//     rules, dispatch-chain rules, element additions, stale chains and
//     sets). The state of the last sync is updated with the sync's
//     changes only after the transaction succeeded. One exception: the
//     endpoint slots a port stops using (its endpoint count changed, or
//     it went) are deleted in a second transaction right after the
//     first. The kernel picks a packet's rules in one generation but may
//     look its map element up in the next: a packet still in the old
//     dispatch rule when the transaction commits would look for a slot
//     deleted by it, miss, and leave without DNAT — and NAT is decided once
//     per connection, so every retransmission goes the same way. Kept
//     until the second transaction, those slots are found (README.md,
//     "Endpoint count changes"). A slot whose endpoint is replaced is a
//     delete and an add of the same key in one transaction, which a
//     lookup never misses.
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
// family; New (through Config.Validate) also for a ServiceCIDRs entry
// that is not a valid prefix of the Config's family (as does
// SetServiceCIDRs), for a nil knftables.Interface or services.Tracker and for a
// Config.Family or Config.Table (default DefaultTable) other than the
// Interface's (a Netlink's own; for others, the family and table a
// knftables transaction of theirs names), instead of a Sync failing on
// it later; Sync returns the executor's error wrapped with the table name
// (knftables.IsNotFound and friends still work on CLI errors; Netlink
// errors name the operation the kernel refused, in `nft` syntax ("add
// element ip tabby-services service-ips { 10.96.0.10 . udp . 53 : goto
// … }"), carry the kernel's errno, e.g. errors.Is(err, unix.ENOENT), and
// wrap ErrUnsupportedRule or ErrUnsupportedObject when the transaction
// holds something the netlink executor does not compile).
//
// Thread safety: Sync, QueueResync and SetServiceCIDRs are safe for
// concurrent use (Sync calls are serialised); run Sync from one
// syncrunner.Runner. A Netlink serialises its transactions.
package nftables
