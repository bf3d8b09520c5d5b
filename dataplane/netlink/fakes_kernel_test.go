package netlink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// addNetns creates a throwaway namespace with `ip netns add` (nettest
// would be an import cycle here) and returns its path.
func addNetns(t *testing.T, prefix string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root to create network namespaces")
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := prefix + "-" + hex.EncodeToString(b[:])
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/var/run/netns/" + name
}

// errKind names the sentinel (or errno) an error wraps, for comparing the
// kernel's and a fake's answers.
func errKind(err error) string {
	if err == nil {
		return "ok"
	}
	for _, e := range []error{ErrInvalidSpec, ErrInvalidName, ErrInvalidPrefix, ErrNetnsNotFound, ErrNameCollision,
		ErrLinkNotFound, ErrMismatch, ErrNotReady, unix.EEXIST, unix.ESRCH, unix.ENODEV, unix.ENETUNREACH} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "other: " + err.Error()
}

// ownedRoutes lists the routes of protocol ProtocolRoutes (with
// RT_FILTER_TABLE in mask: of the main table only), normalised and sorted.
func ownedRoutes(t *testing.T, h RouteHandle, mask uint64) []string {
	t.Helper()
	krs, err := h.RouteListFiltered(nl.FAMILY_ALL, &nl.Route{Protocol: ProtocolRoutes}, mask)
	require.NoError(t, err)
	ln, err := listLinkNames(h)
	require.NoError(t, err)
	var out []string
	for _, kr := range krs {
		r, ok := fromKernel(kr, ln)
		require.True(t, ok)
		out = append(out, r.normalized().String())
	}
	slices.Sort(out)
	return out
}

// podLinkNames lists the interface names in the namespace at path, sorted.
func podLinkNames(t *testing.T, path string) []string {
	t.Helper()
	h, err := netns.GetFromPath(path)
	require.NoError(t, err)
	defer h.Close()
	nh, err := nl.NewHandleAt(h, unix.NETLINK_ROUTE)
	require.NoError(t, err)
	defer nh.Close()
	links, err := nh.LinkList()
	require.NoError(t, err)
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

// resultShape is a WorkloadResult without the ifindexes (which differ).
func resultShape(r WorkloadResult) string {
	return fmt.Sprintf("host %s %s | pod %s %s %s | ips %v | routes %v",
		r.Host.Name, r.Host.MAC, r.Container.Name, r.Container.MAC, r.Container.Sandbox, r.IPs, r.Routes)
}

// TestFakeWorkloadsMatchKernel makes the same calls on Workloads in a real
// namespace and on FakeWorkloads and requires the same outcome (error kind
// and result) for each, and the same host routes and workloads afterwards.
func TestFakeWorkloadsMatchKernel(t *testing.T) {
	ctx := context.Background()
	hostPath := addNetns(t, "tby-fkh")
	pod1, pod2 := addNetns(t, "tby-fk1"), addNetns(t, "tby-fk2")
	kw, err := NewWorkloads(hostPath)
	require.NoError(t, err)
	t.Cleanup(func() { _ = kw.Close() })
	hh, err := nl.NewHandleAt(netns.NsHandle(kw.host.Fd()), unix.NETLINK_ROUTE)
	require.NoError(t, err)
	t.Cleanup(hh.Close)

	fw, err := NewFakeWorkloads()
	require.NoError(t, err)
	fw.AddNetns(pod1)
	fw.AddNetns(pod2)
	foreign := HostIfaceName(DefaultHostPrefix, "foreign")
	out, err := exec.Command("ip", "-n", hostPath[len("/var/run/netns/"):], "link", "add", foreign, "type", "veth", "peer", "name", "x0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	fw.AddForeignHostLink(foreign)

	a4, a6, b4 := netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("fd00:244::10"), netip.MustParseAddr("10.244.1.11")
	specA := WorkloadSpec{ID: "k8s-pod-network.a", Netns: pod1, Addresses: []netip.Addr{a4}}
	d4, e4, f4, f6 := netip.MustParseAddr("10.244.1.12"), netip.MustParseAddr("10.244.1.13"), netip.MustParseAddr("10.244.1.14"), netip.MustParseAddr("fd00:244::14")
	specD := WorkloadSpec{ID: "d", Netns: pod2, IfName: "eth2"}
	specE := WorkloadSpec{ID: "e", Netns: pod2, IfName: "eth3"}
	specX := WorkloadSpec{ID: "k8s-pod-network.x", Netns: pod1, IfName: "eth7", MTU: 1400, Addresses: []netip.Addr{netip.MustParseAddr("10.244.1.15")}}
	mac1, mac2 := net.HardwareAddr{0x1c, 0x0c, 0x0a, 0xc0, 0xff, 0xee}, net.HardwareAddr{0x02, 0xca, 0xfe, 0, 0, 2}
	errAssign := errors.New("pool exhausted")
	type step struct {
		name string
		op   string // setup, check, teardown, func (SetupWorkloadFunc), detach, remove-detached, crash
		spec WorkloadSpec
		// For func: what addrs returns, and whether to wait in it for the
		// new pair and record what the half-made workload looks like.
		addrs    []netip.Addr
		addrsErr error
		mid      bool
	}
	with := func(s WorkloadSpec, f func(*WorkloadSpec)) WorkloadSpec { f(&s); return s }
	steps := []step{
		{name: "setup", op: "setup", spec: specA},
		{name: "setup again", op: "setup", spec: specA},
		{name: "check", op: "check", spec: specA},
		{name: "same pod, another interface name", op: "setup", spec: with(specA, func(s *WorkloadSpec) { s.IfName = "eth5" })},
		{name: "still there", op: "check", spec: specA},
		{name: "second workload, same pod interface name", op: "setup", spec: WorkloadSpec{ID: "b", Netns: pod1, Addresses: []netip.Addr{b4}}},
		{name: "second workload on eth1 takes A's address", op: "setup", spec: WorkloadSpec{ID: "b", Netns: pod1, IfName: "eth1", Addresses: []netip.Addr{a4}}},
		{name: "A lost its host route", op: "check", spec: specA},
		{name: "setup repairs A", op: "setup", spec: specA},
		{name: "B lost it now", op: "check", spec: WorkloadSpec{ID: "b", Netns: pod1, IfName: "eth1", Addresses: []netip.Addr{a4}}},
		{name: "new MTU rebuilds", op: "setup", spec: with(specA, func(s *WorkloadSpec) { s.MTU = 1400 })},
		{name: "check old MTU", op: "check", spec: specA},
		{name: "MAC: chosen rebuilds", op: "setup", spec: with(specA, func(s *WorkloadSpec) { s.MAC = mac1 })},
		{name: "MAC: check", op: "check", spec: with(specA, func(s *WorkloadSpec) { s.MAC = mac1 })},
		{name: "MAC: check without it", op: "check", spec: specA},
		{name: "MAC: setup again", op: "setup", spec: with(specA, func(s *WorkloadSpec) { s.MAC = mac1 })},
		{name: "MAC: another rebuilds", op: "setup", spec: with(specA, func(s *WorkloadSpec) { s.MAC = mac2 })},
		{name: "MAC: check the first", op: "check", spec: with(specA, func(s *WorkloadSpec) { s.MAC = mac1 })},
		{name: "MAC: multicast", op: "setup", spec: with(specA, func(s *WorkloadSpec) { s.MAC = net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1} })},
		{name: "MAC: zero", op: "setup", spec: with(specA, func(s *WorkloadSpec) { s.MAC = make(net.HardwareAddr, 6) })},
		{name: "MAC: EUI-64", op: "setup", spec: with(specA, func(s *WorkloadSpec) { s.MAC = net.HardwareAddr{2, 0, 0, 0, 0, 0, 0, 1} })},
		{name: "MAC: check multicast", op: "check", spec: with(specA, func(s *WorkloadSpec) { s.MAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} })},
		{name: "MAC: default again rebuilds", op: "setup", spec: specA},
		{name: "missing netns", op: "setup", spec: WorkloadSpec{ID: "c", Netns: "/var/run/netns/tby-fk-nonexistent"}},
		{name: "check missing netns", op: "check", spec: WorkloadSpec{ID: "c", Netns: "/var/run/netns/tby-fk-nonexistent"}},
		{name: "multicast address", op: "setup", spec: WorkloadSpec{ID: "c", Netns: pod2, Addresses: []netip.Addr{netip.MustParseAddr("224.0.0.1")}}},
		{name: "duplicate address", op: "setup", spec: WorkloadSpec{ID: "c", Netns: pod2, Addresses: []netip.Addr{b4, b4}}},
		{name: "bad interface name", op: "setup", spec: WorkloadSpec{ID: "c", Netns: pod2, IfName: "a/b"}},
		{name: "empty ID", op: "setup", spec: WorkloadSpec{Netns: pod2}},
		{name: "pod has lo", op: "setup", spec: WorkloadSpec{ID: "c", Netns: pod2, IfName: "lo"}},
		{name: "foreign host link", op: "setup", spec: WorkloadSpec{ID: "foreign", Netns: pod2}},
		{name: "teardown foreign", op: "teardown", spec: WorkloadSpec{ID: "foreign"}},
		{name: "check never set up", op: "check", spec: WorkloadSpec{ID: "c", Netns: pod2}},
		{name: "dual stack in pod2", op: "setup", spec: WorkloadSpec{ID: "c", Netns: pod2, Addresses: []netip.Addr{b4, a6}}},
		{name: "A moves to pod2 eth1", op: "setup", spec: with(specA, func(s *WorkloadSpec) { s.Netns, s.IfName = pod2, "eth1" })},
		{name: "A not in pod1 any more", op: "check", spec: specA},
		{name: "teardown A", op: "teardown", spec: specA},
		{name: "teardown A again", op: "teardown", spec: specA},
		{name: "check after teardown", op: "check", spec: with(specA, func(s *WorkloadSpec) { s.Netns, s.IfName = pod2, "eth1" })},
		{name: "teardown empty ID", op: "teardown"},

		// SetupWorkloadFunc: the pair is made while addrs runs.
		{name: "func: new workload", op: "func", spec: specD, addrs: []netip.Addr{d4}, mid: true},
		{name: "func: check", op: "check", spec: with(specD, func(s *WorkloadSpec) { s.Addresses = []netip.Addr{d4} })},
		{name: "func: retried", op: "func", spec: specD, addrs: []netip.Addr{d4}},
		{name: "func: retried, another address rebuilds", op: "func", spec: specD, addrs: []netip.Addr{e4}},
		{name: "func: IPAM fails, existing pair kept", op: "func", spec: specD, addrsErr: errAssign},
		{name: "func: IPAM fails, new pair removed", op: "func", spec: specE, addrsErr: errAssign, mid: true},
		{name: "func: bad address, new pair removed", op: "func", spec: specE, addrs: []netip.Addr{netip.MustParseAddr("224.0.0.1")}, mid: true},
		{name: "func: addresses in spec", op: "func", spec: with(specE, func(s *WorkloadSpec) { s.Addresses = []netip.Addr{e4} })},
		{name: "func: missing netns", op: "func", spec: WorkloadSpec{ID: "e", Netns: "/var/run/netns/tby-fk-nonexistent"}, addrs: []netip.Addr{e4}},
		{name: "func: pod has lo", op: "func", spec: with(specE, func(s *WorkloadSpec) { s.IfName = "lo" }), addrs: []netip.Addr{e4}},
		{name: "func: chosen MAC rebuilds", op: "func", spec: with(specD, func(s *WorkloadSpec) { s.MAC = mac1 }), addrs: []netip.Addr{e4}},
		{name: "func: check chosen MAC", op: "check", spec: with(specD, func(s *WorkloadSpec) { s.Addresses, s.MAC = []netip.Addr{e4}, mac1 })},
		{name: "func: bad MAC", op: "func", spec: with(specE, func(s *WorkloadSpec) { s.MAC = net.HardwareAddr{3, 0, 0, 0, 0, 1} }), addrs: []netip.Addr{f4}},
		{name: "func: dual stack, chosen MAC", op: "func", spec: with(specE, func(s *WorkloadSpec) { s.MAC = mac2 }), addrs: []netip.Addr{f4, f6}, mid: true},
		{name: "func: check dual stack", op: "check", spec: with(specE, func(s *WorkloadSpec) { s.Addresses, s.MAC = []netip.Addr{f4, f6}, mac2 })},

		// DetachWorkload: off the network, names freed, the pair kept
		// (E's pod end has a chosen MAC: it is found as the host end's peer).
		{name: "detach: dual stack", op: "detach", spec: specE},
		{name: "detach: check", op: "check", spec: with(specE, func(s *WorkloadSpec) { s.Addresses, s.MAC = []netip.Addr{f4, f6}, mac2 })},
		{name: "detach: again", op: "detach", spec: specE},
		{name: "detach: set up again in the same pod", op: "setup", spec: with(specE, func(s *WorkloadSpec) { s.Addresses = []netip.Addr{f4, f6} })},
		{name: "detach: an earlier pair still detached, deleted", op: "detach", spec: specE},
		{name: "detach: set up once more", op: "setup", spec: with(specE, func(s *WorkloadSpec) { s.Addresses = []netip.Addr{f4} })},
		{name: "detach: wrong netns, deleted", op: "detach", spec: with(specD, func(s *WorkloadSpec) { s.Netns = pod1 })},
		{name: "detach: no netns, deleted", op: "detach", spec: WorkloadSpec{ID: "e"}},
		{name: "detach: empty ID", op: "detach"},
		{name: "detach: foreign host link", op: "detach", spec: WorkloadSpec{ID: "foreign", Netns: pod2}},
		{name: "detach: D again, to remove", op: "func", spec: specD, addrs: []netip.Addr{d4}},
		{name: "detach: D", op: "detach", spec: specD},
		{name: "remove detached of others", op: "remove-detached", spec: WorkloadSpec{ID: "x"}},
		{name: "remove detached of D", op: "remove-detached", spec: WorkloadSpec{ID: "d"}},

		// A setup killed after making the pair, before the host end's
		// alias (op crash makes such a pair): setup in its netns rebuilds
		// it, DEL with its netns detaches it, DEL without one deletes it;
		// in another netns it is refused.
		{name: "crash: pair without alias", op: "crash", spec: specX},
		{name: "crash: check", op: "check", spec: specX},
		{name: "crash: setup in another netns", op: "setup", spec: with(specX, func(s *WorkloadSpec) { s.Netns = pod2 })},
		{name: "crash: setup rebuilds", op: "setup", spec: specX},
		{name: "crash: check after setup", op: "check", spec: specX},
		{name: "crash: teardown", op: "teardown", spec: specX},
		{name: "crash: again", op: "crash", spec: specX},
		{name: "crash: teardown without the netns", op: "teardown", spec: specX},
		{name: "crash: teardown again", op: "teardown", spec: specX},
		{name: "crash: once more", op: "crash", spec: specX},
		{name: "crash: detach", op: "detach", spec: specX},
		{name: "crash: after the detach", op: "crash", spec: specX},
		{name: "crash: detach, wrong netns, deleted", op: "detach", spec: with(specX, func(s *WorkloadSpec) { s.Netns = pod2 })},
		{name: "crash: remove detached", op: "remove-detached", spec: specX},
		{name: "crash: again after the removal", op: "crash", spec: specX},
		{name: "crash: made twice", op: "crash", spec: specX},
		{name: "crash: detach, no netns, deleted", op: "detach", spec: WorkloadSpec{ID: specX.ID}},

		{name: "func: teardown", op: "teardown", spec: specD},
		{name: "func: teardown dual stack", op: "teardown", spec: specE},
	}
	// run makes the step's call; for func it also returns what addrs saw:
	// "-" when it was not called, else the workloads listed and the check
	// of the half-made workload (with mid).
	run := func(m WorkloadManager, s step) (WorkloadResult, error, string) {
		switch s.op {
		case "setup":
			res, err := m.SetupWorkload(ctx, s.spec)
			return res, err, ""
		case "check":
			res, err := m.CheckWorkload(ctx, s.spec)
			return res, err, ""
		case "func":
			saw := "-"
			res, err := m.SetupWorkloadFunc(ctx, s.spec, func(ctx context.Context) ([]netip.Addr, error) {
				saw = "called"
				if s.mid {
					var ids []string
					require.Eventually(t, func() bool {
						ids, _ = m.ListWorkloads(ctx)
						return slices.Contains(ids, s.spec.ID)
					}, 5*time.Second, time.Millisecond, "%s: the pair exists while addrs runs", s.name)
					_, cerr := m.CheckWorkload(ctx, s.spec)
					saw = fmt.Sprintf("workloads %v, check %s", ids, errKind(cerr))
				}
				return s.addrs, s.addrsErr
			})
			return res, err, saw
		case "detach":
			return WorkloadResult{}, m.DetachWorkload(ctx, s.spec.ID, s.spec.Netns), ""
		case "remove-detached":
			return WorkloadResult{}, m.RemoveDetached(ctx, func(id string) bool { return id == s.spec.ID }), ""
		case "crash":
			// The pair as createPair makes it, no alias, nothing else.
			if m == WorkloadManager(fw) {
				return WorkloadResult{}, fw.AddInterruptedPair(s.spec), ""
			}
			sp := s.spec.withDefaults()
			out, err := exec.Command("ip", "-n", hostPath[len("/var/run/netns/"):], "link", "add", HostIfaceName(DefaultHostPrefix, sp.ID),
				"mtu", strconv.Itoa(sp.MTU), "address", HostMAC().String(), "type", "veth", "peer", "name", sp.IfName,
				"mtu", strconv.Itoa(sp.MTU), "address", sp.PodMAC().String(), "netns", sp.Netns[len("/var/run/netns/"):]).CombinedOutput()
			if err != nil {
				t.Logf("%s: ip link add: %s", s.name, out)
				return WorkloadResult{}, fmt.Errorf("create veth: %w", unix.EEXIST), ""
			}
			return WorkloadResult{}, nil, ""
		default:
			return WorkloadResult{}, m.TeardownWorkload(ctx, s.spec.ID), ""
		}
	}
	kernelRoutes := func() []string {
		rs, err := hh.RouteListFiltered(nl.FAMILY_ALL, &nl.Route{Protocol: ProtocolWorkload}, nl.RT_FILTER_PROTOCOL)
		require.NoError(t, err)
		var out []string
		for _, r := range rs {
			l, err := hh.LinkByIndex(r.LinkIndex)
			require.NoError(t, err)
			out = append(out, ipNetToPrefix(r.Dst, r.Family).String()+" dev "+l.Attrs().Name)
		}
		slices.Sort(out)
		return out
	}
	kernelDetached := func() []string {
		links, err := hh.LinkList()
		require.NoError(t, err)
		var ids []string
		for _, l := range links {
			if id, ok := strings.CutPrefix(l.Attrs().Alias, detachedAliasPrefix); ok {
				require.Equal(t, DetachedIfaceName(id), l.Attrs().Name)
				require.Zero(t, l.Attrs().Flags&unix.IFF_UP, "%s is down", l.Attrs().Name)
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids
	}
	for _, s := range steps {
		kres, kerr, ksaw := run(kw, s)
		fres, ferr, fsaw := run(fw, s)
		require.Equal(t, errKind(kerr), errKind(ferr), "%s: kernel %v, fake %v", s.name, kerr, ferr)
		assert.Equal(t, ksaw, fsaw, "%s: what addrs saw", s.name)
		if s.op == "func" {
			t.Logf("%s: %s; addrs saw: %s", s.name, errKind(kerr), ksaw)
		}
		if s.addrsErr != nil {
			assert.ErrorIs(t, ferr, s.addrsErr, s.name)
		}
		if kerr == nil {
			assert.Equal(t, resultShape(kres), resultShape(fres), s.name)
		}
		assert.Equal(t, kernelRoutes(), fw.HostRoutes(), "host routes after %s", s.name)
		kids, err := kw.ListWorkloads(ctx)
		require.NoError(t, err)
		fids, err := fw.ListWorkloads(ctx)
		require.NoError(t, err)
		assert.Equal(t, kids, fids, "workloads after %s", s.name)
		assert.Equal(t, kernelDetached(), fw.DetachedWorkloads(), "detached after %s", s.name)
		for _, pod := range []string{pod1, pod2} {
			assert.Equal(t, podLinkNames(t, pod), fw.PodLinks(pod), "%s links after %s", pod, s.name)
		}
	}

	// Deleting the pod namespace removes the pair with it (the kernel does
	// so asynchronously); teardown stays idempotent.
	specC := WorkloadSpec{ID: "c", Netns: pod2, Addresses: []netip.Addr{b4, a6}}
	out, err = exec.Command("ip", "netns", "del", pod2[len("/var/run/netns/"):]).CombinedOutput()
	require.NoError(t, err, "%s", out)
	fw.DeleteNetns(pod2)
	_, kerr := kw.CheckWorkload(ctx, specC)
	_, ferr := fw.CheckWorkload(ctx, specC)
	assert.Equal(t, errKind(kerr), errKind(ferr))
	assert.ErrorIs(t, ferr, ErrNetnsNotFound)
	fids, err := fw.ListWorkloads(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, fids)
	require.Eventually(t, func() bool {
		kids, err := kw.ListWorkloads(ctx)
		return err == nil && slices.Equal(kids, fids)
	}, 10*time.Second, 20*time.Millisecond, "the kernel removes the pairs of a deleted netns")
	assert.NoError(t, kw.TeardownWorkload(ctx, "c"))
	assert.NoError(t, fw.TeardownWorkload(ctx, "c"))
	assert.Equal(t, kernelRoutes(), fw.HostRoutes())
}

// TestFakeVXLANMatchesKernel makes the same calls on VXLAN in a real
// namespace and on FakeVXLAN and requires the same outcome for each, and
// the same routes, neighbour and FDB entries after each Reconcile.
func TestFakeVXLANMatchesKernel(t *testing.T) {
	ctx := context.Background()
	kh, _ := kernelNode(t)
	fh := NewFakeRouteHandle()
	fh.AddLink("eth0", netip.MustParsePrefix("10.99.0.11/24"), netip.MustParsePrefix("fd00:99::11/64"))
	ko, err := NewRouteOwner(kh)
	require.NoError(t, err)
	fo, err := NewRouteOwner(fh)
	require.NoError(t, err)
	cfg := VXLANConfig{Parent: "eth0", LocalIP: addr("10.99.0.11"), TunnelAddr: addr("10.244.1.0")}

	// Configuration errors.
	for _, bad := range []VXLANConfig{
		{Parent: "eth0", LocalIP: addr("fd00:99::11"), TunnelAddr: addr("10.244.1.0")},
		{Parent: "eth0", LocalIP: addr("10.99.0.11"), TunnelAddr: addr("10.244.1.0"), VNI: 1 << 24},
		{Parent: "a b", LocalIP: addr("10.99.0.11"), TunnelAddr: addr("10.244.1.0")},
	} {
		_, kerr := NewVXLAN(kh, ko, bad)
		_, ferr := NewFakeVXLAN(fh, fo, bad)
		assert.Equal(t, errKind(kerr), errKind(ferr))
		assert.Error(t, ferr)
	}
	// A parent that does not exist.
	noParent := cfg
	noParent.Parent = "nosuch"
	kv, err := NewVXLAN(kh, ko, noParent)
	require.NoError(t, err)
	fv, err := NewFakeVXLAN(fh, fo, noParent)
	require.NoError(t, err)
	assert.Equal(t, errKind(kv.Reconcile(ctx)), errKind(fv.Reconcile(ctx)))
	assert.ErrorIs(t, fv.Reconcile(ctx), ErrLinkNotFound)

	kv, err = NewVXLAN(kh, ko, cfg)
	require.NoError(t, err)
	fv, err = NewFakeVXLAN(fh, fo, cfg)
	require.NoError(t, err)
	peer := func(name, nodeIP, tunnel string, blocks ...string) VXLANPeer {
		p := VXLANPeer{Name: name, NodeIP: addr(nodeIP), TunnelAddr: addr(tunnel)}
		for _, b := range blocks {
			p.Blocks = append(p.Blocks, pfx(b))
		}
		return p
	}
	n2 := peer("node2", "10.99.0.12", "10.244.2.0", "10.244.2.0/26")
	n3 := peer("node3", "10.99.0.13", "10.244.3.0", "10.244.3.0/26", "10.244.9.64/26")

	kernelEntries := func() []string {
		l, err := kh.LinkByName(DefaultVXLANName)
		if err != nil {
			return nil
		}
		var out []string
		neighs, err := kh.NeighList(l.Attrs().Index, unix.AF_INET)
		require.NoError(t, err)
		for _, n := range neighs {
			out = append(out, fmt.Sprintf("neigh %s lladdr %s", ipToAddr(n.IP), n.HardwareAddr))
		}
		fdb, err := kh.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
		require.NoError(t, err)
		for _, n := range fdb {
			out = append(out, fmt.Sprintf("fdb %s dst %s", n.HardwareAddr, ipToAddr(n.IP)))
		}
		slices.Sort(out)
		return out
	}
	routes := func(h RouteHandle) []string { return ownedRoutes(t, h, nl.RT_FILTER_PROTOCOL) }
	steps := []struct {
		name string
		do   func(VXLANManager) error
	}{
		{"set two peers", func(m VXLANManager) error { return m.SetPeers([]VXLANPeer{n2, n3}) }},
		{"reconcile", func(m VXLANManager) error { return m.Reconcile(ctx) }},
		{"duplicate peer", func(m VXLANManager) error { return m.SetPeers([]VXLANPeer{n2, n2}) }},
		{"IPv6 node IP", func(m VXLANManager) error { return m.UpsertPeer(peer("node4", "fd00:99::14", "10.244.4.0")) }},
		{"unmasked block", func(m VXLANManager) error {
			return m.UpsertPeer(peer("node4", "10.99.0.14", "10.244.4.0", "10.244.4.1/26"))
		}},
		{"no name", func(m VXLANManager) error { return m.UpsertPeer(peer("", "10.99.0.14", "10.244.4.0")) }},
		{"reconcile unchanged", func(m VXLANManager) error { return m.Reconcile(ctx) }},
		{"node2 moves", func(m VXLANManager) error {
			return m.UpsertPeer(peer("node2", "10.99.0.22", "10.244.2.0", "10.244.2.0/26"))
		}},
		{"node3 leaves", func(m VXLANManager) error { return m.RemovePeer("node3") }},
		{"remove unknown", func(m VXLANManager) error { return m.RemovePeer("node9") }},
		{"reconcile changes", func(m VXLANManager) error { return m.Reconcile(ctx) }},
		{"delete", func(m VXLANManager) error { return m.Delete(ctx) }},
		{"delete again", func(m VXLANManager) error { return m.Delete(ctx) }},
	}
	for _, s := range steps {
		kerr, ferr := s.do(kv), s.do(fv)
		require.Equal(t, errKind(kerr), errKind(ferr), "%s: kernel %v, fake %v", s.name, kerr, ferr)
		assert.Equal(t, kv.Peers(), fv.Peers(), s.name)
		if kerr == nil && strings.HasPrefix(s.name, "reconcile") {
			assert.Equal(t, kernelEntries(), fv.Entries(), s.name)
			assert.Equal(t, routes(kh), routes(fh), s.name)
		}
		if s.name == "reconcile" {
			assert.Len(t, fv.Entries(), 4, "a neighbour and an FDB entry per peer")
			assert.Len(t, routes(fh), 3, "one route per peer block")
		}
	}
	_, err = ko.Reconcile(ctx)
	require.NoError(t, err)
	_, err = fo.Reconcile(ctx)
	require.NoError(t, err)
	assert.Empty(t, routes(kh))
	assert.Empty(t, routes(fh))
	_, err = kh.LinkByName(DefaultVXLANName)
	assert.Error(t, err)
	assert.Zero(t, fakeLinkIndex(fh, DefaultVXLANName))
	assert.Equal(t, kv.Config(), fv.Config())
}
