package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/bgp"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// The enterprise network: a router on the fabric running BIRD in its own
// AS, peering with every node (Calico's global BGPPeer); the nodes share
// Calico's default AS and peer with each other (node-to-node mesh).
const (
	routerAS   = 65000
	nodeAS     = bgp.DefaultASNumber
	routerName = "enterprise-router"
)

var routerAddr = netip.MustParseAddr("10.99.0.254")

// bgpLab is the routing part of the lab: the router namespace with BIRD,
// and one speaker child process per node.
type bgpLab struct {
	id       string // the topology's ID: the namespaces made here are <id>-*
	sp       *spawner
	topo     *nettest.Topology
	fabric   *nettest.Netns
	router   *nettest.Netns
	nodes    []*nettest.Node
	speakers []*speakerProc
	dir      string // BIRD's config and control socket

	bird       *exec.Cmd
	birdLog    *syncBuffer
	birdExited chan struct{}

	client *nettest.Netns // made by the services part

	pids    []int  // every child started, for leftovers
	birdDir string // BIRD's folder, for leftovers
}

// leftovers reports children still running and BIRD's folder if present
// (call after close).
func (l *bgpLab) leftovers() error {
	var errs []error
	for _, pid := range l.pids {
		if err := syscall.Kill(pid, 0); err == nil {
			errs = append(errs, fmt.Errorf("process %d still runs", pid))
		}
	}
	if l.birdDir != "" {
		if _, err := os.Stat(l.birdDir); err == nil {
			errs = append(errs, fmt.Errorf("%s still exists", l.birdDir))
		}
	}
	return errors.Join(errs...)
}

// newBGPLab prepares the BGP and services parts of the lab on topo.
func newBGPLab(topo *nettest.Topology) *bgpLab {
	return &bgpLab{id: topo.ID, sp: newSpawner(), topo: topo, fabric: topo.Fabric, nodes: topo.Nodes()}
}

// close stops the speakers and BIRD, waits for them to exit, deletes the
// router and client namespaces and BIRD's folder. It reports anything left
// behind. Safe to call twice.
func (l *bgpLab) close() error {
	var errs []error
	for _, s := range l.speakers {
		s.close()
	}
	l.speakers = nil
	if l.bird != nil {
		_ = l.birdc("down") // BIRD sends Ceases and exits
		select {
		case <-l.birdExited:
		case <-time.After(2 * time.Second):
			_ = l.bird.Process.Kill()
			<-l.birdExited
		}
		l.bird = nil
	}
	for _, ns := range []**nettest.Netns{&l.client, &l.router} {
		if *ns != nil {
			errs = append(errs, (*ns).Delete())
			*ns = nil
		}
	}
	if l.dir != "" {
		errs = append(errs, os.RemoveAll(l.dir))
		l.dir = ""
	}
	return errors.Join(errs...)
}

// plugFabric connects ns to the fabric bridge (nettest's Topology.Plug: a
// veth with port in the fabric namespace, eth0 in ns holding addr; gw, if
// valid, becomes ns's default gateway), then waits for both ends' carrier.
func (l *bgpLab) plugFabric(ns *nettest.Netns, port string, addr netip.Prefix, gw netip.Addr) error {
	if err := l.topo.Plug(ns, port, gw, addr); err != nil {
		return fmt.Errorf("%s on the fabric: %w", ns.Name, err)
	}
	fh, h := l.fabric.Handle(), ns.Handle()
	// Until the kernel's link watcher has seen the carrier (up to a
	// second), both ends drop what they send: wait for it, so the first
	// connection does not lose its ARP request and wait a second.
	return waitFor(context.Background(), 3*time.Second, func() error {
		for _, c := range []struct {
			h    *nl.Handle
			name string
		}{{fh, port}, {h, "eth0"}} {
			link, err := c.h.LinkByName(c.name)
			if err != nil {
				return err
			}
			if st := link.Attrs().OperState; st != nl.OperUp {
				return fmt.Errorf("%s of %s is %s after 3s", c.name, ns.Name, st)
			}
		}
		return nil
	})
}

// birdConfig is the router's BIRD 2 configuration: eBGP with every node,
// BGP routes into the router's kernel with ECMP (merge paths), short timers
// so the lab converges in seconds.
func birdConfig(nodes []*nettest.Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, `router id %s;
log stderr all;
protocol device { scan time 1; }
protocol direct { ipv4; interface "eth0"; }
protocol kernel {
  ipv4 { import none; export where source = RTS_BGP; };
  merge paths on;
}
template bgp tabbynode {
  local %s as %d;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 { import all; export none; };
}
`, routerAddr, routerAddr, routerAS)
	for _, n := range nodes {
		fmt.Fprintf(&b, "protocol bgp %s from tabbynode { neighbor %s as %d; }\n", n.Name, n.IP, nodeAS)
	}
	return b.String()
}

func (l *bgpLab) birdc(args ...string) error {
	_, err := l.birdcOut(args...)
	return err
}

func (l *bgpLab) birdcOut(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", filepath.Join(l.dir, "bird.ctl")}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %s: %w: %s", strings.Join(args, " "), err, out)
	}
	// Drop the banner ("BIRD 2.0.12 ready.").
	s := string(out)
	if first, rest, ok := strings.Cut(s, "\n"); ok && strings.HasPrefix(first, "BIRD ") {
		s = rest
	}
	return s, nil
}

// startRouter makes the router namespace on the fabric and starts BIRD in it.
func (l *bgpLab) startRouter() error {
	if _, err := exec.LookPath("bird"); err != nil {
		return fmt.Errorf("BIRD 2 is not installed (make deps, or apt-get install bird2): %w", err)
	}
	var err error
	if l.router, err = nettest.CreateNetns(l.id + "-router"); err != nil {
		return err
	}
	if err := l.plugFabric(l.router, "rtr", netip.PrefixFrom(routerAddr, 24), netip.Addr{}); err != nil {
		return err
	}
	// The router forwards the client's traffic back out of the port it
	// came in: no ICMP redirects, so the client keeps using the router.
	for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"},
		{"net/ipv4/conf/all/send_redirects", "0"}, {"net/ipv4/conf/eth0/send_redirects", "0"}} {
		if err := l.router.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if l.dir, err = os.MkdirTemp("", "tabby-lab-bird-"); err != nil {
		return err
	}
	l.birdDir = l.dir
	conf := filepath.Join(l.dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(birdConfig(l.nodes)), 0o600); err != nil {
		return err
	}
	l.birdLog, l.birdExited = &syncBuffer{}, make(chan struct{})
	l.bird = l.router.Command(context.Background(), "bird", "-f", "-c", conf,
		"-s", filepath.Join(l.dir, "bird.ctl"), "-P", filepath.Join(l.dir, "bird.pid"))
	l.bird.Stdout, l.bird.Stderr = l.birdLog, l.birdLog
	if err := l.sp.start(l.bird); err != nil {
		l.bird = nil
		return fmt.Errorf("start BIRD: %w", err)
	}
	l.pids = append(l.pids, l.bird.Process.Pid)
	go func() { _ = l.bird.Wait(); close(l.birdExited) }()
	deadline := time.Now().Add(5 * time.Second)
	for l.birdc("show", "status") != nil {
		select {
		case <-l.birdExited:
			return fmt.Errorf("BIRD exited: %s", l.birdLog)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("BIRD's control socket did not come up in 5s: %s", l.birdLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// startSpeakers starts one speaker child per node, inside the node's
// namespace, peering with the router (a global BGPPeer) and over the
// node-to-node mesh, advertising the node's pod blocks.
func (l *bgpLab) startSpeakers() error {
	topo := bgp.Topology{BGPPeers: []bgp.BGPPeer{{
		// A global peer (no node, no nodeSelector): every node peers with it.
		// keepOriginalNextHop: the blocks a node passes on from the mesh keep
		// their owner as next hop, so the router sends traffic to the owner.
		Name: routerName, PeerIP: routerAddr.String(), ASNumber: routerAS, KeepOriginalNextHop: true,
	}}}
	for _, n := range l.nodes {
		topo.Nodes = append(topo.Nodes, bgp.Node{Name: n.Name, IPv4: n.IP})
	}
	for _, n := range l.nodes {
		s, err := startSpeaker(l.sp, n.Name, n.NS)
		if err != nil {
			return err
		}
		l.speakers = append(l.speakers, s)
		l.pids = append(l.pids, s.cmd.Process.Pid)
		cfg := bgp.Config{NodeName: n.Name, ASNumber: nodeAS, NodeIP: n.IP, ListenAddresses: []netip.Addr{n.IP}}
		if _, err := s.call(speakerMsg{Op: "start", Config: &cfg, Topology: &topo, Blocks: n.Blocks()}); err != nil {
			return err
		}
	}
	return nil
}

// routerRoutes returns the router's kernel routes that BIRD installed:
// prefix → next hops (several for an ECMP route), sorted.
func (l *bgpLab) routerRoutes() (map[netip.Prefix][]netip.Addr, error) {
	rs, err := l.router.Handle().RouteList(nil, nl.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("routes of the router: %w", err)
	}
	out := map[netip.Prefix][]netip.Addr{}
	for _, r := range rs {
		if r.Protocol != unix.RTPROT_BIRD || r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		p := netip.PrefixFrom(a, ones)
		var hops []netip.Addr
		if g, ok := netip.AddrFromSlice(r.Gw.To4()); ok {
			hops = append(hops, g)
		}
		for _, nh := range r.MultiPath {
			if g, ok := netip.AddrFromSlice(nh.Gw.To4()); ok {
				hops = append(hops, g)
			}
		}
		slices.SortFunc(hops, netip.Addr.Compare)
		out[p] = hops
	}
	return out, nil
}

// waitRoutes waits until the router's kernel routes the prefixes of want
// via exactly want's next hops (nil: no route); it returns the routes last
// seen and routesDiff's last error.
func (l *bgpLab) waitRoutes(ctx context.Context, timeout time.Duration, want map[netip.Prefix][]netip.Addr) (map[netip.Prefix][]netip.Addr, error) {
	var got map[netip.Prefix][]netip.Addr
	err := waitFor(ctx, timeout, func() error {
		var err error
		if got, err = l.routerRoutes(); err != nil {
			return err
		}
		return routesDiff(got, want)
	})
	return got, err
}

// wantBlocks is what the router should route: each node's blocks via it.
func (l *bgpLab) wantBlocks() map[netip.Prefix][]netip.Addr {
	want := map[netip.Prefix][]netip.Addr{}
	for _, n := range l.nodes {
		for _, b := range n.Blocks() {
			want[b] = []netip.Addr{n.IP}
		}
	}
	return want
}

// routesDiff lists the prefixes of want the router does not route exactly
// via want's next hops.
func routesDiff(got, want map[netip.Prefix][]netip.Addr) error {
	var errs []error
	for _, p := range slices.SortedFunc(maps.Keys(want), comparePrefix) {
		if !slices.Equal(got[p], want[p]) {
			errs = append(errs, fmt.Errorf("%s: the router has next hops %v, want %v", p, got[p], want[p]))
		}
	}
	return errors.Join(errs...)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// sessions asks every speaker for its peers.
func (l *bgpLab) sessions() (map[string][]bgp.PeerStatus, error) {
	out := map[string][]bgp.PeerStatus{}
	for _, s := range l.speakers {
		r, err := s.call(speakerMsg{Op: "status"})
		if err != nil {
			return nil, err
		}
		out[s.node] = r.Peers
	}
	return out, nil
}

// notEstablished lists the sessions that are not up, on both sides.
func (l *bgpLab) notEstablished(sess map[string][]bgp.PeerStatus) error {
	var errs []error
	for _, n := range l.nodes {
		if len(sess[n.Name]) != len(l.nodes) { // the router + the other nodes
			errs = append(errs, fmt.Errorf("%s has %d sessions, want %d", n.Name, len(sess[n.Name]), len(l.nodes)))
		}
		for _, p := range sess[n.Name] {
			if p.State != bgp.StateEstablished {
				errs = append(errs, fmt.Errorf("%s → %s (%s) is %s", n.Name, p.Name, p.Address, p.State))
			}
		}
	}
	out, err := l.birdcOut("show", "protocols")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, n := range l.nodes {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == n.Name {
				found = true
				if !strings.Contains(line, "Established") {
					errs = append(errs, fmt.Errorf("router → %s: %s", n.Name, strings.Join(f[1:], " ")))
				}
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("router has no protocol %s", n.Name))
		}
	}
	return errors.Join(errs...)
}

// waitFor polls cond every 20 ms until it returns nil, ctx ends or
// timeout passes; it returns cond's last error.
func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runBGP is the lab's BGP part (issue 14). It returns the checks and the
// lab handle (to close, also on error).
func runBGP(ctx context.Context, w io.Writer, l *bgpLab) ([]check, error) {
	var checks []check
	done := step(w, "starting the %s: a namespace on the fabric (%s, AS %d) running BIRD 2", routerName, routerAddr, routerAS)
	if err := l.startRouter(); err != nil {
		return nil, err
	}
	done()
	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	done = step(w, "starting a tabby bgp speaker per node (a child process in the node's namespace, AS %d)", nodeAS)
	if err := l.startSpeakers(); err != nil {
		return nil, err
	}
	done()
	fmt.Fprintf(w, "    peers: BGPPeer %s (global: every node, peerIP %s, asNumber %d, keepOriginalNextHop)\n"+
		"    + the node-to-node mesh (iBGP, on by default); each node advertises its pod blocks\n", routerName, routerAddr, routerAS)

	start := time.Now()
	done = step(w, "waiting for the sessions and for the router to learn every block")
	var sess map[string][]bgp.PeerStatus
	sessErr := waitFor(ctx, 20*time.Second, func() error {
		var err error
		if sess, err = l.sessions(); err != nil {
			return err
		}
		return l.notEstablished(sess)
	})
	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	got, routeErr := l.waitRoutes(ctx, 10*time.Second, l.wantBlocks())
	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	done()
	fmt.Fprintf(w, "    converged %s after the speakers started\n\n", time.Since(start).Round(100*time.Millisecond))
	if sess, err := l.sessions(); err == nil {
		printSessions(w, l.nodes, sess)
	}
	out, err := l.birdcOut("show", "route")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "\nThe router's routing table (birdc show route; every node also passes on the\nblocks it learned over the mesh, keeping the owner as next hop):\n%s\n", indent(indent(strings.TrimSpace(out))))
	fmt.Fprintln(w, "The router's kernel routes from BIRD (ECMP: one route, several next hops):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    PREFIX\tNEXT HOPS\tOWNER (IPAM)")
	owner := map[netip.Prefix]string{}
	for _, n := range l.nodes {
		for _, b := range n.Blocks() {
			owner[b] = n.Name
		}
	}
	for _, p := range slices.SortedFunc(maps.Keys(got), comparePrefix) {
		fmt.Fprintf(tw, "    %s\t%s\t%s\n", p, joinAddrs(got[p]), owner[p])
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	if sessErr != nil {
		sessErr = fmt.Errorf("%w\nBIRD's log:\n%s", sessErr, l.birdLog)
	}
	checks = append(checks,
		check{"BGP: every session is Established (each node with the router and with every other node)", sessErr},
		check{"BGP: the router learned every node's pod blocks, with that node as next hop", routeErr})
	return checks, nil
}

func printSessions(w io.Writer, nodes []*nettest.Node, sess map[string][]bgp.PeerStatus) {
	fmt.Fprintln(w, "BGP sessions, as each node's speaker reports them (bgp.Speaker.Peers):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// (PeerStatus.Sent is left out: GoBGP counts its End-of-RIB marker in it.)
	fmt.Fprintln(tw, "  NODE\tPEER\tADDRESS\tAS\tSTATE\tPREFIXES RECEIVED")
	for _, n := range nodes {
		for _, p := range sess[n.Name] {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%d\n", n.Name, p.Name, p.Address, p.ASNumber, p.State, p.Received)
		}
	}
	_ = tw.Flush()
}

func joinAddrs(as []netip.Addr) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}
