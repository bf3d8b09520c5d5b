// Package iptables renders the services model into iptables NAT and
// filter chains, in the layout of kube-proxy's iptables mode except for
// the endpoints, which have no chain of their own, and hairpin
// connections, found by one ipset as in kube-proxy's IPVS mode (see
// Chain layout and Hairpin set),
// through dataplane/iptables (typed rules, one iptables-restore per
// sync, drift repair, legacy or nft backend).
//
//	// ipt is github.com/tabbynet/tabby/dataplane/iptables
//	table, _ := iptables.NewIPTables(ipt.IPv4, ipt.BackendAuto, ipt.WithNetns("node1"))
//	p, _ := iptables.New(table, tracker, iptables.Config{Family: ipt.IPv4, ClusterCIDRs: podCIDRs,
//		NodeIPs: nodeIPs}, iptables.WithStaleFlows(cleaner.Func()))
//	r, _ := syncrunner.New(p.Sync, syncrunner.Config{MinInterval: time.Second, MaxInterval: time.Minute})
//	go r.Run(ctx) // informer handlers: tracker.On...(obj); r.Trigger()
//
// # Chain layout
//
// Every chain is named with ChainPrefix ("TABBY-", kube-proxy's "KUBE-")
// and every rule carries a "tabby-svc:<hash>" comment (HashPrefix), so the
// IPTables this package uses and the one of the policy compiler
// ("tabby-", "tabby:") never take each other's chains for stale ones.
// Hooks are the first rules of the kernel chains (dataplane/iptables
// keeps them there):
//
//	nat PREROUTING    -j TABBY-SERVICES
//	nat OUTPUT        -j TABBY-SERVICES
//	                  -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j TABBY-NODEPORTS   (LocalhostNodePorts)
//	nat POSTROUTING   -j TABBY-POSTROUTING
//	filter INPUT      ctstate NEW -j TABBY-PROXY-FIREWALL; ctstate NEW -j TABBY-SERVICES;
//	                  ctstate NEW -j TABBY-EXTERNAL-SERVICES; -j TABBY-FIREWALL
//	filter FORWARD    ctstate NEW -j TABBY-PROXY-FIREWALL; ctstate NEW -j TABBY-SERVICES;
//	                  ctstate NEW -j TABBY-EXTERNAL-SERVICES
//	filter OUTPUT     ctstate NEW -j TABBY-PROXY-FIREWALL; ctstate NEW -j TABBY-SERVICES; -j TABBY-FIREWALL
//
// nat TABBY-SERVICES holds, per service port with usable endpoints and
// per cluster IP, `-d IP -p P --dport N -j TABBY-MASQ-NONPOD` (with
// ClusterCIDRs: marks traffic from outside the pod CIDRs for masquerade)
// and `… -j TABBY-SVC-<hash>` (TABBY-SVL-<hash> under
// internalTrafficPolicy Local); per external and load-balancer IP `… -j
// TABBY-EXT-<hash>`; and last `! -d 127.0.0.0/8 -m addrtype --dst-type
// LOCAL -j TABBY-NODEPORTS`, which sends each node port (`-p P --dport
// NP`) to the port's EXT chain. Hashes are 16 base32 characters of
// SHA-256 of namespace, name, port name and protocol, as kube-proxy
// names its chains.
//
//   - TABBY-SVC-: balances over the Cluster endpoints. In the default
//     layout (Hairpin set, below) endpoint i of n is one rule, `-m
//     statistic --mode random --probability 1/(n-i) -p P -j DNAT
//     --to-destination EP:PORT` (no statistic for the last, so each
//     endpoint gets 1/n). With WithHairpinChains, and for a port with
//     ClientIP affinity in either layout, endpoint i of n gets two
//     rules, both with that statistic: `-s EP -j TABBY-HP-<hash>` for a
//     client that is this very
//     endpoint, and `! -s EP -p P -j DNAT --to-destination EP:PORT` for
//     every other client. A packet meets one draw per endpoint, as in
//     kube-proxy's layout. With ClientIP affinity the chain starts with
//     the same pair per endpoint matching `-m recent --rcheck --seconds
//     <timeout> --reap --name TABBY-SEP-<hash> --rsource` instead of the
//     statistic, and every DNAT rule also does `-m recent --set` on that
//     list (the list keeps kube-proxy's per-endpoint name; no chain has
//     it).
//   - TABBY-SVL-: the same over the node-local endpoints (Local policies).
//   - TABBY-HP-: one per service port of the two-rule shape above
//     (tabby's, not kube-proxy's): `-j
//     TABBY-MARK-MASQ`, then per endpoint of SVC and SVL `-s EP -p P
//     [-m recent --set …] -j DNAT --to-destination EP:PORT`. Only a
//     connection sent back to its own client reaches it (hairpin), so
//     only those are masqueraded, as with kube-proxy's SEP chains.
//   - TABBY-SEP-: kube-proxy's chain per endpoint (`-s EP -j
//     TABBY-MARK-MASQ`, then `-p P [-m recent --set …] -j DNAT`), jumped
//     to from SVC/SVL, only for a port two of whose endpoints share an
//     address with different ports (a rolling targetPort change): the
//     HP chain picks the DNAT by source address alone.
//   - TABBY-EXT-: externalTrafficPolicy Cluster marks for masquerade and
//     jumps to SVC; Local keeps the source and jumps to SVL, except that
//     traffic from the pod CIDRs goes to SVC and traffic from the node
//     itself (`-m addrtype --src-type LOCAL`) is marked and goes to SVC,
//     whatever internalTrafficPolicy says (kube-proxy: an externally
//     accessible port always has its Cluster endpoints, for this
//     short-circuit), so with both policies Local a pod or the node
//     reaches a node port whose endpoints are all on other nodes.
//   - TABBY-FW- (kube-proxy's KUBE-FW-, loadBalancerSourceRanges): for a
//     port with endpoints, a load-balancer IP of the family and a source
//     range of the family, the load-balancer IPs' TABBY-SERVICES rules
//     jump here instead of EXT. One `-s RANGE -j TABBY-EXT-<hash>` per
//     range (services.ServicePort.FirewallSources: with Config.NodeIPs
//     in a range, also `-s LBIP/32` per load-balancer IP, for a VIP the
//     node routes to itself); anything else returns undone, and filter
//     TABBY-PROXY-FIREWALL (kube-proxy's KUBE-PROXY-FIREWALL, first in
//     INPUT, FORWARD and OUTPUT for NEW packets) drops it with `-d LBIP
//     -p P --dport N -j DROP`, which a DNATed packet no longer matches.
//     Without endpoints there is no FW chain: the filter REJECT answers
//     every source, as in kube-proxy. Cluster IPs, node ports and
//     external IPs are never filtered.
//
// # Hairpin set (the default)
//
// A connection DNATed back to its own client must be masqueraded, or
// the reply would not come back through the node. kube-proxy's iptables
// mode decides it with a `-s EP` rule per endpoint; its IPVS mode with
// one set, KUBE-LOOP-BACK; tabby does the latter by default. The
// hash:ip,port,ip set <prefix>HAIRPIN (HAIRPIN6 for IPv6) holds (EP,
// proto:port, EP) for every endpoint of a port without affinity, and
// TABBY-POSTROUTING starts with `-m set --match-set <set> dst,dst,src -j
// TABBY-MARK-MASQ`, so a connection DNATed back to its own client is
// masqueraded and one to a peer endpoint is not. Such a port has no
// TABBY-HP- chain and one rule per endpoint; ports with affinity keep
// the HP layout above, SEP-layout ports their SEP chains. Members are
// counted per port (two ports may share an endpoint) and changed by
// diff, so one endpoint change is one SVC chain and one set add and
// delete. New opens the kernel ipsets of the IPTables' network namespace
// itself (prefix DefaultHairpinSetPrefix: the set is TABBY-4-HAIRPIN or
// TABBY-6-HAIRPIN6; Close releases the netlink handle), or uses the
// IPSets given WithHairpinSet, which a Proxier over ipt.Fake needs (an
// ipsets.Fake). The kernel needs ipset support (ip_set and
// ip_set_hash_ipportip, loaded on demand), as kube-proxy's IPVS mode and
// Calico do; without it New still succeeds (it only opens a netfilter
// netlink socket) and every Sync fails creating the set with the
// kernel's error: use WithHairpinChains there. Without ipt.WithNetns,
// New opens that socket in the namespace of the thread calling it, and
// the iptables commands run in that of the thread calling Sync: an
// embedder that calls New from a goroutine that entered another
// namespace (netns.Set) and syncs from a syncrunner gets the set in one
// namespace and the rules that name it in another, so give
// ipt.WithNetns for any namespace but the process's own. Restarting
// with WithHairpinChains destroys the default layout's set after the
// first successful Sync, when no other rule names it (a set of your own
// prefix, from WithHairpinSet, is yours to `ipset destroy`).
//
// WithHairpinChains writes rules only, in the shapes above, for a node
// without ipset support. It is about three times the rules: at 10,000
// services × 10 endpoints a full sync on iptables-legacy takes 1.3–1.6 s
// by default against 3.0–3.2 s with it, and one endpoint change 0.5 s
// against 1.4 s (README, Benchmarks), because iptables-restore's cost is
// linear in rules.
//
// TABBY-MARK-MASQ sets the mark bit (0x4000); TABBY-POSTROUTING returns
// for unmarked packets, clears the bit and masquerades (--random-fully).
// A service port without usable endpoints has no nat rule but a filter
// one: filter TABBY-SERVICES rejects its cluster IPs, filter
// TABBY-EXTERNAL-SERVICES its external IPs and node ports (`-m addrtype
// --dst-type LOCAL`): REJECT (ICMP port unreachable, "connection
// refused") when the Service has no endpoint at all, DROP when it has
// some but none local under a Local policy. Filter chains see NEW
// packets after DNAT, so a Local port reached from a pod (already DNATed
// to a remote endpoint by SVC) no longer matches the drop.
//
// Node ports on 127.0.0.1 (IPv4, LocalhostNodePorts) answer only
// connections the node makes: the first Sync sets route_localnet=1 and
// only nat OUTPUT leads 127.0.0.0/8 to TABBY-NODEPORTS. route_localnet
// also lets other hosts reach the node's loopback (CVE-2020-8558), so
// TABBY-FIREWALL drops `! -s 127.0.0.0/8 -d 127.0.0.0/8` unless conntrack
// says RELATED, ESTABLISHED or DNAT; it is installed for IPv4 whatever
// LocalhostNodePorts says, as kube-proxy does.
//
// Health checks: WithHealthServer hands every successful Sync's ports
// to a services.HealthServer, which serves the healthCheckNodePorts and
// /healthz (kube-proxy's answers) from what was applied.
//
// What differs from kube-proxy: endpoints have no chain (TABBY-HP-
// above): kube-proxy writes a KUBE-SEP- chain per endpoint, and
// iptables-restore's cost grows faster than linearly with the number of
// chains (iptables-nft-restore 1.8.9 keeps every chain name a restore
// mentions in one sorted list; dataplane/iptables orders its input to
// keep that cheap), so 10,000 services × 10 endpoints were 113,000
// chains and are now 12,800 by default, 23,000 with WithHairpinChains
// (README, Benchmarks). The
// endpoint rules carry no comment (kube-proxy drops them above 1,000
// endpoints). No KUBE-FORWARD or filter ACCEPT rules for
// the health-check node ports (a host with a default-drop INPUT policy
// must allow them itself); masquerade of non-pod traffic uses one chain (TABBY-MASQ-NONPOD)
// so several ClusterCIDRs work; the masquerade bit is cleared with
// --set-xmark 0/0x4000 instead of --xor-mark (the same effect).
//
// A connection to a cluster IP on a port (or protocol) no Service
// serves is left alone, as in kube-proxy's iptables mode, and is routed
// on like any packet; services/nftables, as kube-proxy's nftables mode,
// rejects it (its cluster-ips set).
//
// # Design
//
//  1. Render per port, write per chain. Each service port renders into
//     the chains it owns and its rules of the five dispatch chains. Sync
//     renders only the ports the tracker reports changed, SetChain's the
//     chains whose rules differ from the last render, DeleteChain's the
//     ones gone, and rebuilds the dispatch chains only when a port's
//     dispatch rules changed (a new or removed service, a port gaining or
//     losing all endpoints), not on endpoint changes. dataplane/iptables
//     then writes only chains whose rule hashes differ, in one
//     iptables-restore --noflush.
//  2. Full resync: the first Sync and the first after QueueResync render
//     every port and make dataplane/iptables re-read iptables-save, so
//     drift (another program flushing a chain, moving a hook) is
//     repaired; dataplane/iptables also re-reads on its RefreshInterval.
//     A failed restore returns an error and the next Sync writes the same
//     desired state again.
//  3. Hairpin set (the default): the set's updates are applied before
//     the iptables-restore (the POSTROUTING rule needs the set) and its
//     deletions after; a full resync also re-reads the kernel's sets. On
//     a full sync only the set's creation comes first: its fill (100,000
//     members at 10,000 services × 10 endpoints, batched over netlink by
//     ipsets.KernelHandle) runs while the restore is built and run, into a
//     temporary set swapped in whole (from 64 members on), so the rules
//     may see the set empty for that long but not half-filled.
//     Trace cannot see kernel sets: TraceWithSets reads an ipsets.Fake.
//  4. Conntrack: after a successful Apply, Sync hands the UDP/SCTP flows
//     the changes made stale (services.StaleFlows, accumulated across
//     failed syncs) to the WithStaleFlows function (services/conntrack),
//     and the applied ports to the WithHealthServer one.
//  5. Tests at two levels: the renderer into ipt.Fake with Dump goldens
//     and Trace (a packet tracer over the fake's rules, kube-proxy's
//     iptablesTracer, sharing servicestest.TraceCases with
//     services/nftables), TestFakeMatchesKernel on both backends, and the
//     shared conformance suite (servicestest/kernelsuite, and its
//     HairpinPeer: a connection between two endpoints of one service is
//     not masqueraded, one back to its client is) in network namespaces
//     on legacy and nft, each with the default hairpin set and with
//     WithHairpinChains.
//
// Errors: New returns ErrInvalidConfig for a nil IPTables or Tracker, a
// bad family or one other than the IPTables', a MasqueradeMark that is
// not a single bit, an IPv6 LocalhostNodePorts, a ClusterCIDR of the
// other family, a WithHairpinSet IPSets whose prefix overlaps
// ipsets.DefaultPrefix or is too long for the set's name, both
// WithHairpinSet and WithHairpinChains, or neither with an IPTables that
// does not run the kernel's iptables (ipt.Fake); opening the namespace's
// ipsets can fail too (a netns that is gone); Sync returns
// dataplane/iptables' errors wrapped ("iptables services: …";
// errors.Is(err, ipt.ErrRestore) for a rejected restore), and ErrClosed
// after Close.
//
// Thread safety: Sync, QueueResync and Close are safe for concurrent use
// (Sync calls are serialised; Close waits for a Sync in progress); run
// Sync from one syncrunner.Runner, and Close after the runner has
// stopped (a runner that syncs after Close only gets ErrClosed back and
// retries).
package iptables
