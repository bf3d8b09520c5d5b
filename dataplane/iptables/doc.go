// Package iptables keeps the iptables chains tabby owns, and the jump
// rules that lead into them from the kernel chains, equal to a desired
// state, the way Calico Felix's iptables Table does for its `cali-` chains.
//
// Callers (the policy compiler, the services NAT renderer) build chains of
// typed rules — matches and targets are Go values, not strings — and hand
// them to an IPTables, one per IP family:
//
//	ipt, _ := iptables.New(iptables.Config{Family: iptables.IPv4}, iptables.WithNetns("node1"))
//	_ = ipt.ReplaceChains(iptables.Filter, []iptables.Chain{{Name: "tabby-fw-eth0", Rules: []iptables.Rule{
//		{Match: iptables.Match().Protocol(iptables.TCP).DestPorts(80).SourceIPSet("tabby-s-web"), Action: iptables.Accept{}},
//		{Action: iptables.Drop{}},
//	}}})
//	_ = ipt.SetHook(iptables.Filter, "FORWARD", []iptables.Rule{{Action: iptables.Jump{Chain: "tabby-fw-eth0"}}})
//	err := ipt.Apply(ctx)
//
// # Design
//
//  1. Typed rules, deterministic text. MatchCriteria and the Action types
//     render in iptables-save's canonical order (builtin matches, the hash
//     comment, a human comment, extension matches, target), so the same
//     desired state always renders byte for byte the same (Render, a dry
//     run). Rules are validated when set (ErrInvalidRule, wrapped with
//     the chain and rule index): family of addresses, a protocol before
//     port matches, at most 15 multiport slots, a builtin match (-s, -d,
//     -i, -o, -p) at most once, safe names and comments, the family's
//     REJECT types (iptables-extensions(8); IPv6 aliases are written as
//     the canonical name iptables-save prints), tcp-reset and a DNAT port
//     after Protocol(tcp|udp|sctp), Jump and Goto to user chains only
//     (not INPUT, FORWARD..., nor a target name such as DROP), and the
//     targets' tables: DNAT, SNAT and Masquerade only in nat (and, in a
//     nat kernel chain given to SetHook, only in their hooks: DNAT in
//     PREROUTING or OUTPUT, SNAT in POSTROUTING or INPUT, MASQUERADE in
//     POSTROUTING), Reject only in filter; SetMark, Log and NFLOG go in
//     any table. Nothing is half-accepted: a rule the kernel is certain
//     to refuse would otherwise hold back every pending change of its
//     table (and of later tables) at each Apply. That includes a NAT
//     target in an owned chain reached, through the jumps and gotos of
//     the desired hooks and owned nat chains, from a kernel chain that is
//     not its hook: both kernels refuse the table (legacy at COMMIT, nft
//     at the rule completing the path; iptables-legacy's kernel does not
//     look past a rule without matches whose verdict is ACCEPT, DROP or
//     RETURN, but every owned rule has its hash comment, a match). The
//     call completing such a path (SetHook, SetChain of any chain on it,
//     SetChains, ReplaceChains) is refused, naming its rule, the NAT
//     target's chain and rule, the hook and the path. The check is
//     incremental (reach.go): the desired nat chains keep their jumps and
//     NAT targets and each chain the chains jumping to it, and a call
//     walks up from the chains it changes to the hooks reaching them and
//     down to the NAT targets they reach, not the table (a batch changing
//     most chains walks once down from the hooks instead, and from its
//     chains only to name a bad path). A jump loop between owned chains
//     is refused the same way once a hook would reach it (both kernels
//     refuse the table, ELOOP; an unreached loop is accepted): the call
//     walks down from the chains it changes and, only when it finds a
//     loop, the table from its hooks (loop.go). The NAT walks allocate nothing: nodes
//     come from a slab, the single parent and natRef most chains have
//     are held inline, and visits are marked by generation. Not checked:
//     jumps in rules of other programs and paths through chains tabby
//     does not own (unknown), and ipsets and jump targets that must exist
//     when applied.
//  2. Hash comments. Every owned rule carries `-m comment --comment
//     "tabby:<16 chars>"`, a hash of the chain name, the previous rule's
//     hash and the rule (Felix's scheme), so reading iptables-save and
//     comparing hashes finds drift without parsing matches.
//  3. One transaction, only what changed. A deltatracker holds the hashes
//     of each owned chain, desired vs. kernel. Apply writes one
//     `iptables-restore --noflush -w N` (ip6tables-restore for IPv6) input
//     holding, per table: `:chain - [0:0]` for each changed or stale chain
//     (which flushes it), the changed chains' rules, the hook repairs, then
//     `-X` for stale chains. Nothing pending: no restore runs. SetChain
//     validates and renders a chain when it is set: each rule is rendered
//     once (its hash covers the text with an empty hash comment, the spec
//     carries the hash), into one string per chain (the hashes, then the
//     specs) with an offset per rule: two allocations per chain and no
//     pointer per rule, since a services table holds ~100,000 chains;
//     SetChains renders many chains on every CPU (a full policy compile of
//     25,000 rules spends ~25 ms of CPU here). Apply's restore text costs
//     O(pending chains and rules) plus a sort of the pending chain names.
//     Within a table the declarations and rules are interleaved: chains
//     in descending name order, in batches of 128 declared together and
//     then given their rules, dispatch chains (jumping to 64 or more of
//     the section's chains) first, every rule after the declaration of
//     the chain it jumps to (appendSection). iptables-nft-restore 1.8.9
//     walks a sorted list of every chain name mentioned so far for each
//     line, so declaring everything first and then writing the rules
//     made its CPU quadratic in the chains (3.3 s against 0.7 s of user
//     CPU at 10,000 chains; README.md).
//  4. Ownership. Only chains named with ChainPrefix ("tabby-") are written
//     or deleted, and every chain so named counts as owned (a stale one
//     is deleted). New therefore refuses (ErrInvalidConfig) a prefix
//     that overlaps, either way, the chain prefix of a well-known program
//     ("KUBE-" of kube-proxy and kubelet, Calico's "cali-", Cilium's
//     "CILIUM_", Docker's "DOCKER", ...: "KUBE-" would delete
//     kube-proxy's chains, "cali-x-" would be swept by Felix); a prefix
//     another program on the node uses is the caller's to avoid. A bad
//     name gets its real reason: ErrInvalidRule naming the bad character
//     or the length, ErrNotOwned for a valid name without the prefix,
//     ErrUnknownTable (an ErrInvalidRule) for a table other than filter,
//     nat, mangle, raw; in kernel chains only rules whose comment starts with
//     HashPrefix ("tabby:") are ours. Rules and chains of other programs
//     are never changed. An owned chain that is stale but still jumped to
//     by another program's rule is flushed, not deleted (deleting it would
//     fail the whole transaction), until that reference goes. Apply knows
//     the references of the last iptables-save read (the first Apply,
//     after QueueResync, Refresh or a failure, and every RefreshInterval,
//     90 s by default); a reference another program added since makes
//     the `-X` fail, and with it that table's section (and later ones).
//     Apply then reads again at once and restores what is still pending,
//     now flushing that chain and keeping it: the cost is one failed
//     restore and one extra read, not an error or a 90 s wait. Only one
//     such retry per Apply: a second failure is returned.
//  5. Hook positions. SetHook places owned rules at the top of kernel
//     chains (INPUT, FORWARD, OUTPUT, PREROUTING, POSTROUTING of filter,
//     nat, mangle, raw): they are rules 1..n of the chain, in the order
//     given, before every rule of other programs (Felix's default
//     ChainInsertMode "insert"). If anything moves them (a rule inserted
//     above, one deleted or edited), the repair deletes all owned rules of
//     that chain by their exact saved text (`-D`) and inserts them again
//     at 1..n (`-I CHAIN i`). Drift is found by hash comment, as in
//     Felix: an edit that keeps a rule's "tabby:" comment (iptables -R
//     with the comment copied) is not seen, here or in owned chains.
//  6. Drift. Apply re-reads iptables-save on the first call, after
//     QueueResync or Refresh, after any failure, and when the last read is
//     older than RefreshInterval (default 90 s). NewRunner returns a
//     syncrunner.Runner whose MaxInterval is RefreshInterval, so a node
//     agent repairs drift on that interval and on demand (Trigger/Refresh).
//     Read does that read ahead of Apply, so a caller can overlap it with
//     rendering (dataplane/policy reads while its chains render).
//  7. Failure. Each table section of a restore commits atomically (both
//     backends): when a line is rejected, the table holding it and every
//     later table keep their previous rules; tables committed earlier in
//     the same input keep the new ones (a multi-table write is not atomic
//     across tables). Apply returns a *RestoreError (errors.Is ErrRestore)
//     with the input line the tool named (for the nft backend, which
//     reports missing jump targets at COMMIT, the rule jumping to the
//     missing chain), and re-reads the kernel on the next Apply, so the
//     desired state converges once it is valid. Lock contention (exit
//     status 4, "xtables lock") is retried with backoff from 100 ms
//     doubling, up to LockRetries times, on top of `-w LockWait`; a
//     cancelled context ends the wait at once (a *RestoreError wrapping
//     the context's error and the lock's ExitError). Only the
//     legacy backend takes the xtables lock (/run/xtables.lock, or the
//     file named by XTABLES_LOCKFILE, which OSExecer.Env can set); nft
//     commits are atomic in the kernel and never wait for it.
//  8. Backends. Config.Backend forces legacy or nft; BackendAuto runs
//     DetectBackend on the first Apply, as kube-proxy's iptables-wrapper
//     and Felix do: kubelet's KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY
//     chain decides, else the backend holding more rules, nft on a tie.
//  9. Injected OS. Every command goes through an Execer: OSExecer runs it
//     with os/exec, inside a named netns (`ip netns exec NAME`) when set
//     (WithNetns); Fake is a strict in-memory iptables with Dump for
//     golden tests, checked against both kernel backends by
//     TestFakeMatchesKernel. It keeps a reference count per chain (so
//     `-X` of a referenced chain is refused in O(1)) and applies a table
//     section in place, undoing it if a line fails, so a restore costs
//     O(its lines), not O(table). The clock (refresh age, lock backoff) is
//     injected with WithClock.
//
// Set matches name ipsets that must exist when the rule is applied: apply
// ipsets (dataplane/ipsets ApplyUpdates) before the rules that use them
// and delete sets (ApplyDeletions) after.
//
// Thread safety: all IPTables methods are safe for concurrent use; Apply
// calls are serialised by an internal mutex, so at most one restore per
// IPTables runs at a time. Fake is safe for concurrent use.
package iptables
