package nettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/ipam"
)

// Pod is a workload namespace plumbed into a node by
// dataplane/netlink.Workloads, Calico style.
type Pod struct {
	// Name is "<node>-p<k>" unless PodName was given.
	Name string
	Node *Node
	NS   *Netns
	// IP (and IP6 with IPv6()) are the pod's addresses.
	IP, IP6 netip.Addr
	Spec    tnl.WorkloadSpec
	Result  tnl.WorkloadResult

	handle    string // IPAM handle, when NewPod assigned the addresses
	mu        sync.Mutex
	listeners map[string]*Listener
}

type podConfig struct {
	name  string
	addrs []netip.Addr
	mtu   int
}

// PodOption configures AddPod.
type PodOption func(*podConfig)

// PodName names the pod (it also names the workload ID, namespace suffix).
func PodName(name string) PodOption { return func(c *podConfig) { c.name = name } }

// PodAddrs gives the pod these addresses instead of assigning them from
// the topology's IPAM: the caller manages them (for example assigned them
// itself with ipam.Assign for this node, as the lab does). If one lies
// outside the node's known blocks, NewPod calls Topology.Sync first so a
// block IPAM just claimed is routed.
func PodAddrs(addrs ...netip.Addr) PodOption { return func(c *podConfig) { c.addrs = addrs } }

// MTU sets this pod's MTU (default: the topology's PodMTU, else 1500).
func MTU(mtu int) PodOption { return func(c *podConfig) { c.mtu = mtu } }

// AddPod creates a pod namespace and sets its interface up with
// Workloads.SetupWorkload. The pod goes with the topology; the test may
// call RemovePod earlier.
func (n *Node) AddPod(t testing.TB, opts ...PodOption) *Pod {
	t.Helper()
	p, err := n.NewPod(opts...)
	must(t, err, "add pod")
	return p
}

// NewPod is AddPod without a test. Without PodAddrs it assigns the pod's
// addresses from the topology's IPAM (one Assign on this node, handle =
// the workload ID; IPv4, and IPv6 with IPv6()), released by DeletePod or
// when the topology is closed.
func (n *Node) NewPod(opts ...PodOption) (_ *Pod, err error) {
	ctx := context.Background()
	n.mu.Lock()
	k := n.next
	n.next++
	n.mu.Unlock()
	cfg := podConfig{name: fmt.Sprintf("%s-p%d", n.Name, k), mtu: n.topo.cfg.podMTU}
	for _, o := range opts {
		o(&cfg)
	}
	p := &Pod{Name: cfg.name, Node: n, listeners: map[string]*Listener{}}
	id := n.topo.ID + "." + p.Name
	if cfg.addrs == nil {
		args := ipam.AssignArgs{Handle: id, Node: n.Name, Num4: 1, Namespace: "nettest", Pod: p.Name}
		if n.topo.cfg.ipv6 {
			args.Num6 = 1
		}
		r, err := n.topo.cfg.ipam.Assign(ctx, args)
		if err != nil {
			return nil, fmt.Errorf("pod %s: assign addresses on %s: %w", p.Name, n.Name, err)
		}
		p.handle = id
		release := func() error { _, err := n.topo.cfg.ipam.ReleaseByHandle(ctx, id); return err }
		n.topo.onClose(release) // idempotent: also after DeletePod
		defer func() {
			if err != nil {
				_ = release()
			}
		}()
		for _, a := range r.All() {
			cfg.addrs = append(cfg.addrs, a.Addr)
		}
	}
	for _, a := range cfg.addrs {
		if a.Is4() && !p.IP.IsValid() {
			p.IP = a
		}
		if a.Is6() && !p.IP6.IsValid() {
			p.IP6 = a
		}
	}
	if !n.knows(cfg.addrs) {
		if err := n.topo.Sync(); err != nil {
			return nil, fmt.Errorf("pod %s: %w", p.Name, err)
		}
	}
	ns, err := n.topo.newNetns(n.NS.Name + "p" + strconv.Itoa(k))
	if err != nil {
		return nil, err
	}
	p.NS = ns
	n.topo.onClose(func() error { p.closeListeners(); return nil })
	p.Spec = tnl.WorkloadSpec{ID: id, Netns: p.NS.Path, MTU: cfg.mtu, Addresses: cfg.addrs}
	res, err := n.Workloads.SetupWorkload(ctx, p.Spec)
	if err != nil {
		return nil, fmt.Errorf("set up pod %s: %w", p.Name, err)
	}
	p.Result = res
	n.mu.Lock()
	n.pods = append(n.pods, p)
	n.mu.Unlock()
	return p, nil
}

// RemovePod tears the pod's interface down (TeardownWorkload); the
// namespace itself goes with the topology.
func (n *Node) RemovePod(t testing.TB, p *Pod) {
	t.Helper()
	must(t, n.DeletePod(p), "remove pod")
}

// DeletePod is RemovePod without a test. It also releases the addresses
// NewPod assigned from IPAM.
func (n *Node) DeletePod(p *Pod) error {
	p.closeListeners()
	if err := n.Workloads.TeardownWorkload(context.Background(), p.Spec.ID); err != nil {
		return fmt.Errorf("tear down %s: %w", p.Name, err)
	}
	if p.handle != "" {
		if _, err := n.topo.cfg.ipam.ReleaseByHandle(context.Background(), p.handle); err != nil {
			return fmt.Errorf("release addresses of %s: %w", p.Name, err)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, q := range n.pods {
		if q == p {
			n.pods = append(n.pods[:i], n.pods[i+1:]...)
			break
		}
	}
	return nil
}

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("nettest: %s: %v", what, err)
	}
}

// Pods returns the node's pods in creation order.
func (n *Node) Pods() []*Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Pod(nil), n.pods...)
}

// Topology returns the topology the node belongs to.
func (n *Node) Topology() *Topology { return n.topo }

// addrs returns the pod's addresses: those of its workload spec, else IP and IP6.
func (p *Pod) addrs() []netip.Addr {
	if len(p.Spec.Addresses) > 0 {
		return p.Spec.Addresses
	}
	var out []netip.Addr
	for _, a := range []netip.Addr{p.IP, p.IP6} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// String is the pod name.
func (p *Pod) String() string { return p.Name }

// Addr returns the pod's IPv4 address and port (IPv6 if it has no IPv4).
func (p *Pod) Addr(port int) netip.AddrPort {
	if p.IP.IsValid() {
		return netip.AddrPortFrom(p.IP, uint16(port))
	}
	return netip.AddrPortFrom(p.IP6, uint16(port))
}

// Command runs a program inside the pod (`ip netns exec`); see Netns.Command.
func (p *Pod) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return p.NS.Command(ctx, name, args...)
}

// Listener is a TCP or UDP server in a pod, bound to each of the pod's
// addresses (Spec.Addresses, or IP and IP6), that answers every connection (TCP) or datagram (UDP) with
// the pod's name and closes (TCP). Binding to the pod's own addresses
// rather than to all makes UDP answers leave from the address that was
// asked, also in a namespace with several (a node's eth0 and VXLAN tunnel
// addresses).
type Listener struct {
	Network string
	Port    int
	lns     []net.Listener
	pcs     []net.PacketConn
	wg      sync.WaitGroup

	mu       sync.Mutex
	accepted int // TCP connections accepted or UDP datagrams answered
}

// Accepted returns how many connections or datagrams were served.
func (l *Listener) Accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted
}

// Close stops the listener and waits for its goroutines.
func (l *Listener) Close() {
	for _, ln := range l.lns {
		_ = ln.Close()
	}
	for _, pc := range l.pcs {
		_ = pc.Close()
	}
	l.wg.Wait()
}

func (l *Listener) count() {
	l.mu.Lock()
	l.accepted++
	l.mu.Unlock()
}

// Listen starts (or returns the running) listener on port for network
// "tcp" or "udp" on the pod's addresses. It is stopped when the pod is
// removed or the topology closed. Serve is the form that returns an error.
func (p *Pod) Listen(t testing.TB, network string, port int) *Listener {
	t.Helper()
	l, err := p.Serve(network, port)
	must(t, err, "listen in "+p.Name)
	return l
}

// ListenTCP is Listen(t, "tcp", port).
func (p *Pod) ListenTCP(t testing.TB, port int) *Listener { return p.Listen(t, "tcp", port) }

// ListenUDP is Listen(t, "udp", port).
func (p *Pod) ListenUDP(t testing.TB, port int) *Listener { return p.Listen(t, "udp", port) }

// Serve is Listen without a test: it starts (or returns the running)
// listener, or fails for an unknown network, a pod without addresses or a
// port in use.
func (p *Pod) Serve(network string, port int) (*Listener, error) {
	key := network + "/" + strconv.Itoa(port)
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.listeners[key]; ok {
		return l, nil
	}
	if p.listeners == nil {
		p.listeners = map[string]*Listener{}
	}
	if network != "tcp" && network != "udp" {
		return nil, fmt.Errorf("listen in %s: network %q: want tcp or udp", p.Name, network)
	}
	var addrs []netip.AddrPort
	for _, a := range p.addrs() {
		addrs = append(addrs, netip.AddrPortFrom(a, uint16(port)))
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("listen in %s: the pod has no address", p.Name)
	}
	l := &Listener{Network: network, Port: port}
	err := p.NS.Do(func() error {
		for _, a := range addrs {
			if network == "tcp" {
				ln, err := net.Listen("tcp", a.String())
				if err != nil {
					return err
				}
				l.lns = append(l.lns, ln)
				continue
			}
			pc, err := net.ListenPacket("udp", a.String())
			if err != nil {
				return err
			}
			l.pcs = append(l.pcs, pc)
		}
		return nil
	})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("listen in %s: %w", p.Name, err)
	}
	reply := []byte(p.Name)
	for _, ln := range l.lns {
		l.wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				l.count()
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = c.Write(reply)
				_ = c.Close()
			}
		})
	}
	for _, pc := range l.pcs {
		l.wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				l.count()
				_, _ = pc.WriteTo(reply, from)
			}
		})
	}
	p.listeners[key] = l
	return l, nil
}

func (p *Pod) closeListeners() {
	p.mu.Lock()
	ls := p.listeners
	p.listeners = map[string]*Listener{}
	p.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
}

// Dial opens a connection from inside the pod ("tcp" or "udp").
func (p *Pod) Dial(ctx context.Context, network string, to netip.AddrPort) (net.Conn, error) {
	return p.DialFrom(ctx, network, 0, to)
}

// DialFrom is Dial from a chosen source port (0: one the kernel picks), on
// the pod's address of to's family. The socket sets SO_REUSEADDR, so
// several connections from one source port to different destinations can
// be open at once; one (source, destination) pair is one connection at a
// time, and a port the pod listens on cannot be a source port.
func (p *Pod) DialFrom(ctx context.Context, network string, srcPort uint16, to netip.AddrPort) (net.Conn, error) {
	d := &net.Dialer{}
	if srcPort != 0 {
		var src netip.Addr
		for _, a := range p.addrs() {
			if a.Is4() == to.Addr().Is4() {
				src = a
				break
			}
		}
		if !src.IsValid() {
			return nil, fmt.Errorf("dial %s from %s port %d: the pod has no address of that family", to, p.Name, srcPort)
		}
		switch network {
		case "tcp":
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, srcPort))
		case "udp":
			d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, srcPort))
		default:
			return nil, fmt.Errorf("dial %s from %s port %d: network %q: want tcp or udp", to, p.Name, srcPort, network)
		}
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	var c net.Conn
	err := p.NS.Do(func() error {
		var err error
		c, err = d.DialContext(ctx, network, to.String())
		return err
	})
	return c, err
}

// Probe connects from the pod to `to` with a deadline and returns the
// listener's reply (the serving pod's name). For "udp" it sends one
// datagram and waits for the answer.
func (p *Pod) Probe(network string, to netip.AddrPort, timeout time.Duration) (string, error) {
	return p.ProbeFrom(network, 0, to, timeout)
}

// ProbeFrom is Probe from a chosen source port (see DialFrom).
func (p *Pod) ProbeFrom(network string, srcPort uint16, to netip.AddrPort, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := p.DialFrom(ctx, network, srcPort, to)
	if err != nil {
		return "", fmt.Errorf("%s %s -> %s: %w", network, p.Name, to, err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	if network == "udp" {
		if _, err := c.Write([]byte("ping")); err != nil {
			return "", fmt.Errorf("udp %s -> %s: %w", p.Name, to, err)
		}
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			return "", fmt.Errorf("udp %s -> %s: %w", p.Name, to, err)
		}
		return string(buf[:n]), nil
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", fmt.Errorf("tcp %s -> %s: %w", p.Name, to, err)
	}
	return string(b), nil
}

// Timeouts of the Expect helpers.
const (
	// ConnectTimeout bounds a connection that is expected to work.
	ConnectTimeout = 3 * time.Second
	// NoConnectTimeout is how long a connection that is expected to fail
	// is given before it counts as blocked.
	NoConnectTimeout = 700 * time.Millisecond
)

// ExpectConnect asserts that a TCP connection from `from` to `to`'s IPv4
// address (IPv6 if it has none) on port succeeds and is answered by `to`.
// It starts a TCP listener in `to` if none runs on that port.
func ExpectConnect(t testing.TB, from, to *Pod, port int) {
	t.Helper()
	expectProbe(t, "tcp", from, to, to.Addr(port), true)
}

// ExpectConnect6 is ExpectConnect over IPv6.
func ExpectConnect6(t testing.TB, from, to *Pod, port int) {
	t.Helper()
	expectProbe(t, "tcp", from, to, netip.AddrPortFrom(to.IP6, uint16(port)), true)
}

// ExpectNoConnect asserts that the TCP connection fails within NoConnectTimeout.
func ExpectNoConnect(t testing.TB, from, to *Pod, port int) {
	t.Helper()
	expectProbe(t, "tcp", from, to, to.Addr(port), false)
}

// ExpectUDP asserts that a UDP datagram from `from` to `to` is answered by `to`.
func ExpectUDP(t testing.TB, from, to *Pod, port int) {
	t.Helper()
	expectProbe(t, "udp", from, to, to.Addr(port), true)
}

// ExpectNoUDP asserts that a UDP datagram from `from` to `to` gets no answer.
func ExpectNoUDP(t testing.TB, from, to *Pod, port int) {
	t.Helper()
	expectProbe(t, "udp", from, to, to.Addr(port), false)
}

// Reach probes from `from` to `to`'s IPv4 address (IPv6 if it has none)
// on port over network ("tcp" or "udp"), starting a listener in `to` if
// none runs there, and returns nil if `to` answered within ConnectTimeout.
// It is the error-returning form of ExpectConnect and ExpectUDP, for code
// without a testing.TB (the lab).
func Reach(network string, from, to *Pod, port int) error {
	if _, err := to.Serve(network, port); err != nil {
		return err
	}
	reply, err := from.Probe(network, to.Addr(port), ConnectTimeout)
	if err != nil {
		return err
	}
	if reply != to.Name {
		return fmt.Errorf("%s %s -> %s (%s): answered by %q", network, from, to, to.Addr(port), reply)
	}
	return nil
}

func expectProbe(t testing.TB, network string, from, to *Pod, addr netip.AddrPort, want bool) {
	t.Helper()
	// A removed pod has no address to listen on any more; a probe that is
	// expected to fail is still made.
	if _, err := to.Serve(network, int(addr.Port())); err != nil && want {
		t.Fatalf("nettest: %v", err)
	}
	timeout := ConnectTimeout
	if !want {
		timeout = NoConnectTimeout
	}
	reply, err := from.Probe(network, addr, timeout)
	switch {
	case want && err != nil:
		t.Errorf("nettest: expected %s %s -> %s (%s) to connect: %v", network, from, to, addr, err)
	case want && reply != to.Name:
		t.Errorf("nettest: %s %s -> %s (%s) answered by %q", network, from, to, addr, reply)
	case !want && err == nil:
		t.Errorf("nettest: expected %s %s -> %s (%s) to fail, but %q answered", network, from, to, addr, reply)
	}
}

// Matrix is the result of probing every ordered pair of pods.
type Matrix struct {
	Pods []*Pod
	// OK[i][j] reports whether Pods[i] reached Pods[j].
	OK [][]bool
}

// String renders the matrix as a table, "✓" connected, "✗" not, "·" self.
func (m Matrix) String() string {
	var b strings.Builder
	row := func(cells []string) {
		var line string
		for i, c := range cells {
			if i > 0 {
				line += " "
			}
			line += fmt.Sprintf("%-12s", c)
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	head := []string{"from\\to"}
	for _, p := range m.Pods {
		head = append(head, p.Name)
	}
	row(head)
	for i, p := range m.Pods {
		cells := []string{p.Name}
		for j := range m.Pods {
			c := "✗"
			switch {
			case i == j:
				c = "·"
			case m.OK[i][j]:
				c = "✓"
			}
			cells = append(cells, c)
		}
		row(cells)
	}
	return b.String()
}

// ProbeMatrix probes TCP from every pod to every other pod on port,
// concurrently, each with the given timeout, starting listeners as needed.
func ProbeMatrix(pods []*Pod, port int, timeout time.Duration) (Matrix, error) {
	m := Matrix{Pods: pods, OK: make([][]bool, len(pods))}
	for i := range pods {
		m.OK[i] = make([]bool, len(pods))
		if _, err := pods[i].Serve("tcp", port); err != nil {
			return m, err
		}
	}
	var wg sync.WaitGroup
	for i, from := range pods {
		for j, to := range pods {
			if i == j {
				continue
			}
			wg.Go(func() {
				reply, err := from.Probe("tcp", to.Addr(port), timeout)
				m.OK[i][j] = err == nil && reply == to.Name
			})
		}
	}
	wg.Wait()
	return m, nil
}

// ExpectMatrix probes every ordered pair of pods on a TCP port and fails
// the test, printing the whole matrix, unless each pair's result equals
// allowed(from, to).
func ExpectMatrix(t testing.TB, pods []*Pod, port int, allowed func(from, to *Pod) bool) Matrix {
	t.Helper()
	m, err := ProbeMatrix(pods, port, NoConnectTimeout*2)
	if err != nil {
		t.Fatalf("nettest: %v", err)
	}
	var bad []error
	for i, from := range pods {
		for j, to := range pods {
			if i != j && m.OK[i][j] != allowed(from, to) {
				bad = append(bad, fmt.Errorf("%s -> %s: got connected=%v", from, to, m.OK[i][j]))
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("nettest: connectivity differs from expected:\n%v\n%s", errors.Join(bad...), m)
	}
	return m
}

// AllowAll is an ExpectMatrix predicate: every pod reaches every other.
func AllowAll(from, to *Pod) bool { return true }

// ExpectConnectAddr asserts that a TCP connection from `from` to an
// arbitrary address (a service IP, a node port) succeeds and returns who
// answered (the serving pod's name, from its listener).
func ExpectConnectAddr(t testing.TB, from *Pod, to netip.AddrPort) string {
	t.Helper()
	reply, err := from.Probe("tcp", to, ConnectTimeout)
	if err != nil {
		t.Errorf("nettest: expected tcp %s -> %s to connect: %v", from, to, err)
	}
	return reply
}

// ExpectNoConnectAddr asserts that a TCP connection from `from` to the
// address fails within NoConnectTimeout.
func ExpectNoConnectAddr(t testing.TB, from *Pod, to netip.AddrPort) {
	t.Helper()
	if reply, err := from.Probe("tcp", to, NoConnectTimeout); err == nil {
		t.Errorf("nettest: expected tcp %s -> %s to fail, but %q answered", from, to, reply)
	}
}

// Host returns a Pod view of the node's own namespace (host network): its
// listeners answer with the node's name and it probes from the node's
// addresses. Useful for host-network servers and NodePort checks.
func (n *Node) Host() *Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.host == nil {
		n.host = &Pod{Name: n.Name, NS: n.NS, IP: n.IP, IP6: n.IP6}
		n.topo.onClose(func() error { n.host.closeListeners(); return nil })
	}
	return n.host
}
