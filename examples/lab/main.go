// Command lab is the tabby workshop in a box: it builds a small cluster out of
// network namespaces on this machine (a fabric, three nodes, the YAO Bank
// sample application's pods), shows the connectivity the kernel really gives,
// and shows what the bank's network policies allow, flow by flow, with the
// reason for each verdict.
//
// Run it as root (it creates network namespaces):
//
//	make demo            # or: go run ./examples/lab
//
// Everything it creates is removed on exit, also on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/policy"
)

// bankPolicies are the YAO Bank policies as Kubernetes and Calico users
// write them: default deny in the namespace, then one allow per tier of the
// application, and a Calico policy that keeps the database off the internet.
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

const port = 8080

func main() {
	routing := flag.String("routing", "vxlan", "how nodes reach each other's pod blocks: vxlan or direct")
	flag.Parse()
	if err := run(os.Stdout, *routing); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func step(w io.Writer, format string, args ...any) func() {
	start := time.Now()
	fmt.Fprintf(w, "==> "+format+" ... ", args...)
	return func() { fmt.Fprintf(w, "done (%s)\n", time.Since(start).Round(time.Millisecond)) }
}

type pod struct {
	name, node string
	labels     map[string]string
	p          *nettest.Pod
}

func run(w io.Writer, routing string) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab creates network namespaces and needs root (try: sudo make demo)")
	}
	r := nettest.RoutingVXLAN
	switch routing {
	case "vxlan":
	case "direct":
		r = nettest.RoutingDirect
	default:
		return fmt.Errorf("unknown -routing %q (want vxlan or direct)", routing)
	}

	done := step(w, "building a fabric and 3 nodes in network namespaces (%s)", routing)
	topo, err := nettest.Build(nettest.Nodes(3), nettest.WithRouting(r), nettest.PodMTU(1450))
	if err != nil {
		return fmt.Errorf("build topology: %w", err)
	}
	// Remove everything on exit, also on Ctrl-C.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cleaned := make(chan struct{})
	defer func() { _ = topo.Close(); close(cleaned) }()
	go func() {
		select {
		case <-ctx.Done():
			_ = topo.Close()
			os.Exit(130)
		case <-cleaned:
		}
	}()
	done()

	pods := []*pod{
		{name: "customer", labels: map[string]string{"app": "customer"}},
		{name: "summary", labels: map[string]string{"app": "summary"}},
		{name: "database", labels: map[string]string{"app": "database"}},
		{name: "intruder", labels: map[string]string{"app": "intruder"}},
	}
	done = step(w, "starting %d pods with tabby's dataplane (veth, /32 routes, proxy ARP)", len(pods))
	var netPods []*nettest.Pod
	for i, p := range pods {
		node := topo.Node(i % 3)
		p.node = node.Name
		if p.p, err = node.NewPod(nettest.PodName(p.name)); err != nil {
			return fmt.Errorf("pod %s: %w", p.name, err)
		}
		netPods = append(netPods, p.p)
	}
	done()
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tNODE\tADDRESS\tLABELS")
	for _, p := range pods {
		fmt.Fprintf(tw, "%s\t%s\t%s\tapp=%s\n", p.name, p.node, p.p.IP, p.labels["app"])
	}
	_ = tw.Flush()
	fmt.Fprintln(w)

	done = step(w, "probing real TCP connections between every pair of pods on port %d", port)
	m, err := nettest.ProbeMatrix(netPods, port, 2*time.Second)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	done()
	fmt.Fprintf(w, "\nWhat the kernel does now (rows connect to columns; no enforcement yet):\n%s\n", m)

	done = step(w, "loading the YAO Bank policies and evaluating every flow")
	ps, err := bankPolicySet(pods)
	if err != nil {
		return err
	}
	var keys []string
	for _, p := range pods {
		keys = append(keys, "yaobank/"+p.name)
	}
	pm, err := ps.Matrix(keys, policy.ProtoTCP, port)
	if err != nil {
		return fmt.Errorf("policy matrix: %w", err)
	}
	done()
	fmt.Fprintf(w, "\nWhat the policies allow (tabby's policy evaluator, the reference the\nnetfilter compiler is tested against):\n%s\n", pm)

	fmt.Fprintln(w, "Why? Two flows explained:")
	for _, f := range [][2]string{{"customer", "summary"}, {"intruder", "database"}} {
		v, err := ps.Evaluate(policy.Flow{
			Src: policy.EndpointPeer("yaobank/" + f[0]), Dst: policy.EndpointPeer("yaobank/" + f[1]),
			Protocol: policy.ProtoTCP, DstPort: port,
		})
		if err != nil {
			return fmt.Errorf("evaluate %s → %s: %w", f[0], f[1], err)
		}
		fmt.Fprintln(w, indent(v.String()))
	}
	fmt.Fprintln(w, "Cleaning up the namespaces.")
	return nil
}

func bankPolicySet(pods []*pod) (*policy.PolicySet, error) {
	objs, err := policy.Decode([]byte(bankPolicies))
	if err != nil {
		return nil, fmt.Errorf("decode policies: %w", err)
	}
	var res policy.Resources
	res.Add(objs...)
	for _, p := range pods {
		labels := map[string]string{"projectcalico.org/orchestrator": "k8s"}
		for k, v := range p.labels {
			labels[k] = v
		}
		res.Add(&policy.Endpoint{
			Name: p.name, Namespace: "yaobank", Labels: labels,
			Addresses: []netip.Addr{p.p.IP},
		})
	}
	ps, err := policy.NewPolicySet(res)
	if err != nil {
		return nil, fmt.Errorf("policy set: %w", err)
	}
	return ps, nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}
