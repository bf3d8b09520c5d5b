// Package policy is Calico's network policy model and the reference
// semantics for it: which flows the policy in a cluster allows, and why.
//
// It holds the resources of Calico's projectcalico.org/v3 API that decide
// flows (Tier, NetworkPolicy, GlobalNetworkPolicy, NetworkSet,
// GlobalNetworkSet) with the same JSON/YAML field names, converts Kubernetes
// networking/v1 NetworkPolicy the way Calico does (FromK8s), validates
// everything with errors that name the field (spec.ingress[2].source.selector:
// unexpected "&" at column 14, expected "&&"), and evaluates flows between
// endpoints (Endpoint, Namespace, ServiceEndpoints) into a Verdict with a
// trace. Every object a PolicySet is built from is a Resource (a closed
// interface: ResourceKind, GetNamespace, GetName, Validate); Decode returns
// them and Resources.Add files them:
//
//	ps, err := policy.NewPolicySet(policy.Resources{NetworkPolicies: ..., Endpoints: ...})
//	v, err := ps.Evaluate(policy.Flow{Src: policy.EndpointPeer("shop/frontend"),
//	        Dst: policy.EndpointPeer("shop/backend"), Protocol: policy.ProtoTCP, DstPort: 8080})
//	fmt.Println(v)
//	// Allow TCP shop/frontend (10.0.0.1) → shop/backend (10.0.0.2):8080
//	//   egress of shop/frontend (10.0.0.1): no policy applies → profile kns.shop (Allow)
//	//   ingress of shop/backend (10.0.0.2): tier default → policy shop/knp.default.allow-web rule 0 (Allow)
//
// Beyond the verdict, PoliciesFor (which policies select an endpoint),
// EndpointsFor (which endpoints a policy selects), Matrix (the allow matrix
// between endpoints for one port) and TiersFor (the tiers and policies that
// apply to an endpoint per direction, in order) answer the questions users
// ask of Calico's and Kubernetes' trackers. ResolvedPolicy, ResolvedRule and
// EntityMatch expose every rule with its selectors parsed and combined with
// its namespace scope, and SelectorMembers/NamedPortMembers compute what an
// IP set for a rule holds: that is what the dataplane compiler renders, and
// the compiler is tested against Evaluate.
//
// Underneath sits one incremental selection model (Model): each policy's
// endpoint selection (ResolvedPolicy.EndpointSelector) and each rule side's
// selection (EntityMatch.MatchSelector, NotMatchSelector) is one canonical
// selector.Selector over a documented label schema, and a Model keeps, as
// endpoints, network sets, namespaces, service accounts and policies change
// one at a time, which items each selector matches and which endpoints each
// policy applies to, reporting every match as it starts and stops:
//
//	var m *policy.Model // the callbacks below read it
//	m = policy.NewModel(
//		policy.OnSelectorAdded(func(id policy.SelectorID, s selector.Selector) { ipsets.Create(s.UniqueID()) }),
//		policy.OnMatchStarted(func(id policy.SelectorID, it policy.ItemID) { ipsets.Add(id, m.ItemNets(it)) }),
//		policy.OnMatchStopped(func(id policy.SelectorID, it policy.ItemID) { ipsets.Remove(id, m.ItemNets(it)) }),
//		policy.OnItemNetsChanged(func(it policy.ItemID, old, cur []netip.Prefix) { ipsets.Move(m.SelectorsMatching(it), old, cur) }),
//		policy.OnPolicyMatch(func(p string, ep policy.ItemID) { chains.Attach(p, ep) }),
//	)
//	err := m.UpdateNamespace(ns) // from the namespace informer, one event at a time
//	err = m.UpdateEndpoint(ep)   // from the pod informer (and DeleteEndpoint)
//	err = m.UpdatePolicy(rp)     // rp from NetworkPolicy.Resolve (and DeletePolicy)
//
// To resolve many policies at once (a full sync), use one Resolver for the
// batch: var r policy.Resolver; rp, err := r.ResolveNetworkPolicy(np). It
// gives what Resolve gives, parsing each distinct selector only once.
//
// # Semantics
//
// Evaluation follows Calico (felix's rule rendering and libcalico-go's
// conversions). The parts that are easy to get wrong:
//
//	what                           | semantics
//	-------------------------------+------------------------------------------------------------
//	direction                      | a flow is allowed when the source endpoint's egress AND the
//	                               | destination endpoint's ingress allow it; an end that is not
//	                               | an endpoint (an external IP) has no policy of its own
//	tiers                          | by order (nil last, ties by name); built-in kube-admin 1,000
//	                               | (default action Pass), default 1,000,000 (Deny),
//	                               | kube-baseline 10,000,000 (Pass); a tier is visited only when
//	                               | one of its policies applies to the endpoint in the direction
//	policies in a tier             | by order (nil last), ties by key ("ns/name" or global name)
//	rules                          | in order; the first matching Allow or Deny decides; Log
//	                               | records and continues; Pass leaves the tier for the next
//	                               | tier that applies; after the last tier: the profiles
//	end of a tier                  | the tier's defaultAction: Deny (default) or Pass
//	profiles                       | a workload's namespace profile kns.<ns> allows; a host
//	                               | endpoint allows only with projectcalico-default-allow
//	no policy at all               | profiles decide, so workloads are allowed
//	types (when not given)         | Ingress if there are no egress rules (even with no ingress
//	                               | rules); Egress if only egress rules; both if both
//	policy selection               | NetworkPolicy: endpoints in its namespace matching selector;
//	                               | GlobalNetworkPolicy: namespaceSelector (all() = any
//	                               | namespaced endpoint) and selector; serviceAccountSelector on
//	                               | the endpoint's service-account labels
//	rule selector scope            | in a NetworkPolicy, selector/notSelector/serviceAccounts
//	                               | without namespaceSelector stay in the policy's namespace; in
//	                               | a global one they range over everything; namespaceSelector
//	                               | all() = any namespaced item, global() = only non-namespaced
//	                               | items (GlobalNetworkSets, host endpoints), other selectors
//	                               | match the namespace's labels (plus projectcalico.org/name)
//	selector vs address            | an address matches a selector when any endpoint with that
//	                               | address or any network set containing it matches, as the
//	                               | IP set of the selector's members would
//	notSelector: X                 | the address belongs to nothing matching X, so external
//	                               | addresses match; selector: !X needs a known item
//	named ports                    | resolved per endpoint (name, protocol, number) on either
//	                               | side: in destination.ports they match the destination
//	                               | address and port, in source.ports the source address and
//	                               | port (Felix's DstNamedPortIpSetIds / SrcNamedPortIpSetIds);
//	                               | only on endpoints that side's positive selection selects
//	                               | (all endpoints without one; a notSelector does not narrow
//	                               | it, it applies on its own), also for notPorts; the protocol
//	                               | is the rule's; never on network sets or external addresses
//	implicit labels                | workloads carry projectcalico.org/namespace,
//	                               | projectcalico.org/orchestrator=k8s and
//	                               | projectcalico.org/serviceaccount; namespaced network sets
//	                               | carry projectcalico.org/namespace; namespaces carry
//	                               | projectcalico.org/name and, as the API server sets it,
//	                               | kubernetes.io/metadata.name (both = the name, replacing
//	                               | a given value)
//	flows                          | Evaluate refuses an invalid Flow (Flow.Validate): no
//	                               | protocol (ErrNoProtocol), ports on a protocol other than
//	                               | TCP/UDP/SCTP or no dstPort on those, ICMP type/code on
//	                               | a non-ICMP flow or type 255, HTTP on a non-TCP flow,
//	                               | ICMP over IPv6 or ICMPv6 over IPv4, an endpoint peer with
//	                               | an address that is not its own
//	protocols                      | one type, Protocol: Calico's name-or-number protocol
//	                               | (TCP = 6); rules match ports only on TCP, UDP and SCTP
//	service-account labels         | only with a service account name; an endpoint's
//	                               | ServiceAccountLabels, when set, stand for its account's
//	HTTP match                     | only flows that carry an HTTPRequest can match
//	doNotTrack / preDNAT           | kept in the model and in PoliciesFor, not part of Evaluate
//	                               | (they act before the filter-table evaluation modelled here)
//	GlobalNetworkPolicy all()      | as Calico's conversion rewrites the combined selector: with
//	                               | a namespaceSelector, all() in the policy's selector means
//	                               | "namespaced"; serviceAccountSelector: all() means "has a
//	                               | service account" (NetworkPolicy: no rewriting)
//
// Not modelled: forwarded traffic through host endpoints (applyOnForward),
// the raw and mangle stages (doNotTrack, preDNAT), staged policies, and
// all() inside a larger namespaceSelector expression (Calico rewrites it
// textually; here it is plain all()).
//
// Pods and namespaces from the Kubernetes API (an informer's objects) become
// endpoints and namespaces with EndpointFromPod and NamespaceFromK8s, as
// Calico converts pods: addresses from status.podIPs, or from the CNI
// plugin's annotations (cni.projectcalico.org/podIPs) before the kubelet
// reports them, none once the pod has finished or its CNI plugin has released
// them during deletion; named ports from the containers; host-network pods
// refused (ErrNotWorkload).
//
// Kubernetes NetworkPolicy conversion (FromK8s) gives knp.default.<name> in
// the default tier at order 1000; pod selectors gain
// projectcalico.org/orchestrator == "k8s"; an empty namespaceSelector is
// all(); ipBlock.except becomes notNets of the same rule; one rule per
// protocol × peer with ports merged into ranges (endPort as "port:endPort",
// no protocol = TCP); no policyTypes means Ingress, plus Egress when egress
// rules exist. A policy that selects a pod isolates it in its directions:
// default deny.
//
// # Validation and errors
//
// Validate on every Resource (and Resolve, FromK8s, Decode and
// NewPolicySet) report every problem at once as one *ValidationError
// wrapping ErrInvalid. It holds a list of *FieldError, each with the
// Document (Decode's document position, from 1), the resource's Kind and
// Name, the Field path (spec.ingress[2].source.selector) and the Detail;
// Error prints one per line. Each FieldError also wraps its cause, so a bad
// selector is still a *selector.ParseError (errors.As) and
// selector.ErrInvalid (errors.Is) through any of these calls, and
// NewPolicySet's duplicates and unknown tiers are ErrDuplicate and
// ErrUnknownTier.
//
// Rejected, as Calico rejects them: unparseable selectors, global() outside
// a rule's namespaceSelector or combined with anything, bad CIDRs and CIDRs
// mixing IPv4 and IPv6 in a rule or not matching ipVersion, ports without
// TCP/UDP/SCTP, icmp or notICMP without protocol ICMP or ICMPv6 (Calico's
// API checks icmp only; a notICMP without the protocol cannot be programmed
// in iptables, whose icmp match needs -p icmp), ICMP code without type, type 255,
// ICMP with the wrong ipVersion, unknown actions and protocols, HTTP matches
// outside Allow ingress rules or on non-TCP rules, services combined with
// selectors/nets/service accounts (or with destination ports), services in
// the wrong direction or without a namespace in a global policy, negative or
// non-finite orders, repeated types, preDNAT/doNotTrack without
// applyOnForward, built-in tiers with another order. Tabby also rejects
// endpoint and service ports without a port number, and two
// ServiceEndpoints of one name. Named ports are accepted in a rule's source
// as in its destination, as Calico accepts them; Felix matches them against
// the packet's source address and port.
//
// Decode is strict and single-pass: unknown fields, values of the wrong type
// and invalid values of every document are reported together (the form
// problems also wrap ErrDecode; a value of the wrong type is left out before
// validation so it is reported once), and one bad document fails the whole
// input.
//
// # Label schema
//
// Every selection is one selector evaluated against an item's (endpoint's
// or network set's) effective labels, as Calico's rule conversion
// (libcalico-go updateprocessors, GetEntityRuleSelector) and felix's label
// inheritance from the kns.<ns> and ksa.<ns>.<sa> profiles make them:
//
//	labels                              | on
//	------------------------------------+------------------------------------------
//	the item's own labels               | every item, minus the reserved ones below
//	projectcalico.org/namespace         | workload endpoints, namespaced network sets
//	projectcalico.org/orchestrator=k8s  | workload endpoints
//	projectcalico.org/serviceaccount    | workload endpoints with a service account
//	pcns.<key>, pcns.projectcalico.org/ | items in a namespace: the namespace's labels
//	  name=<namespace>                  | (UpdateNamespace; Namespace in Resources)
//	pcsa.<key>, pcsa.projectcalico.org/ | workload endpoints with a service account:
//	  name=<account>                    | its labels (UpdateServiceAccount), or the
//	                                    | endpoint's own ServiceAccountLabels when set
//
// Own labels named projectcalico.org/namespace or
// projectcalico.org/serviceaccount (on items that do not get them
// implicitly) and own labels starting pcns. or pcsa. are dropped, so no
// host endpoint or pod can pose as being in another namespace. The
// selections, in canonical form:
//
//	selection                  | selector
//	---------------------------+-------------------------------------------------------
//	NetworkPolicy in ns        | projectcalico.org/namespace == "ns" && pcsa.<SA sel> && selector
//	GlobalNetworkPolicy        | pcns.<namespaceSelector> && pcsa.<SA sel> && selector
//	                           | (namespaceSelector all(): has(projectcalico.org/namespace))
//	rule side (positive)       | scope && projectcalico.org/serviceaccount in {names} &&
//	                           | pcsa.<serviceAccounts.selector> && selector, where scope is
//	                           | projectcalico.org/namespace == "ns" (namespaced policy, no
//	                           | namespaceSelector), pcns.<namespaceSelector>,
//	                           | has(projectcalico.org/namespace) for all() or
//	                           | !has(projectcalico.org/namespace) for global()
//	rule side (notSelector)    | notSelector as written (not scoped, as in Calico)
//
// The canonical form is the selector's String (and UniqueID its hash):
// equal selections are one SelectorID however many rules use them, and a
// dataplane keeps one IP set per SelectorID, named after the UniqueID.
//
// # Design
//
//  1. The model is plain data in Calico's v3 shape: selectors are strings,
//     ports are number-or-string, so any document round-trips and errors
//     can point into it. Protocols are one small value type, Protocol (the
//     IP protocol number, read and written as Calico's name-or-number), so
//     the same constant (ProtoTCP) fits a Flow, a Rule and an EndpointPort. Resolve turns a policy into the
//     evaluation form once (selectors parsed, scopes decided, types
//     defaulted, the combined selectors built); the dataplane compiler
//     consumes that form. A Resolver does the same for a batch of policies
//     (NewPolicySet, a dataplane's full sync), parsing and combining each
//     distinct selector once.
//  2. One selection core. A Model keeps every selector in selector/index,
//     whose items are endpoints and network sets and whose parents are
//     namespaces and service accounts: a pod's label change re-evaluates only
//     the selectors its labels can satisfy, a namespace's label change only
//     the items in it, and nothing is rebuilt. A selector that requires one
//     namespace (projectcalico.org/namespace == "ns": every selection of a
//     NetworkPolicy without a namespaceSelector) is filed in that
//     namespace's own index, which holds only the namespace's items, so a
//     pod's change never tries the selectors of other namespaces' policies;
//     every other selector is in one global index holding every item.
//     Selectors, items and parents are numbered for the indexes, so their
//     maps hash integers.
//  3. Events for a dataplane. OnSelectorAdded/OnSelectorRemoved bracket the
//     life of a rule selector (an IP set), OnMatchStarted/OnMatchStopped
//     fill it (Model.ItemNets gives an item's addresses or nets),
//     OnItemNetsChanged moves a matched item's members when its addresses
//     change (before the match changes of the same update), and
//     OnPolicyMatch/OnPolicyMatchStopped (Calico's PolicyMatchListener) say
//     which policies apply to which endpoints. Each is called exactly once
//     per transition, synchronously, inside the update that caused it;
//     a selector's stops come before its removal and its starts after its
//     addition. A policy's rule selectors that survive its update are not
//     reported again; a changed endpoint selector stops the old matches
//     before starting the new ones. Callers feed Kubernetes informer events
//     one at a time (UpdateEndpoint, DeleteEndpoint, UpdateNamespace, ...),
//     in any order: an item may name a namespace or service account not yet
//     known.
//  4. A PolicySet is an immutable snapshot over that core: NewPolicySet
//     validates everything in one step (nothing partially applied), feeds a
//     fresh Model, and then only reads it. The policies that apply to an
//     endpoint are the model's matches, grouped by tier on the endpoint's
//     first flow and cached (sync.Once); a rule's selector matches an
//     address when the model's selector matches an item owning it (one map
//     lookup per owner), exactly as an IP set of the selector's members
//     does in the dataplane. So the evaluator and a compiler fed by a Model
//     cannot disagree on selection. TestModelMatchesSnapshot feeds random
//     changes to a Model and compares it after each with a fresh PolicySet
//     and with the reference's Calico-style combined selectors; the
//     property test checks the evaluator against an independent reference.
//  5. Traces are values (DirectionTrace, TierTrace, RuleRef) with String
//     methods, for tabbyctl policy explain and for test failure messages.
//
// Trade-offs: building a snapshot computes every match up front (the index
// is eager), so NewPolicySet costs more than a lazy evaluator would, in
// exchange for never rebuilding on change; a namespaced item's labels are
// held twice (global and namespace index). A Model keeps the numbers (and
// empty indexes) of namespaces and service accounts ever named, so a
// namespace deleted and re-created keeps its items' links.
//
// PolicySet, ResolvedPolicy and the model types are safe for concurrent
// reads; a PolicySet is safe for concurrent use. A Model is not: its owner
// (the goroutine handling the informers) serialises updates and queries,
// and its callbacks may only call its Endpoint and ItemNets (and, from
// OnItemNetsChanged, SelectorsMatching). No package-level mutable state;
// nothing logs. Benchmarks and figures are in README.md.
package policy
