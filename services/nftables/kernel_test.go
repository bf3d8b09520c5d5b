package nftables_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	"github.com/tabbynet/tabby/services/conntrack"
	snft "github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

type kernelEnv struct {
	topo     *nettest.Topology
	node     *nettest.Node
	backends []*nettest.Pod
	client   *nettest.Pod
	tr       *services.Tracker
	p        *snft.Proxier
	nft      knftables.Interface
}

func newKernelEnv(t *testing.T, nBackends int) *kernelEnv {
	t.Helper()
	topo := nettest.NewTopology(t, nettest.Nodes(1)) // skips unless root
	e := &kernelEnv{topo: topo, node: topo.Node(0)}
	for range nBackends {
		b := e.node.AddPod(t)
		b.ListenTCP(t, 8080)
		b.ListenUDP(t, 5353)
		e.backends = append(e.backends, b)
	}
	e.client = e.node.AddPod(t)
	nft, err := snft.NewInNetns(knftables.IPv4Family, snft.DefaultTable, e.node.NS.Path)
	require.NoError(t, err)
	e.nft = nft
	e.tr = services.NewTracker(services.TrackerConfig{NodeName: e.node.Name}, nil)
	cleaner, closeCT, err := conntrack.NewInNetns(e.node.NS.Path, nil)
	require.NoError(t, err)
	t.Cleanup(closeCT)
	e.p, err = snft.New(nft, e.tr, snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(nettest.PoolCIDR)}},
		snft.WithStaleFlows(cleaner.Func()))
	require.NoError(t, err)
	return e
}

func (e *kernelEnv) slice(svc string, pods ...*nettest.Pod) {
	var eps []st.Endpoint
	for _, b := range pods {
		eps = append(eps, st.Endpoint{IP: b.IP.String(), Node: e.node.Name})
	}
	e.tr.OnEndpointSliceUpdate(st.Slice("default", svc, svc+"-1",
		[]st.SlicePort{{Name: "http", Proto: v1.ProtocolTCP, Port: 8080}, {Name: "dns", Proto: v1.ProtocolUDP, Port: 5353}}, eps...))
}

func (e *kernelEnv) sync(t *testing.T) {
	t.Helper()
	require.NoError(t, e.p.Sync(context.Background()))
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

func TestKernelClusterIPAndNodePort(t *testing.T) {
	e := newKernelEnv(t, 3)
	e.tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 30080), st.Port("dns", v1.ProtocolUDP, 53, 0)))
	e.slice("web", e.backends...)
	e.tr.OnServiceUpdate(st.Service("default", "empty", "10.96.0.11", st.Port("http", v1.ProtocolTCP, 80, 30081)))
	e.sync(t)

	n, tol := 1000, 0.25
	if testing.Short() {
		n, tol = 150, 0.6
	}
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	got := distribution(t, e.client, vip, n)
	require.Len(t, got, 3, "all backends reached: %v", got)
	for _, b := range e.backends {
		c := float64(got[b.Name])
		assert.InDelta(t, float64(n)/3, c, tol*float64(n)/3, "backend %s of %v", b.Name, got)
	}

	// NodePort from an external client on the fabric, to the node address.
	ext := e.topo.AddClient(t)
	name := nettest.ExpectConnectAddr(t, ext, netip.AddrPortFrom(e.node.IP, 30080))
	assert.True(t, strings.HasPrefix(name, e.node.Name), name)

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

	// No node ports on localhost (nftables mode, as kube-proxy's).
	_, err = e.node.Host().Probe("tcp", netip.MustParseAddrPort("127.0.0.1:30080"), 500*time.Millisecond)
	require.Error(t, err, "node port answered on 127.0.0.1")

	// Endpoint churn: one backend goes, the others keep answering.
	e.slice("web", e.backends[1:]...)
	e.sync(t)
	got = distribution(t, e.client, vip, 30)
	assert.Zero(t, got[e.backends[0].Name], "removed backend still used: %v", got)

	// The service goes: the table no longer has its elements.
	e.tr.OnServiceDelete(st.Service("default", "web", "10.96.0.10"))
	e.sync(t)
	elems, err := e.nft.ListElements(context.Background(), "map", "service-ips")
	require.NoError(t, err)
	assert.Empty(t, elems)
}

func TestKernelAffinity(t *testing.T) {
	e := newKernelEnv(t, 3)
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
func remoteAddrServer(t *testing.T, pod *nettest.Pod, port int) <-chan netip.AddrPort {
	t.Helper()
	var ln net.Listener
	require.NoError(t, pod.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(pod.IP, uint16(port)).String())
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

func TestKernelExternalTrafficPolicyLocal(t *testing.T) {
	e := newKernelEnv(t, 1)
	b := e.backends[0]
	seen := remoteAddrServer(t, b, 9090)
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

// TestKernelUDPEndpointReplaced sends from one UDP socket (so one
// conntrack entry) before and after its endpoint is replaced: the
// conntrack cleanup makes the next datagram reach the new endpoint at
// once, though the old one still listens.
func TestKernelUDPEndpointReplaced(t *testing.T) {
	e := newKernelEnv(t, 2)
	a, b := e.backends[0], e.backends[1]
	e.tr.OnServiceUpdate(st.Service("default", "dns", "10.96.0.15", st.Port("dns", v1.ProtocolUDP, 53, 0)))
	e.slice("dns", a)
	e.sync(t)

	c, err := e.client.Dial(context.Background(), "udp", netip.MustParseAddrPort("10.96.0.15:53"))
	require.NoError(t, err)
	defer c.Close()
	ask := func() string {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Write([]byte("ping"))
		require.NoError(t, err)
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		require.NoError(t, err)
		return string(buf[:n])
	}
	assert.Equal(t, a.Name, ask())
	e.slice("dns", b)
	e.sync(t)
	assert.Equal(t, b.Name, ask(), "stale conntrack entry still sends to the removed endpoint")
}

// TestKernelChurn changes the endpoints again and again while a client
// keeps connecting: each transaction is atomic, so no connection fails.
func TestKernelChurn(t *testing.T) {
	e := newKernelEnv(t, 3)
	e.tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.16", st.Port("http", v1.ProtocolTCP, 80, 0)))
	e.slice("web", e.backends...)
	e.sync(t)
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
	require.NoError(t, <-errs)
	assert.Positive(t, probes)
}

// TestFakeMatchesKernel renders the same scenario into knftables.Fake and
// the kernel, then an incremental change, and compares what each holds:
// chains, sets, maps, rule counts per chain and map elements.
func TestFakeMatchesKernel(t *testing.T) {
	ns := nettest.NewNetns(t, "svcfake") // skips unless root
	kernel, err := snft.NewInNetns(knftables.IPv4Family, snft.DefaultTable, ns.Path)
	require.NoError(t, err)
	fake := knftables.NewFake(knftables.IPv4Family, snft.DefaultTable)
	ctx := context.Background()
	var trs []*services.Tracker
	var ps []*snft.Proxier
	for _, nft := range []knftables.Interface{fake, kernel} {
		tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
		p, err := snft.New(nft, tr, snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
		require.NoError(t, err)
		scenario(tr)
		require.NoError(t, p.Sync(ctx))
		trs, ps = append(trs, tr), append(ps, p)
	}
	compare := func() {
		t.Helper()
		snap := func(nft knftables.Interface) map[string]any {
			out := map[string]any{}
			for _, typ := range []string{"chain", "set", "map"} {
				names, err := nft.List(ctx, typ)
				require.NoError(t, err)
				slices.Sort(names)
				out[typ] = names
				for _, n := range names {
					switch typ {
					case "chain":
						rules, err := nft.ListRules(ctx, n)
						require.NoError(t, err)
						out["rules "+n] = len(rules)
					case "map":
						elems, err := nft.ListElements(ctx, typ, n)
						require.NoError(t, err)
						var keys []string
						for _, e := range elems {
							keys = append(keys, strings.Join(e.Key, " . "))
						}
						slices.Sort(keys)
						out["elements "+n] = keys
					}
				}
			}
			return out
		}
		assert.Equal(t, snap(fake), snap(kernel))
	}
	compare()
	for i, tr := range trs {
		tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", dnsPorts, st.Endpoint{IP: "10.244.2.99", Node: "node-b"}))
		tr.OnServiceDelete(st.Service("default", "web", "10.96.0.20"))
		require.NoError(t, ps[i].Sync(ctx))
	}
	compare()
}

// TestKernelHairpin: a backend reaching its own service and landing on
// itself works only if the node masquerades it.
func TestKernelHairpin(t *testing.T) {
	e := newKernelEnv(t, 1)
	b := e.backends[0]
	e.tr.OnServiceUpdate(st.Service("default", "self", "10.96.0.17", st.Port("http", v1.ProtocolTCP, 80, 0)))
	e.slice("self", b)
	e.sync(t)
	name, err := b.Probe("tcp", netip.MustParseAddrPort("10.96.0.17:80"), 2*time.Second)
	require.NoError(t, err)
	assert.Equal(t, b.Name, name)
}
