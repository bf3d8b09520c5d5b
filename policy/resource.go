package policy

// Resource is one object a PolicySet is built from: *Tier, *NetworkPolicy,
// *GlobalNetworkPolicy, *NetworkSet, *GlobalNetworkSet (Calico's
// projectcalico.org/v3 kinds, what Decode returns), *Endpoint, *Namespace or
// *ServiceEndpoints. The set is closed: no other type implements it, so a
// switch over these types is complete. GetNamespace and GetName follow
// metav1.Object ("" namespace for a non-namespaced resource).
type Resource interface {
	// ResourceKind is Tier, NetworkPolicy, GlobalNetworkPolicy, NetworkSet,
	// GlobalNetworkSet, WorkloadEndpoint, HostEndpoint, Namespace or
	// ServiceEndpoints.
	ResourceKind() string
	GetNamespace() string
	GetName() string
	// Validate reports every problem with the resource as a
	// *ValidationError, or nil.
	Validate() error
	isResource()
}

// Kinds of the resources that are not Calico API kinds.
const (
	KindNamespace        = "Namespace"
	KindServiceEndpoints = "ServiceEndpoints"
	// KindKubernetesNetworkPolicy names a networking.k8s.io/v1 NetworkPolicy
	// in errors, as libcalico-go does.
	KindKubernetesNetworkPolicy = "KubernetesNetworkPolicy"
)

var (
	_ Resource = (*Tier)(nil)
	_ Resource = (*NetworkPolicy)(nil)
	_ Resource = (*GlobalNetworkPolicy)(nil)
	_ Resource = (*NetworkSet)(nil)
	_ Resource = (*GlobalNetworkSet)(nil)
	_ Resource = (*Endpoint)(nil)
	_ Resource = (*Namespace)(nil)
	_ Resource = (*ServiceEndpoints)(nil)
)

// ResourceKind returns KindTier.
func (*Tier) ResourceKind() string { return KindTier }

// ResourceKind returns KindNetworkPolicy.
func (*NetworkPolicy) ResourceKind() string { return KindNetworkPolicy }

// ResourceKind returns KindGlobalNetworkPolicy.
func (*GlobalNetworkPolicy) ResourceKind() string { return KindGlobalNetworkPolicy }

// ResourceKind returns KindNetworkSet.
func (*NetworkSet) ResourceKind() string { return KindNetworkSet }

// ResourceKind returns KindGlobalNetworkSet.
func (*GlobalNetworkSet) ResourceKind() string { return KindGlobalNetworkSet }

// ResourceKind returns WorkloadEndpoint or HostEndpoint (an empty Kind is
// a workload).
func (e *Endpoint) ResourceKind() string {
	if e.Kind == "" {
		return string(WorkloadEndpoint)
	}
	return string(e.Kind)
}

// GetNamespace returns the endpoint's namespace ("" for a host endpoint).
func (e *Endpoint) GetNamespace() string { return e.Namespace }

// GetName returns the endpoint's name.
func (e *Endpoint) GetName() string { return e.Name }

// ResourceKind returns KindNamespace.
func (*Namespace) ResourceKind() string { return KindNamespace }

// GetNamespace returns "": namespaces are not namespaced.
func (*Namespace) GetNamespace() string { return "" }

// GetName returns the namespace's name.
func (n *Namespace) GetName() string { return n.Name }

// ResourceKind returns KindServiceEndpoints.
func (*ServiceEndpoints) ResourceKind() string { return KindServiceEndpoints }

// GetNamespace returns the service's namespace.
func (s *ServiceEndpoints) GetNamespace() string { return s.Namespace }

// GetName returns the service's name.
func (s *ServiceEndpoints) GetName() string { return s.Name }

func (*Tier) isResource()                {}
func (*NetworkPolicy) isResource()       {}
func (*GlobalNetworkPolicy) isResource() {}
func (*NetworkSet) isResource()          {}
func (*GlobalNetworkSet) isResource()    {}
func (*Endpoint) isResource()            {}
func (*Namespace) isResource()           {}
func (*ServiceEndpoints) isResource()    {}
