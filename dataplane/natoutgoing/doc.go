// Package natoutgoing programs Calico's "outgoing NAT" per IP pool: traffic
// whose source is in a pool with natOutgoing and whose destination is in no
// pool at all is masqueraded to the node's address as it leaves the node;
// traffic between pods (any pool to any pool) is never NATed.
//
// A pure renderer (Render) turns the ipam pools of one family into desired
// state, and an Applier programs it through dataplane/ipsets and
// dataplane/iptables:
//
//	ipt, _ := iptables.New(iptables.Config{Family: iptables.IPv4}, iptables.WithNetns("node1")) // or none: the caller's netns
//	nodeNS, _ := netns.GetFromName("node1") // github.com/vishvananda/netns; the same netns as ipt
//	h, _ := ipsets.NewHandle(nodeNS) // netfilter netlink in the node's netns, batched member writes
//	nat, _ := natoutgoing.New(natoutgoing.Config{Family: iptables.IPv4}, ipt, ipsets.New(h))
//	pools, _ := a.Pools(ctx) // ipam.IPAM
//	err := nat.Apply(ctx, pools) // again whenever a pool changes
//
// or, to follow the pools until ctx ends (list, then watch; each change is
// applied through a dataplane/syncrunner runner):
//
//	err := nat.Run(ctx, a, syncrunner.Config{MinInterval: time.Second, MaxInterval: time.Minute})
//
// # What is programmed
//
// Per family (IPv4 shown; IPv6 uses the v6 names and ip6tables):
//
//	ipset tabby-v4-all-ipam-pools   hash:net  every pool's CIDR, disabled ones included
//	ipset tabby-v4-masq-ipam-pools  hash:net  the CIDRs of pools with natOutgoing
//
//	*nat
//	:tabby-nat-outgoing - [0:0]
//	-A POSTROUTING -j tabby-nat-outgoing                      (rule 1 of POSTROUTING)
//	-A tabby-nat-outgoing -m set --match-set tabby-v4-masq-ipam-pools src
//	    -m set ! --match-set tabby-v4-all-ipam-pools dst -j MASQUERADE
//
// (each rule also carries the `tabby:<hash>` comment of dataplane/iptables.)
// The chain and set names follow Felix's cali-nat-outgoing,
// cali40all-ipam-pools and cali40masq-ipam-pools under tabby's prefix.
//
// # Design
//
//  1. Calico's semantics (felix/rules/nat.go NATOutgoingChain and
//     felix/dataplane/linux/masq_mgr.go): every pool is in the all-pools
//     set whatever its Disabled flag, so a disabled pool is still "inside"
//     and traffic to it is not NATed (the documented way to exclude a
//     destination range, projectcalico/calico#7446); a disabled pool with
//     natOutgoing keeps masquerading for the pods it still holds. The chain
//     has its MASQUERADE rule only while at least one pool of the family has
//     natOutgoing, and is empty otherwise; the sets and the hook always exist.
//  2. Sets, not rules, follow the pools. A pool created, deleted or flipped
//     is one ipset member added or removed; the rule changes only when the
//     family goes from no NAT pool to some or back.
//  3. Hook position. The jump is placed at the top of nat POSTROUTING
//     (dataplane/iptables SetHook: rule 1, before other programs' rules),
//     where Felix's cali-POSTROUTING jumps to cali-nat-outgoing. SNAT in
//     POSTROUTING happens after routing, so MASQUERADE picks the primary
//     address of the outgoing interface (the node's address). WithoutHook
//     leaves POSTROUTING to a caller that composes several owned rules there
//     (services SNAT, for instance) and places HookRule itself.
//  4. Order of writes. Apply writes set members (ipsets ApplyUpdates) before
//     the rules that name the sets, so the rule never references a missing
//     set; it never destroys sets (other users may share the IPSets). Delete
//     removes the hook and chain first, then the sets.
//  5. Families. One Applier per family, each with an IPTables of that family;
//     both may share one IPSets (ipsets are per network namespace, with
//     distinct names per family). Pools of the other family are skipped.
//  6. Following pools. Run lists the pools (ipam ListPools) and watches
//     from the listing's revision (WatchPools): pools live in one store
//     key, so each event is the complete list and the latest one wins. A
//     syncrunner.Runner applies it (coalescing bursts, retrying failures
//     with backoff, re-applying every MaxInterval); a failed watch is
//     followed by a new listing, so no change is lost.
//  7. Not covered (Felix options): natOutgoingAddress (SNAT to one address),
//     natPortRange, natOutgoingExclusions=IPPoolsAndHostIPs. Config has
//     RandomFully (`--random-fully`) and OutInterface (Felix's
//     iptablesNATOutgoingInterfaceFilter).
//
// Errors: Render and Apply return ErrInvalidPool (naming the pool) for a
// pool without a CIDR, with a /0 or with an IPv4-mapped IPv6 CIDR;
// Render, Apply and New return ErrInvalidConfig for an unknown family or
// an OutInterface that is not an interface name;
// kernel errors come back wrapped from dataplane/ipsets and
// dataplane/iptables (errors.Is ipsets.ErrInUse, iptables.ErrRestore, ...),
// and the next Apply retries.
//
// Thread safety: an Applier is safe for concurrent use; Apply and Delete are
// serialised (Run calls Apply from its runner's goroutine). Render is pure.
package natoutgoing
