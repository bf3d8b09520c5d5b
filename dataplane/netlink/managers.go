package netlink

import (
	"context"
	"net/netip"
)

// WorkloadManager is what a CNI plugin and a node need of Workloads: set a
// pod's interface up, check it, tear it down, list what exists. *Workloads
// implements it on the kernel and *FakeWorkloads in memory, with the same
// errors for the same input, so code above it (the CNI plugin, the node
// wiring) is tested without root.
//
// The CNI verbs map onto it one to one:
//
//	ADD   SetupWorkload(spec)  → WorkloadResult (interfaces, IPs, routes for the CNI result)
//	      SetupWorkloadFunc(spec, addrs) → the same, the veth made while IPAM assigns
//	CHECK CheckWorkload(spec)  → ErrMismatch / ErrLinkNotFound when the kernel differs
//	DEL   DetachWorkload(id, netns) → off the network now, the pair freed with the netns
//	      TeardownWorkload(id) → the pair deleted (idempotent, no netns needed)
//	GC    ListWorkloads()      → IDs to compare with the runtime's live attachments
//	      RemoveDetached(match) → pairs of DELs whose netns the runtime kept
type WorkloadManager interface {
	// SetupWorkload creates or repairs the workload's veth pair, addresses,
	// routes and sysctls and returns once the pod is reachable. Errors:
	// ErrInvalidSpec / ErrInvalidName (bad spec: empty ID, bad MTU, bad
	// or duplicate addresses, bad interface name), ErrNetnsNotFound (no
	// such pod netns), ErrNameCollision (the pod already has IfName, the
	// workload already has another interface name in the same pod, or
	// the host name belongs to another owner), ErrNotReady (never ran).
	SetupWorkload(ctx context.Context, spec WorkloadSpec) (WorkloadResult, error)
	// SetupWorkloadFunc is SetupWorkload with the addresses not known yet:
	// the veth pair is made while addrs runs (on the calling goroutine),
	// then configured with the addresses it returns. spec.Addresses must
	// be empty. addrs is not called when spec is invalid or its netns
	// missing (ErrInvalidSpec, ErrNetnsNotFound); when addrs fails, the
	// error wraps addrs' and the pair this call made is removed.
	SetupWorkloadFunc(ctx context.Context, spec WorkloadSpec, addrs func(context.Context) ([]netip.Addr, error)) (WorkloadResult, error)
	// CheckWorkload verifies the workload against spec: ErrLinkNotFound when
	// either end is missing, ErrMismatch when something differs,
	// ErrNetnsNotFound when the pod netns is gone.
	CheckWorkload(ctx context.Context, spec WorkloadSpec) (WorkloadResult, error)
	// TeardownWorkload removes the workload's veth pair; nil when there is
	// none. ErrInvalidSpec for an empty ID, ErrNameCollision when the host
	// name belongs to a link tabby did not create for this ID.
	TeardownWorkload(ctx context.Context, id string) error
	// DetachWorkload takes the workload off the network without waiting
	// for the kernel to unregister its veth pair: both ends down, renamed
	// DetachedIfaceName(id), addresses and routes gone; the pair goes with
	// podNetns. It deletes the pair instead (as TeardownWorkload) when
	// podNetns is "" or gone or does not hold the pod end, or a step
	// fails. nil when there is no workload; errors as TeardownWorkload.
	DetachWorkload(ctx context.Context, id, podNetns string) error
	// RemoveDetached deletes the detached pairs whose workload ID match
	// accepts (nil: all).
	RemoveDetached(ctx context.Context, match func(id string) bool) error
	// ListWorkloads returns the IDs of existing workloads (not detached
	// ones), sorted.
	ListWorkloads(ctx context.Context) ([]string, error)
	// HostIfaceName returns the host-side interface name of a workload ID.
	HostIfaceName(id string) string
}

// VXLANManager is what a node needs of the VXLAN overlay: the set of remote
// nodes (peers) and a reconcile that makes the device, neighbour and FDB
// entries and on-link routes match it. *VXLAN implements it on the kernel
// and *FakeVXLAN in memory.
type VXLANManager interface {
	// Config returns the device configuration with defaults filled in.
	Config() VXLANConfig
	// SetPeers replaces the set of remote nodes; ErrInvalidSpec or
	// ErrInvalidPrefix for a bad or duplicate peer, and then nothing changes.
	SetPeers(peers []VXLANPeer) error
	// UpsertPeer adds or changes one remote node.
	UpsertPeer(p VXLANPeer) error
	// RemovePeer forgets a remote node; unknown names are ignored.
	RemovePeer(name string) error
	// Peers returns the desired peers sorted by name.
	Peers() []VXLANPeer
	// Reconcile creates or repairs the device and entries, then reconciles
	// the route owner. ErrLinkNotFound when the parent device is missing.
	Reconcile(ctx context.Context) error
	// Delete removes the device and forgets the peers and their routes.
	Delete(ctx context.Context) error
}

var (
	_ WorkloadManager = (*Workloads)(nil)
	_ WorkloadManager = (*FakeWorkloads)(nil)
	_ VXLANManager    = (*VXLAN)(nil)
	_ VXLANManager    = (*FakeVXLAN)(nil)
)
