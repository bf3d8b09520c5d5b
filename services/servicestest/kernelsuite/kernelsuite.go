// Package kernelsuite is the conformance suite every services backend
// (services/nftables, services/iptables) runs against the kernel: real
// TCP and UDP through a one-node nettest topology in network namespaces.
// It skips unless root.
package kernelsuite

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	"github.com/tabbynet/tabby/services/conntrack"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// Backend is the part of a services backend the suite drives.
type Backend interface {
	Sync(ctx context.Context) error
}

// Factory makes the backend under test for node, rendering tr; stale is
// the conntrack cleaner's function for WithStaleFlows. ClusterCIDRs
// should be nettest.PoolCIDR.
type Factory func(t *testing.T, node *nettest.Node, tr *services.Tracker, stale func(context.Context, []services.StaleFlow)) Backend

// Features are the behaviours in which the backends differ.
type Features struct {
	// LocalhostNodePorts: node ports answer on 127.0.0.1 from the node
	// itself (iptables), else they must not (nftables).
	LocalhostNodePorts bool
	// RejectUnservedClusterIPPorts: a connection to a cluster IP on a
	// port no Service serves is rejected (nftables, kube-proxy's
	// cluster-ips set); else it is left alone (iptables) and the
	// scenario is skipped.
	RejectUnservedClusterIPPorts bool
}

// Run runs every scenario as a subtest.
func Run(t *testing.T, f Factory, feat Features) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Factory, Features)
	}{
		{"ClusterIPAndNodePort", clusterIPAndNodePort},
		{"Affinity", affinity},
		{"ExternalTrafficPolicyLocal", externalTrafficPolicyLocal},
		{"BothTrafficPoliciesLocal", bothTrafficPoliciesLocal},
		{"UDPEndpointReplaced", udpEndpointReplaced},
		{"UDPLastEndpointRemoved", udpLastEndpointRemoved},
		{"BadInput", badInput},
		{"Churn", churn},
		{"Hairpin", hairpin},
		{"HairpinPeer", func(t *testing.T, f Factory, _ Features) { HairpinPeer(t, f) }},
		{"Localhost", localhost},
		{"UnservedClusterIPPort", unservedClusterIPPort},
		{"LoadBalancerSourceRanges", loadBalancerSourceRanges},
		{"SharedDestination", sharedDestination},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f, feat) })
	}
}

type env struct {
	topo     *nettest.Topology
	node     *nettest.Node
	backends []*nettest.Pod
	client   *nettest.Pod
	tr       *services.Tracker
	b        Backend
	// logs holds what the Tracker logged (also copied to stderr). The
	// slog handler serialises its writes; read it only between calls
	// into the Tracker and the backend.
	logs *bytes.Buffer
}

func newEnv(t *testing.T, f Factory, nBackends int) *env {
	t.Helper()
	topo := nettest.NewTopology(t, nettest.Nodes(1)) // skips unless root
	e := &env{topo: topo, node: topo.Node(0)}
	for range nBackends {
		b := e.node.AddPod(t)
		b.ListenTCP(t, 8080)
		b.ListenUDP(t, 5353)
		e.backends = append(e.backends, b)
	}
	e.client = e.node.AddPod(t)
	e.logs = &bytes.Buffer{}
	e.tr = services.NewTracker(services.TrackerConfig{NodeName: e.node.Name}, slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, os.Stderr), nil)))
	cleaner, closeCT, err := conntrack.NewInNetns(e.node.NS.Path, nil)
	require.NoError(t, err)
	t.Cleanup(closeCT)
	e.b = f(t, e.node, e.tr, cleaner.Func())
	return e
}

func (e *env) slice(svc string, pods ...*nettest.Pod) {
	var eps []st.Endpoint
	for _, b := range pods {
		eps = append(eps, st.Endpoint{IP: b.IP.String(), Node: e.node.Name})
	}
	e.tr.OnEndpointSliceUpdate(st.Slice("default", svc, svc+"-1",
		[]st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}, {Name: "dns", Proto: v1.ProtocolUDP, Port: 5353}}, eps...))
}

// diagnose logs what the kernel holds when a connection that should have
// worked did not: the neighbours of the node and the client, the node's
// TCP conntrack entries (an [UNREPLIED] one shows where the lost SYN was
// sent) and its NAT rules, whichever backend wrote them.
func (e *env) diagnose(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []struct {
		ns   *nettest.Netns
		what string
		cmd  []string
	}{
		{e.node.NS, "node neighbours", []string{"ip", "neigh"}},
		{e.client.NS, "client neighbours", []string{"ip", "neigh"}},
		{e.node.NS, "node conntrack", []string{"conntrack", "-L", "-p", "tcp"}},
		{e.node.NS, "node nftables", []string{"nft", "list", "ruleset"}},
		{e.node.NS, "node iptables nat", []string{"iptables-save", "-t", "nat"}},
	} {
		out, err := c.ns.Run(ctx, c.cmd[0], c.cmd[1:]...)
		t.Logf("%s (%v, err %v):\n%s", c.what, c.cmd, err, out)
	}
}

func (e *env) sync(t *testing.T) {
	t.Helper()
	require.NoError(t, e.b.Sync(context.Background()))
}

// distribution opens n TCP connections from the client and counts the
// answering backends.
func distribution(t *testing.T, from *nettest.Pod, to netip.AddrPort, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		name, err := from.Probe("tcp", to, 2*time.Second)
		require.NoError(t, err)
		got[name]++
	}
	return got
}

func clusterIPAndNodePort(t *testing.T, f Factory, _ Features) {
	e := newEnv(t, f, 3)
	e.tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 30080), st.Port("dns", v1.ProtocolUDP, 53, 0)))
	e.slice("web", e.backends...)
	e.tr.OnServiceUpdate(st.Service("default", "empty", "10.96.0.11", st.Port("http", v1.ProtocolTCP, 80, 30081)))
	e.sync(t)

	n, tol := 1000, 0.25
	if testing.Short() {
		n, tol = 150, 0.6
	}
	spread := func(what string, got map[string]int) {
		t.Helper()
		t.Logf("%s: %d connections: %v", what, n, got)
		require.Len(t, got, 3, "%s: all backends reached: %v", what, got)
		for _, b := range e.backends {
			c := float64(got[b.Name])
			assert.InDelta(t, float64(n)/3, c, tol*float64(n)/3, "%s: backend %s of %v", what, b.Name, got)
		}
	}
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	spread("cluster IP from a pod", distribution(t, e.client, vip, n))

	// NodePort from an external client on the fabric, to the node
	// address, spread over the backends within the same tolerance.
	ext := e.topo.AddClient(t)
	spread("node port from an external client", distribution(t, ext, netip.AddrPortFrom(e.node.IP, 30080), n))

	// The node port answers on every address of the node: a second one
	// (on its loopback device), which the external client routes to it.
	second := netip.MustParseAddr("192.0.2.50")
	_, err := e.node.NS.Run(context.Background(), "ip", "addr", "add", second.String()+"/32", "dev", "lo")
	require.NoError(t, err)
	require.NoError(t, ext.NS.Handle().RouteAdd(&nl.Route{Dst: &net.IPNet{IP: second.AsSlice(), Mask: net.CIDRMask(32, 32)}, Gw: e.node.IP.AsSlice()}))
	got := distribution(t, ext, netip.AddrPortFrom(second, 30080), 30)
	assert.Greater(t, len(got), 1, "node port on the node's second address spreads: %v", got)

	// UDP through the cluster IP.
	ans, err := e.client.Probe("udp", netip.MustParseAddrPort("10.96.0.10:53"), 2*time.Second)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(ans, e.node.Name), ans)

	// No endpoints: connection refused, on the cluster IP and the node port.
	_, err = e.client.Probe("tcp", netip.MustParseAddrPort("10.96.0.11:80"), 2*time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused")
	_, err = ext.Probe("tcp", netip.AddrPortFrom(e.node.IP, 30081), 2*time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused")

	// Endpoint churn: one backend goes, the others keep answering.
	e.slice("web", e.backends[1:]...)
	e.sync(t)
	got = distribution(t, e.client, vip, 30)
	assert.Zero(t, got[e.backends[0].Name], "removed backend still used: %v", got)

	// The service goes: nothing answers on its address any more.
	e.tr.OnServiceDelete(st.Service("default", "web", "10.96.0.10"))
	e.sync(t)
	_, err = e.client.Probe("tcp", vip, 500*time.Millisecond)
	require.Error(t, err, "deleted service still answers")
}

func affinity(t *testing.T, f Factory, _ Features) {
	e := newEnv(t, f, 3)
	e.tr.OnServiceUpdate(st.Service("default", "sticky", "10.96.0.12", st.Port("http", v1.ProtocolTCP, 80, 0), func(s *v1.Service) {
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	}))
	e.slice("sticky", e.backends...)
	e.sync(t)
	got := distribution(t, e.client, netip.MustParseAddrPort("10.96.0.12:80"), 30)
	assert.Len(t, got, 1, "one client pinned to one backend: %v", got)
}

// remoteAddrServer listens on port in pod and sends each accepted
// connection's remote address to the returned channel.
func remoteAddrServer(t *testing.T, pod *nettest.Pod, addr netip.AddrPort) <-chan netip.AddrPort {
	t.Helper()
	var ln net.Listener
	require.NoError(t, pod.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	ch := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- netip.MustParseAddrPort(c.RemoteAddr().String())
			c.Close()
		}
	}()
	return ch
}

func externalTrafficPolicyLocal(t *testing.T, f Factory, _ Features) {
	e := newEnv(t, f, 1)
	b := e.backends[0]
	seen := remoteAddrServer(t, b, netip.AddrPortFrom(b.IP, 9090))
	local := func(s *v1.Service) { s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal }
	e.tr.OnServiceUpdate(st.Service("default", "loc", "10.96.0.13", st.Port("http", v1.ProtocolTCP, 80, 30090), local))
	e.tr.OnEndpointSliceUpdate(st.Slice("default", "loc", "loc-1", []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 9090}},
		st.Endpoint{IP: b.IP.String(), Node: e.node.Name}))
	// Same, but its only endpoint is on another node.
	e.tr.OnServiceUpdate(st.Service("default", "far", "10.96.0.14", st.Port("http", v1.ProtocolTCP, 80, 30091), local))
	e.tr.OnEndpointSliceUpdate(st.Slice("default", "far", "far-1", []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 9090}},
		st.Endpoint{IP: b.IP.String(), Node: "elsewhere"}))
	e.sync(t)

	ext := e.topo.AddClient(t)
	_, err := ext.Probe("tcp", netip.AddrPortFrom(e.node.IP, 30090), 2*time.Second)
	require.NoError(t, err)
	select {
	case from := <-seen:
		assert.Equal(t, ext.IP, from.Addr(), "source address kept")
	case <-time.After(2 * time.Second):
		t.Fatal("backend saw no connection")
	}
	_, err = ext.Probe("tcp", netip.AddrPortFrom(e.node.IP, 30091), 500*time.Millisecond)
	require.Error(t, err, "no local endpoint: dropped")
	assert.NotContains(t, err.Error(), "refused", "dropped, not rejected")
}

// bothTrafficPoliciesLocal: internalTrafficPolicy and
// externalTrafficPolicy Local on a NodePort Service whose only endpoint
// is labelled with another node (the pod is on this one, so it is
// reachable). A pod and the node itself reach it through the node port
// (kube-proxy short-circuits their traffic to the cluster-wide
// endpoints whatever internalTrafficPolicy says); an outside client is
// dropped there, and the cluster IP (no local endpoint) drops too.
func bothTrafficPoliciesLocal(t *testing.T, f Factory, _ Features) {
	e := newEnv(t, f, 1)
	b := e.backends[0]
	e.tr.OnServiceUpdate(st.Service("default", "both", "10.96.0.20", st.Port("http", v1.ProtocolTCP, 80, 30093), func(s *v1.Service) {
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		local := v1.ServiceInternalTrafficPolicyLocal
		s.Spec.InternalTrafficPolicy = &local
	}))
	e.tr.OnEndpointSliceUpdate(st.Slice("default", "both", "both-1", []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}},
		st.Endpoint{IP: b.IP.String(), Node: "elsewhere"}))
	e.sync(t)

	np := netip.AddrPortFrom(e.node.IP, 30093)
	name, err := e.client.Probe("tcp", np, 2*time.Second)
	if err != nil {
		e.diagnose(t)
	}
	require.NoError(t, err, "pod to the node port")
	assert.Equal(t, b.Name, name)
	name, err = e.node.Host().Probe("tcp", np, 2*time.Second)
	if err != nil {
		e.diagnose(t)
	}
	require.NoError(t, err, "node to its own node port")
	assert.Equal(t, b.Name, name)

	ext := e.topo.AddClient(t)
	_, err = ext.Probe("tcp", np, 500*time.Millisecond)
	require.Error(t, err, "outside client, no local endpoint: dropped")
	assert.NotContains(t, err.Error(), "refused", "dropped, not rejected")
	_, err = e.client.Probe("tcp", netip.MustParseAddrPort("10.96.0.20:80"), 500*time.Millisecond)
	require.Error(t, err, "cluster IP, no local endpoint: dropped")
	assert.NotContains(t, err.Error(), "refused", "dropped, not rejected")
}

// loadBalancerSourceRanges: two external clients that route a
// load-balancer IP to the node; the one inside the Service's
// loadBalancerSourceRanges reaches the backend through the LB IP, the
// other (another address) is dropped there, not refused, yet reaches
// the node port; a pod (outside the ranges) still reaches the cluster
// IP.
func loadBalancerSourceRanges(t *testing.T, f Factory, _ Features) {
	e := newEnv(t, f, 1)
	lbIP := netip.MustParseAddr("203.0.113.10")
	allowed, denied := e.topo.AddClient(t), e.topo.AddClient(t)
	for _, c := range []*nettest.Pod{allowed, denied} {
		dst := &net.IPNet{IP: lbIP.AsSlice(), Mask: net.CIDRMask(32, 32)}
		require.NoError(t, c.NS.Handle().RouteAdd(&nl.Route{Dst: dst, Gw: e.node.IP.AsSlice()}))
	}
	e.tr.OnServiceUpdate(st.Service("default", "fw", "10.96.0.16", st.Port("http", v1.ProtocolTCP, 80, 30092),
		st.LoadBalancer(lbIP.String()), st.SourceRanges(" "+allowed.IP.String()+"/32", "198.51.100.0/24")))
	e.slice("fw", e.backends[0])
	e.sync(t)

	to := netip.AddrPortFrom(lbIP, 80)
	name, err := allowed.Probe("tcp", to, 2*time.Second)
	require.NoError(t, err, "client in the source ranges")
	assert.Equal(t, e.backends[0].Name, name)
	_, err = denied.Probe("tcp", to, 500*time.Millisecond)
	require.Error(t, err, "client outside the source ranges")
	assert.NotContains(t, err.Error(), "refused", "dropped, not rejected")
	_, err = denied.Probe("tcp", netip.AddrPortFrom(e.node.IP, 30092), 2*time.Second)
	require.NoError(t, err, "node port not filtered")
	_, err = e.client.Probe("tcp", netip.AddrPortFrom(netip.MustParseAddr("10.96.0.16"), 80), 2*time.Second)
	require.NoError(t, err, "cluster IP not filtered")
	_, err = e.client.Probe("tcp", to, 500*time.Millisecond)
	require.Error(t, err, "a pod outside the source ranges, at the LB IP")

	// The denied client's range added: it gets in.
	e.tr.OnServiceUpdate(st.Service("default", "fw", "10.96.0.16", st.Port("http", v1.ProtocolTCP, 80, 30092),
		st.LoadBalancer(lbIP.String()), st.SourceRanges(allowed.IP.String()+"/32", denied.IP.String()+"/32")))
	e.sync(t)
	_, err = denied.Probe("tcp", to, 2*time.Second)
	require.NoError(t, err, "client added to the source ranges")
}

// udpDNS makes a UDP Service dns at vip:53 whose one endpoint is the
// first backend, syncs, and returns the backends and ask, which sends a
// datagram from one client socket (so one conntrack entry for all
// calls) and returns the answering backend's name.
func udpDNS(t *testing.T, f Factory, vip string) (e *env, a, b *nettest.Pod, ask func() (string, error)) {
	t.Helper()
	e = newEnv(t, f, 2)
	a, b = e.backends[0], e.backends[1]
	e.tr.OnServiceUpdate(st.Service("default", "dns", vip, st.Port("dns", v1.ProtocolUDP, 53, 0)))
	e.slice("dns", a)
	e.sync(t)
	c, err := e.client.Dial(context.Background(), "udp", netip.AddrPortFrom(netip.MustParseAddr(vip), 53))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return e, a, b, func() (string, error) {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return "", err
		}
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		return string(buf[:n]), err
	}
}

// udpEndpointReplaced sends from one UDP socket (so one conntrack entry)
// before and after its endpoint is replaced: the conntrack cleanup makes
// the next datagram reach the new endpoint at once, though the old one
// still listens.
func udpEndpointReplaced(t *testing.T, f Factory, _ Features) {
	e, a, b, ask := udpDNS(t, f, "10.96.0.15")
	got, err := ask()
	require.NoError(t, err)
	assert.Equal(t, a.Name, got)
	e.slice("dns", b)
	e.sync(t)
	got, err = ask()
	require.NoError(t, err)
	assert.Equal(t, b.Name, got, "stale conntrack entry still sends to the removed endpoint")
}

// udpLastEndpointRemoved: one UDP socket's flow is DNATed to the
// Service's only endpoint; once the Service has no endpoint left, the
// next datagram is rejected (ICMP port unreachable: "connection refused"
// on the connected socket) though the old endpoint still listens, as
// the conntrack cleanup deleted the flow (without it the flow keeps
// going to the old endpoint); then a new endpoint answers the same
// socket (the cleanup of the flows that were not DNATed).
func udpLastEndpointRemoved(t *testing.T, f Factory, _ Features) {
	e, a, b, ask := udpDNS(t, f, "10.96.0.22")
	got, err := ask()
	require.NoError(t, err)
	assert.Equal(t, a.Name, got)

	e.slice("dns")
	e.sync(t)
	got, err = ask()
	require.Error(t, err, "answered by %q after the last endpoint went: stale conntrack entry", got)
	assert.Contains(t, err.Error(), "refused", "no endpoints: rejected")

	e.slice("dns", b)
	e.sync(t)
	got, err = ask()
	require.NoError(t, err, "new endpoint")
	assert.Equal(t, b.Name, got)
}

// badInput: a Service with an invalid external IP, a Service asking for
// a node port another (older) Service has, and an EndpointSlice endpoint
// with an unparsable address are each skipped with a log line; Sync
// succeeds, the good Service answers on its cluster IP and node port
// from its good endpoint only, and the skipped Services have no rules.
func badInput(t *testing.T, f Factory, _ Features) {
	e := newEnv(t, f, 2)
	good, other := e.backends[0], e.backends[1]
	e.tr.OnServiceUpdate(st.Service("default", "good", "10.96.0.23", st.Port("http", v1.ProtocolTCP, 80, 30084), st.Created(1)))
	e.tr.OnEndpointSliceUpdate(st.Slice("default", "good", "good-1", []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}},
		st.Endpoint{IP: good.IP.String(), Node: e.node.Name}, st.Endpoint{IP: "10.244.0.999", Node: e.node.Name}))
	e.tr.OnServiceUpdate(st.Service("default", "clash", "10.96.0.24", st.Port("http", v1.ProtocolTCP, 80, 30084), st.Created(2)))
	e.slice("clash", other)
	e.tr.OnServiceUpdate(st.Service("default", "invalid", "10.96.0.25", st.Port("http", v1.ProtocolTCP, 80, 0), st.ExternalIPs("192.0.2.300")))
	e.slice("invalid", other)
	e.sync(t)

	logs := e.logs.String()
	assert.Contains(t, logs, "10.244.0.999", "bad endpoint logged")
	assert.Contains(t, logs, "default/clash", "clashing node port logged")
	assert.Contains(t, logs, "node port already allocated")
	assert.Contains(t, logs, "default/invalid", "invalid Service logged")

	got := distribution(t, e.client, netip.MustParseAddrPort("10.96.0.23:80"), 10)
	assert.Equal(t, map[string]int{good.Name: 10}, got, "good Service, good endpoint only")
	ext := e.topo.AddClient(t)
	got = distribution(t, ext, netip.AddrPortFrom(e.node.IP, 30084), 10)
	assert.Equal(t, map[string]int{good.Name: 10}, got, "the node port is the older Service's")
	for _, dst := range []string{"10.96.0.24:80", "10.96.0.25:80"} {
		name, err := e.client.Probe("tcp", netip.MustParseAddrPort(dst), 500*time.Millisecond)
		assert.Error(t, err, "skipped Service at %s answered (%s)", dst, name)
	}
}

// churn changes the endpoints again and again while a client keeps
// connecting: each write is atomic, so no connection fails.
func churn(t *testing.T, f Factory, _ Features) {
	e := newEnv(t, f, 3)
	e.tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.16", st.Port("http", v1.ProtocolTCP, 80, 0)))
	e.slice("web", e.backends...)
	e.sync(t)
	// Every backend and the service are reached once before the churn
	// starts, so a failure below is the churn's. (A rare timeout here was
	// the nftables backend's endpoint-slot race: services/nftables
	// README.md, "Endpoint count changes".)
	for _, b := range e.backends {
		_, err := e.client.Probe("tcp", netip.AddrPortFrom(b.IP, 8080), 5*time.Second)
		require.NoError(t, err, "warm-up to %s", b.Name)
	}
	_, err := e.client.Probe("tcp", netip.MustParseAddrPort("10.96.0.16:80"), 5*time.Second)
	require.NoError(t, err, "warm-up through the service")
	stop := make(chan struct{})
	errs := make(chan error, 1)
	var probes int
	go func() {
		defer close(errs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.client.Probe("tcp", netip.MustParseAddrPort("10.96.0.16:80"), 2*time.Second); err != nil {
				errs <- err
				return
			}
			probes++
		}
	}()
	for i := range 20 {
		var keep []*nettest.Pod
		for j, b := range e.backends {
			if j != i%3 {
				keep = append(keep, b)
			}
		}
		e.slice("web", keep...)
		e.sync(t)
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	if err := <-errs; err != nil {
		e.diagnose(t)
		t.Fatalf("after %d probes: %v", probes, err)
	}
	assert.Positive(t, probes)
}

// hairpin: a backend reaching its own service and landing on itself
// works only if the node masquerades it.
func hairpin(t *testing.T, f Factory, _ Features) {
	e := newEnv(t, f, 1)
	b := e.backends[0]
	e.tr.OnServiceUpdate(st.Service("default", "self", "10.96.0.17", st.Port("http", v1.ProtocolTCP, 80, 0)))
	e.slice("self", b)
	e.sync(t)
	name, err := b.Probe("tcp", netip.MustParseAddrPort("10.96.0.17:80"), 2*time.Second)
	require.NoError(t, err)
	assert.Equal(t, b.Name, name)
}

// unservedClusterIPPort: with RejectUnservedClusterIPPorts, a pod and
// the node connecting to a cluster IP on a port no Service serves are
// refused at once (rather than the packet leaving toward the default
// route), while the served port still answers; once the Service goes,
// its address is no longer rejected.
func unservedClusterIPPort(t *testing.T, f Factory, feat Features) {
	if !feat.RejectUnservedClusterIPPorts {
		t.Skip("backend leaves unserved cluster IP ports alone")
	}
	e := newEnv(t, f, 1)
	svc := st.Service("default", "web", "10.96.0.21", st.Port("http", v1.ProtocolTCP, 80, 0))
	e.tr.OnServiceUpdate(svc)
	e.slice("web", e.backends...)
	e.sync(t)
	_, err := e.client.Probe("tcp", netip.MustParseAddrPort("10.96.0.21:80"), 2*time.Second)
	require.NoError(t, err, "served port")
	for _, from := range []*nettest.Pod{e.client, e.node.Host()} {
		_, err = from.Probe("tcp", netip.MustParseAddrPort("10.96.0.21:81"), 2*time.Second)
		require.Error(t, err, "unserved port from %s", from.Name)
		assert.Contains(t, err.Error(), "refused", "unserved port from %s: rejected", from.Name)
	}
	e.tr.OnServiceDelete(svc)
	e.sync(t)
	_, err = e.client.Probe("tcp", netip.MustParseAddrPort("10.96.0.21:81"), 500*time.Millisecond)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "refused", "a deleted Service's address is not rejected")
}

// localhost: node ports on 127.0.0.1 answer the node itself only with
// LocalhostNodePorts; a neighbour that routes 127.0.0.1 to the node
// reaches neither the node port nor a service bound to the node's
// loopback (CVE-2020-8558).
func localhost(t *testing.T, f Factory, feat Features) {
	e := newEnv(t, f, 1)
	e.tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.18", st.Port("http", v1.ProtocolTCP, 80, 30082)))
	e.slice("web", e.backends...)
	e.sync(t)
	lo := netip.MustParseAddrPort("127.0.0.1:30082")
	name, err := e.node.Host().Probe("tcp", lo, time.Second)
	if !feat.LocalhostNodePorts {
		require.Error(t, err, "node port answered on 127.0.0.1")
		return
	}
	require.NoError(t, err)
	assert.Equal(t, e.backends[0].Name, name)

	// A process on the node bound to loopback only.
	private := remoteAddrServer(t, e.node.Host(), netip.MustParseAddrPort("127.0.0.1:9999"))
	_ = private
	nb := e.topo.AddClient(t)
	ctx := context.Background()
	for _, args := range [][]string{
		{"rule", "add", "pref", "100", "lookup", "local"},
		{"rule", "del", "pref", "0"},
		{"route", "add", "127.0.0.1/32", "via", e.node.IP.String(), "table", "50"},
		{"rule", "add", "pref", "10", "to", "127.0.0.1/32", "lookup", "50"},
	} {
		_, err := nb.NS.Run(ctx, "ip", args...)
		require.NoError(t, err)
	}
	require.NoError(t, nb.NS.Sysctl("net.ipv4.conf.all.route_localnet", "1"))
	for _, to := range []string{"127.0.0.1:9999", "127.0.0.1:30082"} {
		_, err := nb.Probe("tcp", netip.MustParseAddrPort(to), 700*time.Millisecond)
		require.Error(t, err, "neighbour reached %s on the node's loopback", to)
		assert.NotContains(t, err.Error(), "refused", "dropped by the guard")
	}
}

// FirstPacketVIP is the cluster IP and port FirstPacket connects to.
var FirstPacketVIP = netip.MustParseAddrPort("10.111.0.1:80")

// FirstPacket is a benchmark body for a backend's first-packet latency:
// each iteration is a new TCP connection (connect, read the listener's
// answer, close) from a pod to FirstPacketVIP, a ClusterIP Service
// default/target with one endpoint, while the table also holds n
// Services × 10 endpoints (servicestest.LoadTracker, namespace "bench",
// so in a name-ordered dispatch the target comes after all of them).
// newBackend makes the backend in node's namespace; FirstPacket syncs
// it once before timing. Run it with n = 0 in the same run as the peer.
// It skips unless root.
func FirstPacket(b *testing.B, n int, newBackend func(tb testing.TB, node *nettest.Node, tr *services.Tracker) Backend) {
	b.Helper()
	topo := nettest.NewTopology(b, nettest.Nodes(1)) // skips unless root
	node := topo.Node(0)
	backend := node.AddPod(b)
	backend.ListenTCP(b, 8080)
	client := node.AddPod(b)
	tr := st.LoadTracker(n, 10)
	tr.OnServiceUpdate(st.Service("default", "target", FirstPacketVIP.Addr().String(), st.Port("http", v1.ProtocolTCP, int32(FirstPacketVIP.Port()), 0)))
	tr.OnEndpointSliceUpdate(st.Slice("default", "target", "target-1", st.WebPorts, st.Endpoint{IP: backend.IP.String(), Node: node.Name}))
	be := newBackend(b, node, tr)
	if err := be.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	// One connection before timing: neighbour entries, route cache.
	if _, err := client.Probe("tcp", FirstPacketVIP, 5*time.Second); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := client.Probe("tcp", FirstPacketVIP, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// HairpinPeer: with and without ClientIP affinity, two backends of one
// service connect to its cluster IP; a connection that lands on the
// other backend keeps the client's pod address (no masquerade, as in
// kube-proxy, where only a connection back to the client itself is
// masqueraded), and one that lands on the client itself is masqueraded.
// Run includes it; it matters most for services/iptables, whose endpoints
// have no chain of their own (the hairpin mark is decided by source).
func HairpinPeer(t *testing.T, f Factory) {
	for _, affinity := range []bool{false, true} {
		t.Run(map[bool]string{false: "random", true: "affinity"}[affinity], func(t *testing.T) {
			e := newEnv(t, f, 2)
			a, b := e.backends[0], e.backends[1]
			seen := map[netip.Addr]<-chan netip.AddrPort{}
			for _, p := range e.backends {
				seen[p.IP] = remoteAddrServer(t, p, netip.AddrPortFrom(p.IP, 9090))
			}
			e.tr.OnServiceUpdate(st.Service("default", "peer", "10.96.0.19", st.Port("http", v1.ProtocolTCP, 80, 0), func(s *v1.Service) {
				if affinity {
					s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
				}
			}))
			e.tr.OnEndpointSliceUpdate(st.Slice("default", "peer", "peer-1", []st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 9090}},
				st.Endpoint{IP: a.IP.String(), Node: e.node.Name}, st.Endpoint{IP: b.IP.String(), Node: e.node.Name}))
			e.sync(t)
			landed := map[netip.Addr]int{}
			for range 24 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				c, err := a.Dial(ctx, "tcp", netip.MustParseAddrPort("10.96.0.19:80"))
				cancel()
				require.NoError(t, err)
				c.Close()
				select {
				case from := <-seen[a.IP]:
					landed[a.IP]++
					assert.NotEqual(t, a.IP.String(), from.Addr().String(), "hairpin connection not masqueraded")
				case from := <-seen[b.IP]:
					landed[b.IP]++
					assert.Equal(t, a.IP.String(), from.Addr().String(), "connection to a peer endpoint masqueraded")
				case <-time.After(2 * time.Second):
					t.Fatal("no backend saw the connection")
				}
			}
			if affinity {
				assert.Len(t, landed, 1, "client pinned to one backend: %v", landed)
			} else {
				assert.Len(t, landed, 2, "both backends reached: %v", landed)
			}
		})
	}
}

// sharedDestination: two Services asking for one destination (an
// external IP both list, and one's cluster IP as the other's external
// IP) sync, the owner answers on it, the other keeps its own cluster IP,
// and takes the shared destinations over once the owner is deleted.
func sharedDestination(t *testing.T, f Factory, _ Features) {
	e := newEnv(t, f, 2)
	owner := st.Service("default", "owner", "10.96.0.20", st.Port("http", v1.ProtocolTCP, 80, 0), st.ExternalIPs("10.96.5.5"), st.Created(1))
	e.tr.OnServiceUpdate(owner)
	e.tr.OnServiceUpdate(st.Service("default", "other", "10.96.0.21", st.Port("http", v1.ProtocolTCP, 80, 0), st.ExternalIPs("10.96.5.5", "10.96.0.20"), st.Created(2)))
	e.slice("owner", e.backends[0])
	e.slice("other", e.backends[1])
	e.sync(t)
	probe := func(dst string) string {
		t.Helper()
		name, err := e.client.Probe("tcp", netip.MustParseAddrPort(dst), 2*time.Second)
		if err != nil {
			e.diagnose(t)
		}
		require.NoError(t, err, dst)
		return name
	}
	assert.Equal(t, e.backends[0].Name, probe("10.96.5.5:80"), "shared external IP: the older Service")
	assert.Equal(t, e.backends[0].Name, probe("10.96.0.20:80"), "a cluster IP wins over an external IP")
	assert.Equal(t, e.backends[1].Name, probe("10.96.0.21:80"), "the other Service keeps its own cluster IP")

	e.tr.OnServiceDelete(owner)
	e.sync(t)
	assert.Equal(t, e.backends[1].Name, probe("10.96.5.5:80"), "the other Service takes the external IP over")
	assert.Equal(t, e.backends[1].Name, probe("10.96.0.20:80"), "and its external IP equal to the old cluster IP")
}
