package netlink

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// FakeWorkloads is an in-memory WorkloadManager that answers like
// Workloads on the kernel: the same validation, ErrNetnsNotFound for a pod
// netns it was not told about (AddNetns), ErrNameCollision for an
// interface name the pod already has or a host name held by a link tabby
// did not create (AddForeignHostLink), pairs an interrupted setup left
// without the host end's alias (AddInterruptedPair), EEXIST-free repeated setups, rebuilds
// when the spec changed (MTU, addresses, the pod end's MAC), idempotent teardown, and a host route per pod
// address that a later workload with the same address takes over (the
// kernel's `ip route replace`). Deleting a pod netns (DeleteNetns) removes
// the veth pair with it, as the kernel does. TestFakeWorkloadsMatchKernel
// runs the same calls on both.
//
// Not modelled: sysctls, link state changes made behind its back (except
// DeleteNetns), and kernels that refuse IPv6 in the pod. Safe for
// concurrent use.
type FakeWorkloads struct {
	mu     sync.Mutex
	prefix string
	netns  map[string]map[string]bool // pod netns path → its interface names
	host   map[string]*fakeVeth       // host interface name → link
	routes map[netip.Addr]string      // host route: pod address → host interface
	next   int                        // next ifindex
}

// fakeVeth is a host link: a workload's veth (spec set) or a foreign link.
type fakeVeth struct {
	index, podIndex int
	spec            WorkloadSpec // with defaults; zero ID for a foreign link
	// down: made by SetupWorkloadFunc, addresses not added yet.
	down bool
	// detached by DetachWorkload: both ends named DetachedIfaceName(ID)
	// (spec.IfName is the pod end's name), no addresses, no routes.
	detached bool
	// unclaimed: a pair a setup killed before the host end's alias left
	// (AddInterruptedPair): down, no alias, no addresses, no routes.
	unclaimed bool
}

// NewFakeWorkloads returns an empty fake host namespace. It takes the
// options NewWorkloads takes and fails, as it does, with ErrInvalidOption
// for a bad value.
func NewFakeWorkloads(opts ...WorkloadsOption) (*FakeWorkloads, error) {
	o, err := workloadsOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("fake workloads: %w", err)
	}
	return &FakeWorkloads{prefix: o.hostPrefix, netns: map[string]map[string]bool{},
		host: map[string]*fakeVeth{}, routes: map[netip.Addr]string{}, next: 2}, nil
}

// AddNetns registers a pod namespace holding only lo (`ip netns add`).
// Adding an existing path changes nothing.
func (f *FakeWorkloads) AddNetns(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.netns[path] == nil {
		f.netns[path] = map[string]bool{"lo": true}
	}
}

// DeleteNetns removes a pod namespace (`ip netns del` with no process left
// in it): the veth pairs with an end inside go, and their host routes.
func (f *FakeWorkloads) DeleteNetns(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.netns, path)
	for name, l := range f.host {
		if l.spec.ID != "" && l.spec.Netns == path {
			f.removeLocked(name)
		}
	}
}

// AddForeignHostLink adds a host link tabby did not create (no alias), for
// example one that happens to carry a derived name.
func (f *FakeWorkloads) AddForeignHostLink(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.host[name] = &fakeVeth{index: f.next}
	f.next++
}

// AddInterruptedPair adds the veth pair a SetupWorkload of spec leaves
// when its process is killed after making the pair and before setting
// the host end's alias (`ip link add HostIfaceName(ID) address
// ee:ee:ee:ee:ee:ee type veth peer name IfName netns Netns`): both ends
// down, no addresses, no routes, not listed by ListWorkloads. As on the
// kernel, SetupWorkload of the ID in that netns rebuilds it,
// TeardownWorkload and DetachWorkload remove it, and CheckWorkload and
// SetupWorkload in another netns answer ErrNameCollision. Errors: spec's
// validation errors, ErrNetnsNotFound, and unix.EEXIST when the host name
// or the pod's interface name is taken.
func (f *FakeWorkloads) AddInterruptedPair(spec WorkloadSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	spec, pod, err := f.openLocked(spec)
	if err != nil {
		return err
	}
	name := f.HostIfaceName(spec.ID)
	if f.host[name] != nil || pod[spec.IfName] {
		return fmt.Errorf("workload %s: create veth %s: %w", spec.ID, name, unix.EEXIST)
	}
	spec.Addresses = nil
	f.host[name] = &fakeVeth{index: f.next, podIndex: f.next + 1, spec: spec, down: true, unclaimed: true}
	f.next += 2
	pod[spec.IfName] = true
	return nil
}

// HostIfaceName implements WorkloadManager.
func (f *FakeWorkloads) HostIfaceName(id string) string { return HostIfaceName(f.prefix, id) }

// HostRoutes returns the host routes to pod addresses as "ADDR dev NAME",
// sorted (`ip route show proto 117`).
func (f *FakeWorkloads) HostRoutes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for a, dev := range f.routes {
		out = append(out, netip.PrefixFrom(a, a.BitLen()).String()+" dev "+dev)
	}
	slices.Sort(out)
	return out
}

// PodLinks returns the interface names in a pod namespace, sorted; nil
// when the namespace does not exist.
func (f *FakeWorkloads) PodLinks(path string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.netns[path] == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(f.netns[path]))
}

// openLocked validates spec and finds its pod namespace, like openWorkload.
func (f *FakeWorkloads) openLocked(spec WorkloadSpec) (WorkloadSpec, map[string]bool, error) {
	if err := spec.Validate(); err != nil {
		return spec, nil, err
	}
	spec = spec.withDefaults()
	pod := f.netns[spec.Netns]
	if pod == nil {
		return spec, nil, fmt.Errorf("workload %s: %w: %s", spec.ID, ErrNetnsNotFound, spec.Netns)
	}
	return spec, pod, nil
}

// ownedLocked mirrors Workloads.ownedHostLink.
func (f *FakeWorkloads) ownedLocked(id string) (*fakeVeth, error) {
	name := f.HostIfaceName(id)
	l := f.host[name]
	if l == nil {
		return nil, nil
	}
	if l.spec.ID != id || l.unclaimed {
		alias := ""
		if l.spec.ID != "" && !l.unclaimed {
			alias = aliasPrefix + l.spec.ID
		}
		return nil, fmt.Errorf("%w: %s is %q, not workload %q", ErrNameCollision, name, alias, id)
	}
	return l, nil
}

// unclaimedLocked mirrors Workloads.unclaimedHostLink (podNetns set) and
// unclaimedHostLinkAnyNetns (podNetns ""): the pair AddInterruptedPair
// made for id, whose pod end is in podNetns, or in any netns for "".
func (f *FakeWorkloads) unclaimedLocked(id, podNetns string) *fakeVeth {
	l := f.host[f.HostIfaceName(id)]
	if l == nil || !l.unclaimed || l.spec.ID != id || (podNetns != "" && l.spec.Netns != podNetns) {
		return nil
	}
	return l
}

// SetupWorkload implements WorkloadManager.
func (f *FakeWorkloads) SetupWorkload(ctx context.Context, spec WorkloadSpec) (WorkloadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	spec, pod, err := f.openLocked(spec)
	if err != nil {
		return WorkloadResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return WorkloadResult{}, fmt.Errorf("workload %s: %w", spec.ID, err)
	}
	return f.setupLocked(spec, pod)
}

// setupLocked is SetupWorkload after validation: create, or check and
// rebuild what exists.
func (f *FakeWorkloads) setupLocked(spec WorkloadSpec, pod map[string]bool) (WorkloadResult, error) {
	name := f.HostIfaceName(spec.ID)
	if f.host[name] != nil || pod[spec.IfName] {
		existing, err := f.ownedLocked(spec.ID)
		if u := f.unclaimedLocked(spec.ID, spec.Netns); u != nil {
			existing, err = u, nil
		}
		if err != nil {
			return WorkloadResult{}, err
		}
		if existing == nil {
			return WorkloadResult{}, fmt.Errorf("workload %s: %w: the pod already has %s", spec.ID, ErrNameCollision, spec.IfName)
		}
		if existing.spec.Netns == spec.Netns && existing.spec.IfName != spec.IfName && pod[existing.spec.IfName] {
			return WorkloadResult{}, fmt.Errorf("workload %s: %w: it already has %s in %s, not %s", spec.ID, ErrNameCollision, existing.spec.IfName, spec.Netns, spec.IfName)
		}
		if res, cerr := f.checkLocked(spec, pod); cerr == nil {
			return res, nil
		}
		f.removeLocked(name)
		if pod[spec.IfName] {
			// The pod's interface of that name was not this workload's: the
			// kernel refuses to create the pair again.
			return WorkloadResult{}, fmt.Errorf("workload %s: create veth %s: %w", spec.ID, name, unix.EEXIST)
		}
	}
	l := &fakeVeth{index: f.next, podIndex: f.next + 1, spec: spec}
	f.next += 2
	f.host[name] = l
	pod[spec.IfName] = true
	for _, a := range spec.Addresses {
		f.routes[a] = name
	}
	return fakeResult(name, l, spec), nil
}

// SetupWorkloadFunc implements WorkloadManager as Workloads does: the
// pair exists (listed, down, without addresses, failing CheckWorkload)
// while addrs runs, without the fake's lock held; a failed addrs removes
// the pair this call made; an existing workload is checked and repaired
// as by SetupWorkload.
func (f *FakeWorkloads) SetupWorkloadFunc(ctx context.Context, spec WorkloadSpec, addrs func(context.Context) ([]netip.Addr, error)) (WorkloadResult, error) {
	if len(spec.Addresses) > 0 || addrs == nil {
		return WorkloadResult{}, fmt.Errorf("%w %s: SetupWorkloadFunc takes the addresses from addrs only", ErrInvalidSpec, spec.ID)
	}
	f.mu.Lock()
	spec, pod, err := f.openLocked(spec)
	if err != nil {
		f.mu.Unlock()
		return WorkloadResult{}, err
	}
	name := f.HostIfaceName(spec.ID)
	var made *fakeVeth
	if f.host[name] == nil && !pod[spec.IfName] {
		made = &fakeVeth{index: f.next, podIndex: f.next + 1, spec: spec, down: true}
		f.next += 2
		f.host[name] = made
		pod[spec.IfName] = true
	}
	f.mu.Unlock()

	as, aerr := addrs(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(err error) (WorkloadResult, error) {
		if made != nil && f.host[name] == made {
			f.removeLocked(name)
		}
		return WorkloadResult{}, err
	}
	if aerr != nil {
		return fail(fmt.Errorf("workload %s: addresses: %w", spec.ID, aerr))
	}
	spec.Addresses = as
	if err := spec.Validate(); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(fmt.Errorf("workload %s: %w", spec.ID, err))
	}
	if made == nil {
		if pod = f.netns[spec.Netns]; pod == nil {
			return WorkloadResult{}, fmt.Errorf("workload %s: %w: %s", spec.ID, ErrNetnsNotFound, spec.Netns)
		}
		return f.setupLocked(spec, pod)
	}
	if f.host[name] != made {
		// Removed meanwhile (teardown, netns deleted): the kernel's
		// configuration of the pair fails.
		return WorkloadResult{}, fmt.Errorf("workload %s: configure %s: %w", spec.ID, name, unix.ENODEV)
	}
	made.spec, made.down = spec, false
	for _, a := range spec.Addresses {
		f.routes[a] = name
	}
	return fakeResult(name, made, spec), nil
}

func fakeResult(name string, l *fakeVeth, spec WorkloadSpec) WorkloadResult {
	res := WorkloadResult{
		Host:      Interface{Name: name, MAC: HostMAC(), Index: l.index},
		Container: Interface{Name: spec.IfName, MAC: spec.PodMAC(), Index: l.podIndex, Sandbox: spec.Netns},
	}
	res.fillIPs(spec)
	return res
}

// removeLocked deletes a host link, its pod end and the host routes through it.
func (f *FakeWorkloads) removeLocked(name string) {
	l := f.host[name]
	if l == nil {
		return
	}
	delete(f.host, name)
	if l.spec.ID != "" {
		if pod := f.netns[l.spec.Netns]; pod != nil {
			delete(pod, l.spec.IfName)
		}
	}
	f.unrouteLocked(name)
}

// unrouteLocked deletes the host routes through host link name.
func (f *FakeWorkloads) unrouteLocked(name string) {
	for a, dev := range f.routes {
		if dev == name {
			delete(f.routes, a)
		}
	}
}

// CheckWorkload implements WorkloadManager.
func (f *FakeWorkloads) CheckWorkload(ctx context.Context, spec WorkloadSpec) (WorkloadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	spec, pod, err := f.openLocked(spec)
	if err != nil {
		return WorkloadResult{}, err
	}
	return f.checkLocked(spec, pod)
}

// checkLocked mirrors Workloads.check: the workload's pair exists in the
// spec's netns with the spec's interface name, MTU, addresses and host routes.
func (f *FakeWorkloads) checkLocked(spec WorkloadSpec, pod map[string]bool) (WorkloadResult, error) {
	l, err := f.ownedLocked(spec.ID)
	if err != nil {
		return WorkloadResult{}, err
	}
	name := f.HostIfaceName(spec.ID)
	if l == nil {
		return WorkloadResult{}, fmt.Errorf("workload %s: %w: %s", spec.ID, ErrLinkNotFound, name)
	}
	if l.spec.Netns != spec.Netns || l.spec.IfName != spec.IfName || !pod[spec.IfName] {
		return WorkloadResult{}, fmt.Errorf("workload %s: %w: %s in pod", spec.ID, ErrLinkNotFound, spec.IfName)
	}
	var bad []string
	if l.down {
		bad = append(bad, name+" is down")
	}
	if l.spec.MTU != spec.MTU {
		bad = append(bad, fmt.Sprintf("MTU %d, want %d", l.spec.MTU, spec.MTU))
	}
	if have, want := l.spec.PodMAC(), spec.PodMAC(); !bytes.Equal(have, want) {
		bad = append(bad, fmt.Sprintf("pod %s MAC %s, want %s", spec.IfName, have, want))
	}
	for _, a := range spec.Addresses {
		p := netip.PrefixFrom(a, a.BitLen())
		if !slices.Contains(l.spec.Addresses, a) {
			bad = append(bad, "pod lacks address "+p.String())
		}
		if f.routes[a] != name {
			bad = append(bad, "host lacks route "+p.String()+" dev "+name)
		}
	}
	if (spec.hasV4() && !l.spec.hasV4()) || (spec.hasV6() && !l.spec.hasV6()) {
		bad = append(bad, "pod lacks a default route")
	}
	if len(bad) > 0 {
		return WorkloadResult{}, fmt.Errorf("workload %s: %w: %s", spec.ID, ErrMismatch, strings.Join(bad, "; "))
	}
	return fakeResult(name, l, spec), nil
}

// TeardownWorkload implements WorkloadManager: DetachWorkload without a
// pod namespace, which deletes the pair, one AddInterruptedPair made
// included.
func (f *FakeWorkloads) TeardownWorkload(ctx context.Context, id string) error {
	return f.DetachWorkload(ctx, id, "")
}

// DetachWorkload implements WorkloadManager as Workloads does: with
// podNetns a namespace holding the pod end (AddNetns), both ends are
// renamed DetachedIfaceName(id), lose their addresses and host routes and
// stay until DeleteNetns or RemoveDetached; otherwise, or when a detached
// pair of the ID exists (the kernel's EEXIST on the rename), the pair is
// deleted.
func (f *FakeWorkloads) DetachWorkload(ctx context.Context, id, podNetns string) error {
	if id == "" {
		return fmt.Errorf("%w: empty workload ID", ErrInvalidSpec)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.ownedLocked(id)
	if u := f.unclaimedLocked(id, ""); u != nil {
		l, err = u, nil
	}
	if err != nil || l == nil {
		return err
	}
	name, dname := f.HostIfaceName(id), DetachedIfaceName(id)
	pod := f.netns[podNetns]
	if podNetns == "" || pod == nil || l.spec.Netns != podNetns || f.host[dname] != nil || pod[dname] {
		f.removeLocked(name)
		return nil
	}
	f.unrouteLocked(name)
	delete(f.host, name)
	f.host[dname] = l
	delete(pod, l.spec.IfName)
	pod[dname] = true
	l.spec.IfName, l.spec.Addresses, l.detached, l.unclaimed = dname, nil, true, false
	return nil
}

// RemoveDetached implements WorkloadManager.
func (f *FakeWorkloads) RemoveDetached(ctx context.Context, match func(id string) bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, l := range f.host {
		if l.detached && (match == nil || match(l.spec.ID)) {
			f.removeLocked(name)
		}
	}
	return nil
}

// DetachedWorkloads returns the workload IDs of the detached pairs in the
// host namespace, sorted (`ip link` aliases "tabby-detached:<ID>").
func (f *FakeWorkloads) DetachedWorkloads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, l := range f.host {
		if l.detached {
			ids = append(ids, l.spec.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// ListWorkloads implements WorkloadManager.
func (f *FakeWorkloads) ListWorkloads(ctx context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, l := range f.host {
		if l.spec.ID != "" && !l.detached && !l.unclaimed {
			ids = append(ids, l.spec.ID)
		}
	}
	slices.Sort(ids)
	return ids, nil
}
