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

// The services: the bank's customer gets a ClusterIP and a NodePort;
// customer-local is the same pod behind externalTrafficPolicy Local, and
// ingress/gateway a Local service whose endpoints are a host-network
// daemon on node1 and node2 (so its /32 has two next hops at the router).
const (
	serviceCIDR = "10.96.0.0/16" // serviceClusterIPs (not Kubernetes' default /12, which holds the fabric 10.99.0.0/24)
	servicePort = 80
	gatewayPort = 8443 // the gateway daemon's port on its nodes
)

var clientAddr = netip.MustParseAddr("10.99.0.100")

// labService is one Service with its EndpointSlice, as the API server and
// the EndpointSlice controller would hold them.
type labService struct {
	svc   *v1.Service
	slice *discovery.EndpointSlice
	// answers are the names that may answer a connection (the lab's
	// listeners reply with their pod's or node's name).
	answers []string
}

func (s *labService) name() string { return s.svc.Namespace + "/" + s.svc.Name }
func (s *labService) clusterIP() netip.Addr {
	return netip.MustParseAddr(s.svc.Spec.ClusterIP)
}
func (s *labService) local() bool {
	return s.svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal
}
func (s *labService) nodePort() uint16 { return uint16(s.svc.Spec.Ports[0].NodePort) }

// readyNodes are the nodes with a ready endpoint of the service.
func (s *labService) readyNodes() map[string]bool {
	out := map[string]bool{}
	for _, e := range s.slice.Endpoints {
		if e.NodeName != nil && (e.Conditions.Ready == nil || *e.Conditions.Ready) {
			out[*e.NodeName] = true
		}
	}
	return out
}

// endpoint is one backend of a labService: a pod's address on its node.
type endpoint struct {
	pod, node string
	addr      netip.Addr
}

func newLabService(ns, name, ip, portName string, svcPort, target, nodePort int32, policy v1.ServiceExternalTrafficPolicy,
	selector map[string]string, eps []endpoint) *labService {
	s := &labService{svc: &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.ServiceSpec{
			Type: v1.ServiceTypeNodePort, ClusterIP: ip, ClusterIPs: []string{ip}, Selector: selector,
			Ports: []v1.ServicePort{{Name: portName, Protocol: v1.ProtocolTCP, Port: svcPort,
				TargetPort: intstr.FromInt32(target), NodePort: nodePort}},
			ExternalTrafficPolicy: policy,
		},
	}, slice: &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-x7k2p",
			Labels: map[string]string{discovery.LabelServiceName: name}},
		AddressType: discovery.AddressTypeIPv4,
		Ports: []discovery.EndpointPort{{Name: ptr.To(portName), Protocol: ptr.To(v1.ProtocolTCP),
			Port: ptr.To(target)}},
	}}
	for _, e := range eps {
		s.slice.Endpoints = append(s.slice.Endpoints, discovery.Endpoint{
			Addresses: []string{e.addr.String()}, NodeName: ptr.To(e.node),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			TargetRef:  &v1.ObjectReference{Kind: "Pod", Namespace: ns, Name: e.pod},
		})
		if !slices.Contains(s.answers, e.pod) {
			s.answers = append(s.answers, e.pod)
		}
	}
	return s
}

// labServices builds customer and customer-local over the app=customer
// pods, and gateway over a host-network daemon on every node but the
// first (its endpoints are the nodes' addresses; it answers with the
// node's name).
func labServices(pods []*pod, nodes []*nettest.Node) (customer, customerLocal, gateway *labService) {
	var bank, daemon []endpoint
	for _, p := range pods {
		if p.labels["app"] == "customer" {
			bank = append(bank, endpoint{pod: p.name, node: p.node, addr: p.addr})
		}
	}
	for _, n := range nodes[1:] {
		daemon = append(daemon, endpoint{pod: n.Name, node: n.Name, addr: n.IP})
	}
	sel := map[string]string{"app": "customer"}
	customer = newLabService(namespace, "customer", "10.96.0.10", "http", servicePort, port, 30080,
		v1.ServiceExternalTrafficPolicyCluster, sel, bank)
	customerLocal = newLabService(namespace, "customer-local", "10.96.0.11", "http", servicePort, port, 30081,
		v1.ServiceExternalTrafficPolicyLocal, sel, bank)
	gateway = newLabService("ingress", "gateway", "10.96.0.12", "https", 443, gatewayPort, 30443,
		v1.ServiceExternalTrafficPolicyLocal, map[string]string{"app": "gateway"}, daemon)
	return customer, customerLocal, gateway
}

// wantServiceRoutes is what the router should route: the service range via
// every node, each Local service's /32 via the nodes with a ready
// endpoint of it (none: no route).
func wantServiceRoutes(nodes []*nettest.Node, svcs []*labService) map[netip.Prefix][]netip.Addr {
	cidr := netip.MustParsePrefix(serviceCIDR)
	want := map[netip.Prefix][]netip.Addr{}
	for _, n := range nodes {
		want[cidr] = append(want[cidr], n.IP)
	}
	for _, s := range svcs {
		if !s.local() {
			continue
		}
		host := netip.PrefixFrom(s.clusterIP(), 32)
		want[host] = nil
		ready := s.readyNodes()
		for _, n := range nodes {
			if ready[n.Name] {
				want[host] = append(want[host], n.IP)
			}
		}
	}
	for _, hops := range want {
		slices.SortFunc(hops, netip.Addr.Compare)
	}
	return want
}

// announceDiff checks each node's services.Announce against the rule: a
// Local service's /32 exactly on the nodes with a ready endpoint of it.
func announceDiff(nodes []*nettest.Node, svcs []*labService, announced map[string][]netip.Prefix) error {
	var errs []error
	for _, s := range svcs {
		if !s.local() {
			continue
		}
		host, ready := netip.PrefixFrom(s.clusterIP(), 32), s.readyNodes()
		for _, n := range nodes {
			if slices.Contains(announced[n.Name], host) != ready[n.Name] {
				errs = append(errs, fmt.Errorf("%s announces %v; ready endpoint of %s there: %v", n.Name, announced[n.Name], s.name(), ready[n.Name]))
			}
		}
	}
	return errors.Join(errs...)
}

// nodeNames lists the nodes whose address is in hops, or "none".
func nodeNames(nodes []*nettest.Node, hops []netip.Addr) string {
	var out []string
	for _, n := range nodes {
		if slices.Contains(hops, n.IP) {
			out = append(out, n.Name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// runServices is the lab's services part (issue 15), on top of runBGP.
func runServices(ctx context.Context, w io.Writer, l *bgpLab, pods []*pod) ([]check, error) {
	customer, customerLocal, gateway := labServices(pods, l.nodes)
	all := []*labService{customer, customerLocal, gateway}
	var svcs []*v1.Service
	var eps []*discovery.EndpointSlice
	for _, s := range all {
		svcs, eps = append(svcs, s.svc), append(eps, s.slice)
	}
	cidr := netip.MustParsePrefix(serviceCIDR)

	done := step(w, "programming the services on every node (services/nftables over netlink, kube-proxy's nftables semantics)")
	var proxies []*nodeServices
	for _, n := range l.nodes {
		ns, err := newNodeServices(n, svcs)
		if err != nil {
			return nil, err
		}
		proxies = append(proxies, ns)
	}
	defer func() {
		for _, ns := range proxies {
			_ = ns.nft.Close()
		}
	}()
	announced, err := syncServices(ctx, proxies, eps)
	if err != nil {
		return nil, err
	}
	nftSample := serviceMaps(ctx, proxies[0].nft)
	// The endpoints answer with their name: the customer pod (its probe
	// listener on 8080) and the gateway daemon in its nodes' namespaces.
	for _, p := range pods {
		if p.labels["app"] == "customer" {
			if _, err := p.p.Serve("tcp", port); err != nil {
				return nil, err
			}
		}
	}
	for _, n := range l.nodes[1:] {
		if _, err := n.Host().Serve("tcp", gatewayPort); err != nil {
			return nil, err
		}
	}
	done()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    SERVICE\tTYPE\tCLUSTER-IP\tPORT\tNODEPORT\tEXTERNAL POLICY\tENDPOINTS")
	for _, s := range all {
		var addrs []string
		for _, e := range s.slice.Endpoints {
			addrs = append(addrs, fmt.Sprintf("%s:%d (%s)", e.Addresses[0], *s.slice.Ports[0].Port, *e.NodeName))
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.name(), s.svc.Spec.Type, s.clusterIP(),
			s.svc.Spec.Ports[0].Port, s.nodePort(), s.svc.Spec.ExternalTrafficPolicy, strings.Join(addrs, ", "))
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "    (gateway is a host-network daemon on node1 and node2: its endpoints are the nodes' addresses)")
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

	want := wantServiceRoutes(l.nodes, all)
	announceErr := announceDiff(l.nodes, all, announced)
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
	out, err = l.router.Run(ctx, "ip", "route", "show", "root", cidr.String())
	if err != nil {
		return nil, err
	}
	fmt.Fprint(w, indent(indent(strings.TrimSpace(out))))
	fmt.Fprintln(w)

	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	done = step(w, "a client namespace on the fabric (%s, default gateway the router) connects to the services", clientAddr)
	client, err := l.startClient()
	if err != nil {
		return nil, err
	}
	// Every probe runs at once; the ones expected to fail cost one timeout.
	type probe struct {
		what  string
		to    netip.AddrPort
		svc   *labService
		want  bool     // an answer is expected
		group *[]error // the check a surprise goes to
		err   error
		from  string
	}
	var nodePortErrs, clusterErrs, localErrs []error
	var probes []*probe
	for _, s := range []*labService{customer, customerLocal} {
		ready := s.readyNodes()
		for _, n := range l.nodes {
			p := &probe{what: "NodePort " + s.name() + " on " + n.Name, to: netip.AddrPortFrom(n.IP, s.nodePort()),
				svc: s, want: true, group: &nodePortErrs}
			if s.local() {
				p.want, p.group = ready[n.Name], &localErrs
			}
			probes = append(probes, p)
		}
	}
	for _, s := range all {
		probes = append(probes, &probe{what: "ClusterIP " + s.name(), to: netip.AddrPortFrom(s.clusterIP(), uint16(s.svc.Spec.Ports[0].Port)),
			svc: s, want: true, group: &clusterErrs})
	}
	var wg sync.WaitGroup
	for _, p := range probes {
		timeout := 2 * time.Second
		if !p.want {
			timeout = 500 * time.Millisecond
		}
		wg.Go(func() {
			p.from, p.err = client.Probe("tcp", p.to, timeout)
			if p.err == nil && !slices.Contains(p.svc.answers, p.from) {
				p.err = fmt.Errorf("%s answered by %q, want one of %v", p.to, p.from, p.svc.answers)
			}
		})
	}
	wg.Wait()
	done()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    CLIENT →\tADDRESS\tANSWER\tEXPECTED")
	for _, p := range probes {
		ans, exp := "✓ "+p.from, "✓ "+strings.Join(p.svc.answers, " or ")
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
		"    which forwards them over a route it learned from the nodes; the node DNATs to an\n"+
		"    endpoint; the yaobank policies allow customer's 8080 from anywhere. A Local\n"+
		"    NodePort keeps the client's address and serves only where an endpoint runs)")
	fmt.Fprintln(w)

	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	// The customer pod's readiness probe fails: both bank slices mark it
	// not ready, and its node loses its only ready endpoint of
	// customer-local.
	done = step(w, "customer's readiness probe fails: its EndpointSlices say ready false; Sync + Announce on every node")
	before := want[netip.PrefixFrom(customerLocal.clusterIP(), 32)]
	for _, s := range []*labService{customer, customerLocal} {
		s.slice = s.slice.DeepCopy()
		for i := range s.slice.Endpoints {
			s.slice.Endpoints[i].Conditions.Ready = ptr.To(false)
		}
	}
	if announced, err = syncServices(ctx, proxies, []*discovery.EndpointSlice{customer.slice, customerLocal.slice}); err == nil {
		err = l.advertiseServices(announced)
	}
	if err != nil {
		return nil, err
	}
	wantAfter := wantServiceRoutes(l.nodes, all)
	got, withdrawErr := l.waitRoutes(ctx, 10*time.Second, wantAfter)
	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	done()
	withdrawErr = errors.Join(withdrawErr, announceDiff(l.nodes, all, announced))
	fmt.Fprintln(w, "    the router's routes now:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    PREFIX\tBEFORE\tNOW")
	for _, p := range slices.SortedFunc(maps.Keys(wantAfter), comparePrefix) {
		fmt.Fprintf(tw, "    %s\t%s\t%s\n", p, nodeNames(l.nodes, want[p]), nodeNames(l.nodes, got[p]))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)

	var locals []string
	for _, s := range all {
		if s.local() {
			host := netip.PrefixFrom(s.clusterIP(), 32)
			locals = append(locals, fmt.Sprintf("%s %s: %s", s.name(), host, nodeNames(l.nodes, want[host])))
		}
	}
	checks := []check{
		{"services: customer's NodePort answers a client outside the cluster on every node (nftables backend)", errors.Join(nodePortErrs...)},
		{"services: the ClusterIPs answer the outside client, routed by the router over BGP", errors.Join(clusterErrs...)},
		{"services: customer-local's NodePort (externalTrafficPolicy Local) answers only on nodes with a ready local endpoint", errors.Join(localErrs...)},
		{fmt.Sprintf("BGP: the router has an ECMP route for serviceClusterIPs %s over every node, and each Local service's /32 over exactly the nodes with a ready local endpoint (%s)",
			serviceCIDR, strings.Join(locals, "; ")), errors.Join(announceErr, rangeErr)},
		{fmt.Sprintf("BGP: customer-local's /32 leaves the router when its last ready endpoint goes (was via %s); the other routes stay", nodeNames(l.nodes, before)), withdrawErr},
	}
	return checks, nil
}

// nodeServices is one node's services backend: the tracker fed with the
// Services and EndpointSlices, and the nftables proxier rendering it.
type nodeServices struct {
	node *nettest.Node
	tr   *services.Tracker
	nft  *svcnft.Netlink
	p    *svcnft.Proxier
}

func newNodeServices(n *nettest.Node, svcs []*v1.Service) (*nodeServices, error) {
	ns := &nodeServices{node: n, tr: services.NewTracker(services.TrackerConfig{NodeName: n.Name}, nil)}
	for _, s := range svcs {
		ns.tr.OnServiceUpdate(s)
	}
	var err error
	// Syncs go to the kernel as one nf_tables netlink batch each (no nft
	// process); listing the maps below still reads through the nft CLI.
	if ns.nft, err = svcnft.NewNetlink(knftables.IPv4Family, svcnft.DefaultTable, n.NS.Path); err != nil {
		return nil, fmt.Errorf("nftables in %s: %w", n.Name, err)
	}
	// ClusterCIDRs: traffic from outside the pods to a cluster IP is
	// masqueraded, so replies come back through the node that got it.
	// ServiceCIDRs: a new connection to an address of the service range
	// that no Service has is dropped on the node, as kube-proxy's nftables
	// mode does; the router sends the whole advertised range to the
	// nodes, so forwarding it back would loop.
	ns.p, err = svcnft.New(ns.nft, ns.tr, svcnft.Config{Family: knftables.IPv4Family,
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(poolCIDR)},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix(serviceCIDR)}}, svcnft.WithLogger(warnLogger()))
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
	if err := l.plugFabric(l.client, "cli", netip.PrefixFrom(clientAddr, 24), routerAddr); err != nil {
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
