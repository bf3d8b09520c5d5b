package policy_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

// kernelNode is one node with pods and a compiler programming its netns,
// for one address family (cfg.Family: the pods are dual stack on IPv6, and
// the world and the probes use their IPv6 addresses).
type kernelNode struct {
	node *nettest.Node
	pods []*nettest.Pod
	c    *dppolicy.Compiler
	ipt  *iptables.IPTables
	nf   *nl.Handle // netfilter netlink in the node's netns
	w    *world
	v6   bool
}

func newKernelNode(t *testing.T, pods int, cfg dppolicy.Config, seed uint64) *kernelNode {
	t.Helper()
	opts := []nettest.Option{nettest.Nodes(1)}
	if cfg.Family == iptables.IPv6 {
		opts = append(opts, nettest.IPv6())
	}
	topo := nettest.NewTopology(t, opts...)
	k := &kernelNode{node: topo.Node(0), v6: cfg.Family == iptables.IPv6}
	var addrs []netip.Addr
	for range pods {
		p := k.node.AddPod(t)
		k.pods = append(k.pods, p)
		addrs = append(addrs, k.addr(p))
		for _, port := range tcpPorts {
			p.Listen(t, "tcp", int(port))
		}
		for _, port := range udpPorts {
			p.Listen(t, "udp", int(port))
		}
	}
	k.nf = netfilterHandle(t, k.node.NS)
	k.c, k.ipt = newKernelCompiler(t, k.node.NS, k.nf, cfg, iptables.BackendAuto)
	k.w = newWorld(rand.New(rand.NewPCG(seed, 1)), addrs)
	for i, ep := range k.w.endpoints {
		require.NoError(t, k.c.SetInterface(ep.Key(), k.pods[i].Result.Host.Name))
	}
	return k
}

// addr is the pod's address of the node's family.
func (k *kernelNode) addr(p *nettest.Pod) netip.Addr {
	if k.v6 {
		return p.IP6
	}
	return p.IP
}

// probe is a connection attempt from pod from's source port srcPort (0
// for ICMP) to pod to's port.
type probe struct {
	from, to int
	proto    policy.Protocol
	port     uint16
	srcPort  uint16
}

func (p probe) network() string {
	switch p.proto {
	case policy.ProtoUDP:
		return "udp"
	case policy.ProtoICMP:
		return "icmp"
	case policy.ProtoICMPv6:
		return "icmpv6"
	}
	return "tcp"
}

// flow is the probe as Evaluate sees it: ICMP probes are echo requests
// (type 8 code 0; ICMPv6 type 128 code 0).
func (p probe) flow(w *world) policy.Flow {
	f := policy.Flow{Src: policy.EndpointPeer(w.endpoints[p.from].Key()),
		Dst: policy.EndpointPeer(w.endpoints[p.to].Key()), Protocol: p.proto, SrcPort: p.srcPort, DstPort: p.port}
	if p.proto.IsICMP() {
		f.ICMP = &policy.ICMPInfo{Type: uint8(w.echoType()), Code: 0}
	}
	return f
}

// ping sends one ICMP echo request (type 8 code 0; ICMPv6 128 code 0 to
// an IPv6 address) from the pod and waits for the reply.
func ping(from *nettest.Pod, to netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Second)
	defer cancel()
	secs := strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64)
	out, err := from.Command(ctx, "ping", "-n", "-c", "1", "-W", secs, to.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s -> %s: %w: %s", from.Name, to, err, out)
	}
	return nil
}

// probeAll runs every probe concurrently and returns which connected.
func (k *kernelNode) probeAll(probes []probe, timeout time.Duration) []bool {
	out := make([]bool, len(probes))
	sem := make(chan struct{}, 48)
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			to := k.addr(k.pods[p.to])
			var err error
			if p.proto.IsICMP() {
				err = ping(k.pods[p.from], to, timeout)
			} else {
				_, err = k.pods[p.from].ProbeFrom(p.network(), p.srcPort, netip.AddrPortFrom(to, p.port), timeout)
			}
			out[i] = err == nil
		}()
	}
	wg.Wait()
	return out
}

// allProbes is every ordered pod pair on each TCP and UDP port and ICMP
// (ICMPv6 on IPv6);
// the TCP and UDP probes leave from one of the client ports, alternating
// over pairs and ports, so a source named port ("cli", "ucli") matches
// some and not others.
func (k *kernelNode) allProbes() []probe {
	var ps []probe
	for a := range k.pods {
		for b := range k.pods {
			if a == b {
				continue
			}
			for i, port := range tcpPorts {
				ps = append(ps, probe{a, b, policy.ProtoTCP, port, clientPorts[(a+b+i)%2]})
			}
			for i, port := range udpPorts {
				ps = append(ps, probe{a, b, policy.ProtoUDP, port, clientPorts[(a+b+i)%2]})
			}
			ps = append(ps, probe{a, b, k.w.icmp(), 0, 0})
		}
	}
	return ps
}

// TestKernelAgreesWithEvaluator applies random policy sets to a node with
// seven pods in three namespaces and checks, for every ordered pod pair,
// two TCP and two UDP ports (each from a fixed client source port, so
// source ports and source named ports are checked too) and an ICMP echo
// request (ping), that a real connection succeeds exactly when Evaluate
// allows the flow.
func TestKernelAgreesWithEvaluator(t *testing.T) {
	sets := 200
	if testing.Short() {
		sets = 50
	}
	testKernelAgreesWithEvaluator(t, iptables.IPv4, sets)
}

// TestKernelAgreesWithEvaluatorIPv6 is TestKernelAgreesWithEvaluator on
// IPv6: ip6tables, inet6 ipsets, IPv6 nets and ICMPv6 echo requests (ping
// to the pods' IPv6 addresses); the pods' neighbour discovery with the host
// is allowed by the compiler whatever the policy.
func TestKernelAgreesWithEvaluatorIPv6(t *testing.T) {
	sets := 200
	if testing.Short() {
		sets = 20
	}
	testKernelAgreesWithEvaluator(t, iptables.IPv6, sets)
}

func testKernelAgreesWithEvaluator(t *testing.T, family iptables.Family, sets int) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	k := newKernelNode(t, 7, dppolicy.Config{NFLOGGroup: 3, Family: family}, seed)
	r := rand.New(rand.NewPCG(seed, 2))
	ctx := context.Background()
	probes := k.allProbes()
	outcomes := map[string]*[2]int{} // per network: denied, allowed
	for _, p := range probes {
		outcomes[p.network()] = &[2]int{}
	}
	defer func() {
		for _, n := range []string{"tcp", "udp", "icmp", "icmpv6"} {
			if o := outcomes[n]; o != nil {
				t.Logf("%s probes: %d allowed, %d denied", n, o[1], o[0])
			}
		}
	}()
	for done, tries := 0, 0; done < sets; tries++ {
		require.Less(t, tries, sets*4, "too many invalid random sets")
		res := randomResources(r, k.w)
		ps, err := policy.NewPolicySet(res)
		if err != nil {
			require.Error(t, k.c.Replace(res), "the compiler must refuse what NewPolicySet refuses")
			continue
		}
		require.NoError(t, k.c.Replace(res))
		_, err = k.c.Apply(ctx)
		require.NoError(t, err)
		done++
		// Earlier sets' UDP flows stay in conntrack (as in Felix, a policy
		// change does not cut established flows); start each set afresh.
		k.flushConntrack(t)
		if k.v6 {
			// Neighbour discovery under this set's policy (entries would
			// otherwise outlive many sets).
			k.flushNeighbours(t)
		}
		got := k.probeAll(probes, 250*time.Millisecond)
		for i, p := range probes {
			v, err := ps.Evaluate(p.flow(k.w))
			require.NoError(t, err)
			if v.Allowed() {
				outcomes[p.network()][1]++
			} else {
				outcomes[p.network()][0]++
			}
			if got[i] == v.Allowed() {
				continue
			}
			if !got[i] { // maybe just slow: retry with a long timeout
				if k.probeAll([]probe{p}, 2*time.Second)[0] {
					continue
				}
			}
			t.Fatalf("set %d: %s %s:%d -> %s:%d: kernel connected=%v, evaluator:\n%s\npolicies:\n%s\nrules:\n%s",
				done, p.network(), k.w.endpoints[p.from].Key(), p.srcPort, k.w.endpoints[p.to].Key(), p.port, got[i], v,
				dumpResources(t, res), policyRules(k.ipt.Render()))
		}
	}
}

// flushConntrack forgets the node's conntrack entries of its family.
func (k *kernelNode) flushConntrack(t *testing.T) {
	t.Helper()
	if !k.v6 {
		require.NoError(t, k.nf.ConntrackTableFlush(nl.ConntrackTable))
		return
	}
	// ConntrackTableFlush flushes IPv4 only (it asks for AF_INET).
	_, err := k.nf.ConntrackDeleteFilters(nl.ConntrackTable, unix.AF_INET6, matchAll{})
	require.NoError(t, err)
}

// flushNeighbours forgets the IPv6 neighbour entries of the node and its
// pods, so the next connections need neighbour discovery both ways.
func (k *kernelNode) flushNeighbours(t *testing.T) {
	t.Helper()
	nss := []*nettest.Netns{k.node.NS}
	for _, p := range k.pods {
		nss = append(nss, p.NS)
	}
	for _, ns := range nss {
		out, err := ns.Run(context.Background(), "ip", "-6", "neigh", "flush", "all")
		require.NoError(t, err, out)
	}
}

// matchAll is a conntrack filter that matches every flow.
type matchAll struct{}

func (matchAll) MatchConntrackFlow(*nl.ConntrackFlow) bool { return true }

func dumpResources(t *testing.T, res policy.Resources) string {
	var b strings.Builder
	for _, ep := range res.Endpoints {
		fmt.Fprintf(&b, "endpoint %s %v %v sa=%s %v ports=%v\n", ep.Key(), ep.Addresses, ep.Labels, ep.ServiceAccount, ep.ServiceAccountLabels, ep.Ports)
	}
	for _, p := range res.NetworkPolicies {
		rp, _ := p.Resolve()
		fmt.Fprintf(&b, "np %s/%s %+v\n", p.Namespace, p.Name, p.Spec)
		_ = rp
	}
	for _, p := range res.GlobalNetworkPolicies {
		fmt.Fprintf(&b, "gnp %s %+v\n", p.Name, p.Spec)
	}
	for _, n := range res.NetworkSets {
		fmt.Fprintf(&b, "netset %s/%s %v %v\n", n.Namespace, n.Name, n.Labels, n.Spec.Nets)
	}
	for _, n := range res.GlobalNetworkSets {
		fmt.Fprintf(&b, "gnetset %s %v %v\n", n.Name, n.Labels, n.Spec.Nets)
	}
	for _, tr := range res.Tiers {
		fmt.Fprintf(&b, "tier %s %+v\n", tr.Name, tr.Spec)
	}
	return b.String()
}

// TestLongLivedConnectionsSurviveChurn keeps TCP connections open between
// pods that policy allows when they open, churns random policy sets, and
// checks every connection still carries data after each change
// (established flows are accepted before any policy, as in Felix).
func TestLongLivedConnectionsSurviveChurn(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	k := newKernelNode(t, 6, dppolicy.Config{}, seed)
	ctx := context.Background()
	require.NoError(t, k.c.Replace(policy.Resources{Namespaces: k.w.namespaces, Endpoints: k.w.endpoints}))
	_, err := k.c.Apply(ctx)
	require.NoError(t, err)
	// An echo server on port 7000 in every pod.
	for _, p := range k.pods {
		var ln net.Listener
		require.NoError(t, p.NS.Do(func() (err error) {
			ln, err = net.Listen("tcp", netip.AddrPortFrom(k.addr(p), 7000).String())
			return err
		}))
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
			}
		}()
	}
	var conns []net.Conn
	for a := range k.pods {
		b := (a + 1) % len(k.pods)
		c, err := k.pods[a].Dial(ctx, "tcp", netip.AddrPortFrom(k.addr(k.pods[b]), 7000))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	r := rand.New(rand.NewPCG(seed, 3))
	for round := range 10 {
		res := randomResources(r, k.w)
		if _, err := policy.NewPolicySet(res); err != nil {
			continue
		}
		require.NoError(t, k.c.Replace(res))
		_, err := k.c.Apply(ctx)
		require.NoError(t, err)
		for i, c := range conns {
			msg := fmt.Sprintf("round %d conn %d\n", round, i)
			require.NoError(t, c.SetDeadline(time.Now().Add(3*time.Second)))
			_, err := c.Write([]byte(msg))
			require.NoError(t, err)
			buf := make([]byte, len(msg))
			_, err = io.ReadFull(c, buf)
			require.NoError(t, err, "round %d: connection %d broke", round, i)
			require.Equal(t, msg, string(buf))
		}
	}
}

// policyRules keeps the policy chains' rules of a render.
func policyRules(render string) string {
	var b strings.Builder
	for _, l := range strings.Split(render, "\n") {
		if strings.HasPrefix(l, "-A tabby-p") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// netfilterHandle opens a netfilter netlink handle in ns (ipsets, conntrack,
// NFLOG), closed when tb ends.
func netfilterHandle(tb testing.TB, ns *nettest.Netns) *nl.Handle {
	tb.Helper()
	h, err := nl.NewHandleAt(netns.NsHandle(ns.NS().Fd()), unix.NETLINK_NETFILTER)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	return h
}

// newKernelCompiler builds a Compiler of cfg.Family (IPv4 when unset) on
// ns's netfilter: ipsets over h, iptables-restore (ip6tables-restore) run
// in ns with backend be.
func newKernelCompiler(tb testing.TB, ns *nettest.Netns, h *nl.Handle, cfg dppolicy.Config, be iptables.Backend, opts ...iptables.Option) (*dppolicy.Compiler, *iptables.IPTables) {
	tb.Helper()
	family := cfg.Family
	if family == 0 {
		family = iptables.IPv4
	}
	ipt, err := iptables.New(iptables.Config{Family: family, Backend: be}, append([]iptables.Option{iptables.WithNetns(ns.Name)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := dppolicy.New(cfg, ipt, ipsets.New(h))
	if err != nil {
		tb.Fatal(err)
	}
	return c, ipt
}
