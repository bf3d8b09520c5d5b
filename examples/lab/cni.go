package main

// The lab's pods are made the way a container runtime makes them: the lab
// creates a network namespace per pod (the sandbox), then asks the tabby
// CNI plugin binary, through libcni, to ADD it, with a conflist of type
// "tabby" per node and the CNI_ARGS containerd passes. Addresses come from
// tabby's ipam (tabby-ipam in the plugin's process) over one etcd shared by
// the three nodes, which is also what the lab reads the nodes' blocks from.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	nl "github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/store/etcdstore"
	"github.com/tabbynet/tabby/ipam/store/etcdstore/embedetcd"
)

const (
	// network is the conflist's name, so the pods' IPAM handles are
	// "k8s-pod-network.<containerID>", as Calico names them.
	network = "k8s-pod-network"
	// pluginPkg is the tabby CNI plugin's main package.
	pluginPkg = "github.com/tabbynet/tabby/examples/cni/tabby"
	// cniTimeout bounds each libcni call (the plugin bounds itself too).
	cniTimeout = 30 * time.Second
)

// cniLab is the runtime side of the lab: the plugin binary, the shared
// datastore and libcni. Close removes all of it.
type cniLab struct {
	dir    string // temporary: bin/ (when built), cache/ (libcni), etcd.sock
	binDir string
	etcd   *embedetcd.Server
	bridge *socketBridge
	client *clientv3.Client
	ipam   *ipam.IPAM
	cni    *libcni.CNIConfig
	built  chan error // the background go build (nil with --cni-bin-dir)
	cancel context.CancelFunc
}

// startCNI starts the datastore (embedded etcd, the lab's IPAM over it,
// the pool) and, unless binDir names a directory holding the tabby binary
// already, builds the plugin in the background (waitPlugin waits for it).
func startCNI(ctx context.Context, w io.Writer, binDir string, pool ipam.IPPool) (_ *cniLab, err error) {
	dir, err := os.MkdirTemp("", "tabby-lab-")
	if err != nil {
		return nil, fmt.Errorf("lab directory: %w", err)
	}
	l := &cniLab{dir: dir, binDir: binDir}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()
	if l.binDir == "" {
		l.binDir = filepath.Join(dir, "bin")
		bctx, cancel := context.WithCancel(ctx)
		l.cancel, l.built = cancel, make(chan error, 1)
		fmt.Fprintf(w, "==> CNI: building the tabby plugin in the background (go %s)\n", shellJoin(buildArgs(l.binDir)))
		go func() { l.built <- buildPlugin(bctx, l.binDir) }()
	} else if _, err := os.Stat(filepath.Join(binDir, "tabby")); err != nil {
		return nil, fmt.Errorf("--cni-bin-dir: %w", err)
	}
	// RawExec drops the plugins' stderr on success (an error carries it);
	// the Exec is given explicitly because libcni sets its default lazily
	// without a lock.
	l.cni = libcni.NewCNIConfigWithCacheDir([]string{l.binDir}, filepath.Join(dir, "cache"),
		&invoke.DefaultExec{RawExec: &invoke.RawExec{}, PluginDecoder: version.PluginDecoder{}})

	done := step(w, "IPAM: an embedded etcd shared by the nodes, the pool %s (blockSize %d, vxlanMode %s; a Calico IPPool manifest)",
		pool.CIDR, pool.BlockSize, pool.VXLANMode)
	if l.etcd, err = embedetcd.Start(ctx, embedetcd.WithReadyTimeout(20*time.Second)); err != nil {
		return l, err
	}
	// etcd listens on the loopback of the lab's own namespace, which no
	// node namespace can reach; a unix socket is reachable from every
	// network namespace (its path is a file), so the plugin, running in a
	// node's namespace, reaches etcd through one.
	if l.bridge, err = bridgeSocket(filepath.Join(dir, "etcd.sock"), strings.TrimPrefix(l.etcd.Endpoint(), "http://")); err != nil {
		return l, err
	}
	if l.client, err = l.etcd.Client(); err != nil {
		return l, err
	}
	s, err := etcdstore.New(l.client)
	if err != nil {
		return l, fmt.Errorf("etcd store: %w", err)
	}
	if l.ipam, err = ipam.New(s, ipam.WithLogger(warnLogger())); err != nil {
		return l, fmt.Errorf("ipam: %w", err)
	}
	if _, err := l.ipam.CreatePool(ctx, pool); err != nil {
		return l, fmt.Errorf("create pool: %w", err)
	}
	done()
	fmt.Fprintf(w, "    the plugin reaches etcd at %s (a socket bridged to %s)\n", l.bridge.endpoint(), l.etcd.Endpoint())
	return l, nil
}

// buildArgs is the go command line that builds the plugin into dir
// (-tags grpcnotrace as examples/cni/README.md says).
func buildArgs(dir string) []string {
	return []string{"build", "-tags", "grpcnotrace", "-ldflags=-s -w", "-o", dir + "/", pluginPkg}
}

// shellJoin joins args into a line a POSIX shell splits back into args,
// so a printed command can be pasted: an argument holding anything but
// letters, digits and -_./=:,+@% is single-quoted.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		safe := a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) < 0
		if safe {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

// buildPlugin builds the tabby plugin into dir with the go toolchain
// (the lab runs from the module, as `make demo` does). The compiled
// packages come from the go build cache; what is left is the link, which
// is about twice as fast without the symbol table and DWARF (-s -w), which
// the lab never reads.
func buildPlugin(ctx context.Context, dir string) error {
	cmd := exec.CommandContext(ctx, "go", buildArgs(dir)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (run the lab from the tabby module, or pass --cni-bin-dir): %w: %s",
			pluginPkg, err, bytes.TrimSpace(out))
	}
	return nil
}

// waitPlugin waits for the background build, if any.
func (l *cniLab) waitPlugin(ctx context.Context, w io.Writer) error {
	if l.built == nil {
		fmt.Fprintf(w, "==> CNI: the tabby plugin from %s\n", l.binDir)
		return nil
	}
	done := step(w, "CNI: waiting for the tabby plugin build")
	select {
	case err := <-l.built:
		l.built = nil
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	done()
	return nil
}

// Close stops the build, the bridge and etcd and removes the lab's
// directory (the plugin binary, libcni's cache, the socket) and etcd's.
func (l *cniLab) Close() error {
	if l.cancel != nil {
		l.cancel()
	}
	if l.built != nil {
		<-l.built // the go build wrote into dir: wait before removing it
		l.built = nil
	}
	var errs []error
	if l.client != nil {
		errs = append(errs, l.client.Close())
		l.client = nil
	}
	if l.bridge != nil {
		l.bridge.close()
		l.bridge = nil
	}
	if l.etcd != nil {
		errs = append(errs, l.etcd.Close())
		l.etcd = nil
	}
	if l.dir != "" {
		errs = append(errs, os.RemoveAll(l.dir))
	}
	return errors.Join(errs...)
}

// conflist is the node's CNI configuration, as /etc/cni/net.d would hold
// it: the tabby plugin with tabby-ipam in its process, the node's name,
// the etcd datastore, the pod MTU (room for the VXLAN header), and the
// node's IPAM lock file: on a real node /var/run/tabby/ipam.lock, here one
// per lab node in the lab's folder, since the nodes share a filesystem.
func (l *cniLab) conflist(node string, mtu int) (*libcni.NetworkConfigList, error) {
	b, err := json.Marshal(map[string]any{
		"cniVersion": "1.1.0", "name": network,
		"plugins": []any{map[string]any{
			"type": "tabby", "nodename": node, "mtu": mtu,
			"ipam_lock_file": filepath.Join(l.dir, node+"-ipam.lock"),
			"ipam":           map[string]any{"type": "tabby-ipam", "etcd_endpoints": []string{l.bridge.endpoint()}},
		}},
	})
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromBytes(b)
}

// containerID returns a new sandbox ID, 64 hex digits as containerd's.
func containerID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// runtimeConf is what containerd passes for a pod sandbox.
func (p *pod) runtimeConf() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: p.containerID, NetNS: p.sandbox.Path, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", namespace}, {"K8S_POD_NAME", p.name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.containerID}}}
}

// onNode runs f "on the node": on an OS thread that entered the node's
// network namespace (nettest.Netns.Do locks the goroutine to its thread
// and restores it afterwards). libcni starts the plugin with os/exec from
// the calling goroutine, and a child process starts in the namespace of
// the thread that forked it, so the plugin runs in the node's namespace
// exactly as it would under a containerd running on that node: its veth
// host ends and /32 routes land there. This needs neither nsenter nor a
// wrapper process, and the Go runtime never starts other threads from a
// thread whose namespace was changed, so nothing else leaks into it.
func onNode(ctx context.Context, n *nettest.Node, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, cniTimeout)
	defer cancel()
	return n.NS.Do(func() error { return f(ctx) })
}

// nodeOf returns the topology's node named name.
func nodeOf(topo *nettest.Topology, name string) (*nettest.Node, error) {
	for _, n := range topo.Nodes() {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node %q", name)
}

// addPods creates each pod's sandbox namespace and ADDs it through libcni
// on its node; a pod whose ADD failed has no nettest view (p.p == nil) and
// the error says which. The sandboxes are deleted by delPods (and Close of
// the topology does not know them).
func (l *cniLab) addPods(ctx context.Context, w io.Writer, topo *nettest.Topology, pods []*pod, mtu int) error {
	done := step(w, "CNI ADD of %d pods through libcni: a sandbox netns each, the tabby plugin run on its node", len(pods))
	for _, p := range pods {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := nodeOf(topo, p.node)
		if err != nil {
			return err
		}
		list, err := l.conflist(n.Name, mtu)
		if err != nil {
			return fmt.Errorf("conflist for %s: %w", n.Name, err)
		}
		p.containerID = containerID()
		if p.sandbox, err = nettest.CreateNetns(n.NS.Name + "-" + p.name); err != nil {
			return fmt.Errorf("sandbox of %s: %w", p.name, err)
		}
		var res *current.Result
		err = onNode(ctx, n, func(ctx context.Context) error {
			r, err := l.cni.AddNetworkList(ctx, list, p.runtimeConf())
			if err == nil {
				res, err = current.NewResultFromResult(r)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("CNI ADD of %s on %s: %w", p.name, n.Name, err)
		}
		if err := p.fromResult(n, res); err != nil {
			return fmt.Errorf("CNI ADD of %s on %s: %w", p.name, n.Name, err)
		}
	}
	done()
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tNODE\tADDRESS\tHOST INTERFACE\tSANDBOX (CONTAINER ID)\tLABELS")
	for _, p := range pods {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s (%.12s)\tapp=%s\n", p.name, p.node, p.result.IPs[0].Address.String(),
			p.result.Interfaces[0].Name, p.sandbox.Name, p.containerID, p.labels["app"])
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "(customer, summary and database are the workshop's YAO Bank; intruder is the lab's own:\n"+
		"a pod in the same namespace that the bank's policies must keep away from summary and database)")
	if list, err := l.conflist(pods[0].node, mtu); err == nil {
		fmt.Fprintf(w, "\n    each ADD ran the plugin in its node's namespace with, as containerd passes them,\n"+
			"    CNI_IFNAME=eth0, CNI_NETNS=/var/run/netns/<sandbox>, CNI_CONTAINERID=<sandbox ID>,\n"+
			"    CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=<pod>;K8S_POD_INFRA_CONTAINER_ID=<sandbox ID>\n"+
			"    and the node's conflist (%s's), whose tabby entry libcni passes on stdin:\n    %s\n", namespace, pods[0].node, list.Bytes)
	}
	fmt.Fprintln(w)

	// The plugin claimed blocks in etcd for the nodes; each node routes
	// what IPAM says it and the others own, as calico-node does on block
	// affinity changes.
	done = step(w, "routing each node's blocks: read from etcd (AffineBlocks), dataplane/node reconciles")
	if err := topo.Sync(); err != nil {
		return fmt.Errorf("route the nodes' blocks: %w", err)
	}
	done()
	return nil
}

// fromResult reads the CNI result of the pod's ADD: the host interface
// (index 0), the sandbox's eth0 (index 1) and one IPv4 address on it.
func (p *pod) fromResult(n *nettest.Node, r *current.Result) error {
	if len(r.Interfaces) != 2 || r.Interfaces[1].Name != "eth0" || r.Interfaces[1].Sandbox != p.sandbox.Path {
		return fmt.Errorf("result interfaces %v: want the host end and eth0 in %s", r.Interfaces, p.sandbox.Path)
	}
	if len(r.IPs) != 1 || r.IPs[0].Interface == nil || *r.IPs[0].Interface != 1 {
		return fmt.Errorf("result addresses %v: want one, on eth0", r.IPs)
	}
	a, ok := netip.AddrFromSlice(r.IPs[0].Address.IP)
	if !ok || !a.Unmap().Is4() {
		return fmt.Errorf("result address %v: want IPv4", r.IPs[0].Address)
	}
	p.addr, p.result = a.Unmap(), r
	// The pod as nettest sees it, for probes, listeners and enforcement
	// (which marks the host interface local).
	p.p = &nettest.Pod{Name: p.name, Node: n, NS: p.sandbox, IP: p.addr,
		Result: tnl.WorkloadResult{Host: tnl.Interface{Name: r.Interfaces[0].Name}}}
	return nil
}

// verifyAdds checks what each ADD did against the datastore and the
// kernel: the address is held under the pod's handle
// (k8s-pod-network.<containerID>) for its node, namespace and name, the
// host interface is on the pod's node, and eth0 in the sandbox carries
// the address.
func (l *cniLab) verifyAdds(ctx context.Context, topo *nettest.Topology, pods []*pod) error {
	var errs []error
	for _, p := range pods {
		handle := network + "." + p.containerID
		info, err := l.ipam.Lookup(ctx, p.addr)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		case !info.Allocated || info.Attribute.Handle != handle || info.Attribute.Node != p.node ||
			info.Attribute.Namespace != namespace || info.Attribute.Pod != p.name:
			errs = append(errs, fmt.Errorf("%s: %s is held by %+v, want handle %s on %s for %s/%s",
				p.name, p.addr, info.Attribute, handle, p.node, namespace, p.name))
		}
		n, err := nodeOf(topo, p.node)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		host := p.result.Interfaces[0].Name
		if _, err := n.NS.Handle().LinkByName(host); err != nil {
			errs = append(errs, fmt.Errorf("%s: host interface %s on %s: %w", p.name, host, n.Name, err))
		}
		if err := hasAddr(p.sandbox, "eth0", p.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}

// hasAddr reports whether the interface ifname in ns carries addr.
func hasAddr(ns *nettest.Netns, ifname string, addr netip.Addr) error {
	h := ns.Handle()
	link, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", ifname, ns.Name, err)
	}
	addrs, err := h.AddrList(link, nl.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("addresses of %s in %s: %w", ifname, ns.Name, err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == addr {
			return nil
		}
	}
	return fmt.Errorf("%s in %s does not carry %s", ifname, ns.Name, addr)
}

// checkPods runs CHECK for every pod through libcni on its node: the
// plugin compares the cached ADD result with the kernel and the datastore.
func (l *cniLab) checkPods(ctx context.Context, w io.Writer, topo *nettest.Topology, pods []*pod, mtu int) error {
	done := step(w, "CNI CHECK of every pod through libcni (interfaces, addresses, routes and the IPAM record)")
	var errs []error
	for _, p := range pods {
		if err := l.verb(ctx, topo, p, mtu, l.cni.CheckNetworkList); err != nil {
			errs = append(errs, fmt.Errorf("CHECK %s: %w", p.name, err))
		}
	}
	done()
	fmt.Fprintln(w)
	return errors.Join(errs...)
}

// verb runs a libcni verb without a result for pod p on its node.
func (l *cniLab) verb(ctx context.Context, topo *nettest.Topology, p *pod, mtu int,
	f func(context.Context, *libcni.NetworkConfigList, *libcni.RuntimeConf) error) error {
	n, err := nodeOf(topo, p.node)
	if err != nil {
		return err
	}
	list, err := l.conflist(n.Name, mtu)
	if err != nil {
		return err
	}
	return onNode(ctx, n, func(ctx context.Context) error { return f(ctx, list, p.runtimeConf()) })
}

// delPods DELs every pod that has a sandbox through libcni on its node,
// then deletes the sandbox, as a runtime does when it stops a pod. It is
// safe to call twice (the second call finds no sandbox). It reports the
// DEL errors and what is left: a host interface on a node, an address
// under a pod's handle.
func (l *cniLab) delPods(ctx context.Context, topo *nettest.Topology, pods []*pod, port, mtu int) error {
	var errs []error
	for _, p := range pods {
		if p.sandbox == nil {
			continue
		}
		if p.p != nil {
			// Stop the lab's listener in the pod (ProbeMatrix started it);
			// Serve returns the running one.
			if ln, err := p.p.Serve("tcp", port); err == nil {
				ln.Close()
			}
		}
		if err := l.verb(ctx, topo, p, mtu, l.cni.DelNetworkList); err != nil {
			errs = append(errs, fmt.Errorf("DEL %s: %w", p.name, err))
		}
		if err := p.sandbox.Delete(); err != nil {
			errs = append(errs, fmt.Errorf("sandbox of %s: %w", p.name, err))
		}
		p.sandbox = nil
		if n, err := nodeOf(topo, p.node); err == nil && p.result != nil {
			if _, err := n.NS.Handle().LinkByName(p.result.Interfaces[0].Name); err == nil {
				errs = append(errs, fmt.Errorf("%s: host interface %s left on %s", p.name, p.result.Interfaces[0].Name, n.Name))
			}
		}
		if have, err := l.ipam.IPsByHandle(ctx, network+"."+p.containerID); err != nil || len(have) > 0 {
			errs = append(errs, errors.Join(err, fmt.Errorf("%s: %v still held under its handle", p.name, have)))
		}
	}
	return errors.Join(errs...)
}

// datastoreEmpty reports the allocations and handle records left in etcd
// (after the pods were deleted and the nodes released their tunnel
// addresses, none should be).
func (l *cniLab) datastoreEmpty(ctx context.Context) error {
	var left []string
	allocs, _, err := l.ipam.Allocations(ctx)
	if err != nil {
		return err
	}
	for a, err := range allocs {
		if err != nil {
			return err
		}
		left = append(left, fmt.Sprintf("%s (handle %s)", a.Addr, a.Attribute.Handle))
	}
	handles, _, err := l.ipam.Handles(ctx)
	if err != nil {
		return err
	}
	for h, err := range handles {
		if err != nil {
			return err
		}
		left = append(left, "handle "+h.Handle)
	}
	if len(left) > 0 {
		return fmt.Errorf("left in the datastore: %s", strings.Join(left, ", "))
	}
	return nil
}

// dirsLeft reports whether the lab's and etcd's directories still exist
// (call after Close).
func (l *cniLab) dirsLeft(etcdDir string) error {
	var left []string
	for _, d := range []string{l.dir, etcdDir} {
		if _, err := os.Stat(d); err == nil {
			left = append(left, d)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("left behind: %s", strings.Join(left, " "))
	}
	return nil
}

// socketBridge accepts connections on a unix socket and joins each to a
// TCP address (etcd's client port): the plugin, in a node's namespace,
// dials the socket, the bridge dials from the lab's namespace.
type socketBridge struct {
	path string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func bridgeSocket(path, target string) (*socketBridge, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("etcd socket: %w", err)
	}
	b := &socketBridge{path: path, ln: ln, conns: map[net.Conn]bool{}}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Go(func() { b.join(c, target) })
		}
	})
	return b, nil
}

// endpoint is the socket as an etcd client endpoint.
func (b *socketBridge) endpoint() string { return "unix://" + b.path }

// join copies between c and a new connection to target until either side
// closes.
func (b *socketBridge) join(c net.Conn, target string) {
	t, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !b.track(c, t) {
		return
	}
	defer b.untrack(c, t)
	copied := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(t, c); copied <- struct{}{} }()
	go func() { _, _ = io.Copy(c, t); copied <- struct{}{} }()
	<-copied // one side is done: close both, which ends the other copy
	c.Close()
	t.Close()
	<-copied
}

// track registers the pair, or closes it when the bridge is closing.
func (b *socketBridge) track(cs ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		b.conns[c] = true
	}
	return true
}

func (b *socketBridge) untrack(cs ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		delete(b.conns, c)
	}
}

// close stops accepting, closes every joined connection and waits for the
// copies (the socket file goes with the listener).
func (b *socketBridge) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.conns = nil
	b.mu.Unlock()
	b.wg.Wait()
}
