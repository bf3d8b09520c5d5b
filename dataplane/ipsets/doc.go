// Package ipsets keeps named kernel ipsets equal to a desired state held in
// memory, over netlink (no `ipset` binary), the way Calico Felix's ipsets
// package does for its `cali40`/`cali60` sets.
//
// A caller (the policy compiler: one set per selector, CIDR list or named
// port) declares sets with SetMembers, edits them with AddMembers and
// RemoveMembers, drops them with DeleteSet, and calls Apply (or
// ApplyUpdates, then its iptables writes, then ApplyDeletions). The set
// types are hash:ip, hash:net, hash:ip,port, hash:net,port and hash:ip,port,ip, each IPv4
// (`family inet`) or IPv6 (`family inet6`); Member values are canonical
// (masked CIDRs, unmapped addresses), so equal entries compare ==.
//
//	ns, _ := netns.GetFromName("node1") // github.com/vishvananda/netns: /run/netns/node1
//	defer ns.Close()
//	h, _ := ipsets.NewHandle(ns) // the sets of that namespace
//	defer h.Close()
//	sets := ipsets.New(h, ipsets.WithPrefix("tabby-"))
//	if err := sets.Err(); err != nil { // ErrInvalidConfig: a prefix such as ""
//		return err
//	}
//	web := []ipsets.Member{ipsets.IP(netip.MustParseAddr("10.244.1.5"))}
//	_ = sets.SetMembers(ipsets.SetSpec{Name: "tabby-s-web", Type: ipsets.HashIP, Family: ipsets.IPv4}, web)
//	err := sets.Apply(ctx)
//
// # Design
//
//  1. Desired vs dataplane. One deltatracker.Tracker holds the sets (type
//     and family), one per set holds its members; Apply writes only the
//     pending changes and records them, so a one-member change is one
//     `ipset add`.
//  2. Batched writes. When the Handle is also a BatchHandle (KernelHandle,
//     Fake), a fill or edit sends many members per netlink message, as
//     `ipset restore` does: IPSET_CMD_ADD or IPSET_CMD_DEL with an
//     IPSET_ATTR_ADT attribute of IPSET_ATTR_DATA entries, encoded with
//     vishvananda/netlink's nl package, at most MaxBatchMessage (32 KiB)
//     per message, one ACK each. Without NLM_F_EXCL the kernel
//     (ip_set_ad) skips an entry already present on add and one absent on
//     delete, the semantics IPSets has always given both. It stops a
//     message at the first failing entry without naming it to this
//     client, so KernelHandle sends that message again one entry per
//     message and reports the culprit (EntryError); errors name the
//     member exactly as the per-member path does. Any other Handle (a
//     plain *netlink.Handle) gets one IpsetAdd or IpsetDel per member.
//  3. Never half-filled. A set that does not exist yet is created and
//     filled in place (no rule can reference it). A set that exists is
//     rebuilt in a temporary set (TempName: prefix + "~" + 8 hex digits) and
//     swapped in with IPSET_CMD_SWAP when the members outgrow its maxelem or
//     when at least WithRewriteThreshold changes (default 64) touch half of
//     its members or more; rules referencing it switch atomically. Smaller
//     edits are made in place, deletions first. ApplyCreates creates the
//     missing sets empty, so rules can name them while ApplyUpdates fills
//     them; those sets are then rebuilt and swapped in like existing ones.
//  4. maxelem is 1.5 × the member count rounded up to a multiple of 1024,
//     never below MinMaxElem (1024), never the kernel's 65,536 default
//     (66,560 instead); a set that outgrows it is rebuilt with a larger
//     one. Sets are created with no other option (no timeout, counters,
//     comment, skbinfo or forceadd; the kernel's default hashsize).
//  5. Ownership. Only sets whose name starts with the prefix (DefaultPrefix
//     "tabby-", WithPrefix) are read, written or destroyed; every other set
//     is invisible to this package. Owned sets that are not desired (left by
//     an earlier run, or temporary sets of a crashed rewrite) are destroyed
//     by ApplyDeletions. Names ending in '~' + hash are reserved. Because
//     ownership is by prefix, the prefix must be non-empty ("" would own,
//     and destroy, every set of the namespace), at most MaxPrefixLen bytes
//     (so TempName fits) and printable ASCII (see WithPrefix); with any
//     other prefix New's IPSets touches nothing and every call returns
//     ErrInvalidConfig (IPSets.Err tells right after New).
//  6. Type or family change. Swap needs equal types, so a set whose type or
//     family changes is destroyed and recreated; while a rule references it
//     the kernel refuses (IsInUse / ErrInUse) and the change stays pending.
//  7. Drift. The first Apply, the first after QueueResync or after any
//     failed write, and the first once the last listing is older than the
//     refresh interval (WithRefreshInterval, default 90 s, Felix's
//     ipsetsRefreshInterval), lists the owned sets from the kernel and
//     diffs against them, repairing sets destroyed or edited by another
//     program; so a sync loop that calls Apply at least that often repairs
//     ipset drift without calling QueueResync. A set
//     of the desired name, type and family whose header is not one this
//     package creates (IpsetList's Timeout set, CadtFlags with counters,
//     comment, skbinfo or forceadd, or a MaxElements that rule 4 never
//     gives, such as the 65,536 of a hand-made `ipset create`) is drift
//     too, and so is one holding an entry this package cannot model
//     (another program's udplite or icmp "port" in a hash:ip,port set):
//     InSync is false, and ApplyUpdates rebuilds it in a temporary
//     set and swaps it in (3; swap needs only equal type and family and
//     moves the header), logging the differing options at Info. So
//     members cannot expire from a set created with `timeout`, or be
//     evicted from one with `forceadd`, while InSync says true. hashsize
//     and the set revision are not compared; a hash:ip `netmask` is not
//     seen (see README, Known limitations).
//  8. Errors. Bad input is rejected before anything changes
//     (ErrInvalidConfig, ErrInvalidName, ErrInvalidType, ErrInvalidMember). Kernel errors are
//     wrapped with the set and member acted on and joined across sets; one
//     failing set does not stop the others. IsNotFound, IsExist, IsInUse and
//     IsHashFull test kernel errors.
//  9. The seam is Handle, the six *netlink.Handle methods used, and the
//     optional BatchHandle; Fake is a strict in-memory BatchHandle
//     returning the kernel's error values, checked against KernelHandle by
//     TestFakeMatchesKernel (per-entry and batched operations). ipsets are
//     per network namespace: open the handle with NewHandle(ns).
//
// Thread safety: all IPSets methods are safe for concurrent use; Apply
// calls are serialised by an internal mutex. Fake is safe for concurrent use.
package ipsets
