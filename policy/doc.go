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
//	named ports                    | resolved per destination endpoint (name, protocol, number),
//	                               | only on endpoints the rule's positive selection selects (all
//	                               | endpoints without one), also for notPorts; never on network
//	                               | sets or external addresses
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
// TCP/UDP/SCTP, ICMP fields without ICMP, ICMP code without type, type 255,
// ICMP with the wrong ipVersion, unknown actions and protocols, HTTP matches
// outside Allow ingress rules or on non-TCP rules, services combined with
// selectors/nets/service accounts (or with destination ports), services in
// the wrong direction or without a namespace in a global policy, negative or
// non-finite orders, repeated types, preDNAT/doNotTrack without
// applyOnForward, built-in tiers with another order. Tabby also rejects
// named ports in a rule's source (a named port names a port the destination
// listens on), endpoint and service ports without a port number, and two
// ServiceEndpoints of one name.
//
// Decode is strict and single-pass: unknown fields, values of the wrong type
// and invalid values of every document are reported together (the form
// problems also wrap ErrDecode; a value of the wrong type is left out before
// validation so it is reported once), and one bad document fails the whole
// input.
//
// # Design
//
//  1. The model is plain data in Calico's v3 shape: selectors are strings,
//     ports are number-or-string, so any document round-trips and errors
//     can point into it. Protocols are one small value type, Protocol (the
//     IP protocol number, read and written as Calico's name-or-number), so
//     the same constant (ProtoTCP) fits a Flow, a Rule and an EndpointPort. Resolve turns a policy into the
//     evaluation form once (selectors parsed, scopes decided, types
//     defaulted); the dataplane compiler consumes that form.
//  2. A PolicySet is an immutable snapshot: built and validated in one step
//     (nothing partially applied), then only read. Change means building a
//     new one (build times: README.md).
//  3. Evaluation never scans every policy. Policies are filed by namespace
//     and by one label value their selector requires (from the selector's
//     LabelRestrictions); the policies that apply to an endpoint are worked
//     out on its first flow and cached per endpoint (sync.Once). Rule
//     matching then costs one map lookup per flow end (the address's
//     owners) plus the selectors of the rules actually visited.
//  4. Selector semantics at the address level: a selector matches an
//     address through any item owning it, exactly as an IP set of the
//     selector's members does in the dataplane. The property test checks
//     the evaluator against an independent reference that combines
//     selectors the way Calico does (pcns./pcsa. prefixed labels and one
//     combined selector string per rule).
//  5. Traces are values (DirectionTrace, TierTrace, RuleRef) with String
//     methods, for tabbyctl policy explain and for test failure messages.
//
// PolicySet, ResolvedPolicy and the model types are safe for concurrent
// reads; a PolicySet is safe for concurrent use. No package-level mutable
// state; nothing logs.
//
// # Performance
//
// Evaluation time grows with the number of policies that apply to the two
// endpoints of a flow, not with the total; benchmark figures and the command
// that measures them are in the package's README.md.
package policy
