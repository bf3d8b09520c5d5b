// Package services is the model of Kubernetes Services as kube-proxy
// implements them, built from core/v1 Service and discovery/v1
// EndpointSlice objects, plus the set of service addresses a node
// announces over BGP (Announce), and kube-proxy's health checks
// (HealthServer: the healthCheckNodePort of every externalTrafficPolicy
// Local LoadBalancer, and the node-wide /healthz). Backends that turn the model into NAT
// rules live in subpackages: services/nftables (sigs.k8s.io/knftables,
// kube-proxy's nftables mode) and services/iptables (dataplane/iptables,
// kube-proxy's iptables mode).
//
//	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, log)
//	// informer handlers:
//	tr.OnServiceUpdate(svc); tr.OnEndpointSliceUpdate(slice); runner.Trigger()
//	// the backend's sync, driven by a dataplane/syncrunner.Runner:
//	changed := tr.Changes() // map[ServicePortName]*Resolved, nil = gone
//
// # Semantics (kube-proxy's)
//
//   - Proxied: ClusterIP, NodePort and LoadBalancer Services with an
//     allocated clusterIP. Headless (clusterIP None), ExternalName and
//     unallocated Services give no ports, nor do Services labelled
//     service.kubernetes.io/service-proxy-name (LabelServiceProxyName:
//     another proxy serves them; kube-proxy does not watch them).
//   - One ServicePort per spec.ports entry, keyed by namespace, name,
//     port name and protocol (TCP, UDP, SCTP; empty means TCP). Its
//     endpoints are those of every EndpointSlice labelled
//     kubernetes.io/service-name with a port of the same name and
//     protocol; that port's number is the target (the EndpointSlice
//     controller has already resolved named target ports per pod).
//     Endpoints of a family none of the Service's clusterIPs has (an
//     IPv6 slice of a single-stack IPv4 Service) are left out, as
//     kube-proxy's per-family proxiers never see them.
//   - Endpoint conditions: unset ready / serving count as true (serving
//     defers to ready), unset terminating as false. Categorize keeps the
//     ready endpoints and, only when there is none, the serving
//     terminating ones; separately for the Cluster set and the node-Local
//     set. Topology-aware routing narrows the ready endpoints of the
//     Cluster set, per family: to those hinted for this node when every
//     ready endpoint has hints.forNodes and one names the node
//     (trafficDistribution PreferSameNode), else to those hinted for the
//     node's zone (TrackerConfig.Zone) when every one has
//     hints.forZones and one names the zone (the topology-mode
//     annotation, trafficDistribution PreferSameZone/PreferClose).
//     Otherwise (hints partial, none naming the node or zone, or no
//     Zone configured) every ready endpoint is used, and when some ready
//     endpoint of the family has hints the Tracker logs why at Info
//     ("ignoring topology hints" with service, family, reason, node and
//     zone; kube-proxy's reasons, which it logs at V(2) each time it
//     categorizes the endpoints): once per service port and family each
//     time the reason changes, not at every sync, and "topology hints
//     no longer ignored" once when it goes away.
//     Like kube-proxy, the Service's trafficDistribution itself is not
//     read: the EndpointSlice controller turns it into hints.
//     Internal traffic uses Local when internalTrafficPolicy is
//     Local, external traffic (node ports, external and load-balancer
//     IPs) uses Local when externalTrafficPolicy is Local.
//   - sessionAffinity ClientIP: AffinityTimeout is timeoutSeconds
//     (1..86400, default 10800 s).
//   - loadBalancerSourceRanges (LoadBalancer type): a new connection to
//     a load-balancer IP (status.loadBalancer.ingress[].ip; not the
//     cluster IP, node ports or external IPs) from a source outside
//     every range of the backend's family is dropped; pods and the
//     node are filtered too. A family with no range is not filtered
//     (kube-proxy's per-family proxiers). A range holding the node's
//     address also admits the load-balancer IPs as sources
//     (ServicePort.FirewallSources, kube-proxy's allowFromNode).
//
// # Bad input
//
// A Service with an unparsable address or loadBalancerSourceRanges
// entry (after trimming whitespace; IPv4 with leading zeros, IPv4-mapped
// IPv6 and zoned prefixes count as unparsable; kube-proxy skips just
// that entry, which can only widen access), a port out of range, an
// unknown protocol, a port name, port and protocol, or nodePort and
// protocol listed twice (the API server refuses all three) or a node
// port outside the range is skipped as a whole, with a Warn log line
// whose err wraps ErrInvalidService; its previous rules are removed and
// it claims no destination (below). An EndpointSlice endpoint with a bad
// address is skipped with a log line (ErrInvalidEndpointSlice); the
// slice's other endpoints are used. Nothing an object does can affect
// the ports of other Services, except by owning a shared destination.
//
// # Shared destinations
//
// A destination (address, protocol, port; a node port: protocol and
// port on every node address) is programmed for one service port only,
// as a backend's dispatch map has one entry per destination. The
// Kubernetes API lets Services share externalIPs and load-balancer IPs,
// and an externalIP may equal another Service's cluster IP; kube-proxy
// has no rule for it (the rule that matches first wins, per
// kubernetes/kubernetes#69599). The Tracker picks the owner of each
// destination among the valid Services' ports asking for it: a cluster
// IP first, then a load-balancer IP, then an external IP (so a
// Service's externalIPs, which anyone who may create a Service can set,
// never take another Service's cluster or load-balancer IP:
// CVE-2020-8554), then the oldest creationTimestamp, then
// namespace/name and port name. A port that loses a cluster,
// load-balancer or external IP is handed out without that address
// (ErrDestinationClash in a Warn log line naming both service ports);
// the rest of the Service is kept. A port that loses its last cluster
// IP of a family is not rendered in that family by the backends. A
// Service that loses a node port is skipped as a whole (ErrNodePortClash
// in its Warn log line). A port asking for one destination twice (an
// externalIP equal to its own cluster IP, an address listed twice) is
// handed it once, as the first kind in that order. When the owner goes or
// changes, the others asking for the destination are re-resolved on
// the next Changes and the next in line gets it.
//
// # Design
//
//  1. The Tracker holds the latest object of every Service and the
//     parsed endpoints of every slice, plus the set of Services touched
//     since the last Changes. Changes re-resolves only those, so a sync
//     costs O(changed Services), not O(all) (kube-proxy's change
//     trackers). Bursts of events between syncs coalesce.
//  2. Resolved values are immutable once returned; backends keep them.
//     Changes hands each change out once, so one Tracker feeds exactly
//     one Proxier: a dual-stack node, with one Proxier per family, gives
//     each its own Tracker and feeds both the same events.
//  3. HealthServer is fed what a backend applied (its WithHealthServer
//     option calls Update and Updated after each successful sync) and
//     the tracker's events (TrackerConfig.OnChange = QueuedUpdate), so
//     health answers follow the rules in the kernel, not the API.
//     Listeners are one per health-check port, opened and closed as
//     Services come and go; one that fails to bind is logged and
//     retried by Run without touching the others.
//  4. Announce is a pure function of the resolved state and the BGP
//     configuration, so a node agent can call it after every sync:
//     Announce(tracker.All(), cfg), where All is the state the last
//     Changes handed out (what the backend applied).
//
// Thread safety: Tracker and HealthServer methods are safe for
// concurrent use; Announce and ServicePorts are pure.
package services
