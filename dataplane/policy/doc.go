// Package policy compiles Calico network policy (package policy, the
// model and reference evaluator) for the endpoints local to one node into
// iptables chains (dataplane/iptables) and ipsets (dataplane/ipsets), the
// way Calico Felix renders it (felix/rules), and keeps them up to date
// incrementally. Import it under another name beside the model, e.g.
//
//	import dppolicy "github.com/tabbynet/tabby/dataplane/policy"
//
//	// the node's network namespace "node1" (the Example uses the fakes instead)
//	ipt, err := iptables.New(iptables.Config{Family: iptables.IPv4}, iptables.WithNetns("node1"))
//	ns, err := netns.GetFromName("node1") // github.com/vishvananda/netns; ns.Close() once h is open
//	h, err := ipsets.NewHandle(ns)      // h.Close() when done
//	sets := ipsets.New(h)
//	c, err := dppolicy.New(dppolicy.Config{NFLOGGroup: 5}, ipt, sets)
//	err = c.Replace(resources)                   // or UpdateEndpoint, UpdatePolicy, ... one at a time
//	err = c.SetInterface("yaobank/database", "tby1a2b3c4d5e6")
//	plan := c.Plan()                             // dry run: what Apply would change
//	plan, err = c.Apply(ctx)                     // sets, then one iptables-restore, then set deletions
//	err = c.Delete(ctx)                          // uninstall: hooks, chains and sets go; the model stays
//
// A Compiler owns a policy.Model: endpoints, namespaces, service accounts,
// network sets and policies go in one at a time (or as a whole with
// Replace, which diffs against what the compiler holds), and the model's
// events say which rule selectors match which items and which policies
// apply to which endpoints. Every input is validated before anything
// changes (policies are resolved; nil objects are ErrNil), so invalid
// policy never reaches the kernel.
//
// # What is enforced
//
//	what                         | how
//	-----------------------------+-----------------------------------------------------------
//	conntrack                    | first in every endpoint chain: RELATED,ESTABLISHED accepted,
//	                             | INVALID dropped (policy changes never cut established flows)
//	tiers                        | in order (nil last, then name); only tiers with a policy
//	                             | applying to the endpoint in the direction; each ends in its
//	                             | defaultAction (Deny: drop unless a policy passed)
//	Allow / Pass                 | set the accept / pass mark bit and RETURN; after each policy
//	                             | jump an accepted packet returns, a passed one skips the rest
//	                             | of the tier (jumps are guarded by "pass bit clear")
//	Deny / Log                   | DROP (after NFLOG with drop attribution on) / LOG, continue
//	profiles                     | workloads: namespace profile kns.<ns> allows; host endpoints
//	                             | allow only with projectcalico-default-allow, else DROP
//	selector, notSelector,       | one hash:net set per distinct selector (canonical form; the
//	namespaceSelector, service   | policy.Model's combined rule selector), filled from match
//	accounts, network sets       | events: a label change edits members, never rules
//	nets / notNets               | one net: -s/-d; several: one hash:net set per distinct list;
//	                             | 0.0.0.0/0 is stored as two /1 halves
//	ports, ranges, notPorts      | multiport (15 slots a rule; longer lists become several rules
//	                             | with the same action), ! --dports for notPorts
//	named ports                  | one hash:ip,port set per (positive selector, name, protocol):
//	                             | the matching endpoints' (address, protocol, port), matched
//	                             | dst,dst in a rule's destination and src,src (the packet's
//	                             | source address and port) in its source, as Felix renders
//	                             | DstNamedPortIpSetIds / SrcNamedPortIpSetIds; ! for notPorts
//	protocols, ICMP type/code    | -p name or number, ! -p, -m icmp [!] --icmp-type T/C
//	                             | (icmp6 --icmpv6-type for ICMPv6); icmp without a type is
//	                             | the -p alone; an empty notICMP excludes every ICMP packet,
//	                             | so its rule renders to nothing; no match is ever left out;
//	                             | protocol with notProtocol (Calico accepts both) renders the
//	                             | -p alone, or nothing when they are equal
//	ipVersion                    | rules of the other family (or whose nets are all of it) are
//	                             | not rendered; compile each family with its own Compiler
//
// Host endpoints (SetInterface with a host endpoint's interface, e.g. eth0)
// police traffic to and from the host itself (INPUT and OUTPUT); there are
// no failsafe ports (Felix's failsafeInboundHostPorts), so a host endpoint
// without the default-allow profile and without an allowing policy cuts
// every new connection through that interface.
//
// Not enforced: HTTP rules (method/path) cannot be matched by netfilter.
// The evaluator matches them only for flows that carry an HTTP request, so
// for every packet netfilter sees such a rule never matches: the compiler
// renders nothing for it (the L3/L4 part of the policy is enforced as
// Evaluate traces it) and lists it in NeedsL7 as needing an L7 proxy.
// Rules with services (Kubernetes Service matches) are not rendered either
// (no service endpoints are fed to the compiler yet). doNotTrack and preDNAT
// policies are not rendered at all: no chain is written for them and no
// endpoint chain jumps to them (Felix puts them in the raw and mangle
// tables, which this compiler does not program), and Evaluate skips them
// too; UpdatePolicy and Replace log each such policy at Warn when they
// take it, so the gap is not silent. Forwarded traffic through host endpoints (applyOnForward) is
// likewise outside the filter-table model, as in Evaluate. Native
// nftables sets are not used: on the nft backend the chains go through
// iptables-nft, whose `-m set` runs in the xtables compatibility layer
// (see README.md for what that costs per packet).
//
// # Drop attribution
//
// With Config.NFLOGGroup set, each Deny rule and each end-of-tier drop is
// preceded by an NFLOG rule whose prefix (Prefix, at most 63 bytes) names
// kind, direction, rule index and a 16-hex ID of tier and policy (or
// endpoint, for end of tier). ListenDrops reads the group over
// nfnetlink_log (decoded here over github.com/mdlayher/netlink: the
// packet's prefix, interfaces and IP header only, since the NFLOG library
// the issue suggests, go-nflog, cannot be fetched from the module proxy)
// and ExplainDrop maps a prefix back to a DropCause:
// "denied by tier default, policy yaobank/knp.default.database, end of tier
// (ingress of yaobank/database)". ParsePrefix and ParseLoggedPacket are
// fuzzed.
//
// # Chain layout
//
// Filter table, names with the "tabby-" prefix; the hooks are rules 1..n of
// the kernel chains (dataplane/iptables SetHook):
//
//	FORWARD                 -j tabby-FORWARD
//	INPUT                   -j tabby-INPUT
//	tabby-FORWARD           clear accept|pass bits
//	                        -i tby+ -j tabby-from-wl-dispatch
//	                        -o tby+ -j tabby-to-wl-dispatch
//	                        accept bit set -j ACCEPT
//	OUTPUT                  -j tabby-OUTPUT
//	tabby-INPUT             clear accept|pass bits
//	                        IPv6 only: -i tby+ ICMPv6 types 130-133, 135, 136 ACCEPT
//	                        (neighbour and router discovery, MLD, as in Felix)
//	                        -i tby+ -j tabby-from-wl-dispatch  (workload egress policy
//	                        guards traffic to the host)
//	                        ! -i tby+ -j tabby-from-host-dispatch
//	                        accept bit set -j ACCEPT
//	tabby-OUTPUT            clear accept|pass bits; -o tby+ RETURN (host to workload
//	                        allowed, as in Felix); -j tabby-to-host-dispatch;
//	                        accept bit set -j ACCEPT
//	tabby-from-wl-dispatch  -i <iface> -g tabby-fw-<iface> per local workload; DROP
//	tabby-to-wl-dispatch    -o <iface> -g tabby-tw-<iface> per local workload; DROP
//	tabby-from-host-dispatch  -i <iface> -g tabby-fh-<iface> per local host endpoint
//	tabby-to-host-dispatch    -o <iface> -g tabby-th-<iface> per local host endpoint
//	                        (other interfaces fall through: not policed)
//	tabby-tw-<iface>        ingress of a workload, tabby-fw-<iface> its egress
//	                        (host endpoints: tabby-fh-<iface>, tabby-th-<iface>):
//	                        ctstate RELATED,ESTABLISHED ACCEPT; ctstate INVALID DROP;
//	                        clear accept|pass; per tier: clear pass (from the second),
//	                        per policy "pass clear -j tabby-pi-<id>" then
//	                        "accept set -j RETURN"; end of tier: [NFLOG] pass clear DROP;
//	                        profile: set accept, RETURN (host endpoint without
//	                        default-allow: DROP)
//	tabby-pi-<id>           a policy's ingress rules (tabby-po-<id>: egress); <id> is 16
//	                        hex digits of SHA-256 of the policy key
//
// Sets are tabby-s4-<id> (selector), tabby-n4-<id> (nets list) and
// tabby-p4-<id> (named port), with 6 for IPv6; <id> hashes the selector's
// canonical form, the sorted nets, or selector, name and protocol. The marks
// are Config.MarkAccept (0x10000) and MarkPass (0x20000); the interface
// prefix is Config.InterfacePrefix ("tby", as dataplane/netlink names host
// veths).
//
// # Design
//
//  1. Felix's shape: one chain per policy and direction shared by every
//     endpoint, per-endpoint chains holding the tier logic, marks carrying
//     accept and pass between them.
//  2. Incremental. Model events and inputs mark sets, policies and
//     endpoints dirty; Plan and Apply render only those and diff them
//     against what was last handed to the appliers: a label change is set
//     members, a policy change is its two chains (plus the chains of
//     endpoints whose tier, order or types of policies changed), a new
//     local endpoint is its two chains and the two dispatch chains. The
//     appliers then write only that (ipset add/del over netlink; one
//     iptables-restore --noflush of the changed chains).
//  3. Dry run. Plan returns the chains (typed rules) and set members an
//     Apply would write, and Plan.String renders them in iptables-restore
//     syntax, without touching the kernel — for tests, audits and a CLI.
//     Plan.Err reports chains that would not render (none, given item 6).
//  4. Order of writes. Apply gives the ipsets applier its creations and
//     member changes first, then iptables, then set destructions, so no rule
//     ever names a missing set.
//  5. The same selection as the evaluator. Set membership comes from the
//     policy.Model that PolicySet is built on, and the kernel test checks,
//     for random policy sets on a real node with seven pods, that a TCP or
//     UDP connection or an ICMP echo request (ping) succeeds exactly when
//     Evaluate allows it.
//  6. Refuse up front. UpdatePolicy and Replace render a policy's rules
//     into a scratch in-memory iptables before taking it, so a rule that
//     iptables would refuse is an error then (iptables.ErrInvalidRule,
//     naming the policy, direction and rule index), never a failure of
//     every later Apply. Kernel errors at Apply name the policy of a policy
//     chain.
//
// Trade-offs: one chain per policy and direction shared by all endpoints
// (Felix's policy chains) rather than per-endpoint copies; the dispatch
// chains are linear (Felix builds a tree), so a node with thousands of
// endpoints walks long lists; end-of-tier and profile rules are rendered
// per endpoint, so a tier order change rewrites every local endpoint's
// chains.
//
// Thread safety: all Compiler methods are safe for concurrent use (one
// mutex); Apply holds it while the appliers write. Model callbacks run
// inside the compiler's own calls. DropReader is for one goroutine. No
// package-level mutable state; logging through WithLogger (default
// discard). Figures and commands are in README.md.
package policy
