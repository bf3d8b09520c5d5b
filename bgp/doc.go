// Package bgp is tabby's embedded BGP speaker: it advertises prefixes (pod
// blocks, service addresses) to peers and hands the routes it learns to a
// RouteProgrammer (dataplane/netlink.RouteOwner). It runs GoBGP v3's
// pkg/server inside the process — no daemon, no shelling out — behind
// tabby's own types; no GoBGP or protobuf type appears in the API. It knows
// prefixes and next hops, not pods.
//
// # Use
//
//	// owner: a netlink.RouteOwner for learned routes only (its own
//	// protocol, netlink.WithProtocol): a node's dataplane.Reconcile on a
//	// shared owner would delete them at start-up, before Synced.
//	s, err := bgp.New(bgp.Config{NodeName: "node-1", NodeIP: nodeIP},
//		bgp.WithLogger(log), bgp.WithRouteProgrammer(owner, "", apply)) // apply calls owner.Apply
//	s.SetTopology(ctx, bgp.Topology{Nodes: nodes, BGPPeers: peers}) // or SetPeers
//	var ads []bgp.Advertisement // e.g. the node's ipam.AffineBlocks
//	for _, b := range blocks {
//		ads = append(ads, bgp.Advertisement{Prefix: b})
//	}
//	s.SetAdvertisements(ctx, ads) // before or after Start
//	s.Start(ctx)
//	// Another controller in the process (a LoadBalancer IP allocator, or
//	// services.Announce's prefixes after each services sync):
//	s.Source("services").Set(ctx, []bgp.Advertisement{
//		{Prefix: lbIP, Kind: bgp.KindServiceLoadBalancerIP}})
//	s.Why(prefix); s.Peers(ctx) // status
//
// # Calico fields
//
// Config follows BGPConfiguration and Node.spec.bgp: ASNumber (asNumber,
// default 64512), RouterID (routerID, default the node's IPv4 address),
// NodeIP/NodeIPv6 (ipv4Address/ipv6Address), ListenAddresses (bindMode
// NodeIP), ListenPort (listenPort), NodeToNodeMeshEnabled, NodeMeshPassword,
// NodeMeshMaxRestartTime, ServiceClusterIPs, ServiceExternalIPs,
// ServiceLoadBalancerIPs, Communities and PrefixAdvertisements, LogLevel
// (logSeverityScreen), RouteReflectorClusterID. BGPPeer follows BGPPeer:
// node, nodeSelector, peerIP (ip[:port]), asNumber, peerSelector,
// password, keepOriginalNextHop, maxRestartTime, ttlSecurity, filters
// (names of Topology.BGPFilters), sourceAddress (UseNodeIP, the default:
// the session is bound to the node's address; None: the kernel picks) and
// numAllowedLocalASNumbers (the own AS tolerated that many times in a
// received AS path, GoBGP's allow-own-as, 0..255), plus an eBGP multihop
// TTL (kube-router, MetalLB). BGPFilter follows BGPFilter (exportV4/V6, importV4/V6 rules
// with action, cidr, matchOperator, prefixLength, source, interface, with
// Calico's semantics: first matching rule wins, default Accept, In/NotIn
// against cidr{max(len, min), min(32|128, max)}); Config.Export and
// Config.Import apply the same rules to every peer. Selectors are
// selector.Selector values.
//
// # Passwords, ttlSecurity and Go's Multipath TCP
//
// GoBGP listens through Go's default net.ListenConfig, which is Multipath TCP
// in a program whose main module says go 1.24 or later, and Linux refuses TCP
// MD5 keys (TCP_MD5SIG) and IP_TTL on an MPTCP listening socket. Then a peer
// with a password (BGPPeer.password, nodeMeshPassword) cannot connect to the
// node, nor a ttlSecurity peer get an answer it accepts: two tabby nodes
// with a mesh password never establish. Run such a program with
// GODEBUG=multipathtcp=0, put //go:debug multipathtcp=0 in its main
// package, or `godebug multipathtcp=0` in its main module's go.mod, as
// tabby's own go.mod does for examples/ and the tests (TestMeshPassword:
// two speakers with a mesh password establish). The speaker logs a Warn naming the peer when it adds one it
// cannot serve (sessions it opens itself are plain TCP and work). GoBGP's
// Warn "cannot set TTL (255) for TCPListener" (operation not supported) at
// every Start, and its "failed to set md5" (protocol not available), come
// from the same cause and go with the same fix.
//
// # Units
//
// Every duration is a time.Duration: RestartTime, NodeMeshMaxRestartTime
// and Peer.MaxRestartTime must be whole seconds up to 4095 s (the BGP
// graceful-restart capability carries 12 bits of seconds); StartupSyncTimeout
// has no granularity. Ports are TCP port numbers, TTLs hop counts.
//
// # Design
//
//  1. One owner of GoBGP's state. GoBGP serialises every API call through
//     its management loop; the Speaker adds one mutex for its own state and
//     never holds it inside a GoBGP callback (ListPath's callback runs on
//     that loop), so Advertise can never deadlock against route reading.
//  2. Desired state, diffed. Each advertisement source (DefaultSource for
//     Advertise/Withdraw/SetAdvertisements, any name through Source) is a
//     set; the union, with prefixAdvertisements communities, the service
//     CIDR rule and the export filter applied, is the desired RIB. A
//     dataplane/deltatracker holds it against what GoBGP has, so
//     SetAdvertisements of 10,000 prefixes where one changed sends one
//     UPDATE. Peers are diffed the same way: unchanged sessions stay up.
//  3. Learned routes are rendered, not streamed. GoBGP's best-path events
//     only trigger a dataplane/syncrunner (at most every 100 ms); the sync
//     reads the RIB, keeps for each prefix the best path and every path
//     tying with it on local preference, AS-path length, origin and MED
//     (BIRD's "merge paths"; one ECMP route), drops next hops that are the
//     node itself, prefixes the node advertises itself and what the import
//     filter rejects, and hands the difference to the RouteProgrammer as
//     Upsert/Remove of one route source, then calls its sync function
//     (at least once a minute even without changes). The programmer is
//     called outside the speaker's locks, one call at a time: a slow
//     kernel write delays the next sync (which then programs the newest
//     RIB state), never Synced, Why, Learned, Stop or GoBGP's events. With a RouteOwner,
//     sync with its Apply: it writes the delta without dumping the
//     kernel's table and reconciles fully only on its resync interval
//     or after a failed write.
//  4. No blackhole across restarts. Stop leaves learned routes in the
//     kernel. After Start, nothing is handed to the RouteProgrammer until
//     every peer has sent End-of-RIB or StartupSyncTimeout (default 30 s)
//     passed (Synced reports it); then the full learned set is upserted and
//     the programmer's reconcile removes only what is really gone. The
//     speaker advertises graceful restart (RestartTime, default 120 s) so
//     peers keep its routes while it is away, but never sets the
//     "restarting" flag, so its first UPDATEs are not deferred for the
//     restart timer (GoBGP's deferral, kube-router#1323, osrg/gobgp#2596);
//     advertisements given before Start are in GoBGP before the first peer
//     is added, so that first UPDATE is complete. Stop sends a Cease, so
//     peers without RFC 8538 support (BIRD 2.0.12) drop the node's routes
//     at once: call Stop to leave for good; for a restart (rolling update),
//     let the process exit without Stop, and peers keep forwarding to the
//     node until the new process's session comes up. Without the
//     "restarting" flag its OPEN does not set the forwarding-state bit
//     either, so a helper drops the stale routes as the session comes up
//     (RFC 4724 section 4.2; BIRD does) and learns them again from the
//     first UPDATE, which GoBGP sends right after: a gap of milliseconds.
//     Calico's BIRD runs with -R and sets both bits, so its peers keep the
//     routes until its End-of-RIB; the same in GoBGP holds routes back
//     from peers without graceful restart and for the deferral time
//     (the issues above), a risk of minutes against milliseconds.
//  5. Per-peer filters are GoBGP routing policy. GoBGP assigns import and
//     export policies per neighbor only to route-server clients, so the
//     speaker installs one global import and one global export policy
//     whose statements carry a neighbor-set condition (GoBGP matches it
//     against the sending peer on import, the receiving peer on export);
//     each BGPFilter rule becomes one statement (two for source
//     RemotePeers: internal and external routes), an interface rule the
//     exact list of the node's advertisements on a matching interface.
//     An import-rejected route never enters the RIB: it is neither
//     programmed nor passed on, as with Calico's BIRD. Filters change at
//     run time by a soft reset (no session drop) when nothing the node
//     sent is now rejected; GoBGP keeps no Adj-RIB-Out and cannot
//     withdraw on a soft reset, so a filter that newly rejects a route
//     the peer has resets that session instead.
//  6. Sessions follow the peer's family: IPv4 peers carry IPv4 unicast,
//     IPv6 peers IPv6 unicast, as Calico's BIRD configuration does. The
//     next hop is the session's local address (next hop self).
//  7. Network namespaces: GoBGP listens and dials from its own goroutines,
//     so sockets open in the namespace of whatever OS thread runs them.
//     Run the process that embeds the speaker inside the node's namespace
//     (`ip netns exec`, `nsenter`, or a child process per node in the lab).
//     Several speakers in one namespace work when each has its own NodeIP
//     and ListenAddresses. The tests re-run themselves in a private
//     namespace (unshare --net) for this reason.
//  8. GoBGP v3 writes route-selection options to package variables when a
//     server starts; a process with several speakers (tests) should start
//     them all before they peer. One speaker per process is the production
//     shape. GoBGP's Serve loop cannot be stopped either: a Speaker makes
//     one GoBGP server on its first Start and keeps it (one goroutine and
//     an empty RIB after Stop); Stop and Start stop and start BGP on it.
//
// # Fakes
//
// A Speaker that is never started is its own fake: configuration,
// advertisement sources, Advertised and Why behave as on a running
// speaker, and nothing is sent. Controllers that only advertise take an
// Advertiser (Speaker.Source). Learned routes go out through the
// RouteProgrammer seam, whose fake is any recorder (the tests check theirs
// against netlink.RouteOwner's method set).
//
// # Thread safety
//
// Every method of Speaker and Source is safe for concurrent use. Calls
// that change advertisements or peers return after GoBGP has them. Stop
// returns once the speaker is fully stopped, after the RouteProgrammer
// call in progress (if any) has returned; a second Stop or a Start during
// a Stop waits for it, so there is never more than one learned-route
// runner.
//
// # Errors
//
// Configuration errors wrap ErrInvalidConfig, ErrInvalidPeer,
// ErrDuplicatePeer, ErrInvalidPrefix, ErrInvalidCommunity or
// ErrInvalidFilter, name the offending object, and leave the speaker
// unchanged. Writes through a Source without a name or with the reserved
// name of the service CIDRs return ErrInvalidSource. Start twice returns
// ErrAlreadyStarted; Start after Stop starts again. A Start that waits for
// a Stop in progress returns its context's error if the context ends
// first.
//
// Every method that takes a context first checks it: with a context that
// is already done it returns the context's error (errors.Is
// context.Canceled or context.DeadlineExceeded), wrapped with the
// operation, and changes nothing. A zero-value Speaker has no
// configuration: its methods that return an error return one wrapping
// ErrInvalidConfig, the others return zero values (Stop does nothing);
// make speakers with New.
package bgp
