package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netns"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

// nflogGroup is the NFLOG group the compilers send denied packets to (drop
// attribution); each node namespace has its own groups.
const nflogGroup = 5

// nodeEnforcer is one node's policy compiler, programming the iptables and
// ipsets of the node's namespace (they go with the namespace).
type nodeEnforcer struct {
	node *nettest.Node
	c    *dppolicy.Compiler
	plan *dppolicy.Plan       // what the first Apply wrote
	nf   *ipsets.KernelHandle // netfilter netlink in the node's namespace (ipsets)
}

// enforce builds one Compiler per node, feeds it every endpoint and policy,
// marks the node's own pods local (their host-side veths) and applies.
// The returned close releases the netlink handles.
func enforce(ctx context.Context, nodes []*nettest.Node, pods []*pod, res policy.Resources) (_ []*nodeEnforcer, _ func(), err error) {
	var out []*nodeEnforcer
	closeAll := func() {
		for _, e := range out {
			e.nf.Close()
		}
		out = nil
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	for _, n := range nodes {
		h, err := ipsets.NewHandle(netns.NsHandle(n.NS.NS().Fd()))
		if err != nil {
			return nil, nil, fmt.Errorf("netfilter netlink in %s: %w", n.Name, err)
		}
		e := &nodeEnforcer{node: n, nf: h}
		out = append(out, e)
		log := warnLogger()
		ipt, err := iptables.New(iptables.Config{Family: iptables.IPv4}, iptables.WithNetns(n.NS.Name), iptables.WithLogger(log))
		if err != nil {
			return nil, nil, fmt.Errorf("iptables in %s: %w", n.Name, err)
		}
		if e.c, err = dppolicy.New(dppolicy.Config{NFLOGGroup: nflogGroup}, ipt, ipsets.New(h, ipsets.WithLogger(log)),
			dppolicy.WithLogger(log)); err != nil {
			return nil, nil, fmt.Errorf("policy compiler for %s: %w", n.Name, err)
		}
		if err := e.c.Replace(res); err != nil {
			return nil, nil, fmt.Errorf("policies on %s: %w", n.Name, err)
		}
		for _, p := range pods {
			if p.node != n.Name {
				continue
			}
			if err := e.c.SetInterface(namespace+"/"+p.name, p.p.Result.Host.Name); err != nil {
				return nil, nil, fmt.Errorf("local pod %s on %s: %w", p.name, n.Name, err)
			}
		}
		if e.plan, err = e.c.Apply(ctx); err != nil {
			return nil, nil, fmt.Errorf("apply policy on %s: %w", n.Name, err)
		}
	}
	return out, closeAll, nil
}

// printPlans prints, per node, how much each compiler wrote.
func printPlans(w io.Writer, es []*nodeEnforcer, pods []*pod) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    NODE\tLOCAL PODS\tCHAINS\tRULES\tIPSETS (MEMBERS)")
	for _, e := range es {
		var local []string
		for _, p := range pods {
			if p.node == e.node.Name {
				local = append(local, p.name)
			}
		}
		rules, members := 0, 0
		for _, c := range e.plan.Chains {
			rules += len(c.Rules)
		}
		for _, s := range e.plan.Sets {
			members += len(s.Added)
		}
		fmt.Fprintf(tw, "    %s\t%s\t%d\t%d\t%d (%d)\n", e.node.Name, strings.Join(local, ","),
			len(e.plan.Chains), rules, len(e.plan.Sets), members)
	}
	_ = tw.Flush()
}

// hashComment is the hash comment dataplane/iptables puts on each rule;
// the lab leaves it out of what it shows.
var hashComment = regexp.MustCompile(` -m comment --comment "tabby:[^"]*"`)

// planExcerpt returns, from a Plan.String, the chain named chain, then the
// policy chains it jumps to, then the ipsets those name (in the order they
// are named), without the hash comments; rules and members are indented
// under their chain or set.
func planExcerpt(plan, chain string) string {
	sections := map[string][]string{} // chain or set name -> header and lines
	var cur string
	for _, l := range strings.Split(plan, "\n") {
		f := strings.Fields(l)
		switch {
		case l == "":
			continue
		case strings.HasPrefix(l, "-A ") || strings.HasPrefix(l, "+ ") || strings.HasPrefix(l, "- "):
		case len(f) >= 3 && (f[0] == "write" && f[1] == "chain" || f[0] == "create" && f[1] == "set"):
			cur = f[2]
		default: // another header: a section the excerpt never shows
			cur = ""
		}
		if cur != "" {
			if len(sections[cur]) > 0 {
				l = "  " + l
			}
			sections[cur] = append(sections[cur], hashComment.ReplaceAllString(l, ""))
		}
	}
	order := []string{chain}
	// named appends the sections that lines of order[from:to] name by prefix.
	named := func(from, to int, prefixes ...string) {
		for _, name := range order[from:to] {
			for _, l := range sections[name][1:] {
				for _, f := range strings.Fields(l) {
					if _, ok := sections[f]; ok && !slices.Contains(order, f) && slices.ContainsFunc(prefixes,
						func(p string) bool { return strings.HasPrefix(f, p) }) {
						order = append(order, f)
					}
				}
			}
		}
	}
	if len(sections[chain]) == 0 {
		return ""
	}
	named(0, 1, "tabby-pi-", "tabby-po-")
	named(1, len(order), "tabby-s4-", "tabby-n4-", "tabby-p4-")
	var b strings.Builder
	for _, name := range order {
		b.WriteString(strings.Join(sections[name], "\n"))
		b.WriteByte('\n')
	}
	return b.String()
}

// attributeDrop listens for drops on the destination's node, makes one
// connection from src to dst (which the policies deny) and returns the
// compiler's explanation of the logged packet.
func attributeDrop(ctx context.Context, e *nodeEnforcer, src, dst *pod) (dppolicy.LoggedPacket, dppolicy.DropCause, error) {
	var none dppolicy.LoggedPacket
	r, err := dppolicy.ListenDrops(nflogGroup, int(e.node.NS.NS().Fd()))
	if err != nil {
		return none, dppolicy.DropCause{}, fmt.Errorf("listen for drops on %s: %w", e.node.Name, err)
	}
	defer r.Close()
	to := dst.p.Addr(port)
	if _, err := src.p.Probe("tcp", to, 300*time.Millisecond); err == nil {
		return none, dppolicy.DropCause{}, fmt.Errorf("%s → %s connected", src.name, dst.name)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		pkts, err := r.Read(ctx)
		if err != nil {
			return none, dppolicy.DropCause{}, fmt.Errorf("no drop of %s → %s logged on %s: %w", src.name, dst.name, e.node.Name, err)
		}
		for _, p := range pkts {
			if p.Src != src.addr || p.Dst != dst.addr || p.DstPort != port {
				continue
			}
			cause, err := e.c.ExplainDrop(p.Prefix)
			return p, cause, err
		}
	}
}

// checkCause compares the kernel's drop cause with the evaluator's verdict
// on the same flow: the same direction, tier and endpoint decided.
func checkCause(cause dppolicy.DropCause, v *policy.Verdict) error {
	if v.Allowed() {
		return errors.New("the evaluator allows the flow the kernel dropped")
	}
	t := &v.Ingress
	if v.Egress.Action != policy.Allow {
		t = &v.Egress
	}
	if cause.Direction != t.Direction || cause.Endpoint != "" && cause.Endpoint != t.Endpoint {
		return fmt.Errorf("the kernel dropped in the %s of %q, the evaluator denies in the %s of %q",
			cause.Direction, cause.Endpoint, t.Direction, t.Endpoint)
	}
	if len(t.Tiers) == 0 || t.Tiers[len(t.Tiers)-1].Tier != cause.Tier {
		return fmt.Errorf("the kernel dropped in tier %q, the evaluator's trace:\n%s", cause.Tier, t)
	}
	last := t.Tiers[len(t.Tiers)-1]
	if cause.Kind == dppolicy.KindEndOfTier && !slices.Equal(cause.Policies, last.Policies) {
		return fmt.Errorf("the kernel's tier %s holds %v, the evaluator's %v", cause.Tier, cause.Policies, last.Policies)
	}
	return nil
}
