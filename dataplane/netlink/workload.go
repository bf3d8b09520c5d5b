package netlink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	nl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// DefaultHostPrefix starts host-side workload interface names.
	DefaultHostPrefix = "tby"
	// DefaultIfName is the interface name inside the pod.
	DefaultIfName = "eth0"
	// DefaultMTU is used when WorkloadSpec.MTU is 0.
	DefaultMTU = 1500
	// aliasPrefix marks host veths tabby created; the rest is the workload ID.
	aliasPrefix = "tabby:"
	// detachedAliasPrefix marks both ends of a pair DetachWorkload took
	// off the network; the rest is the workload ID.
	detachedAliasPrefix = "tabby-detached:"
	// detachedPrefix starts DetachedIfaceName.
	detachedPrefix = "tbd-"
	maxIDLen       = 200
)

// PodGatewayV4 returns 169.254.1.1, the gateway of the pod's IPv4 default
// route, answered by proxy ARP on the host veth — only when the host
// namespace has a route to it through another interface (a default route).
func PodGatewayV4() netip.Addr { return netip.AddrFrom4([4]byte{169, 254, 1, 1}) }

// PodGatewayV6 returns fe80::ecee:eeff:feee:eeee, the gateway of the pod's
// IPv6 default route: the link-local address the kernel derives from the
// host veth's MAC ee:ee:ee:ee:ee:ee.
func PodGatewayV6() netip.Addr {
	return netip.AddrFrom16([16]byte{0xfe, 0x80, 8: 0xec, 0xee, 0xee, 0xff, 0xfe, 0xee, 0xee, 0xee})
}

// HostMAC returns the MAC of every host-side workload veth, ee:ee:ee:ee:ee:ee.
func HostMAC() net.HardwareAddr { return net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee} }

// HostIfaceName derives the host-side interface name of a workload: prefix
// followed by the first hex digits of SHA-256(workloadID), 15 bytes in all
// (Calico's cali + 11 hex digits, with 12 digits after "tby"). Stable across
// restarts; a collision is detected at setup through the link alias.
func HostIfaceName(prefix, workloadID string) string {
	sum := sha256.Sum256([]byte(workloadID))
	h := hex.EncodeToString(sum[:])
	return prefix + h[:15-len(prefix)]
}

// WorkloadSpec describes one pod interface.
type WorkloadSpec struct {
	// ID names the workload, e.g. the CNI "<network>.<containerID>"; it
	// derives the host interface name and is stored in its alias. At most 200 bytes.
	ID string
	// Netns is the path of the pod's network namespace
	// (/var/run/netns/NAME or /proc/PID/ns/net).
	Netns string
	// IfName is the interface name inside the pod; "" means eth0.
	IfName string
	// MTU of both veth ends; 0 means 1500.
	MTU int
	// Addresses of the pod, IPv4 and/or IPv6; each is installed as /32 or /128.
	Addresses []netip.Addr
	// MAC is the hardware address of the pod-side interface (Calico's
	// cni.projectcalico.org/hwAddr, the CNI "mac" capability): a 48-bit
	// unicast address, not all zeroes (ErrInvalidSpec otherwise, as the
	// kernel refuses those with EADDRNOTAVAIL). nil means ContainerMAC(ID).
	// It is set as the pair is created, before the pod end goes up;
	// CheckWorkload compares it, and a setup of an existing workload whose
	// pod end has another MAC rebuilds the pair.
	MAC net.HardwareAddr
}

// PodMAC returns the MAC the pod-side interface of s has once set up:
// s.MAC, or ContainerMAC(s.ID) when it is nil.
func (s WorkloadSpec) PodMAC() net.HardwareAddr {
	if s.MAC != nil {
		return s.MAC
	}
	return ContainerMAC(s.ID)
}

// ValidateMAC reports whether mac can be a pod interface's MAC: 6 bytes,
// unicast (the I/G bit of the first byte clear) and not 00:00:00:00:00:00,
// what the kernel's is_valid_ether_addr accepts for a veth. The error
// wraps ErrInvalidSpec.
func ValidateMAC(mac net.HardwareAddr) error {
	switch {
	case len(mac) != 6:
		return fmt.Errorf("%w: MAC %q is not a 48-bit address", ErrInvalidSpec, mac)
	case mac[0]&1 != 0:
		return fmt.Errorf("%w: MAC %s is a multicast address", ErrInvalidSpec, mac)
	case bytes.Equal(mac, make(net.HardwareAddr, 6)):
		return fmt.Errorf("%w: MAC %s is all zeroes", ErrInvalidSpec, mac)
	}
	return nil
}

func (s WorkloadSpec) withDefaults() WorkloadSpec {
	if s.IfName == "" {
		s.IfName = DefaultIfName
	}
	if s.MTU == 0 {
		s.MTU = DefaultMTU
	}
	return s
}

// Validate checks the spec without touching the kernel.
func (s WorkloadSpec) Validate() error {
	s = s.withDefaults()
	switch {
	case s.ID == "":
		return fmt.Errorf("%w: empty workload ID", ErrInvalidSpec)
	case len(s.ID) > maxIDLen:
		return fmt.Errorf("%w: workload ID longer than %d bytes", ErrInvalidSpec, maxIDLen)
	case s.Netns == "":
		return fmt.Errorf("%w %s: no netns path", ErrInvalidSpec, s.ID)
	case s.MTU < 68 || s.MTU > 65535:
		return fmt.Errorf("%w %s: MTU %d out of range 68..65535", ErrInvalidSpec, s.ID, s.MTU)
	}
	if err := ValidateIfName(s.IfName); err != nil {
		return fmt.Errorf("workload %s: %w", s.ID, err)
	}
	if s.MAC != nil {
		if err := ValidateMAC(s.MAC); err != nil {
			return fmt.Errorf("workload %s: %w", s.ID, err)
		}
	}
	seen := map[netip.Addr]bool{}
	for _, a := range s.Addresses {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.Is4In6() || a.Zone() != "" {
			return fmt.Errorf("%w %s: address %s is not a usable unicast address", ErrInvalidSpec, s.ID, a)
		}
		if seen[a] {
			return fmt.Errorf("%w %s: duplicate address %s", ErrInvalidSpec, s.ID, a)
		}
		seen[a] = true
	}
	return nil
}

func (s WorkloadSpec) hasV6() bool { return slices.ContainsFunc(s.Addresses, netip.Addr.Is6) }
func (s WorkloadSpec) hasV4() bool { return slices.ContainsFunc(s.Addresses, netip.Addr.Is4) }

// Interface is one end of the workload veth, as a CNI result lists it.
type Interface struct {
	Name  string
	MAC   net.HardwareAddr
	Index int
	// Sandbox is the netns path for the container end, "" for the host end.
	Sandbox string
}

// IPConfig is one pod address with its gateway, as in a CNI result. The
// address is the /32 or /128 installed; Interface is 1, the index of the
// container interface in WorkloadResult.Interfaces().
type IPConfig struct {
	Address   netip.Prefix
	Gateway   netip.Addr
	Interface int
}

// PodRoute is a route installed inside the pod.
type PodRoute struct {
	Dst netip.Prefix
	GW  netip.Addr
}

// WorkloadResult is what SetupWorkload made: everything a CNI ADD result needs.
type WorkloadResult struct {
	Host      Interface
	Container Interface
	IPs       []IPConfig
	Routes    []PodRoute
}

// Interfaces returns host and container interfaces in CNI result order.
func (r WorkloadResult) Interfaces() []Interface { return []Interface{r.Host, r.Container} }

// workloadHostHandle is the slice of *netlink.Handle that Workloads uses in
// the host namespace (creation and configuration go through its pipelined
// netlink socket).
type workloadHostHandle interface {
	LinkByName(name string) (nl.Link, error)                                               // ip link show NAME
	LinkByIndex(index int) (nl.Link, error)                                                // ip link show (by index)
	LinkList() ([]nl.Link, error)                                                          // ip link show
	LinkDel(link nl.Link) error                                                            // ip link del
	RouteListFiltered(family int, filter *nl.Route, filterMask uint64) ([]nl.Route, error) // ip route show dev
	Close()
}

// workloadPodHandle is the slice of *netlink.Handle that CheckWorkload
// reads the pod namespace with (writes go through a pipelined socket).
type workloadPodHandle interface {
	LinkByName(name string) (nl.Link, error)                                               // ip link show NAME
	LinkByIndex(index int) (nl.Link, error)                                                // ip link show (by index)
	AddrList(link nl.Link, family int) ([]nl.Addr, error)                                  // ip addr show dev
	RouteListFiltered(family int, filter *nl.Route, filterMask uint64) ([]nl.Route, error) // ip route show dev
}

var (
	_ workloadHostHandle = (*nl.Handle)(nil)
	_ workloadPodHandle  = (*nl.Handle)(nil)
)

// Workloads creates, checks and removes pod interfaces on one host
// (a node's network namespace). Safe for concurrent use: operations are serialised.
// The zero value is not usable; make one with NewWorkloads (its methods
// that return an error return ErrInvalidSpec, Close returns nil, HostNetns
// and HostIfaceName return "").
type Workloads struct {
	mu     sync.Mutex
	guard  closeGuard
	host   ns.NetNS
	h      workloadHostHandle
	pipe   *pipeline
	prefix string
	opts   options
}

// NewWorkloads opens the host namespace at hostNetns ("" = the current
// one, as in a CNI plugin) and returns a Workloads bound to it. Close it
// when done.
func NewWorkloads(hostNetns string, opts ...WorkloadsOption) (*Workloads, error) {
	o, err := workloadsOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("workloads: %w", err)
	}
	host, err := openNetns(hostNetns)
	if err != nil {
		return nil, err
	}
	h, err := nl.NewHandleAt(netns.NsHandle(host.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		host.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", host.Path(), err)
	}
	pipe, err := openPipeline(host)
	if err != nil {
		h.Close()
		host.Close()
		return nil, err
	}
	w := &Workloads{host: host, pipe: pipe, prefix: o.hostPrefix, opts: o, guard: closeGuard{open: true}}
	w.h = guardedHostHandle{h: h, g: &w.guard}
	return w, nil
}

// made reports whether NewWorkloads made w: only it sets the host handle,
// never changed afterwards (Close marks it closed instead), so reading it
// needs no lock.
func (w *Workloads) made() bool { return w != nil && w.h != nil }

// Close releases the namespace and netlink handles; it waits for the
// kernel calls in flight. Later calls fail with an error wrapping
// ErrClosed (never acting on another namespace); closing twice returns nil.
func (w *Workloads) Close() error {
	if !w.made() {
		return nil
	}
	var err error
	w.guard.close(func() {
		w.pipe.close()
		w.h.Close()
		err = w.host.Close()
	})
	return err
}

// HostNetns returns the path of the host namespace.
func (w *Workloads) HostNetns() string {
	if !w.made() {
		return ""
	}
	return w.host.Path()
}

// EnableForwarding sets net.ipv4.ip_forward and net.ipv6.conf.all.forwarding
// in the host namespace (once per node).
func (w *Workloads) EnableForwarding() error {
	if !w.made() {
		return errNotMade("Workloads", "enable forwarding")
	}
	return guard1(&w.guard, func() error {
		return writeSysctls(w.host, []sysctl{{"net/ipv4/ip_forward", "1"}, {"net/ipv6/conf/all/forwarding", "1"}})
	})
}

// HostIfaceName returns the host interface name for a workload ID.
func (w *Workloads) HostIfaceName(id string) string {
	if !w.made() {
		return ""
	}
	return HostIfaceName(w.prefix, id)
}

// ownedHostLink looks up the host veth of workload id. It returns (nil, nil)
// when there is none and ErrNameCollision when the name belongs to another.
func (w *Workloads) ownedHostLink(id string) (nl.Link, error) {
	name := w.HostIfaceName(id)
	l, err := w.h.LinkByName(name)
	if err != nil {
		var nf nl.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	if l.Attrs().Alias != aliasPrefix+id {
		return nil, fmt.Errorf("%w: %s is %q, not workload %q", ErrNameCollision, name, l.Attrs().Alias, id)
	}
	return l, nil
}

// unclaimedHostEnd returns the link named HostIfaceName(id) when it is
// what createPair makes as a workload's host end before SetupWorkload
// sets its alias in the host batch: no alias, a veth, HostMAC. A process
// killed in between leaves it so. nil for anything else. w.mu is held.
func (w *Workloads) unclaimedHostEnd(id string) nl.Link {
	l, err := w.h.LinkByName(w.HostIfaceName(id))
	if err != nil {
		return nil
	}
	a := l.Attrs()
	if a.Alias != "" || l.Type() != "veth" || !bytes.Equal(a.HardwareAddr, HostMAC()) {
		return nil
	}
	return l
}

// unclaimedHostLink returns the host end of a pair createPair made for
// workload id that never got its alias (unclaimedHostEnd) whose peer is,
// in the pod namespace ph is bound to, a veth peered back with it. Such a
// pair joins the host to this workload's pod, so it is this workload's,
// not another program's link. It returns nil for anything else. w.mu is
// held.
func (w *Workloads) unclaimedHostLink(id string, ph workloadPodHandle) nl.Link {
	l := w.unclaimedHostEnd(id)
	if l == nil || ph == nil {
		return nil
	}
	a := l.Attrs()
	pl, err := ph.LinkByIndex(a.ParentIndex)
	if err != nil || pl.Type() != "veth" || pl.Attrs().ParentIndex != a.Index {
		return nil
	}
	w.opts.log.Info("found a workload's veth pair without its alias (setup interrupted)", "workload", id, "host", a.Name)
	return l
}

// unclaimedHostLinkAnyNetns is unclaimedHostLink without the pod
// namespace (TeardownWorkload): the host end (unclaimedHostEnd) of a
// veth whose peer is in another namespace, which the kernel reports as
// IFLA_LINK_NETNSID (Attrs().NetNsID, -1 when the peer is in the host
// namespace), and whose peer index is not a host veth peered back with
// it. A pair with both ends in the host namespace is not one
// SetupWorkload makes, so it stays another program's. w.mu is held.
func (w *Workloads) unclaimedHostLinkAnyNetns(id string) nl.Link {
	l := w.unclaimedHostEnd(id)
	if l == nil {
		return nil
	}
	a := l.Attrs()
	if a.NetNsID < 0 {
		return nil
	}
	if hl, err := w.h.LinkByIndex(a.ParentIndex); err == nil && hl.Type() == "veth" && hl.Attrs().ParentIndex == a.Index {
		return nil
	}
	w.opts.log.Info("found a workload's veth pair without its alias (setup interrupted), its peer in another namespace",
		"workload", id, "host", a.Name, "peerNetnsID", a.NetNsID)
	return l
}

// openWorkload validates spec, fills defaults and opens the pod namespace.
func openWorkload(spec WorkloadSpec) (WorkloadSpec, ns.NetNS, error) {
	if err := spec.Validate(); err != nil {
		return spec, nil, err
	}
	spec = spec.withDefaults()
	pod, err := openNetns(spec.Netns)
	if err != nil {
		return spec, nil, fmt.Errorf("workload %s: %w", spec.ID, err)
	}
	return spec, pod, nil
}

// SetupWorkload creates the pod's veth pair and addresses, routes and
// sysctls (`ip link add <host> type veth peer name eth0 netns <pod>` and
// what follows). Running it again for a workload that is already right
// changes nothing; one that is partly wrong is rebuilt, including a pair
// an interrupted setup left before its host end got the "tabby:<ID>"
// alias (recognised by name, HostMAC and its peer in spec.Netns). On
// failure nothing is left behind: the veth it made is removed.
//
// It returns once the pod is reachable: both veth ends running (IFF_RUNNING,
// `ip link` shows state UP). The kernel marks a new link running from
// deferred work, tens of milliseconds later on a busy node, and drops what
// is sent through the pair until then — the proxy-ARP answer to the pod's
// first packet included, which would stall its first connection for the
// one-second ARP retry. The wait is bounded by ctx's deadline, or by
// ReadyTimeout when ctx has none; when it runs out the veth is removed and
// the error wraps ErrNotReady (and the context's error, if that ended it).
//
// IPv4 needs one thing of the host namespace that SetupWorkload does not
// set: a route covering 169.254.1.1 through another interface (a default
// route does; a blackhole does not). The kernel answers the pod's ARP for
// its gateway by proxy ARP only then; without it SetupWorkload and
// CheckWorkload succeed but the pod's IPv4 packets never leave it (its
// neighbour entry for 169.254.1.1 stays INCOMPLETE). IPv6 has no such
// need: the gateway is the host veth's own link-local address.
func (w *Workloads) SetupWorkload(ctx context.Context, spec WorkloadSpec) (WorkloadResult, error) {
	if !w.made() {
		return WorkloadResult{}, errNotMade("Workloads", "set up workload")
	}
	spec, pod, err := openWorkload(spec)
	if err != nil {
		return WorkloadResult{}, err
	}
	defer pod.Close()
	pc, err := openPodConn(pod, spec.hasV6())
	if err != nil {
		return WorkloadResult{}, fmt.Errorf("workload %s: %w", spec.ID, err)
	}
	defer pc.close()

	w.mu.Lock()
	defer w.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return WorkloadResult{}, fmt.Errorf("workload %s: %w", spec.ID, err)
	}
	// Create first: the common case needs no lookup. EEXIST means an
	// earlier setup of this workload (check it, rebuild it if wrong) or a
	// collision.
	res, err := w.create(spec, pod, pc, false)
	return w.settle(ctx, spec, pod, pc, res, err)
}

// SetupWorkloadFunc is SetupWorkload for a caller still choosing the
// pod's addresses, such as a CNI ADD while IPAM assigns: the kernel work
// that needs no address overlaps with addrs. It creates the veth pair —
// the peer made inside spec.Netns under spec.IfName, both ends down, the
// host end's alias recording the owner — on another goroutine while addrs
// runs on the calling one; then it adds the addresses addrs returned,
// routes and sysctls, and waits for both ends to run, as SetupWorkload
// does. spec.Addresses must be empty (ErrInvalidSpec otherwise).
//
// addrs is called once with ctx, unless spec is invalid or its netns
// cannot be opened: those errors come back before anything is made and
// addrs is not called. When addrs fails, the pair this call made is
// removed (one an earlier setup left is kept) and the error wraps addrs'
// error. Addresses SetupWorkload would refuse (ErrInvalidSpec) are
// refused the same way, and the pair removed. Retried for a workload that
// exists, it checks and repairs it as SetupWorkload does. Errors are
// otherwise SetupWorkload's, and on every failure nothing this call made
// is left.
//
// The Workloads lock is not held while addrs runs, so other operations
// proceed; meanwhile the half-made workload is listed by ListWorkloads and
// fails CheckWorkload.
func (w *Workloads) SetupWorkloadFunc(ctx context.Context, spec WorkloadSpec, addrs func(context.Context) ([]netip.Addr, error)) (WorkloadResult, error) {
	if !w.made() {
		return WorkloadResult{}, errNotMade("Workloads", "set up workload")
	}
	if len(spec.Addresses) > 0 || addrs == nil {
		return WorkloadResult{}, fmt.Errorf("%w %s: SetupWorkloadFunc takes the addresses from addrs only", ErrInvalidSpec, spec.ID)
	}
	start := time.Now()
	spec, pod, err := openWorkload(spec)
	if err != nil {
		return WorkloadResult{}, err
	}
	defer pod.Close()
	type pair struct {
		pc  podConn
		res WorkloadResult
		err error // errLinkExists: an earlier pair (or a collision)
	}
	made := make(chan pair, 1)
	go func() {
		pc, err := openPodConn(pod, false)
		if err != nil {
			made <- pair{err: err}
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		res, err := w.createPair(spec, pod)
		if err == nil {
			// The alias at once: a pair left by a process that dies before
			// phase two is then recognised as this workload's and rebuilt.
			if err = w.pipe.execNamed([][]byte{appendSetLinkMsg(nil, res.Host.Index, aliasPrefix+spec.ID, false, nil)},
				[]string{"set " + res.Host.Name + " alias"}); err != nil {
				err = errors.Join(err, w.removePair(res.Host))
			}
		}
		made <- pair{pc, res, err}
	}()
	as, aerr := addrs(ctx)
	waited := time.Now()
	p := <-made
	if p.pc.h != nil {
		defer p.pc.close()
	}
	created := p.err == nil
	fail := func(err error) (WorkloadResult, error) {
		if created {
			w.mu.Lock()
			defer w.mu.Unlock()
			err = errors.Join(err, w.removePair(p.res.Host))
		}
		return WorkloadResult{}, err
	}
	if aerr != nil {
		return fail(fmt.Errorf("workload %s: addresses: %w", spec.ID, aerr))
	}
	if p.err != nil && !errors.Is(p.err, errLinkExists) {
		return WorkloadResult{}, fmt.Errorf("workload %s: %w", spec.ID, p.err)
	}
	spec.Addresses = as
	if err := spec.Validate(); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(fmt.Errorf("workload %s: %w", spec.ID, err))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	res, err := p.res, p.err
	if created {
		err = w.configure(spec, pod, p.pc, &res, true)
	}
	configured := time.Now()
	res, err = w.settle(ctx, spec, pod, p.pc, res, err)
	w.opts.log.Debug("workload setup timing", "workload", spec.ID, "existed", !created,
		"addrs", waited.Sub(start), "configure", configured.Sub(waited), "running", time.Since(configured))
	return res, err
}

// settle finishes a setup whose create returned res, err: on EEXIST it
// checks the existing workload and rebuilds it when wrong; then it waits
// for both ends to run, removing the pair when they do not. w.mu is held.
func (w *Workloads) settle(ctx context.Context, spec WorkloadSpec, pod ns.NetNS, pc podConn, res WorkloadResult, err error) (WorkloadResult, error) {
	if errors.Is(err, errLinkExists) {
		existing, lerr := w.ownedHostLink(spec.ID)
		if errors.Is(lerr, ErrNameCollision) {
			if u := w.unclaimedHostLink(spec.ID, pc.h); u != nil {
				existing, lerr = u, nil
			}
		}
		if lerr != nil {
			return WorkloadResult{}, lerr
		}
		if existing == nil {
			return WorkloadResult{}, fmt.Errorf("workload %s: %w: the pod already has %s: %w", spec.ID, ErrNameCollision, spec.IfName, err)
		}
		// The workload's pod end under another name in the same pod: a
		// second attachment, not a repair (rebuilding would take the first
		// one's interface away).
		if pl, perr := podEnd(pc.h, existing, spec.ID); perr == nil && pl.Attrs().Name != spec.IfName {
			return WorkloadResult{}, fmt.Errorf("workload %s: %w: it already has %s in %s, not %s (tear it down to rename it)",
				spec.ID, ErrNameCollision, pl.Attrs().Name, spec.Netns, spec.IfName)
		}
		if res, cerr := w.check(spec, pod, pc.h); cerr == nil {
			// Already right (a repeated ADD); it may have been set up an
			// instant ago, so it still has to be running.
			if err := w.waitRunning(ctx, spec, res, pc.h); err != nil {
				return WorkloadResult{}, err
			}
			return res, nil
		}
		w.opts.log.Info("rebuilding workload interface", "workload", spec.ID, "host", existing.Attrs().Name)
		if err := w.h.LinkDel(existing); err != nil && !IsNotFound(err) {
			return WorkloadResult{}, fmt.Errorf("workload %s: remove stale %s: %w", spec.ID, existing.Attrs().Name, err)
		}
		// The pod end was made without the namespace-wide accept_dad=0 of
		// SetupWorkload's pod connection: set it per interface.
		res, err = w.create(spec, pod, pc, true)
	}
	if err != nil {
		return WorkloadResult{}, fmt.Errorf("workload %s: %w", spec.ID, err)
	}
	if err := w.waitRunning(ctx, spec, res, pc.h); err != nil {
		return WorkloadResult{}, errors.Join(err, w.removePair(res.Host))
	}
	w.opts.log.Debug("workload set up", "workload", spec.ID, "host", res.Host.Name)
	return res, nil
}

// removePair deletes a veth pair this package made (by its host end,
// name and index), for a roll back; already gone is not an error.
func (w *Workloads) removePair(host Interface) error {
	veth := &nl.Veth{LinkAttrs: nl.LinkAttrs{Name: host.Name, Index: host.Index}}
	if err := w.h.LinkDel(veth); err != nil && !IsNotFound(err) {
		return fmt.Errorf("roll back %s: %w", veth.Name, err)
	}
	return nil
}

// ReadyTimeout bounds how long SetupWorkload waits for a new veth pair to
// be marked running when its context has no deadline.
const ReadyTimeout = 10 * time.Second

// ErrNotReady: the veth pair was created but the kernel did not mark both
// ends running (IFF_RUNNING) before the deadline.
var ErrNotReady = errors.New("workload interface not running")

// waitRunning polls both veth ends (by index, one RTM_GETLINK each) until
// each reports IFF_RUNNING, with a backoff from 200 µs to 10 ms, until
// ctx's deadline or ReadyTimeout. Polling is used rather than a link
// subscription: it costs no extra socket, and the common case (already
// running, or running after a few hundred microseconds) needs one or two
// requests per end.
func (w *Workloads) waitRunning(ctx context.Context, spec WorkloadSpec, res WorkloadResult, ph workloadPodHandle) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ReadyTimeout)
		defer cancel()
	}
	ends := []struct {
		name  string
		index int
		get   func(int) (nl.Link, error)
	}{
		{res.Host.Name, res.Host.Index, w.h.LinkByIndex},
		{"pod " + res.Container.Name, res.Container.Index, ph.LinkByIndex},
	}
	start := time.Now()
	delay := 200 * time.Microsecond
	var timer *time.Timer
	for _, e := range ends {
		for {
			l, err := e.get(e.index)
			if err != nil {
				return fmt.Errorf("workload %s: wait for %s: %w", spec.ID, e.name, err)
			}
			if l.Attrs().RawFlags&unix.IFF_RUNNING != 0 {
				break
			}
			if timer == nil {
				timer = time.NewTimer(delay)
				defer timer.Stop()
			} else {
				timer.Reset(delay)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("workload %s: %w: %s is %s after %s: %w", spec.ID, ErrNotReady,
					e.name, l.Attrs().OperState, time.Since(start).Round(time.Millisecond), ctx.Err())
			case <-timer.C:
			}
			delay = min(2*delay, 10*time.Millisecond)
		}
	}
	if waited := time.Since(start); waited > 50*time.Millisecond {
		w.opts.log.Debug("waited for workload interface to run", "workload", spec.ID, "waited", waited)
	}
	return nil
}

// errLinkExists: creating the veth pair failed with EEXIST.
var errLinkExists = errors.New("link exists")

// podConn is a netlink handle and a pipelined socket inside a pod netns.
type podConn struct {
	h    *nl.Handle
	pipe *pipeline
}

func (c podConn) close() {
	c.h.Close()
	c.pipe.close()
}

// openPodConn opens a netlink handle and a pipelined socket inside the pod
// namespace. Like netlink.NewHandleAt it switches the calling OS thread
// (locked meanwhile) into the namespace and back, which costs two setns
// calls instead of a hand-off to another thread.
//
// With noDAD, it also sets the pod's net.ipv6.conf.default.accept_dad=0
// while there, so the eth0 about to be created has no tentative link-local
// address and the pod's first IPv6 packets need not wait a second for DAD.
func openPodConn(pod ns.NetNS, noDAD bool) (podConn, error) {
	runtime.LockOSThread()
	back, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return podConn{}, fmt.Errorf("open thread netns: %w", err)
	}
	defer back.Close()
	if err := unix.Setns(int(pod.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		if errors.Is(err, unix.EINVAL) {
			return podConn{}, fmt.Errorf("%w: %s is not a network namespace: %w", ErrInvalidSpec, pod.Path(), err)
		}
		return podConn{}, fmt.Errorf("enter %s: %w", pod.Path(), err)
	}
	var c podConn
	var dadErr error
	if noDAD {
		dadErr = os.WriteFile("/proc/sys/net/ipv6/conf/default/accept_dad", []byte("0"), 0o644)
	}
	h, herr := nl.NewHandle(unix.NETLINK_ROUTE)
	fd, serr := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err := unix.Setns(int(back.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread cannot go back: keep it locked so that it is never
		// reused for anything else, and fail.
		if herr == nil {
			h.Close()
		}
		if serr == nil {
			unix.Close(fd)
		}
		return podConn{}, fmt.Errorf("return from %s: %w", pod.Path(), err)
	}
	runtime.UnlockOSThread()
	if err := errors.Join(herr, serr, dadErr); err != nil {
		if herr == nil {
			h.Close()
		}
		if serr == nil {
			unix.Close(fd)
		}
		return podConn{}, fmt.Errorf("netlink sockets in %s: %w", pod.Path(), err)
	}
	if err := setupBatchSocket(fd); err != nil {
		h.Close()
		unix.Close(fd)
		return podConn{}, fmt.Errorf("netlink socket in %s: %w", pod.Path(), err)
	}
	c.h, c.pipe = h, &pipeline{fd: fd, buf: make([]byte, 4096)}
	return c, nil
}

// create makes the veth pair and configures it (createPair, then
// configure); on failure nothing is left.
func (w *Workloads) create(spec WorkloadSpec, pod ns.NetNS, pc podConn, podDAD bool) (WorkloadResult, error) {
	res, err := w.createPair(spec, pod)
	if err != nil {
		return res, err
	}
	return res, w.configure(spec, pod, pc, &res, podDAD)
}

// createPair makes the veth pair, peer directly in the pod netns, both
// ends down, and reads back its indexes — the host end's, and through
// IFLA_LINK the pod end's — in one round trip. EEXIST wraps errLinkExists.
// On failure nothing is left.
func (w *Workloads) createPair(spec WorkloadSpec, pod ns.NetNS) (res WorkloadResult, err error) {
	hostName := w.HostIfaceName(spec.ID)
	podMAC := spec.PodMAC()
	var hostIndex, podIndex int
	errs := w.pipe.execReplies([][]byte{
		appendVethMsg(nil, hostName, spec.IfName, int(pod.Fd()), spec.MTU, HostMAC(), podMAC),
		appendGetLinkMsg(nil, hostName),
	}, func(i int, m syscall.NetlinkMessage) {
		if idx, link, ok := parseLinkReply(m); ok && i == 1 {
			hostIndex, podIndex = idx, link
		}
	})
	if err := errs[0]; err != nil {
		if errors.Is(err, unix.EEXIST) {
			return res, fmt.Errorf("create veth %s: %w: %w", hostName, errLinkExists, err)
		}
		return res, fmt.Errorf("create veth %s: %w", hostName, err)
	}
	if errs[1] != nil || hostIndex <= 0 || podIndex <= 0 {
		host := Interface{Name: hostName, Index: hostIndex}
		if hostIndex <= 0 {
			l, lerr := w.h.LinkByName(hostName) // for the roll back
			if lerr == nil {
				host.Index = l.Attrs().Index
			}
		}
		err := fmt.Errorf("read back veth %s (index %d, peer %d): %w", hostName, hostIndex, podIndex, errors.Join(errs[1], ErrLinkNotFound))
		return res, errors.Join(err, w.removePair(host))
	}
	res.Host = Interface{Name: hostName, MAC: HostMAC(), Index: hostIndex}
	res.Container = Interface{Name: spec.IfName, MAC: podMAC, Index: podIndex, Sandbox: spec.Netns}
	return res, nil
}

// configure sets both ends of the pair createPair made up, with addresses
// and routes, and fills res's IPs; on failure it removes the pair. With
// podDAD, the pod end was made without accept_dad=0 as the pod's default:
// for IPv6 it is set on the interface before it goes up.
func (w *Workloads) configure(spec WorkloadSpec, pod ns.NetNS, pc podConn, res *WorkloadResult, podDAD bool) (err error) {
	veth := &nl.Veth{LinkAttrs: nl.LinkAttrs{Name: res.Host.Name, Index: res.Host.Index}}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.removePair(res.Host))
		}
	}()
	if podDAD && spec.hasV6() {
		if err := writeSysctls(pod, []sysctl{{"net/ipv6/conf/" + spec.IfName + "/accept_dad", "0"}}); err != nil {
			return fmt.Errorf("pod %s: %w", spec.IfName, err)
		}
	}
	// Host and pod sides: one batch each, the pod's on another goroutine.
	podDone := make(chan error, 1)
	go func() { podDone <- configurePod(pc, spec, res.Container.Index) }()
	hostErr := w.configureHost(veth, spec)
	if err := errors.Join(hostErr, <-podDone); err != nil {
		return err
	}
	res.fillIPs(spec)
	return nil
}

// ContainerMAC derives the MAC of a workload's pod-side interface from its
// ID: stable across re-creation, locally administered, unicast.
func ContainerMAC(workloadID string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("mac:" + workloadID))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&0xfc | 0x02
	return mac
}

// configureHost sets the host end up. IPv6 sysctls (DAD off for the
// link-local address the pod routes through) must precede link up and go
// through /proc; the rest — alias (records the owner), proxy_arp and
// forwarding, link up, proxy_delay, one route per pod address — goes to
// the kernel in one pipelined netlink batch.
func (w *Workloads) configureHost(veth *nl.Veth, spec WorkloadSpec) error {
	hostName := veth.Name
	if spec.hasV6() {
		c6 := "net/ipv6/conf/" + hostName + "/"
		if err := writeSysctls(w.host, []sysctl{{c6 + "accept_dad", "0"}, {c6 + "accept_ra", "0"}, {c6 + "forwarding", "1"}}); err != nil {
			return err
		}
	}
	msgs := [][]byte{
		appendSetLinkMsg(nil, veth.Index, aliasPrefix+spec.ID, true,
			[][2]uint32{{ipv4DevconfProxyARP, 1}, {ipv4DevconfForwarding, 1}, {ipv4DevconfLocalnet, 1}}),
		appendProxyDelayMsg(nil, veth.Index, 0),
	}
	what := []string{"set " + hostName + " alias, proxy_arp, forwarding, route_localnet, up", "set " + hostName + " proxy_delay"}
	for _, a := range spec.Addresses {
		r := &nl.Route{
			LinkIndex: veth.Index, Dst: prefixToIPNet(netip.PrefixFrom(a, a.BitLen())),
			Scope: nl.SCOPE_LINK, Protocol: ProtocolWorkload, Type: unix.RTN_UNICAST,
		}
		m, err := appendRouteMsg(nil, RouteOp{Kind: RouteOpReplace, Route: r}, 0)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
		what = append(what, "host route "+a.String()+" dev "+hostName)
	}
	return w.pipe.execNamed(msgs, what)
}

// configurePod sets the pod end (ifindex index) up with its addresses and
// default routes, in one pipelined batch.
func configurePod(pc podConn, spec WorkloadSpec, index int) error {
	var msgs [][]byte
	var what []string
	for _, a := range spec.Addresses {
		msgs = append(msgs, appendAddrMsg(nil, index, netip.PrefixFrom(a, a.BitLen()), a.Is6()))
		what = append(what, "pod address "+a.String())
	}
	msgs = append(msgs, appendSetLinkMsg(nil, index, "", true, nil))
	what = append(what, "set pod "+spec.IfName+" up")
	for _, r := range podRoutes(spec, index) {
		m, err := appendRouteMsg(nil, RouteOp{Kind: RouteOpReplace, Route: r}, 0)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
		what = append(what, "pod route "+ipNetToPrefix(r.Dst, 0).String())
	}
	return pc.pipe.execNamed(msgs, what)
}

// podRoutes are the routes inside the pod: 169.254.1.1 on-link and default
// via it (IPv4), default via the host veth's link-local address (IPv6).
func podRoutes(spec WorkloadSpec, index int) []*nl.Route {
	var rs []*nl.Route
	if spec.hasV4() {
		rs = append(rs,
			&nl.Route{LinkIndex: index, Dst: prefixToIPNet(netip.PrefixFrom(PodGatewayV4(), 32)), Scope: nl.SCOPE_LINK},
			&nl.Route{LinkIndex: index, Dst: prefixToIPNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: addrToIP(PodGatewayV4())})
	}
	if spec.hasV6() {
		rs = append(rs, &nl.Route{LinkIndex: index, Dst: prefixToIPNet(netip.MustParsePrefix("::/0")), Gw: addrToIP(PodGatewayV6())})
	}
	return rs
}

// TeardownWorkload removes the workload's veth pair (both ends; the kernel
// drops its routes with it). A workload that does not exist is not an
// error; the pod namespace is not needed. A pair an interrupted setup
// left before its host end got the "tabby:<ID>" alias (see SetupWorkload)
// is removed too when it is recognisable without the pod namespace: the
// host end named HostIfaceName(id), without an alias, a veth with
// HostMAC whose peer is in another namespace (IFLA_LINK_NETNSID). Any
// other host link of that name that tabby did not create for this ID is
// left alone and ErrNameCollision returned. It is DetachWorkload without
// a pod namespace.
func (w *Workloads) TeardownWorkload(ctx context.Context, id string) error {
	if !w.made() {
		return errNotMade("Workloads", "tear down workload")
	}
	return w.DetachWorkload(ctx, id, "")
}

// DetachedIfaceName is the name both ends of a workload's veth pair take
// when DetachWorkload takes it off the network: "tbd-" and the first 11
// hex digits of SHA-256(workloadID), the digits its host end's name
// starts with.
func DetachedIfaceName(workloadID string) string { return HostIfaceName(detachedPrefix, workloadID) }

// DetachWorkload is a CNI DEL's TeardownWorkload for a pod namespace the
// runtime is about to remove: it takes the workload off the network at
// once and leaves the unregistering of its veth pair to the kernel's
// removal of that namespace. Unregistering a link waits for an RCU
// barrier (about 20 ms per deletion on the test machines, most of a
// DEL's time); setting links down and renaming them does not, and the
// kernel's cleanup of a dead namespace unregisters all of its links, and
// their peers, in one batch.
//
// With podNetns the path of the namespace holding the pod end (CNI_NETNS),
// it sets the host end down — the kernel drops the host routes through it
// — then the pod end, removes the pod end's addresses, and renames both
// ends DetachedIfaceName(id) with the alias "tabby-detached:<id>": the
// host name and the pod's interface name are free again at once (a new
// ADD into the same namespace works), ListWorkloads no longer lists the
// workload, and nothing routes to or from the pair. The pair itself goes
// when the pod namespace does, or with RemoveDetached (CNI GC); a runtime
// that keeps the namespace keeps the dead pair until then. At most one
// detached pair per workload ID exists.
//
// It deletes the pair instead, as TeardownWorkload does, when podNetns is
// "" or gone, when the pod end is not in podNetns (no link there with the
// pair's index that is the host end's peer or has ContainerMAC(id)), when
// an earlier detached pair of the ID still exists, and when any step fails. A workload that does not
// exist is not an error. A pair an interrupted setup left without its
// alias (see SetupWorkload) counts as the workload's: with podNetns when
// its pod end is there, and else as for TeardownWorkload (then it is
// deleted).
// Errors: ErrInvalidSpec for an empty ID,
// ErrNameCollision as for TeardownWorkload, and a failed deletion.
func (w *Workloads) DetachWorkload(ctx context.Context, id, podNetns string) error {
	if !w.made() {
		return errNotMade("Workloads", "detach workload")
	}
	if id == "" {
		return fmt.Errorf("%w: empty workload ID", ErrInvalidSpec)
	}
	var pc podConn
	if podNetns != "" {
		if pod, err := openNetns(podNetns); err == nil {
			pc, err = openPodConn(pod, false)
			pod.Close()
			if err == nil {
				defer pc.close()
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	l, err := w.ownedHostLink(id)
	if errors.Is(err, ErrNameCollision) {
		var u nl.Link
		if pc.h != nil {
			u = w.unclaimedHostLink(id, pc.h)
		}
		if u == nil {
			u = w.unclaimedHostLinkAnyNetns(id)
		}
		if u != nil {
			l, err = u, nil
		}
	}
	if err != nil || l == nil {
		return err
	}
	if pc.h != nil {
		derr := w.detach(id, l, pc)
		if derr == nil {
			return nil
		}
		w.opts.log.Info("detaching workload failed, deleting its veth pair", "workload", id, "error", derr)
	}
	if err := w.h.LinkDel(l); err != nil && !IsNotFound(err) {
		return fmt.Errorf("workload %s: delete %s: %w", id, l.Attrs().Name, err)
	}
	return nil
}

// detach is DetachWorkload's work once the host end l and a connection
// into the pod namespace are open; w.mu is held.
func (w *Workloads) detach(id string, l nl.Link, pc podConn) error {
	host := l.Attrs()
	pl, err := podEnd(pc.h, l, id)
	if err != nil {
		return err
	}
	pod := pl.Attrs()
	name, alias := DetachedIfaceName(id), detachedAliasPrefix+id
	if err := w.pipe.execNamed([][]byte{appendLinkDownMsg(nil, host.Index), appendRenameMsg(nil, host.Index, name, alias)},
		[]string{"set " + host.Name + " down", "rename " + host.Name + " " + name}); err != nil {
		return err
	}
	if err := pc.pipe.execNamed([][]byte{appendLinkDownMsg(nil, pod.Index), appendRenameMsg(nil, pod.Index, name, alias)},
		[]string{"set pod " + pod.Name + " down", "rename pod " + pod.Name + " " + name}); err != nil {
		return err
	}
	// Down drops the pod's IPv6 addresses (keep_addr_on_down=0) but not
	// its IPv4 ones.
	addrs, err := pc.h.AddrList(pl, nl.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("pod %s addresses: %w", name, err)
	}
	for _, a := range addrs {
		if err := pc.h.AddrDel(pl, &a); err != nil && !IsNotFound(err) && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("pod %s: delete %s: %w", name, a.IPNet, err)
		}
	}
	w.opts.log.Debug("workload detached", "workload", id, "host", host.Name, "as", name)
	return nil
}

// podEnd finds the pod end of workload id's pair, whose host end is host,
// in the namespace ph is bound to: the link with host's peer index
// (IFLA_LINK) that is a veth whose own peer index is host's, or that
// carries ContainerMAC(id) (the default MAC; a chosen one, WorkloadSpec.MAC,
// is not known here). An error when there is none there.
func podEnd(ph workloadPodHandle, host nl.Link, id string) (nl.Link, error) {
	peer := host.Attrs().ParentIndex
	pl, err := ph.LinkByIndex(peer)
	if err != nil {
		return nil, fmt.Errorf("pod end %d: %w", peer, err)
	}
	a := pl.Attrs()
	if bytes.Equal(a.HardwareAddr, ContainerMAC(id)) || (pl.Type() == "veth" && a.ParentIndex == host.Attrs().Index) {
		return pl, nil
	}
	return nil, fmt.Errorf("pod end %d is %s (%s), not this workload's", a.Index, a.Name, a.HardwareAddr)
}

// RemoveDetached deletes the veth pairs DetachWorkload left in the host
// namespace whose workload ID match accepts (nil: all), for CNI GC (the
// pairs whose pod namespace the runtime kept). Each deletion waits for
// the kernel (see DetachWorkload).
func (w *Workloads) RemoveDetached(ctx context.Context, match func(id string) bool) error {
	if !w.made() {
		return errNotMade("Workloads", "remove detached workloads")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	links, err := retryDump(w.h.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		id, ok := strings.CutPrefix(l.Attrs().Alias, detachedAliasPrefix)
		if !ok || (match != nil && !match(id)) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := w.h.LinkDel(l); err != nil && !IsNotFound(err) {
			errs = append(errs, fmt.Errorf("workload %s: delete detached %s: %w", id, l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// ListWorkloads returns the IDs of workloads that have a host veth made by
// tabby (any host prefix), sorted; for CNI GC.
func (w *Workloads) ListWorkloads(ctx context.Context) ([]string, error) {
	if !w.made() {
		return nil, errNotMade("Workloads", "list workloads")
	}
	links, err := retryDump(w.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var ids []string
	for _, l := range links {
		if id, ok := strings.CutPrefix(l.Attrs().Alias, aliasPrefix); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// CheckWorkload verifies that the kernel matches spec: both veth ends,
// peers of each other, up, with the MTU, MAC, addresses, routes and proxy
// ARP set. Differences wrap ErrMismatch; a missing workload wraps ErrLinkNotFound.
func (w *Workloads) CheckWorkload(ctx context.Context, spec WorkloadSpec) (WorkloadResult, error) {
	if !w.made() {
		return WorkloadResult{}, errNotMade("Workloads", "check workload")
	}
	spec, pod, err := openWorkload(spec)
	if err != nil {
		return WorkloadResult{}, err
	}
	defer pod.Close()
	ph, err := nl.NewHandleAt(netns.NsHandle(pod.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return WorkloadResult{}, fmt.Errorf("workload %s: netlink handle: %w", spec.ID, err)
	}
	defer ph.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.check(spec, pod, ph)
}

func (w *Workloads) check(spec WorkloadSpec, pod ns.NetNS, ph workloadPodHandle) (WorkloadResult, error) {
	var res WorkloadResult
	hl, err := w.ownedHostLink(spec.ID)
	if err != nil {
		return res, err
	}
	if hl == nil {
		return res, fmt.Errorf("workload %s: %w: %s", spec.ID, ErrLinkNotFound, w.HostIfaceName(spec.ID))
	}
	pl, err := ph.LinkByName(spec.IfName)
	if err != nil {
		return res, fmt.Errorf("workload %s: %w: %s in pod: %w", spec.ID, ErrLinkNotFound, spec.IfName, err)
	}
	ha, pa := hl.Attrs(), pl.Attrs()
	var bad []string
	mismatch := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	if hl.Type() != "veth" || pl.Type() != "veth" {
		mismatch("not a veth pair (%s/%s)", hl.Type(), pl.Type())
	}
	if ha.ParentIndex != pa.Index || pa.ParentIndex != ha.Index {
		mismatch("%s and %s are not peers", ha.Name, pa.Name)
	}
	for _, a := range []*nl.LinkAttrs{ha, pa} {
		if a.MTU != spec.MTU {
			mismatch("%s MTU %d, want %d", a.Name, a.MTU, spec.MTU)
		}
		if a.Flags&net.FlagUp == 0 {
			mismatch("%s is down", a.Name)
		}
	}
	if ha.HardwareAddr.String() != HostMAC().String() {
		mismatch("%s MAC %s", ha.Name, ha.HardwareAddr)
	}
	if want := spec.PodMAC(); !bytes.Equal(pa.HardwareAddr, want) {
		mismatch("pod %s MAC %s, want %s", pa.Name, pa.HardwareAddr, want)
	}
	addrs, err := ph.AddrList(pl, nl.FAMILY_ALL)
	if err != nil {
		return res, fmt.Errorf("workload %s: list pod addresses: %w", spec.ID, err)
	}
	hostRoutes, err := w.h.RouteListFiltered(nl.FAMILY_ALL, &nl.Route{LinkIndex: ha.Index}, nl.RT_FILTER_OIF)
	if err != nil {
		return res, fmt.Errorf("workload %s: list host routes: %w", spec.ID, err)
	}
	for _, a := range spec.Addresses {
		p := netip.PrefixFrom(a, a.BitLen())
		if !slices.ContainsFunc(addrs, func(x nl.Addr) bool { return ipNetToPrefix(x.IPNet, 0) == p }) {
			mismatch("pod lacks address %s", p)
		}
		if !slices.ContainsFunc(hostRoutes, func(r nl.Route) bool { return ipNetToPrefix(r.Dst, r.Family) == p }) {
			mismatch("host lacks route %s dev %s", p, ha.Name)
		}
	}
	podRs, err := ph.RouteListFiltered(nl.FAMILY_ALL, &nl.Route{LinkIndex: pa.Index}, nl.RT_FILTER_OIF)
	if err != nil {
		return res, fmt.Errorf("workload %s: list pod routes: %w", spec.ID, err)
	}
	for _, want := range podRoutes(spec, pa.Index) {
		if !slices.ContainsFunc(podRs, func(r nl.Route) bool {
			return ipNetToPrefix(r.Dst, r.Family) == ipNetToPrefix(want.Dst, 0) && ipToAddr(r.Gw) == ipToAddr(want.Gw)
		}) {
			mismatch("pod lacks route %s", want.Dst)
		}
	}
	if v, err := readSysctl(w.host, "net/ipv4/conf/"+ha.Name+"/proxy_arp"); err != nil || v != "1" {
		mismatch("proxy_arp on %s is %q (%v)", ha.Name, v, err)
	}
	if len(bad) > 0 {
		return res, fmt.Errorf("workload %s: %w: %s", spec.ID, ErrMismatch, strings.Join(bad, "; "))
	}
	res.Host = Interface{Name: ha.Name, MAC: ha.HardwareAddr, Index: ha.Index}
	res.Container = Interface{Name: pa.Name, MAC: pa.HardwareAddr, Index: pa.Index, Sandbox: spec.Netns}
	res.fillIPs(spec)
	return res, nil
}

// fillIPs sets the IPs and pod routes of a result from the spec.
func (r *WorkloadResult) fillIPs(spec WorkloadSpec) {
	for _, a := range spec.Addresses {
		gw := PodGatewayV4()
		if a.Is6() {
			gw = PodGatewayV6()
		}
		r.IPs = append(r.IPs, IPConfig{Address: netip.PrefixFrom(a, a.BitLen()), Gateway: gw, Interface: 1})
	}
	if spec.hasV4() {
		r.Routes = append(r.Routes, PodRoute{Dst: netip.MustParsePrefix("0.0.0.0/0"), GW: PodGatewayV4()})
	}
	if spec.hasV6() {
		r.Routes = append(r.Routes, PodRoute{Dst: netip.MustParsePrefix("::/0"), GW: PodGatewayV6()})
	}
}
