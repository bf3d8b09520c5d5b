package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	svcnft "github.com/tabbynet/tabby/services/nftables"
)

// The bank's services: customer gets a ClusterIP and a NodePort;
// customer-local is the same pods behind externalTrafficPolicy Local, the
// service whose /32 only nodes with a ready local endpoint announce.
const (
	serviceCIDR      = "10.96.0.0/16" // serviceClusterIPs (not Kubernetes' default /12, which holds the fabric 10.99.0.0/24)
	servicePort      = 80
	customerIP       = "10.96.0.10"
	customerNodePort = 30080
	localIP          = "10.96.0.11"
	localNodePort    = 30081
)

var clientAddr = netip.MustParseAddr("10.99.0.100")

// bankServices builds the Services and their EndpointSlices as the API
// server and the EndpointSlice controller would hold them: every pod with
// app=customer is an endpoint, on its node, ready.
func bankServices(pods []*pod) ([]*v1.Service, []*discovery.EndpointSlice) {
	svc := func(name, ip string, nodePort int32, policy v1.ServiceExternalTrafficPolicy) *v1.Service {
		return &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			Spec: v1.ServiceSpec{
				Type: v1.ServiceTypeNodePort, ClusterIP: ip, ClusterIPs: []string{ip},
				Selector: map[string]string{"app": "customer"},
				Ports: []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: servicePort,
					TargetPort: intstr.FromInt32(port), NodePort: nodePort}},
				ExternalTrafficPolicy: policy,
			},
		}
	}
	svcs := []*v1.Service{
		svc("customer", customerIP, customerNodePort, v1.ServiceExternalTrafficPolicyCluster),
		svc("customer-local", localIP, localNodePort, v1.ServiceExternalTrafficPolicyLocal),
	}
	var slices []*discovery.EndpointSlice
	for _, s := range svcs {
		es := &discovery.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: s.Name + "-x7k2p",
				Labels: map[string]string{discovery.LabelServiceName: s.Name}},
			AddressType: discovery.AddressTypeIPv4,
			Ports: []discovery.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP),
				Port: ptr.To(int32(port))}},
		}
		for _, p := range pods {
			if p.labels["app"] != s.Spec.Selector["app"] {
				continue
			}
			es.Endpoints = append(es.Endpoints, discovery.Endpoint{
				Addresses: []string{p.addr.String()}, NodeName: ptr.To(p.node),
				Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				TargetRef:  &v1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: p.name},
			})
		}
		slices = append(slices, es)
	}
	return svcs, slices
}

// readyNodes returns the nodes with a ready endpoint in the slices.
func readyNodes(slices []*discovery.EndpointSlice) map[string]bool {
	out := map[string]bool{}
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.NodeName != nil && (e.Conditions.Ready == nil || *e.Conditions.Ready) {
				out[*e.NodeName] = true
			}
		}
	}
	return out
}

// runServices is the lab's services part (issue 15), on top of runBGP.
func runServices(ctx context.Context, w io.Writer, l *bgpLab, pods []*pod) ([]check, error) {
	svcs, eps := bankServices(pods)
	cidr := netip.MustParsePrefix(serviceCIDR)

	done := step(w, "programming the customer services on every node (services/nftables, kube-proxy's nftables mode)")
	var proxies []*nodeServices
	for _, n := range l.nodes {
		ns, err := newNodeServices(n, svcs)
		if err != nil {
			return nil, err
		}
		proxies = append(proxies, ns)
	}
	announced, err := syncServices(ctx, proxies, eps)
	if err != nil {
		return nil, err
	}
	nftSample := serviceMaps(ctx, proxies[0].nft)
	done()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    SERVICE\tTYPE\tCLUSTER-IP\tPORT\tNODEPORT\tEXTERNAL POLICY\tENDPOINTS")
	for i, s := range svcs {
		var addrs []string
		for _, e := range eps[i].Endpoints {
			addrs = append(addrs, fmt.Sprintf("%s:%d (%s)", e.Addresses[0], port, *e.NodeName))
		}
		fmt.Fprintf(tw, "    %s/%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.Namespace, s.Name, s.Spec.Type, s.Spec.ClusterIP,
			servicePort, s.Spec.Ports[0].NodePort, s.Spec.ExternalTrafficPolicy, strings.Join(addrs, ", "))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "    every node has the table ip %s; its dispatch maps on %s:\n%s", svcnft.DefaultTable, l.nodes[0].Name, indent(indent(nftSample)))
	if ctx.Err() != nil {
		return nil, errInterrupted
	}

	done = step(w, "advertising the services over BGP: serviceClusterIPs %s + services.Announce per node", serviceCIDR)
	if err := l.advertiseServices(announced); err != nil {
		return nil, err
	}
	done()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    NODE\tSERVICES.ANNOUNCE (what the node advertises for services)")
	for _, n := range l.nodes {
		var ps []string
		for _, p := range announced[n.Name] {
			ps = append(ps, p.String())
		}
		fmt.Fprintf(tw, "    %s\t%s\n", n.Name, strings.Join(ps, ", "))
	}
	_ = tw.Flush()

	// What the router should have: the service range over every node,
	// the Local service's /32 over the nodes with a ready local endpoint.
	local := netip.PrefixFrom(netip.MustParseAddr(localIP), 32)
	ready := readyNodes(eps[1:])
	want := map[netip.Prefix][]netip.Addr{}
	for _, n := range l.nodes {
		want[cidr] = append(want[cidr], n.IP)
		if ready[n.Name] {
			want[local] = append(want[local], n.IP)
		}
	}
	var announceErrs []error
	for _, n := range l.nodes {
		if slices.Contains(announced[n.Name], local) != ready[n.Name] {
			announceErrs = append(announceErrs, fmt.Errorf("%s announces %v; ready local endpoint: %v", n.Name, announced[n.Name], ready[n.Name]))
		}
	}
	done = step(w, "waiting for the router to learn the service routes")
	got, rangeErr := l.waitRoutes(ctx, 10*time.Second, want)
	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	done()
	fmt.Fprintln(w, "\nThe router's routes to the services (birdc show route, then its kernel's ECMP routes):")
	out, err := l.birdcOut("show", "route", "where", "net ~ "+cidr.String())
	if err != nil {
		return nil, err
	}
	fmt.Fprint(w, indent(indent(strings.TrimSpace(out))))
	for _, p := range []netip.Prefix{cidr, local} {
		out, err := l.router.Run(ctx, "ip", "route", "show", p.String())
		if err != nil {
			return nil, err
		}
		fmt.Fprint(w, indent(indent(strings.TrimSpace(out))))
	}
	fmt.Fprintln(w)

	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	done = step(w, "a client namespace on the fabric (%s, default gateway the router) connects to the services", clientAddr)
	client, err := l.startClient()
	if err != nil {
		return nil, err
	}
	// The customer pod answers with its name (the probe listener on 8080).
	for _, p := range pods {
		if p.labels["app"] == "customer" {
			if _, err := p.p.Serve("tcp", port); err != nil {
				return nil, err
			}
		}
	}
	// Every probe runs at once; the ones expected to fail cost one timeout.
	type probe struct {
		what  string
		to    netip.AddrPort
		want  bool     // an answer from customer is expected
		group *[]error // the check a surprise goes to
		err   error
		from  string
	}
	var nodePortErrs, clusterErrs, localErrs []error
	var probes []*probe
	for _, n := range l.nodes {
		probes = append(probes, &probe{what: "NodePort customer on " + n.Name, to: netip.AddrPortFrom(n.IP, customerNodePort),
			want: true, group: &nodePortErrs})
	}
	for _, n := range l.nodes {
		probes = append(probes, &probe{what: "NodePort customer-local on " + n.Name, to: netip.AddrPortFrom(n.IP, localNodePort),
			want: ready[n.Name], group: &localErrs})
	}
	probes = append(probes,
		&probe{what: "ClusterIP customer", to: netip.AddrPortFrom(netip.MustParseAddr(customerIP), servicePort), want: true, group: &clusterErrs},
		&probe{what: "ClusterIP customer-local", to: netip.AddrPortFrom(netip.MustParseAddr(localIP), servicePort), want: true, group: &clusterErrs})
	var wg sync.WaitGroup
	for _, p := range probes {
		timeout := 2 * time.Second
		if !p.want {
			timeout = 500 * time.Millisecond
		}
		wg.Go(func() {
			p.from, p.err = client.Probe("tcp", p.to, timeout)
			if p.err == nil && p.from != "customer" {
				p.err = fmt.Errorf("%s answered by %q, want customer", p.to, p.from)
			}
		})
	}
	wg.Wait()
	done()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    CLIENT →\tADDRESS\tANSWER\tEXPECTED")
	for _, p := range probes {
		ans, exp := "✓ "+p.from, "✓"
		if p.err != nil {
			ans = "✗ no answer"
			if errors.Is(p.err, syscall.ECONNREFUSED) {
				ans = "✗ refused"
			}
		}
		if !p.want {
			exp = "✗ (no local endpoint: dropped)"
		}
		if (p.err == nil) != p.want {
			*p.group = append(*p.group, fmt.Errorf("%s %s: %s, want %s (%v)", p.what, p.to, ans, exp, p.err))
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", p.what, p.to, ans, exp)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "    (NodePorts go straight to a node on the fabric; ClusterIPs go to the router,\n"+
		"    which forwards them over a route it learned from the nodes; the node DNATs to the\n"+
		"    customer pod on 8080, which the yaobank policies allow from anywhere. A Local\n"+
		"    NodePort keeps the client's address and serves only where an endpoint runs)")
	fmt.Fprintln(w)

	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	// The customer pod's readiness probe fails: both slices mark it not
	// ready, and its node loses its only ready local endpoint of
	// customer-local.
	done = step(w, "customer's readiness probe fails: EndpointSlices updated (ready false), Sync + Announce on every node")
	var notReady []*discovery.EndpointSlice
	for _, es := range eps {
		es = es.DeepCopy()
		for i := range es.Endpoints {
			es.Endpoints[i].Conditions.Ready = ptr.To(false)
		}
		notReady = append(notReady, es)
	}
	if announced, err = syncServices(ctx, proxies, notReady); err == nil {
		err = l.advertiseServices(announced)
	}
	if err != nil {
		return nil, err
	}
	want = map[netip.Prefix][]netip.Addr{cidr: want[cidr], local: nil}
	got, withdrawErr := l.waitRoutes(ctx, 10*time.Second, want)
	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	done()
	for _, n := range l.nodes {
		if slices.Contains(announced[n.Name], local) {
			withdrawErr = errors.Join(withdrawErr, fmt.Errorf("%s still announces %s", n.Name, local))
		}
	}
	fmt.Fprintf(w, "    %s withdrew %s; the router now has %s via %s and no route to %s\n\n",
		strings.Join(slices.Sorted(maps.Keys(ready)), ", "), local, cidr, joinAddrs(got[cidr]), local)

	checks := []check{
		{"services: the customer NodePort answers a client outside the cluster on every node (nftables backend)", errors.Join(nodePortErrs...)},
		{"services: the customer ClusterIPs answer the outside client, routed by the router over BGP", errors.Join(clusterErrs...)},
		{"services: customer-local's NodePort (externalTrafficPolicy Local) answers only on nodes with a ready local endpoint", errors.Join(localErrs...)},
		{fmt.Sprintf("BGP: the router has ECMP routes for serviceClusterIPs %s over every node and for the Local service's %s over exactly the nodes with a ready local endpoint (%s)",
			serviceCIDR, local, strings.Join(slices.Sorted(maps.Keys(ready)), ", ")), errors.Join(append(announceErrs, rangeErr)...)},
		{fmt.Sprintf("BGP: %s is withdrawn from the router when its last ready local endpoint goes; the service range stays", local), withdrawErr},
	}
	return checks, nil
}

// nodeServices is one node's services backend: the tracker fed with the
// Services and EndpointSlices, and the nftables proxier rendering it.
type nodeServices struct {
	node *nettest.Node
	tr   *services.Tracker
	nft  knftables.Interface
	p    *svcnft.Proxier
}

func newNodeServices(n *nettest.Node, svcs []*v1.Service) (*nodeServices, error) {
	ns := &nodeServices{node: n, tr: services.NewTracker(services.TrackerConfig{NodeName: n.Name}, nil)}
	for _, s := range svcs {
		ns.tr.OnServiceUpdate(s)
	}
	var err error
	if ns.nft, err = svcnft.NewInNetns(knftables.IPv4Family, svcnft.DefaultTable, n.NS.Path); err != nil {
		return nil, fmt.Errorf("nftables in %s: %w", n.Name, err)
	}
	// ClusterCIDRs: traffic from outside the pods to a cluster IP is
	// masqueraded, so replies come back through the node that got it.
	ns.p, err = svcnft.New(ns.nft, ns.tr, svcnft.Config{Family: knftables.IPv4Family,
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(poolCIDR)}})
	if err != nil {
		return nil, fmt.Errorf("services proxier for %s: %w", n.Name, err)
	}
	return ns, nil
}

// syncServices gives every node the slices, syncs its nftables table and
// returns what each node announces (services.Announce).
func syncServices(ctx context.Context, nodes []*nodeServices, eps []*discovery.EndpointSlice) (map[string][]netip.Prefix, error) {
	out := map[string][]netip.Prefix{}
	for _, ns := range nodes {
		for _, s := range eps {
			ns.tr.OnEndpointSliceUpdate(s)
		}
		if err := ns.p.Sync(ctx); err != nil {
			return nil, fmt.Errorf("services on %s: %w", ns.node.Name, err)
		}
		out[ns.node.Name] = services.Announce(ns.tr.All(),
			services.AnnounceConfig{ServiceClusterIPs: []netip.Prefix{netip.MustParsePrefix(serviceCIDR)}})
	}
	return out, nil
}

// advertiseServices hands each node's announcements to its speaker, with
// serviceClusterIPs set.
func (l *bgpLab) advertiseServices(announced map[string][]netip.Prefix) error {
	for i, n := range l.nodes {
		if _, err := l.speakers[i].call(speakerMsg{Op: "services",
			ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix(serviceCIDR)}, Services: announced[n.Name]}); err != nil {
			return err
		}
	}
	return nil
}

// startClient makes the client namespace on the fabric, default route via
// the router, and returns a probe handle on it.
func (l *bgpLab) startClient() (*nettest.Pod, error) {
	var err error
	if l.client, err = nettest.CreateNetns(l.id + "-client"); err != nil {
		return nil, err
	}
	if err := plugFabric(l.fabric, l.client, "cli", netip.PrefixFrom(clientAddr, 24), routerAddr); err != nil {
		return nil, err
	}
	for _, k := range []string{"net/ipv4/conf/all/accept_redirects", "net/ipv4/conf/eth0/accept_redirects"} {
		if err := l.client.Sysctl(k, "0"); err != nil {
			return nil, err
		}
	}
	return &nettest.Pod{Name: "client", NS: l.client, IP: clientAddr}, nil
}

// serviceMaps lists the elements of the two dispatch maps of a node's
// services table.
func serviceMaps(ctx context.Context, nft knftables.Interface) string {
	var b strings.Builder
	for _, m := range []string{"service-ips", "service-nodeports"} {
		els, err := nft.ListElements(ctx, "map", m)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", m, err)
			continue
		}
		var lines []string
		for _, e := range els {
			lines = append(lines, fmt.Sprintf("%s  %s : %s", m, strings.Join(e.Key, " . "), strings.Join(e.Value, " ")))
		}
		slices.Sort(lines)
		for _, line := range lines {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
