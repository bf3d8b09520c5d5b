package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/ipam"
)

// Plugin is the tabby CNI plugin as a library: Add, Del, Check, GC and
// Status take the arguments skel parses from the environment and stdin.
// Funcs wires them into skel.PluginMainFuncs. A Plugin holds no state
// between calls beyond its options; it is safe for concurrent use when its
// WorkloadManager and IPAM are.
type Plugin struct {
	log          *slog.Logger
	workloads    netlink.WorkloadManager
	openIPAM     func(conf *IPAMConf, timeout time.Duration) (IPAM, error)
	ipamGiven    bool // WithIPAM: no datastore file of the plugin's own
	resolver     Resolver
	kubeResolver func(kubeconfig string) (Resolver, error)
	hostname     func() (string, error)
	exec         invoke.Exec
}

// Option configures New.
type Option func(*Plugin)

// WithLogger sets the logger (default: discard; a CNI plugin's stdout is
// the protocol, so never log there).
func WithLogger(l *slog.Logger) Option { return func(p *Plugin) { p.log = l } }

// WithWorkloads makes the plugin use wm (for example a
// netlink.FakeWorkloads) instead of opening the kernel's current network
// namespace on each call.
func WithWorkloads(wm netlink.WorkloadManager) Option { return func(p *Plugin) { p.workloads = wm } }

// WithIPAM makes the plugin use m for every tabby-ipam section instead of
// opening the datastore the section names. m is not closed by the plugin.
func WithIPAM(m IPAM) Option {
	return func(p *Plugin) {
		p.openIPAM = func(*IPAMConf, time.Duration) (IPAM, error) { return noClose{m}, nil }
		p.ipamGiven = true
	}
}

// WithResolver fixes the annotation resolver, overriding the
// configuration's.
func WithResolver(r Resolver) Option { return func(p *Plugin) { p.resolver = r } }

// WithKubernetesResolver supplies the resolver used when the configuration
// has a "kubernetes" section (built from the kubeconfig it names).
func WithKubernetesResolver(f func(kubeconfig string) (Resolver, error)) Option {
	return func(p *Plugin) { p.kubeResolver = f }
}

// WithHostname overrides os.Hostname as the default node name.
func WithHostname(f func() (string, error)) Option { return func(p *Plugin) { p.hostname = f } }

// WithExec sets how delegated IPAM plugins are run (default: CNI_PATH).
func WithExec(e invoke.Exec) Option { return func(p *Plugin) { p.exec = e } }

// New returns a Plugin.
func New(opts ...Option) *Plugin {
	p := &Plugin{log: slog.New(slog.DiscardHandler), hostname: os.Hostname}
	p.openIPAM = func(c *IPAMConf, t time.Duration) (IPAM, error) { return OpenIPAM(c, p.log, t) }
	for _, o := range opts {
		o(p)
	}
	return p
}

type noClose struct{ IPAM }

func (noClose) Close() error { return nil }

// About is the text a plugin prints when run without CNI_COMMAND.
func About(name string) string { return name + " (tabby) CNI plugin" }

// Funcs returns the verbs for skel.PluginMainFuncs: ADD prints its result
// on stdout, errors become CNI error JSON with the codes Code documents.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{
		Add: func(a *skel.CmdArgs) error {
			r, err := p.Add(context.Background(), a)
			if err != nil {
				return err
			}
			return r.Print()
		},
		Del:    func(a *skel.CmdArgs) error { return p.Del(context.Background(), a) },
		Check:  func(a *skel.CmdArgs) error { return p.Check(context.Background(), a) },
		GC:     func(a *skel.CmdArgs) error { return p.GC(context.Background(), a) },
		Status: func(a *skel.CmdArgs) error { return p.Status(context.Background(), a) },
	}
}

// workloadsFor returns the WorkloadManager and how to release it. This is
// the one place the kernel's netlink.Workloads is constructed (in the
// calling thread's network namespace, the host's).
func (p *Plugin) workloadsFor() (netlink.WorkloadManager, func(), error) {
	if p.workloads != nil {
		return p.workloads, func() {}, nil
	}
	w, err := netlink.NewWorkloads("", netlink.WithLogger(p.log))
	if err != nil {
		return nil, nil, fmt.Errorf("open host namespace: %w", err)
	}
	return w, func() { _ = w.Close() }, nil
}

func (p *Plugin) node(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	h, err := p.hostname()
	if err != nil {
		return "", fmt.Errorf("%w: no nodename and no host name: %w", ErrInvalidConfig, err)
	}
	return h, nil
}

// Handle is the IPAM handle and workload ID of a container on a network,
// "<network>.<containerID>", as Calico names it.
func Handle(network, containerID string) string { return network + "." + containerID }

func checkArgs(args *skel.CmdArgs, needNetns bool) error {
	switch {
	case args.IfName == "":
		return fmt.Errorf("%w: CNI_IFNAME is empty", ErrInvalidArgs)
	case needNetns && args.Netns == "":
		return fmt.Errorf("%w: CNI_NETNS is empty", ErrInvalidArgs)
	}
	return checkContainerID(args.ContainerID)
}

// checkContainerID refuses an empty CNI_CONTAINERID and one that would
// make the handle, a file name under state_dir (record.go), lead out of
// that directory.
func checkContainerID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: CNI_CONTAINERID is empty", ErrInvalidArgs)
	case strings.ContainsAny(id, "/\\\x00") || id == "." || id == "..":
		return fmt.Errorf("%w: CNI_CONTAINERID %q", ErrInvalidArgs, id)
	}
	return nil
}

// ErrOwnNetns: CNI_NETNS is the namespace the plugin runs in (the
// node's), CNI code 8. ADD would otherwise make the pod's interface and
// default route in the node itself; skel checks it only after the verb.
var ErrOwnNetns = errors.New("CNI_NETNS is the plugin's own network namespace")

// notOwnNetns returns ErrOwnNetns when path is the network namespace this
// process runs in (same device and inode) and the plugin makes interfaces
// in the kernel (no WithWorkloads). An empty path, or one that cannot be
// read, is left to the verb, which reports it.
func (p *Plugin) notOwnNetns(path string) error {
	if p.workloads != nil || path == "" {
		return nil
	}
	var pod, own unix.Stat_t
	if unix.Stat(path, &pod) != nil || unix.Stat("/proc/self/ns/net", &own) != nil {
		return nil
	}
	if pod.Dev == own.Dev && pod.Ino == own.Ino {
		return fmt.Errorf("%w: %s", ErrOwnNetns, path)
	}
	return nil
}

// cleanupContext bounds a rollback that must run even though ctx expired.
func cleanupContext(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// Add sets the container's interface up (CNI ADD) and returns the result
// in the configuration's cniVersion, after the configuration's prevResult
// when it has one. Retried for the same container it
// returns the same addresses and interface. On failure it removes the
// interface and releases the addresses it took, and the error is a
// *types.Error (codes: see Code).
func (p *Plugin) Add(ctx context.Context, args *skel.CmdArgs) (types.Result, error) {
	st := newStopwatch()
	conf, err := ParseConfig(args.StdinData)
	if err != nil {
		return nil, AsCNIError(err)
	}
	d := timeout(conf.TimeoutSeconds)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	st.lap("parse")
	res, err := p.add(ctx, conf, args, d, st)
	st.lap("rest")
	p.log.Debug("ADD timing", "container", args.ContainerID, "ok", err == nil, "steps", st)
	if err != nil {
		return nil, AsCNIError(err)
	}
	out, err := res.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return nil, AsCNIError(fmt.Errorf("%w: %w", ErrInvalidConfig, err))
	}
	return out, nil
}

func (p *Plugin) add(ctx context.Context, conf *NetConf, args *skel.CmdArgs, d time.Duration, st *stopwatch) (*current.Result, error) {
	if err := checkArgs(args, true); err != nil {
		return nil, err
	}
	k8s, err := ParseArgs(args.Args)
	if err != nil {
		return nil, err
	}
	if conf.runtimeMACErr != nil {
		return nil, conf.runtimeMACErr
	}
	var prev *current.Result // tabby after another plugin in a chain
	if conf.PrevResult != nil {
		if prev, err = current.NewResultFromResult(conf.PrevResult); err != nil {
			return nil, fmt.Errorf("%w: prevResult: %w", ErrInvalidConfig, err)
		}
	}
	if p.workloads == nil {
		// A missing pod namespace is reported as such (code 3) before any
		// address is assigned, not as whatever IPAM says first.
		if _, err := os.Stat(args.Netns); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNetnsMissing, args.Netns)
		}
		if err := p.notOwnNetns(args.Netns); err != nil {
			return nil, err
		}
	}
	handle := Handle(conf.Name, args.ContainerID)
	// The pod's annotations, read once for IPAM (tabby-ipam) and the MAC
	// (a pod without runtimeConfig.mac); no resolver is built otherwise.
	var r Resolver
	var rerr error
	wantMAC := conf.runtimeMAC == nil && k8s.isPod()
	if conf.IPAMConf != nil || wantMAC {
		if r, rerr = p.resolverFor(conf); rerr == nil {
			r = &onceResolver{r: r}
		}
	}
	// The addresses and the veth pair are independent until the addresses
	// go on the pod's interface: IPAM assigns on its own goroutine from
	// here while this one opens the host namespace's netlink sockets and
	// SetupWorkloadFunc makes the pair, which then waits for the addresses.
	allocated := make(chan allocation, 1)
	go func() { allocated <- p.allocate(ctx, conf, args, handle, k8s, d, r, rerr) }()
	var alloc *allocation
	waitAlloc := func() allocation {
		if alloc == nil {
			a := <-allocated
			alloc = &a
		}
		return *alloc
	}
	defer func() { waitAlloc().close() }()
	// rollback releases what this ADD allocated, after a failure past IPAM.
	rollback := func(err error, teardown func(context.Context) error) error {
		a := waitAlloc()
		if a.err != nil { // it took nothing; report IPAM's failure as itself
			if errors.Is(err, a.err) {
				return a.err
			}
			return errors.Join(err, a.err)
		}
		cctx, cancel := cleanupContext(d)
		defer cancel()
		rb := a.release(cctx)
		if teardown != nil {
			rb = errors.Join(teardown(cctx), rb)
		}
		if rb != nil {
			p.log.Warn("rollback of failed ADD incomplete", "handle", handle, "err", rb)
			return errors.Join(err, fmt.Errorf("%w: handle %s: %w", ErrRollbackIncomplete, handle, rb))
		}
		return err
	}

	// The host's netlink sockets open while the pod's annotations may
	// still be on their way.
	wm, done, err := p.workloadsFor()
	if err != nil {
		return nil, rollback(err, nil)
	}
	defer done()
	st.lap("netlink-open")
	// The MAC before the pair is made (it is set as the pair is created);
	// a bad one fails the ADD with nothing made, and IPAM's allocation, if
	// it got one meanwhile, released.
	var mac net.HardwareAddr
	if wantMAC && rerr != nil {
		return nil, rollback(rerr, nil)
	}
	if mac, err = podMAC(ctx, conf, k8s, r); err != nil {
		return nil, rollback(err, nil)
	}
	st.lap("mac")
	spec := netlink.WorkloadSpec{ID: handle, Netns: args.Netns, IfName: args.IfName, MTU: conf.MTU, MAC: mac}
	wr, err := wm.SetupWorkloadFunc(ctx, spec, func(context.Context) ([]netip.Addr, error) {
		a := waitAlloc()
		st.lap("wait-ipam")
		return a.addrs, a.err
	})
	st.lap("setup")
	if a := waitAlloc(); a.err == nil {
		st.add("ipam-open", a.opened)
		st.add("ipam", a.took)
	}
	if err != nil {
		// SetupWorkloadFunc removed the pair it made; a pair an earlier ADD
		// of this container left goes too (the runtime DELs after a failed
		// ADD anyway), unless the failure is that pair being another
		// attachment's (the container's interface of another name) or a
		// foreign link.
		teardown := func(ctx context.Context) error { return wm.TeardownWorkload(ctx, handle) }
		if errors.Is(err, netlink.ErrNameCollision) {
			teardown = nil
		}
		return nil, rollback(fmt.Errorf("container %s: %w", args.ContainerID, err), teardown)
	}
	p.log.Debug("ADD", "handle", handle, "addrs", waitAlloc().addrs, "host", wr.Host.Name)
	return afterPrevResult(prev, workloadResult(wr, conf.DNS)), nil
}

// afterPrevResult returns r after prev, as the CNI spec asks of a plugin
// given a prevResult (SPEC.md, "ADD" and "Result": output it with the
// plugin's modifications): prev's interfaces, addresses and routes first,
// then r's, with r's interface indices shifted past prev's interfaces;
// r's DNS when the configuration gives one, prev's otherwise. Without a
// prevResult (the first plugin of a chain, pr nil) r is returned as is.
func afterPrevResult(pr, r *current.Result) *current.Result {
	if pr == nil {
		return r
	}
	out := &current.Result{CNIVersion: r.CNIVersion, DNS: r.DNS}
	if out.DNS.IsEmpty() {
		out.DNS = pr.DNS
	}
	out.Interfaces = append(slices.Clone(pr.Interfaces), r.Interfaces...)
	out.IPs = slices.Clone(pr.IPs)
	for _, ipc := range r.IPs {
		c := *ipc
		if c.Interface != nil {
			c.Interface = current.Int(*c.Interface + len(pr.Interfaces))
		}
		out.IPs = append(out.IPs, &c)
	}
	out.Routes = append(slices.Clone(pr.Routes), r.Routes...)
	return out
}

// allocation is the outcome of allocate: the container's addresses and how
// to release them when the ADD fails (a no-op for a retried ADD's), or the error.
type allocation struct {
	addrs   []netip.Addr
	release func(context.Context) error
	close   func()        // releases the datastore, after release if any
	opened  time.Duration // until the datastore was open (tabby-ipam)
	took    time.Duration // until the addresses were known
	err     error
}

// allocate assigns the container's addresses through tabby-ipam (in
// process) or the delegated IPAM plugin, or finds those a previous ADD of
// the container took (a retried ADD).
// r and rerr are the resolver of the pod's annotations (p.resolverFor),
// used by tabby-ipam.
func (p *Plugin) allocate(ctx context.Context, conf *NetConf, args *skel.CmdArgs, handle string, k8s K8sArgs, d time.Duration, r Resolver, rerr error) (a allocation) {
	start := time.Now()
	a.close = func() {}
	defer func() { a.took = time.Since(start) }()
	if conf.IPAMConf != nil {
		if rerr != nil {
			a.err = rerr
			return a
		}
		m, err := p.openIPAM(conf.IPAMConf, d)
		if err != nil {
			a.err = err
			return a
		}
		a.close = func() { _ = m.Close() }
		a.opened = time.Since(start)
		addrs, fresh, err := p.assign(ctx, m, conf.IPAMConf, conf.FeatureControl.IPAddrsNoIPAM, handle, k8s, r)
		a.addrs, a.err = addrs, err
		a.release = func(ctx context.Context) error {
			if !fresh {
				return nil // a retried ADD: the first ADD's allocation stays
			}
			return m.ReleaseByHandle(ctx, handle)
		}
		return a
	}
	addrs, err := readRecord(conf.StateDir, handle)
	if err != nil || len(addrs) > 0 {
		a.addrs, a.err = addrs, err
		a.release = func(context.Context) error { return nil } // a retried ADD
		return a
	}
	if a.err = p.ipamPluginFound(conf.IPAM.Type, args.Path); a.err != nil {
		return a
	}
	res, err := invoke.DelegateAdd(ctx, conf.IPAM.Type, args.StdinData, p.exec)
	if err != nil {
		a.err = fmt.Errorf("ipam %s: %w", conf.IPAM.Type, err)
		return a
	}
	a.release = func(ctx context.Context) error {
		return errors.Join(invoke.DelegateDel(ctx, conf.IPAM.Type, args.StdinData, p.exec),
			removeRecord(conf.StateDir, handle))
	}
	if a.addrs, err = resultAddrs(res); err == nil {
		err = writeRecord(conf.StateDir, handle, a.addrs)
	}
	if err != nil {
		a.err = errors.Join(err, a.release(ctx))
	}
	return a
}

// assign returns the handle's addresses: those it already holds (a retried
// ADD, fresh=false) or new ones chosen from the annotations, CNI_ARGS IP
// and the configuration (runtimeConfig.ips first, then IP= in CNI_ARGS,
// then the ipAddrs annotation, then the pools).
//
// With noIPAM (feature_control.ip_addrs_no_ipam), a pod's ipAddrsNoIpam
// annotation gives its addresses without IPAM (fresh=false: nothing to
// release); without, that annotation is an error.
func (p *Plugin) assign(ctx context.Context, m IPAM, ic *IPAMConf, noIPAM bool, handle string, k8s K8sArgs, r Resolver) ([]netip.Addr, bool, error) {
	unlock, err := p.lockIPAM(ctx, ic)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if err := m.EnsurePools(ctx, ic.Pools); err != nil {
		return nil, false, err
	}
	have, err := m.IPsByHandle(ctx, handle)
	if err != nil {
		return nil, false, fmt.Errorf("%w: handle %s: %w", ErrDatastore, handle, err)
	}
	if len(have) > 0 {
		return have, false, nil
	}
	node, err := p.node(ic.Nodename)
	if err != nil {
		return nil, false, err
	}
	req := AssignRequest{Handle: handle, Node: node, Namespace: string(k8s.K8S_POD_NAMESPACE), Pod: string(k8s.K8S_POD_NAME),
		IPv4Pools: ic.IPv4Pools, IPv6Pools: ic.IPv6Pools}
	if ic.assign4() {
		req.Num4 = 1
	}
	if ic.assign6() {
		req.Num6 = 1
	}
	var origin poolOrigin
	if k8s.isPod() {
		given, o, err := applyAnnotations(ctx, r, &req)
		origin = o
		if err != nil {
			return nil, false, err
		}
		if len(given) > 0 {
			if !noIPAM {
				return nil, false, fmt.Errorf("%w: pod %s/%s: %s: requested feature is not enabled: ip_addrs_no_ipam (feature_control)",
					ErrInvalidConfig, req.Namespace, req.Pod, ipam.AnnotationIPAddrsNoIPAM)
			}
			return given, false, nil
		}
	}
	if ip := string(k8s.IP); ip != "" {
		req.Addrs = nil
		for s := range strings.SplitSeq(ip, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return nil, false, fmt.Errorf("%w: IP=%q: %w", ErrInvalidArgs, ip, err)
			}
			req.Addrs = append(req.Addrs, a)
		}
	}
	if len(ic.runtimeIPs) > 0 {
		req.Addrs = ic.runtimeIPs
	}
	addrs, err := m.Assign(ctx, req)
	if err != nil {
		return nil, false, fmt.Errorf("assign for %s: %w", handle, origin.explain(err))
	}
	return addrs, true, nil
}

// poolOrigin names, per family, the annotation a request's pools came
// from and the object holding it ("" when they come from the CNI config).
type poolOrigin struct{ v4, v6 string }

// explain prefixes Assign's error for an unknown requested pool
// (ipam.PoolError) with the annotation that named the pool, when the
// pools of that family came from one; other errors come back unchanged.
func (o poolOrigin) explain(err error) error {
	var pe *ipam.PoolError
	if !errors.As(err, &pe) {
		return err
	}
	origin := o.v4
	if pe.IPv6 {
		origin = o.v6
	}
	if origin == "" {
		return err
	}
	return fmt.Errorf("%s: %w", origin, err)
}

// applyAnnotations applies the pod's and namespace's annotations to req
// and returns the pod's ipAddrsNoIpam addresses, if any, and where the
// pools it put in req came from.
func applyAnnotations(ctx context.Context, r Resolver, req *AssignRequest) ([]netip.Addr, poolOrigin, error) {
	a, origin, err := annotationsOf(ctx, r, req.Namespace, req.Pod)
	if err != nil || len(a.NoIPAMAddrs) > 0 {
		return a.NoIPAMAddrs, poolOrigin{}, err
	}
	if len(a.IPv4Pools) > 0 {
		req.IPv4Pools = a.IPv4Pools
	}
	if len(a.IPv6Pools) > 0 {
		req.IPv6Pools = a.IPv6Pools
	}
	req.Addrs = a.Addrs
	req.FloatingIPs = a.FloatingIPs
	return nil, origin, nil
}

// annotationsOf reads and parses the pod's and its namespace's
// annotations (none without a resolver), and says which annotation of
// which object gave the pools of each family.
func annotationsOf(ctx context.Context, r Resolver, namespace, pod string) (ipam.AnnotationRequest, poolOrigin, error) {
	if r == nil {
		return ipam.AnnotationRequest{}, poolOrigin{}, nil
	}
	podAnn, nsAnn, err := r.Annotations(ctx, namespace, pod)
	if err != nil {
		return ipam.AnnotationRequest{}, poolOrigin{}, fmt.Errorf("%w: %s/%s: %w", ErrAnnotationsUnavailable, namespace, pod, err)
	}
	a, err := ipam.ParseAnnotations(podAnn, nsAnn)
	if err != nil {
		// The pod's own annotations parse: the bad value is its namespace's.
		if _, perr := ipam.ParseAnnotations(podAnn, nil); perr == nil {
			return ipam.AnnotationRequest{}, poolOrigin{}, fmt.Errorf("namespace %s (pod %s/%s): %w", namespace, namespace, pod, err)
		}
		return ipam.AnnotationRequest{}, poolOrigin{}, fmt.Errorf("pod %s/%s: %w", namespace, pod, err)
	}
	// As ParseAnnotations: the pod's non-empty value wins over the
	// namespace's, per family.
	from := func(key string, pools []string) string {
		switch {
		case len(pools) == 0:
			return ""
		case podAnn[key] != "":
			return fmt.Sprintf("annotation %s of pod %s/%s", key, namespace, pod)
		default:
			return fmt.Sprintf("annotation %s of namespace %s (pod %s/%s)", key, namespace, namespace, pod)
		}
	}
	return a, poolOrigin{v4: from(ipam.AnnotationIPv4Pools, a.IPv4Pools), v6: from(ipam.AnnotationIPv6Pools, a.IPv6Pools)}, nil
}

// ipamPluginFound returns ErrInvalidConfig (code 7) when no plugin named
// ipamType is in cniPath (CNI_PATH): an ipam.type that names no plugin is
// a configuration error, not an internal one (code 999) a runtime may
// retry. With no CNI_PATH it leaves the delegation to report.
func (p *Plugin) ipamPluginFound(ipamType, cniPath string) error {
	if cniPath == "" {
		return nil
	}
	find := invoke.FindInPath
	if p.exec != nil {
		find = p.exec.FindInPath
	}
	if _, err := find(ipamType, filepath.SplitList(cniPath)); err != nil {
		return fmt.Errorf("%w: ipam.type %q: %w", ErrInvalidConfig, ipamType, err)
	}
	return nil
}

// resultAddrs lists the addresses of a delegated IPAM result.
func resultAddrs(r types.Result) ([]netip.Addr, error) {
	cr, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("ipam result: %w", err)
	}
	var out []netip.Addr
	for _, ipc := range cr.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			return nil, fmt.Errorf("ipam result: bad address %v", ipc.Address)
		}
		out = append(out, a.Unmap())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ipam result has no addresses")
	}
	return out, nil
}

// workloadResult is the CNI result of a workload: host interface (index 0)
// and container interface (index 1), the /32 and /128 addresses on the
// container interface with the link-local gateways, default routes, DNS.
func workloadResult(wr netlink.WorkloadResult, dns types.DNS) *current.Result {
	r := &current.Result{CNIVersion: current.ImplementedSpecVersion, DNS: dns}
	r.Interfaces = []*current.Interface{
		{Name: wr.Host.Name, Mac: wr.Host.MAC.String()},
		{Name: wr.Container.Name, Mac: wr.Container.MAC.String(), Sandbox: wr.Container.Sandbox},
	}
	for _, ip := range wr.IPs {
		r.IPs = append(r.IPs, &current.IPConfig{Interface: current.Int(1), Address: *prefixToIPNet(ip.Address),
			Gateway: net.IP(ip.Gateway.AsSlice())})
	}
	for _, rt := range wr.Routes {
		r.Routes = append(r.Routes, &types.Route{Dst: *prefixToIPNet(rt.Dst), GW: net.IP(rt.GW.AsSlice())})
	}
	return r
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Del takes the container's interface off the network and releases its
// addresses (CNI DEL). The veth pair is detached
// (netlink.WorkloadManager.DetachWorkload: both ends down and renamed
// "tbd-…", no address, no route) and the kernel deletes it with the pod
// namespace, which the runtime removes after DEL; without CNI_NETNS, or
// with it gone, the pair is deleted at once. It is idempotent: a missing
// netns, interface or allocation, or a container never added, is not an
// error. It is bounded by the configured timeout; a datastore that does
// not answer gives code 11.
func (p *Plugin) Del(ctx context.Context, args *skel.CmdArgs) error {
	st := newStopwatch()
	return p.verb(ctx, args, func(ctx context.Context, conf *NetConf, d time.Duration) (err error) {
		st.lap("parse")
		defer func() {
			st.lap("rest")
			p.log.Debug("DEL timing", "container", args.ContainerID, "ok", err == nil, "steps", st)
		}()
		if err := checkContainerID(args.ContainerID); err != nil {
			return err
		}
		if err := p.notOwnNetns(args.Netns); err != nil {
			return err
		}
		handle := Handle(conf.Name, args.ContainerID)
		wm, done, err := p.workloadsFor()
		if err != nil {
			return err
		}
		defer done()
		// The veth and the allocation are independent: take both down at
		// once. The pair is detached, not deleted: off the network now,
		// unregistered by the kernel with the pod namespace the runtime
		// removes next (a deletion waits ~20 ms for an RCU barrier).
		st.lap("open")
		teardown := make(chan error, 1)
		var detached time.Duration
		go func() {
			start := time.Now()
			err := wm.DetachWorkload(ctx, handle, args.Netns)
			detached = time.Since(start)
			teardown <- err
		}()
		var rel error
		if conf.IPAMConf != nil {
			rel = p.release(ctx, conf.IPAMConf, handle, d)
		} else if err := p.ipamPluginFound(conf.IPAM.Type, args.Path); err != nil {
			rel = err
		} else if err := invoke.DelegateDel(ctx, conf.IPAM.Type, args.StdinData, p.exec); err != nil {
			rel = fmt.Errorf("ipam %s: %w", conf.IPAM.Type, err)
		} else {
			rel = removeRecord(conf.StateDir, handle)
		}
		st.lap("release")
		terr := <-teardown
		st.add("detach", detached)
		st.lap("wait_detach")
		return errors.Join(terr, rel)
	})
}

// verb parses the configuration and runs f under its timeout (d); every
// error comes back as a *types.Error.
func (p *Plugin) verb(ctx context.Context, args *skel.CmdArgs, f func(ctx context.Context, conf *NetConf, d time.Duration) error) error {
	conf, err := ParseConfig(args.StdinData)
	if err == nil {
		d := timeout(conf.TimeoutSeconds)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
		err = f(ctx, conf, d)
	}
	if err != nil {
		return AsCNIError(err)
	}
	return nil
}

func (p *Plugin) release(ctx context.Context, ic *IPAMConf, handle string, d time.Duration) error {
	m, err := p.openExisting(ic, d)
	if err != nil {
		return err
	}
	defer m.Close()
	unlock, err := p.lockIPAM(ctx, ic)
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.ReleaseByHandle(ctx, handle); err != nil {
		return fmt.Errorf("%w: release %s: %w", ErrDatastore, handle, err)
	}
	return nil
}

// creatable reports whether the file at path exists (exists true), and
// otherwise whether it could be created: its nearest existing ancestor is
// a directory this process may write to.
func creatable(path string) (exists bool, err error) {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err == nil, err
	}
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		switch {
		case err == nil && !fi.IsDir():
			return false, fmt.Errorf("%s: not a directory", dir)
		case err == nil:
			if err := unix.Access(dir, unix.W_OK); err != nil {
				return false, fmt.Errorf("cannot create %s in %s: %w", filepath.Base(path), dir, err)
			}
			return false, nil
		case !errors.Is(err, fs.ErrNotExist):
			return false, err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return false, err
		}
		dir = parent
	}
}

// openExisting is openIPAM for the verbs that only read or free (DEL,
// CHECK, GC): a bbolt file that does not exist holds nothing, so it is
// not created (the IPAM returned holds no address).
func (p *Plugin) openExisting(ic *IPAMConf, d time.Duration) (IPAM, error) {
	if f := p.bboltFile(ic); f != "" {
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
			return emptyIPAM{}, nil
		}
	}
	return p.openIPAM(ic, d)
}

// bboltFile is the bbolt file the plugin opens for ic, "" when it opens
// none (etcd, or an IPAM given with WithIPAM).
func (p *Plugin) bboltFile(ic *IPAMConf) string {
	if p.ipamGiven || len(ic.EtcdEndpoints) > 0 {
		return ""
	}
	return ic.DatastorePath
}

// emptyIPAM is the IPAM of a datastore file not made yet: it holds
// nothing, and assigns nothing.
type emptyIPAM struct{}

func (emptyIPAM) Assign(context.Context, AssignRequest) ([]netip.Addr, error) {
	return nil, fmt.Errorf("%w: no datastore", ErrDatastore)
}
func (emptyIPAM) IPsByHandle(context.Context, string) ([]netip.Addr, error) { return nil, nil }
func (emptyIPAM) ReleaseByHandle(context.Context, string) error             { return nil }
func (emptyIPAM) GC(context.Context, string, string, func(string) bool, time.Duration) ([]netip.Addr, error) {
	return nil, nil
}
func (emptyIPAM) EnsurePools(context.Context, []PoolConf) error {
	return fmt.Errorf("%w: no datastore", ErrDatastore)
}
func (emptyIPAM) Ping(context.Context) error                  { return nil }
func (emptyIPAM) PoolNames(context.Context) ([]string, error) { return nil, nil }
func (emptyIPAM) Close() error                                { return nil }

// ErrCheckFailed: CHECK found the container's network differs from
// prevResult (code 999 with the difference in the message).
var ErrCheckFailed = errors.New("check failed")

// Check verifies the container against prevResult (CNI CHECK): the host
// and container interfaces (names, MAC), the addresses and routes inside
// the pod and on the host, and the IPAM record of the handle.
func (p *Plugin) Check(ctx context.Context, args *skel.CmdArgs) error {
	return p.verb(ctx, args, func(ctx context.Context, conf *NetConf, d time.Duration) error {
		if err := needVersion(&conf.PluginConf, "CHECK", "0.4.0"); err != nil {
			return err
		}
		if conf.runtimeMACErr != nil {
			return conf.runtimeMACErr
		}
		return p.check(ctx, conf, args, d)
	})
}

func (p *Plugin) check(ctx context.Context, conf *NetConf, args *skel.CmdArgs, d time.Duration) error {
	if err := checkArgs(args, true); err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return fmt.Errorf("%w: CHECK needs prevResult", ErrInvalidConfig)
	}
	if conf.IPAMConf == nil {
		if err := p.ipamPluginFound(conf.IPAM.Type, args.Path); err != nil {
			return err
		}
	}
	if err := p.notOwnNetns(args.Netns); err != nil {
		return err
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return fmt.Errorf("%w: prevResult: %w", ErrInvalidConfig, err)
	}
	handle := Handle(conf.Name, args.ContainerID)
	addrs, err := prevAddrs(prev, args.IfName)
	if err != nil {
		return err
	}
	wm, done, err := p.workloadsFor()
	if err != nil {
		return err
	}
	defer done()
	mac, err := prevMAC(prev, args.IfName, conf.runtimeMAC)
	if err != nil {
		return err
	}
	spec := netlink.WorkloadSpec{ID: handle, Netns: args.Netns, IfName: args.IfName, MTU: conf.MTU, Addresses: addrs, MAC: mac}
	wr, err := wm.CheckWorkload(ctx, spec)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckFailed, err)
	}
	want := workloadResult(wr, conf.DNS)
	if err := compareResults(prev, want); err != nil {
		return err
	}
	if conf.IPAMConf == nil {
		return invoke.DelegateCheck(ctx, conf.IPAM.Type, args.StdinData, p.exec)
	}
	m, err := p.openExisting(conf.IPAMConf, d)
	if err != nil {
		return err
	}
	defer m.Close()
	if conf.FeatureControl.IPAddrsNoIPAM {
		given, err := p.givenWithoutIPAM(ctx, conf, args)
		if err != nil {
			return err
		}
		if len(given) > 0 {
			// ipAddrsNoIpam: the addresses are the annotation's, and
			// IPAM holds nothing for the handle.
			if !sameAddrs(given, addrs) {
				return fmt.Errorf("%w: %s gives %v, prevResult has %v", ErrCheckFailed, ipam.AnnotationIPAddrsNoIPAM, given, addrs)
			}
			return checkHandle(ctx, m, handle, nil)
		}
	}
	return checkHandle(ctx, m, handle, addrs)
}

// givenWithoutIPAM returns the pod's ipAddrsNoIpam addresses (none for a
// container without a pod namespace and name in CNI_ARGS).
func (p *Plugin) givenWithoutIPAM(ctx context.Context, conf *NetConf, args *skel.CmdArgs) ([]netip.Addr, error) {
	k8s, err := ParseArgs(args.Args)
	if err != nil || !k8s.isPod() {
		return nil, err
	}
	r, err := p.resolverFor(conf)
	if err != nil {
		return nil, err
	}
	a, _, err := annotationsOf(ctx, r, string(k8s.K8S_POD_NAMESPACE), string(k8s.K8S_POD_NAME))
	return a.NoIPAMAddrs, err
}

// sameAddrs compares two address lists as sets.
func sameAddrs(a, b []netip.Addr) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}

func checkHandle(ctx context.Context, m IPAM, handle string, addrs []netip.Addr) error {
	have, err := m.IPsByHandle(ctx, handle)
	if err != nil {
		return fmt.Errorf("%w: handle %s: %w", ErrDatastore, handle, err)
	}
	if !sameAddrs(have, addrs) {
		return fmt.Errorf("%w: IPAM handle %s holds %v, prevResult has %v", ErrCheckFailed, handle, have, addrs)
	}
	return nil
}

// prevMAC returns the MAC prevResult gives the container interface named
// ifName — what ADD set (runtimeConfig.mac, the hwAddr annotation, or
// netlink.ContainerMAC) — for CHECK to compare with the kernel's; nil
// when prevResult gives none. The annotation is not read again: as in
// Calico it counts when the pod is created only. A runtimeConfig.mac
// (CHECK's configuration carries the capability's value too) that is not
// that MAC fails the check. A prevResult MAC ParseMAC refuses is
// ErrInvalidConfig.
func prevMAC(prev *current.Result, ifName string, runtime net.HardwareAddr) (net.HardwareAddr, error) {
	idx := slices.IndexFunc(prev.Interfaces, func(i *current.Interface) bool { return i.Name == ifName && i.Sandbox != "" })
	if idx < 0 || prev.Interfaces[idx].Mac == "" {
		return runtime, nil
	}
	mac, err := ParseMAC(prev.Interfaces[idx].Mac)
	if err != nil {
		return nil, fmt.Errorf("prevResult interface %s: %w", ifName, err)
	}
	if runtime != nil && !bytes.Equal(runtime, mac) {
		return nil, fmt.Errorf("%w: runtimeConfig.mac is %s, prevResult has %s for %s", ErrCheckFailed, runtime, mac, ifName)
	}
	return mac, nil
}

// prevAddrs returns the addresses prevResult gives the container interface
// named ifName.
func prevAddrs(prev *current.Result, ifName string) ([]netip.Addr, error) {
	idx := slices.IndexFunc(prev.Interfaces, func(i *current.Interface) bool { return i.Name == ifName && i.Sandbox != "" })
	var out []netip.Addr
	for _, ipc := range prev.IPs {
		if idx >= 0 && ipc.Interface != nil && *ipc.Interface != idx {
			continue
		}
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			return nil, fmt.Errorf("%w: prevResult address %v", ErrInvalidConfig, ipc.Address)
		}
		out = append(out, a.Unmap())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: prevResult has no address for %s", ErrCheckFailed, ifName)
	}
	return out, nil
}

// compareResults reports how prev differs from what the kernel has (want):
// interfaces by name and MAC, addresses, routes.
func compareResults(prev, want *current.Result) error {
	var bad []string
	for _, w := range want.Interfaces {
		if !slices.ContainsFunc(prev.Interfaces, func(i *current.Interface) bool {
			return i.Name == w.Name && strings.EqualFold(i.Mac, w.Mac) && i.Sandbox == w.Sandbox
		}) {
			bad = append(bad, fmt.Sprintf("interface %s (%s) not in prevResult", w.Name, w.Mac))
		}
	}
	for _, w := range want.IPs {
		if !slices.ContainsFunc(prev.IPs, func(i *current.IPConfig) bool { return i.Address.String() == w.Address.String() }) {
			bad = append(bad, fmt.Sprintf("address %s not in prevResult", &w.Address))
		}
	}
	for _, w := range want.Routes {
		if !slices.ContainsFunc(prev.Routes, func(r *types.Route) bool { return r.Dst.String() == w.Dst.String() && r.GW.Equal(w.GW) }) {
			bad = append(bad, fmt.Sprintf("route %s not in prevResult", w))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrCheckFailed, strings.Join(bad, "; "))
	}
	return nil
}

// GC removes the host interfaces and releases the allocations of this
// network whose container is not among cni.dev/valid-attachments (CNI
// 1.1 GC), and deletes the pairs DEL detached whose pod namespace still
// exists. Allocations younger than the IPAM section's gc grace are kept,
// and so are their interfaces: the allocations are collected first, and
// an interface goes only when its handle holds no address afterwards.
// With a delegated IPAM plugin, GC is delegated to it (host-local 1.9
// frees nothing on GC), and an interface goes with its record in
// state_dir when that record is older than DefaultGCGrace (the tabby-ipam
// section's gc_grace_seconds does not apply) or missing. Handles whose
// container ID has a dot are left alone (see ownedBy). Without the
// cni.dev/valid-attachments key GC is refused (code 7). An error does not
// stop it (SPEC.md, GC): with the host's links not listed it still
// releases the allocations; with the IPAM GC failed it leaves the listed
// interfaces (their allocations' ages are unknown); either way it deletes
// the detached pairs, and it returns every error, joined.
func (p *Plugin) GC(ctx context.Context, args *skel.CmdArgs) error {
	return p.verb(ctx, args, func(ctx context.Context, conf *NetConf, d time.Duration) error {
		if err := needVersion(&conf.PluginConf, "GC", "1.1.0"); err != nil {
			return err
		}
		if err := hasValidAttachments(args.StdinData); err != nil {
			return err
		}
		keep := keptHandles(conf.Name, conf.ValidAttachments)
		// An error does not stop GC: it goes on removing what it still
		// can and reports every error (SPEC.md, GC).
		var errs []error
		wm, done, err := p.workloadsFor()
		if err != nil {
			errs = append(errs, err)
		} else {
			defer done()
		}
		var ids []string
		if wm != nil {
			if ids, err = wm.ListWorkloads(ctx); err != nil {
				errs = append(errs, fmt.Errorf("list workloads: %w", err))
			}
		}
		var stale []string
		for _, id := range ids {
			if !keep(id) {
				stale = append(stale, id)
			}
		}
		var held func(handle string) bool
		if conf.IPAMConf != nil {
			if held, err = p.gcIPAM(ctx, conf.Name, conf.IPAMConf, keep, stale, d); err != nil {
				errs = append(errs, err)
				stale = nil // the allocations' ages are unknown: no interface is touched
			}
		} else {
			if err := p.ipamPluginFound(conf.IPAM.Type, args.Path); err != nil {
				errs = append(errs, err)
			} else if err := invoke.DelegateGC(ctx, conf.IPAM.Type, args.StdinData, p.exec); err != nil {
				errs = append(errs, fmt.Errorf("ipam %s: %w", conf.IPAM.Type, err))
			}
			held = func(h string) bool { return recordYoungerThan(conf.StateDir, h, DefaultGCGrace) }
		}
		for _, id := range stale {
			if held(id) {
				p.log.Debug("GC keeps a young workload", "workload", id)
				continue
			}
			errs = append(errs, wm.TeardownWorkload(ctx, id))
			if conf.IPAMConf == nil {
				errs = append(errs, removeRecord(conf.StateDir, id))
			}
		}
		// Pairs DEL detached whose namespace the runtime kept: no
		// attachment owns them any more.
		if wm != nil {
			errs = append(errs, wm.RemoveDetached(ctx, func(id string) bool { return ownedBy(conf.Name, id) }))
		}
		return errors.Join(errs...)
	})
}

// hasValidAttachments refuses (ErrInvalidConfig) a GC configuration
// without the cni.dev/valid-attachments key: GC would take every
// attachment for stale. An empty list or null (libcni's "none") is
// accepted.
func hasValidAttachments(stdin []byte) error {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &keys); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if _, ok := keys["cni.dev/valid-attachments"]; !ok {
		return fmt.Errorf("%w: GC needs cni.dev/valid-attachments (an empty list: none is valid)", ErrInvalidConfig)
	}
	return nil
}

// ownedBy reports whether handle is network's: Handle(network, id) with
// a container ID id that has no dot. The CNI spec allows dots in network
// names and in container IDs, so "net.v2.pod" may be network "net" with
// container "v2.pod" or network "net.v2" with container "pod"; GC leaves
// such handles alone (DEL still removes them, by their exact handle).
// Runtimes' container IDs are hexadecimal.
func ownedBy(network, handle string) bool {
	id, ok := strings.CutPrefix(handle, network+".")
	return ok && id != "" && !strings.Contains(id, ".")
}

// keptHandles returns what GC must keep: the handles of the valid
// attachments, and every handle that is not network's (ownedBy).
func keptHandles(network string, valid []types.GCAttachment) func(string) bool {
	set := make(map[string]bool, len(valid))
	for _, a := range valid {
		set[Handle(network, a.ContainerID)] = true
	}
	return func(h string) bool { return set[h] || !ownedBy(network, h) }
}

// gcIPAM releases the allocations of node whose handle keep refuses,
// older than the grace period, and reports which of handles still hold
// addresses afterwards.
func (p *Plugin) gcIPAM(ctx context.Context, network string, ic *IPAMConf, keep func(string) bool, handles []string, d time.Duration) (func(string) bool, error) {
	node, err := p.node(ic.Nodename)
	if err != nil {
		return nil, err
	}
	m, err := p.openExisting(ic, d)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	freed, err := m.GC(ctx, node, network+".", keep, ic.gcGrace())
	if err != nil {
		return nil, fmt.Errorf("%w: gc: %w", ErrDatastore, err)
	}
	p.log.Debug("GC", "network", network, "released", freed)
	held := map[string]bool{}
	for _, h := range handles {
		have, err := m.IPsByHandle(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("%w: gc: %s: %w", ErrDatastore, h, err)
		}
		held[h] = len(have) > 0
	}
	return func(h string) bool { return held[h] }, nil
}

// Status reports whether the plugin can set up containers (CNI 1.1
// STATUS): code 50 when the IPAM datastore (or the delegated IPAM plugin)
// is unavailable. A delegated IPAM plugin's own 50 or 51 comes back as it
// is; any other error of it is 50.
func (p *Plugin) Status(ctx context.Context, args *skel.CmdArgs) error {
	return p.verb(ctx, args, func(ctx context.Context, conf *NetConf, d time.Duration) error {
		if err := needVersion(&conf.PluginConf, "STATUS", "1.1.0"); err != nil {
			return err
		}
		if conf.IPAMConf == nil {
			err := invoke.DelegateStatus(ctx, conf.IPAM.Type, args.StdinData, p.exec)
			var te *types.Error
			switch {
			case err == nil:
				return nil
			case errors.As(err, &te) && (te.Code == types.ErrPluginNotAvailable || te.Code == errLimitedConnectivity):
				// The delegate's own STATUS answer: 51 also tells the
				// runtime existing containers may be cut off.
				return te
			}
			return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("ipam %s: %v", conf.IPAM.Type, err), "")
		}
		return p.status(ctx, conf.IPAMConf, d)
	})
}

// status is STATUS for a tabby-ipam section: code 50 unless the
// datastore answers and an ADD could find a pool (the configuration
// declares one, which ADD creates, or the datastore holds one). A bbolt
// file not made yet counts as available when the first ADD could create
// it; STATUS itself creates nothing.
func (p *Plugin) status(ctx context.Context, ic *IPAMConf, d time.Duration) error {
	unavailable := func(msg string, err error) error {
		return types.NewError(types.ErrPluginNotAvailable, msg, err.Error())
	}
	errNoPool := errors.New("no IP pool in the datastore and none declared under ipam.pools")
	if f := p.bboltFile(ic); f != "" {
		exists, err := creatable(f)
		if err != nil {
			return unavailable("IPAM datastore unavailable", err)
		}
		if !exists {
			if len(ic.Pools) == 0 {
				return unavailable("no IP pool", errNoPool)
			}
			return nil
		}
	}
	m, err := p.openIPAM(ic, d)
	if err != nil {
		return unavailable("IPAM datastore unavailable", err)
	}
	defer m.Close()
	if err := m.Ping(ctx); err != nil {
		return unavailable("IPAM datastore unavailable", err)
	}
	if len(ic.Pools) == 0 {
		names, err := m.PoolNames(ctx)
		if err != nil {
			return unavailable("IPAM datastore unavailable", err)
		}
		if len(names) == 0 {
			return unavailable("no IP pool", errNoPool)
		}
	}
	return nil
}
