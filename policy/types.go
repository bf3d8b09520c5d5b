package policy

import (
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// APIVersion is the apiVersion of every Calico resource in this package.
const APIVersion = "projectcalico.org/v3"

// Resource kinds, as written in the kind field.
const (
	KindTier                = "Tier"
	KindNetworkPolicy       = "NetworkPolicy"
	KindGlobalNetworkPolicy = "GlobalNetworkPolicy"
	KindNetworkSet          = "NetworkSet"
	KindGlobalNetworkSet    = "GlobalNetworkSet"
)

// Built-in tiers and their fixed orders, as in Calico.
const (
	TierDefault      = "default"
	TierKubeAdmin    = "kube-admin"
	TierKubeBaseline = "kube-baseline"

	OrderKubeAdmin    = 1_000
	OrderDefault      = 1_000_000
	OrderKubeBaseline = 10_000_000
)

// Labels Calico adds to endpoints, network sets, namespaces and service
// accounts, and that selectors may therefore name.
const (
	LabelNamespace      = "projectcalico.org/namespace"
	LabelOrchestrator   = "projectcalico.org/orchestrator"
	LabelServiceAccount = "projectcalico.org/serviceaccount"
	LabelName           = "projectcalico.org/name"
	OrchestratorK8s     = "k8s"
)

// LabelMetadataName is the label the Kubernetes API server gives every
// namespace, with the namespace's name as its value. Namespaces carry it
// implicitly here too (a value given in Namespace.Labels is replaced), so a
// namespaceSelector such as kubernetes.io/metadata.name == "kube-system", or
// a Kubernetes NetworkPolicy's namespaceSelector matchLabels on it, selects
// the namespace by name.
const LabelMetadataName = "kubernetes.io/metadata.name"

// K8sPolicyPrefix is prepended to the name of a converted Kubernetes
// NetworkPolicy, and K8sPolicyOrder is its order.
const (
	K8sPolicyPrefix = "knp.default."
	K8sPolicyOrder  = 1000
)

// DefaultAllowProfile is the profile name that makes a host endpoint with no
// applicable policy allow traffic (as Calico's auto host endpoints do).
const DefaultAllowProfile = "projectcalico-default-allow"

// Action is what a rule (or a tier's end) does with a packet.
type Action string

// Rule actions. Calico's older spelling of Pass, "next-tier", is not
// accepted.
const (
	Allow Action = "Allow"
	Deny  Action = "Deny"
	Log   Action = "Log"
	Pass  Action = "Pass"
)

// PolicyType is a direction a policy applies to.
type PolicyType string

// Policy types.
const (
	PolicyTypeIngress PolicyType = "Ingress"
	PolicyTypeEgress  PolicyType = "Egress"
)

// Tier is a Calico Tier: an ordered group of policies with an action for
// packets no policy in it decides.
type Tier struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TierSpec `json:"spec,omitempty"`
}

// TierSpec is the body of a Tier.
type TierSpec struct {
	// Order: lower first; nil sorts after every ordered tier.
	Order *float64 `json:"order,omitempty"`
	// DefaultAction for a packet the tier's applicable policies do not
	// decide: Deny (the default) or Pass.
	DefaultAction *Action `json:"defaultAction,omitempty"`
}

// NetworkPolicy is a Calico namespaced NetworkPolicy.
type NetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NetworkPolicySpec `json:"spec,omitempty"`
}

// NetworkPolicySpec is the body of a NetworkPolicy.
type NetworkPolicySpec struct {
	Tier                   string       `json:"tier,omitempty"`
	Order                  *float64     `json:"order,omitempty"`
	Ingress                []Rule       `json:"ingress,omitempty"`
	Egress                 []Rule       `json:"egress,omitempty"`
	Selector               string       `json:"selector,omitempty"`
	Types                  []PolicyType `json:"types,omitempty"`
	ServiceAccountSelector string       `json:"serviceAccountSelector,omitempty"`
}

// GlobalNetworkPolicy is a Calico GlobalNetworkPolicy: not namespaced, it may
// select workload endpoints in any namespace and host endpoints.
type GlobalNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              GlobalNetworkPolicySpec `json:"spec,omitempty"`
}

// GlobalNetworkPolicySpec is the body of a GlobalNetworkPolicy.
type GlobalNetworkPolicySpec struct {
	Tier                   string       `json:"tier,omitempty"`
	Order                  *float64     `json:"order,omitempty"`
	Ingress                []Rule       `json:"ingress,omitempty"`
	Egress                 []Rule       `json:"egress,omitempty"`
	Selector               string       `json:"selector,omitempty"`
	Types                  []PolicyType `json:"types,omitempty"`
	DoNotTrack             bool         `json:"doNotTrack,omitempty"`
	PreDNAT                bool         `json:"preDNAT,omitempty"`
	ApplyOnForward         bool         `json:"applyOnForward,omitempty"`
	ServiceAccountSelector string       `json:"serviceAccountSelector,omitempty"`
	NamespaceSelector      string       `json:"namespaceSelector,omitempty"`
}

// Rule is one rule of a policy. All of its fields must match for the rule to
// apply its Action.
type Rule struct {
	Action      Action        `json:"action"`
	IPVersion   *int          `json:"ipVersion,omitempty"`
	Protocol    *Protocol     `json:"protocol,omitempty"`
	ICMP        *ICMPFields   `json:"icmp,omitempty"`
	NotProtocol *Protocol     `json:"notProtocol,omitempty"`
	NotICMP     *ICMPFields   `json:"notICMP,omitempty"`
	Source      EntityRule    `json:"source,omitzero"`
	Destination EntityRule    `json:"destination,omitzero"`
	HTTP        *HTTPMatch    `json:"http,omitempty"`
	Metadata    *RuleMetadata `json:"metadata,omitempty"`
}

// RuleMetadata carries annotations on a rule; it does not affect matching.
type RuleMetadata struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ICMPFields matches an ICMP type and, optionally, code.
type ICMPFields struct {
	Type *int `json:"type,omitempty"`
	Code *int `json:"code,omitempty"`
}

// HTTPMatch restricts an Allow rule to HTTP requests with one of the methods
// and one of the paths (an empty list matches any).
type HTTPMatch struct {
	Methods []string   `json:"methods,omitempty"`
	Paths   []HTTPPath `json:"paths,omitempty"`
}

// HTTPPath is one path match: exactly one of Exact and Prefix is set.
type HTTPPath struct {
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
}

// EntityRule matches one end (source or destination) of a flow.
type EntityRule struct {
	Nets              []string             `json:"nets,omitempty"`
	Selector          string               `json:"selector,omitempty"`
	NamespaceSelector string               `json:"namespaceSelector,omitempty"`
	Ports             []Port               `json:"ports,omitempty"`
	NotNets           []string             `json:"notNets,omitempty"`
	NotSelector       string               `json:"notSelector,omitempty"`
	NotPorts          []Port               `json:"notPorts,omitempty"`
	ServiceAccounts   *ServiceAccountMatch `json:"serviceAccounts,omitempty"`
	Services          *ServiceMatch        `json:"services,omitempty"`
}

// ServiceAccountMatch matches endpoints by service account: by name (any of
// Names) and by the service account's labels; both must hold when both are set.
type ServiceAccountMatch struct {
	Names    []string `json:"names,omitempty"`
	Selector string   `json:"selector,omitempty"`
}

// ServiceMatch matches the endpoints of a Kubernetes Service.
type ServiceMatch struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// NetworkSet is a namespaced, labelled list of CIDRs that rule selectors
// match like endpoints.
type NetworkSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NetworkSetSpec `json:"spec,omitempty"`
}

// NetworkSetSpec is the body of a NetworkSet or GlobalNetworkSet.
type NetworkSetSpec struct {
	Nets []string `json:"nets,omitempty"`
}

// GlobalNetworkSet is a non-namespaced NetworkSet; a rule's
// namespaceSelector: global() selects these (and host endpoints).
type GlobalNetworkSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NetworkSetSpec `json:"spec,omitempty"`
}

// EndpointKind says whether an endpoint is a pod or a host interface.
type EndpointKind string

// Endpoint kinds.
const (
	WorkloadEndpoint EndpointKind = "WorkloadEndpoint"
	HostEndpoint     EndpointKind = "HostEndpoint"
)

// Endpoint is what policy applies to: a workload (pod) in a namespace, or a
// host endpoint (no namespace). It is tabby's flattened view of Calico's
// WorkloadEndpoint/HostEndpoint, holding what policy needs.
type Endpoint struct {
	Kind      EndpointKind      `json:"kind,omitempty"` // empty means WorkloadEndpoint
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// ServiceAccount and its labels (workloads only).
	ServiceAccount       string            `json:"serviceAccount,omitempty"`
	ServiceAccountLabels map[string]string `json:"serviceAccountLabels,omitempty"`
	Addresses            []netip.Addr      `json:"addresses,omitempty"`
	Ports                []EndpointPort    `json:"ports,omitempty"`
	// Profiles of a host endpoint; DefaultAllowProfile makes traffic that no
	// policy decides allowed. Workloads always have their namespace's
	// profile, which allows.
	Profiles []string `json:"profiles,omitempty"`
}

// EndpointPort is a port an endpoint listens on: a named container port of
// an Endpoint (Name required), or one port of a ServiceEndpoints (Name
// optional), as in discovery/v1 EndpointPort. Protocol is TCP, UDP or SCTP;
// Port is 1-65535.
type EndpointPort struct {
	Name     string   `json:"name,omitempty"`
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port"`
}

// Namespace is a Kubernetes namespace as policy sees it: a name and labels.
type Namespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// ServiceEndpoints is a Kubernetes Service as a rule's services match sees
// it: the addresses and ports of the Service's endpoints (what its
// EndpointSlices list), not its cluster IP. A rule's destination services
// match holds for these addresses and, when Ports is not empty, only these
// (protocol, port) pairs; a source services match holds for the addresses.
type ServiceEndpoints struct {
	Name      string         `json:"name"`
	Namespace string         `json:"namespace"`
	Addresses []netip.Addr   `json:"addresses,omitempty"`
	Ports     []EndpointPort `json:"ports,omitempty"`
}

// Key returns "namespace/name", or "name" for a host endpoint.
func (e *Endpoint) Key() string {
	if e.Namespace == "" {
		return e.Name
	}
	return e.Namespace + "/" + e.Name
}

// IsHost reports whether the endpoint is a host endpoint.
func (e *Endpoint) IsHost() bool { return e.Kind == HostEndpoint }
