package netlink

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernelNode makes a throwaway namespace with eth0 (a veth whose peer
// stays in the same namespace) addressed 10.99.0.11/24 and fd00:99::11/64,
// and returns a KernelHandle for it. It cannot use nettest (import cycle),
// so it shells out to ip(8).
func kernelNode(t *testing.T) (*KernelHandle, map[string]int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root to create network namespaces")
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "tby-conf-" + hex.EncodeToString(b[:])
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %v: %s", args, out)
	}
	run("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	run("-n", name, "addr", "add", "10.99.0.11/24", "dev", "eth0")
	run("-n", name, "addr", "add", "fd00:99::11/64", "dev", "eth0", "nodad")
	run("-n", name, "link", "set", "eth0", "up")
	run("-n", name, "link", "set", "peer0", "up")
	kh, err := NewKernelHandle("/var/run/netns/" + name)
	require.NoError(t, err)
	t.Cleanup(kh.Close)
	ln, err := listLinkNames(kh)
	require.NoError(t, err)
	return kh, ln.byName
}

// TestFakeMatchesKernel runs the same route writes against the fake and a
// real namespace and requires the same outcome (error kind) for each, and
// the same routes afterwards: the fake must reject what the kernel rejects.
func TestFakeMatchesKernel(t *testing.T) {
	kh, idx := kernelNode(t)
	fake := NewFakeRouteHandle()
	fidx := map[string]int{"eth0": fake.AddLink("eth0", pfx("10.99.0.11/24"), pfx("fd00:99::11/64"))}

	type step struct {
		name string
		kind RouteOpKind
		r    Route
	}
	steps := []step{
		{"add via gateway", RouteOpAdd, RouteVia(pfx("10.244.2.0/26"), addr("10.99.0.12"))},
		{"add same key again", RouteOpAdd, Blackhole(pfx("10.244.2.0/26"))},
		{"replace it", RouteOpReplace, Blackhole(pfx("10.244.2.0/26"))},
		{"gateway outside connected networks", RouteOpAdd, RouteVia(pfx("10.244.3.0/26"), addr("172.16.0.1"))},
		{"onlink gateway outside", RouteOpAdd, Route{Dst: pfx("10.244.4.0/26"), NextHops: []NextHop{{Gateway: addr("172.16.0.1"), Dev: "eth0", OnLink: true}}}},
		{"ecmp", RouteOpAdd, RouteVia(pfx("10.96.0.0/12"), addr("10.99.0.12"), addr("10.99.0.13"))},
		{"v6 default metric", RouteOpAdd, RouteVia(pfx("fd00:244:2::/122"), addr("fd00:99::12"))},
		{"v6 same key with explicit 1024", RouteOpAdd, Route{Dst: pfx("fd00:244:2::/122"), Metric: 1024, Type: RouteBlackhole}},
		{"other table", RouteOpAdd, Route{Table: 100, Dst: pfx("10.244.2.0/26"), Type: RouteUnreachable}},
		{"delete missing", RouteOpDelete, Blackhole(pfx("10.244.9.0/26"))},
		{"delete present", RouteOpDelete, Route{Table: 100, Dst: pfx("10.244.2.0/26"), Type: RouteUnreachable}},
	}
	kind := func(err error) string {
		for _, e := range []error{unix.EEXIST, unix.ESRCH, unix.ENETUNREACH, unix.ENODEV, unix.EINVAL} {
			if errors.Is(err, e) {
				return e.Error()
			}
		}
		if err != nil {
			return "other: " + err.Error()
		}
		return "ok"
	}
	for _, s := range steps {
		require.NoError(t, s.r.Validate(), s.name)
		toK := func(names map[string]int) *nl.Route {
			ln := linkNames{byName: names, byIndex: map[int]string{}}
			kr, err := toKernel(s.r, ProtocolRoutes, ln)
			require.NoError(t, err)
			return kr
		}
		kerr := kh.RouteBatch([]RouteOp{{Kind: s.kind, Route: toK(idx)}})[0]
		ferr := fake.RouteBatch([]RouteOp{{Kind: s.kind, Route: toK(fidx)}})[0]
		assert.Equal(t, kind(kerr), kind(ferr), s.name)
	}
	// A next hop on a link that does not exist.
	bad := &nl.Route{Dst: prefixToIPNet(pfx("10.244.8.0/26")), LinkIndex: 999, Protocol: ProtocolRoutes, Type: unix.RTN_UNICAST}
	assert.Equal(t, kind(kh.RouteBatch([]RouteOp{{Kind: RouteOpAdd, Route: bad}})[0]),
		kind(fake.RouteBatch([]RouteOp{{Kind: RouteOpAdd, Route: bad}})[0]), "unknown link")

	list := func(h RouteHandle) []string { return ownedRoutes(t, h, nl.RT_FILTER_TABLE|nl.RT_FILTER_PROTOCOL) }
	assert.Equal(t, list(kh), list(fake))
	assert.Len(t, list(kh), 4)
}
