// Command lab is the tabby workshop in a box: it builds a small cluster out of
// network namespaces on this machine (a fabric, three nodes, the YAO Bank
// sample application's pods), creates the pods as a container runtime
// does, through libcni and the tabby CNI plugin (addresses from tabby's
// IPAM over an etcd the nodes share), shows the connectivity the kernel
// really gives, shows what the bank's network policies allow, flow by
// flow, with the reason for each verdict, then enforces them in each
// node's netfilter (dataplane/policy), probes again and shows one denied
// packet attributed to its tier, policy and rule.
// It ends with PASS or FAIL for each thing it checked (and exits 1 on a FAIL).
//
// Between the policy part and the checks, an enterprise router (BIRD 2 in a
// namespace on the fabric) peers with a tabby bgp speaker on every node
// (bgp.go: the lab binary re-run in the node's namespace) and learns the pod
// blocks; the customer service gets a ClusterIP and a NodePort on every
// node's nftables (services.go), a client outside the nodes reaches them,
// and the service range and the /32s of externalTrafficPolicy Local
// services reach the router as ECMP routes. The speakers, BIRD and their
// namespaces are removed before the cluster, also on Ctrl-C; the speakers
// and BIRD die with the lab if it is killed.
//
// Run it as root (it creates network namespaces):
//
//	make demo            # or: go run ./examples/lab
//
// Before it builds anything it checks that the tools it runs are in PATH
// (ip, iptables-restore, BIRD's bird and birdc, go) and names the missing
// ones with their Debian package.
//
// It builds the tabby CNI plugin with the go toolchain into a temporary
// directory, in the background while it builds the cluster; with
// --cni-bin-dir DIR it runs DIR/tabby instead (go build -o DIR/
// ./examples/cni/tabby). The nodes reach each other's pod blocks over
// VXLAN (the pool's vxlanMode Always, pod MTU 1450); --routing direct
// routes them via the nodes' fabric addresses instead (vxlanMode Never,
// pod MTU 1500).
//
// Everything it creates is removed on exit, also on Ctrl-C, SIGTERM or a
// hang-up (the terminal closed): the pods are DELeted through libcni, the
// iptables chains and ipsets live in the node namespaces and go with them,
// the plugin binary, libcni's cache and etcd's data live in temporary
// directories.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/manifest"
	"github.com/tabbynet/tabby/policy"
)

// bankPolicies are the YAO Bank policies as Kubernetes and Calico users
// write them: default deny in the namespace, then one allow per tier of the
// application.
const bankPolicies = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: yaobank}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: customer, namespace: yaobank}
spec:
  podSelector: {matchLabels: {app: customer}}
  ingress:
  - ports: [{port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: summary, namespace: yaobank}
spec:
  podSelector: {matchLabels: {app: summary}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: customer}}}]
    ports: [{port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: database, namespace: yaobank}
spec:
  podSelector: {matchLabels: {app: database}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: summary}}}]
    ports: [{port: 8080}]
`

const (
	port      = 8080
	poolCIDR  = "10.244.0.0/16"
	blockSize = 26
	namespace = "yaobank"
	fabricMTU = 1500 // the nodes' eth0 (veths on the fabric bridge)
	vxlanMTU  = 50   // the outer IPv4, UDP and VXLAN headers
)

// poolManifest is the lab's IP pool as the Calico manifest the workshop
// would apply with calicoctl (projectcalico.org/v3), vxlanMode mode.
func poolManifest(mode ipam.EncapMode) string {
	return fmt.Sprintf(`apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: %s
  blockSize: %d
  ipipMode: Never
  vxlanMode: %s
  nodeSelector: all()
`, poolCIDR, blockSize, mode)
}

// labPool decodes poolManifest(mode) with ipam/manifest, as an embedder
// loads a Calico user's pools.
func labPool(mode ipam.EncapMode) (ipam.IPPool, error) {
	pools, err := manifest.DecodePools(strings.NewReader(poolManifest(mode)))
	if err != nil {
		return ipam.IPPool{}, fmt.Errorf("the lab's pool manifest: %w", err)
	}
	if len(pools) != 1 {
		return ipam.IPPool{}, fmt.Errorf("the lab's pool manifest holds %d pools, not 1", len(pools))
	}
	return pools[0], nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == speakerCommand {
		os.Exit(speakerMain(os.Stdin, os.Stdout))
	}
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	// When the reader of the output goes away (`make demo | head`), writes
	// fail instead of killing the lab, so it still cleans up.
	signal.Ignore(syscall.SIGPIPE)
	ok, err := run(os.Stdout, opts.routing, opts.cniBinDir)
	if errors.Is(err, errInterrupted) {
		fmt.Fprintln(os.Stderr, "\nlab:", interruptedMessage(err))
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// options are the lab's command-line flags.
type options struct {
	routing   string // vxlan or direct
	cniBinDir string // where the tabby plugin is; empty: build it
}

const usageText = `usage: make demo   (or: go run ./examples/lab [flags])

Builds the tabby workshop in network namespaces on this machine: a fabric,
three nodes, the YAO Bank pods made through libcni and the tabby CNI plugin
(IPAM on an embedded etcd), the bank's policies evaluated and enforced in
netfilter, a BIRD router peering with a bgp speaker per node, the customer
service reached from outside. It prints PASS or FAIL for each check and
removes everything it made, also on Ctrl-C. Needs root. Exit status: 0 when
every check passes, 1 on a FAIL or an error, 2 on a bad flag, 130 when
interrupted.

flags:
`

// parseFlags parses the lab's arguments (flags only); on a bad flag or an
// argument it prints the problem and the usage to stderr and returns an
// error (flag.ErrHelp for -h).
func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	var o options
	fs.StringVar(&o.routing, "routing", "vxlan", "how nodes reach each other's pod blocks: vxlan (the pool's vxlanMode Always) or direct (Never)")
	fs.StringVar(&o.cniBinDir, "cni-bin-dir", "", "directory holding the tabby CNI plugin binary (default: go build it into a temporary directory)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q: the lab takes flags only", fs.Arg(0))
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return options{}, err
	}
	if _, _, _, err := routingFor(o.routing); err != nil {
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return options{}, err
	}
	return o, nil
}

// errInterrupted: a signal stopped the lab between two steps.
var errInterrupted = errors.New("interrupted")

// interrupted is the error of an interrupted run, called once the deferred
// removals are done: errInterrupted, joined with what each of left (the
// leftover checks of what the run had made) still finds.
func interrupted(left []func() error) error {
	var errs []error
	for _, f := range left {
		errs = append(errs, f())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w; %w", errInterrupted, err)
	}
	return errInterrupted
}

// interruptedMessage is what the lab says when interrupted: that it removed
// everything, unless err (from interrupted) says what is left.
func interruptedMessage(err error) string {
	if err == errInterrupted {
		return "interrupted; everything it had made is removed"
	}
	return err.Error()
}

// lastCleanup is the last cleanup step's text. The lab removes the plugin
// binary it built, never the one --cni-bin-dir names.
func lastCleanup(cniBinDir string) string {
	if cniBinDir == "" {
		return "cleaning up: stopping etcd, removing the plugin binary, libcni's cache and etcd's data"
	}
	return "cleaning up: stopping etcd, removing libcni's cache and etcd's data (the plugin in " + cniBinDir + " stays)"
}

// stopSignals are the signals that stop the lab after the current step,
// with everything it built removed: Ctrl-C, SIGTERM (kill, timeout) and
// SIGHUP (the terminal or the ssh session closed), whose default action
// would end the process with nothing removed.
func stopSignals() []os.Signal {
	return []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}
}

func step(w io.Writer, format string, args ...any) func() {
	start := time.Now()
	fmt.Fprintf(w, "==> "+format+" ... ", args...)
	return func() { fmt.Fprintf(w, "done (%s)\n", elapsed(time.Since(start))) }
}

// elapsed is how step prints a step's duration: to the millisecond, and
// "under 1ms" for what rounds to none (not "0s").
func elapsed(d time.Duration) string {
	if d < time.Millisecond/2 {
		return "under 1ms"
	}
	return d.Round(time.Millisecond).String()
}

type pod struct {
	name, node string
	labels     map[string]string
	addr       netip.Addr
	p          *nettest.Pod

	containerID string          // the sandbox's ID (CNI_CONTAINERID)
	sandbox     *nettest.Netns  // the pod's network namespace, made by the lab as a runtime would
	result      *current.Result // the CNI ADD result
}

// check is one verdict the lab prints at the end.
type check struct {
	name string
	err  error
}

func run(w io.Writer, routing, cniBinDir string) (_ bool, err error) {
	if os.Geteuid() != 0 {
		return false, errors.New("the lab creates network namespaces and needs root (try: sudo make demo)")
	}
	r, mode, podMTU, err := routingFor(routing)
	if err != nil {
		return false, err
	}
	if err := missingTools(cniBinDir == ""); err != nil {
		return false, err
	}
	var checks []check

	// Ctrl-C (or SIGTERM, or a hang-up) stops the lab after the current
	// step; the deferred Close then removes what was built. The handler is
	// in place before the first namespace or temporary directory exists.
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals()...)
	defer stop()
	// Deferred first, so it runs after every deferred removal: an
	// interrupted run checks that what it made is gone.
	var left []func() error
	defer func() {
		if errors.Is(err, errInterrupted) {
			err = interrupted(left)
		}
	}()
	pool, err := labPool(mode)
	if err != nil {
		return false, err
	}
	cl, err := startCNI(ctx, w, cniBinDir, pool)
	if ctx.Err() != nil {
		return false, errInterrupted
	}
	if err != nil {
		return false, err
	}
	defer func() { _ = cl.Close() }()
	etcdDir := cl.etcd.Dir()
	left = append(left, func() error { return cl.dirsLeft(etcdDir) })
	a := cl.ipam

	done := step(w, "building a fabric and 3 nodes in network namespaces (%s)", routing)
	topo, err := nettest.Build(nettest.Nodes(3), nettest.WithRouting(r), nettest.PodMTU(podMTU), nettest.WithIPAM(a))
	if err != nil {
		return false, fmt.Errorf("build topology: %w", err)
	}
	defer func() { _ = topo.Close() }()
	left = append(left, func() error { return leftovers(topo.ID) })
	done()
	fmt.Fprintf(w, "    the namespaces are named %s-* (see them with `ip netns list` while the lab runs)\n", topo.ID)
	if err := ctx.Err(); err != nil {
		return false, errInterrupted
	}
	if r == nettest.RoutingVXLAN {
		fmt.Fprintln(w, "    each node got a VXLAN tunnel address from IPAM (an allocation of use Tunnel, as Calico records it), which claimed its first block:")
		for _, n := range topo.Nodes() {
			fmt.Fprintf(w, "    %s  eth0 %s  vxlan.tabby %s\n", n.Name, n.IP, n.TunnelAddr)
		}
	}

	pods := []*pod{
		{name: "customer", labels: map[string]string{"app": "customer"}},
		{name: "summary", labels: map[string]string{"app": "summary"}},
		{name: "database", labels: map[string]string{"app": "database"}},
		{name: "intruder", labels: map[string]string{"app": "intruder"}},
	}
	for i, p := range pods {
		p.node = topo.Node(i % 3).Name
	}
	// The pods' sandboxes and interfaces are the CNI's: DEL them before
	// the nodes go (also on an error or Ctrl-C).
	defer func() { _ = cl.delPods(context.Background(), topo, pods, port, podMTU) }()
	err = cl.waitPlugin(ctx, w)
	if err == nil {
		err = cl.addPods(ctx, w, topo, pods, podMTU)
	}
	if ctx.Err() != nil {
		return false, errInterrupted
	}
	if err != nil {
		return false, err
	}
	checks = append(checks, check{"every pod ADDed through libcni by the tabby plugin on its node: address held in etcd under its handle, veth in place",
		cl.verifyAdds(ctx, topo, pods)})
	checks = append(checks, check{"CHECK passes for every pod", cl.checkPods(ctx, w, topo, pods, podMTU)})
	var netPods []*nettest.Pod
	for _, p := range pods {
		netPods = append(netPods, p.p)
	}

	fmt.Fprintln(w, "Each node's blocks (ipam.AffineBlocks), and the routes dataplane/node made for them:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tBLOCK\tON THE NODE\tON THE OTHER NODES")
	var blockErrs []error
	for _, n := range topo.Nodes() {
		blocks, _, err := a.AffineBlocks(ctx, n.Name)
		if err != nil {
			return false, fmt.Errorf("affine blocks of %s: %w", n.Name, err)
		}
		how := "via " + n.IP.String()
		if r == nettest.RoutingVXLAN {
			how = "via " + n.TunnelAddr.String() + " dev vxlan.tabby onlink"
		}
		for _, b := range blocks {
			fmt.Fprintf(tw, "  %s\t%s\tblackhole (pods have /32 routes)\t%s %s\n", n.Name, b, b, how)
		}
		if !slices.Equal(blocks, n.Blocks()) {
			blockErrs = append(blockErrs, fmt.Errorf("%s routes %v, IPAM has %v", n.Name, n.Blocks(), blocks))
		}
		// The kernel holds exactly what the node's route owner wants.
		if plan, err := n.Routes.Plan(ctx); err != nil || !plan.Empty() {
			blockErrs = append(blockErrs, fmt.Errorf("%s kernel routes differ: %v %s", n.Name, err, plan))
		}
	}
	_ = tw.Flush()
	for _, p := range pods {
		info, err := a.Lookup(ctx, p.addr)
		switch {
		case err != nil:
			blockErrs = append(blockErrs, err)
		case info.Affinity != p.node || !info.Allocated:
			blockErrs = append(blockErrs, fmt.Errorf("%s %s is in block %s of %q", p.name, p.addr, info.Block, info.Affinity))
		}
	}
	checks = append(checks, check{"every pod address is in a block affine to its node; the kernels route exactly IPAM's blocks", errors.Join(blockErrs...)})
	fmt.Fprintln(w)

	if ctx.Err() != nil {
		return false, errInterrupted
	}
	done = step(w, "probing real TCP connections between every pair of pods on port %d", port)
	m, err := nettest.ProbeMatrix(netPods, port, 2*time.Second)
	if err != nil {
		return false, fmt.Errorf("probe: %w", err)
	}
	done()
	fmt.Fprintf(w, "\nWhat the kernel does before enforcement (✓ connected, ✗ no answer):\n%s%s\n", m, legend)
	checks = append(checks, check{"before enforcement, the kernel connects every pod to every other pod",
		matrixDiff(m, func(from, to *pod) bool { return true }, pods)})

	if ctx.Err() != nil {
		return false, errInterrupted
	}
	done = step(w, "loading the YAO Bank policies and evaluating every flow")
	ps, res, err := bankPolicySet(pods)
	if err != nil {
		return false, err
	}
	var keys []string
	for _, p := range pods {
		keys = append(keys, namespace+"/"+p.name)
	}
	pm, err := ps.Matrix(keys, policy.ProtoTCP, port)
	if err != nil {
		return false, fmt.Errorf("policy matrix: %w", err)
	}
	done()
	verdicts := nettest.Matrix{Pods: netPods, OK: pm.Allowed}
	fmt.Fprintf(w, "\nWhat the policies allow on TCP %d (✓ allowed, ✗ denied), from tabby's policy\nevaluator, the reference the netfilter compiler is tested against:\n%s%s\n", port, verdicts, legend)
	checks = append(checks, check{"the policies allow exactly the YAO Bank flows (anyone → customer, customer → summary, summary → database)",
		matrixDiff(verdicts, bankAllows, pods)})

	fmt.Fprintln(w, "Why? Two flows explained:")
	for _, f := range [][2]string{{"customer", "summary"}, {"intruder", "database"}} {
		v, err := ps.Evaluate(policy.Flow{
			Src: policy.EndpointPeer(namespace + "/" + f[0]), Dst: policy.EndpointPeer(namespace + "/" + f[1]),
			Protocol: policy.ProtoTCP, DstPort: port,
		})
		if err != nil {
			return false, fmt.Errorf("evaluate %s → %s: %w", f[0], f[1], err)
		}
		fmt.Fprintln(w, indent(v.String()))
	}

	if ctx.Err() != nil {
		return false, errInterrupted
	}
	done = step(w, "enforcing the policies: one dataplane/policy Compiler per node, its local pods, one Apply")
	enforcers, closeEnforcers, err := enforce(ctx, topo.Nodes(), pods, res)
	if ctx.Err() != nil {
		return false, errInterrupted
	}
	if err != nil {
		return false, err
	}
	defer closeEnforcers()
	done()
	fmt.Fprintln(w, "    each node got chains in its filter table and ipsets (NFLOG drop attribution on):")
	printPlans(w, enforcers, pods)
	db, intruder := pods[2], pods[3]
	dbNode := enforcers[slices.IndexFunc(enforcers, func(e *nodeEnforcer) bool { return e.node.Name == db.node })]
	fmt.Fprintf(w, "    the database's ingress on %s (%s), the policy chains it jumps to and their sets\n"+
		"    (from Plan.String, hash comments left out):\n", db.node, db.p.Result.Host.Name)
	fmt.Fprint(w, indent(indent(planExcerpt(dbNode.plan.String(), "tabby-tw-"+db.p.Result.Host.Name))))
	fmt.Fprintln(w, "    (a packet to the database passes its policies' chains in order; the first marks it\n"+
		"    accepted when it comes from the set of app=summary pods to 8080; anything else\n"+
		"    reaches the end of tier: logged to NFLOG with the prefix that names it, then dropped)")
	fmt.Fprintln(w)

	if ctx.Err() != nil {
		return false, errInterrupted
	}
	done = step(w, "probing every pair again on port %d, with the policies enforced", port)
	km, err := nettest.ProbeMatrix(netPods, port, time.Second)
	if err != nil {
		return false, fmt.Errorf("probe: %w", err)
	}
	done()
	fmt.Fprintf(w, "\nWhat the kernel does now, the policies enforced (✓ connected, ✗ no answer):\n%s%s\n", km, legend)
	index := map[*pod]int{}
	for i, p := range pods {
		index[p] = i
	}
	checks = append(checks, check{"the kernel enforces exactly what the evaluator decides",
		matrixDiff(km, func(from, to *pod) bool { return pm.Allowed[index[from]][index[to]] }, pods)})

	if ctx.Err() != nil {
		return false, errInterrupted
	}
	done = step(w, "listening for drops on %s (NFLOG group %d) and connecting %s → %s", db.node, nflogGroup, intruder.name, db.name)
	pkt, cause, err := attributeDrop(ctx, dbNode, intruder, db)
	if ctx.Err() != nil {
		return false, errInterrupted
	}
	done()
	if err == nil {
		fmt.Fprintf(w, "    %s logged TCP %s:%d → %s:%d with prefix %q:\n    %s\n\n",
			db.node, pkt.Src, pkt.SrcPort, pkt.Dst, pkt.DstPort, pkt.Prefix, cause)
		v, verr := ps.Evaluate(policy.Flow{Src: policy.EndpointPeer(namespace + "/" + intruder.name),
			Dst: policy.EndpointPeer(namespace + "/" + db.name), Protocol: policy.ProtoTCP, DstPort: port})
		err = errors.Join(verr, checkCause(cause, v))
	}
	checks = append(checks, check{"a denied packet is attributed to its tier, policy and rule", err})

	// BGP with an enterprise router (bgp.go), then services (services.go).
	bl := newBGPLab(topo)
	defer func() { _ = bl.close() }()
	left = append(left, bl.leftovers)
	bgpChecks, err := runBGP(ctx, w, bl)
	if err == nil {
		var svcChecks []check
		svcChecks, err = runServices(ctx, w, bl, pods)
		bgpChecks = append(bgpChecks, svcChecks...)
	}
	if ctx.Err() != nil {
		return false, errInterrupted
	}
	if err != nil {
		return false, err
	}
	checks = append(checks, bgpChecks...)
	done = step(w, "cleaning up: stopping the speakers and BIRD, deleting the router and client namespaces")
	err = bl.close()
	done()
	checks = append(checks, check{"no speaker or BIRD process is left behind, nor BIRD's folder", errors.Join(err, bl.leftovers())})

	closeEnforcers()
	done = step(w, "cleaning up: CNI DEL of every pod through libcni, then deleting its sandbox")
	err = cl.delPods(ctx, topo, pods, port, podMTU)
	done()
	checks = append(checks, check{"every pod DELeted through libcni: no host interface, no address under its handle", err})
	done = step(w, "cleaning up: deleting the namespaces (the iptables chains and ipsets go with them)")
	err = topo.Close()
	done()
	checks = append(checks, check{"no namespace is left behind", errors.Join(err, leftovers(topo.ID))})
	checks = append(checks, check{"the datastore holds no allocation and no handle (pods DELeted, tunnel addresses released)",
		cl.datastoreEmpty(ctx)})
	done = step(w, "%s", lastCleanup(cniBinDir))
	err = cl.Close()
	done()
	checks = append(checks, check{"no temporary directory is left behind", errors.Join(err, cl.dirsLeft(etcdDir))})

	fmt.Fprintln(w, "\nChecks:")
	failed := 0
	for _, c := range checks {
		verdict := "PASS"
		if c.err != nil {
			verdict = "FAIL"
			failed++
		}
		fmt.Fprintf(w, "  %s  %s\n", verdict, c.name)
		if c.err != nil {
			fmt.Fprintln(w, indent(c.err.Error()))
		}
	}
	if failed > 0 {
		fmt.Fprintf(w, "%d of %d checks FAILED\n", failed, len(checks))
		return false, nil
	}
	fmt.Fprintf(w, "all %d checks PASSED\n", len(checks))
	return true, nil
}

// routingFor maps the --routing flag to the topology's routing, the
// pool's vxlanMode and the pod MTU, which Calico sizes by encapsulation:
// the fabric's MTU less the VXLAN headers over VXLAN, the fabric's own
// without encapsulation.
func routingFor(name string) (nettest.Routing, ipam.EncapMode, int, error) {
	switch name {
	case "vxlan":
		return nettest.RoutingVXLAN, ipam.EncapAlways, fabricMTU - vxlanMTU, nil
	case "direct":
		return nettest.RoutingDirect, ipam.EncapNever, fabricMTU, nil
	}
	return 0, "", 0, fmt.Errorf("unknown -routing %q (want vxlan or direct)", name)
}

// errMissingTools: an executable the lab runs is not in PATH.
var errMissingTools = errors.New("missing tools")

// tool is an executable the lab runs: any one of names, and what provides it.
type tool struct {
	names []string
	from  string
}

// labTools are the executables the lab runs, checked before it builds
// anything; goBuild adds the go toolchain, which builds the CNI plugin
// unless --cni-bin-dir is given.
func labTools(goBuild bool) []tool {
	ts := []tool{
		{[]string{"ip"}, "Debian package iproute2"},
		{[]string{"iptables-nft-restore", "iptables-legacy-restore"}, "Debian package iptables"},
		{[]string{"bird"}, "Debian package bird2"},
		{[]string{"birdc"}, "Debian package bird2"},
	}
	if goBuild {
		ts = append(ts, tool{[]string{"go"}, "the Go toolchain; or pass --cni-bin-dir"})
	}
	return ts
}

// missingTools names, in one error wrapping errMissingTools, every tool of
// labTools that is not in PATH, with what provides it.
func missingTools(goBuild bool) error {
	var missing []string
	for _, t := range labTools(goBuild) {
		if !slices.ContainsFunc(t.names, func(n string) bool { _, err := exec.LookPath(n); return err == nil }) {
			missing = append(missing, fmt.Sprintf("%s (%s)", strings.Join(t.names, " or "), t.from))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w in PATH: %s (make deps installs the Debian packages)", errMissingTools, strings.Join(missing, ", "))
	}
	return nil
}

// legend explains how both matrices read.
const legend = "(rows are sources, columns destinations; · is a pod and itself: that\n" +
	"traffic stays inside the pod, so it is neither probed nor policed)\n"

// bankAllows is what the YAO Bank policies should allow on port 8080.
func bankAllows(from, to *pod) bool {
	switch to.name {
	case "customer":
		return true
	case "summary":
		return from.name == "customer"
	case "database":
		return from.name == "summary"
	}
	return false
}

// matrixDiff lists the pairs (from ≠ to) whose cell differs from want.
func matrixDiff(m nettest.Matrix, want func(from, to *pod) bool, pods []*pod) error {
	var errs []error
	for i, from := range pods {
		for j, to := range pods {
			if i != j && m.OK[i][j] != want(from, to) {
				errs = append(errs, fmt.Errorf("%s → %s: got %v, want %v", from.name, to.name, m.OK[i][j], want(from, to)))
			}
		}
	}
	return errors.Join(errs...)
}

// leftovers reports namespaces whose name starts with the topology's ID.
func leftovers(id string) error {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns list: %w: %s", err, out)
	}
	var left []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], id) {
			left = append(left, f[0])
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("left behind: %s", strings.Join(left, " "))
	}
	return nil
}

// bankPolicySet returns the evaluator over the bank's policies and pods, and
// the resources it was built from (what the compilers are given).
func bankPolicySet(pods []*pod) (*policy.PolicySet, policy.Resources, error) {
	objs, err := policy.Decode([]byte(bankPolicies))
	if err != nil {
		return nil, policy.Resources{}, fmt.Errorf("decode policies: %w", err)
	}
	var res policy.Resources
	res.Add(objs...)
	for _, p := range pods {
		labels := map[string]string{"projectcalico.org/orchestrator": "k8s"}
		for k, v := range p.labels {
			labels[k] = v
		}
		res.Add(&policy.Endpoint{
			Name: p.name, Namespace: namespace, Labels: labels,
			Addresses: []netip.Addr{p.addr},
		})
	}
	ps, err := policy.NewPolicySet(res)
	if err != nil {
		return nil, policy.Resources{}, fmt.Errorf("policy set: %w", err)
	}
	return ps, res, nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}
