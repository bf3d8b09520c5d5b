package policy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

// Shape of the connection-rate benchmark's policy set.
const (
	connPolicies = 1000 // policies selecting the server whose rule does not match the client
	connGroups   = 100  // distinct source selectors among them (one set each)
	connPort     = 8080
	connsPerOp   = 2000 // new TCP connections per iteration
	connWorkers  = 8
)

// connWorld is the server's ingress policy: connPolicies NetworkPolicies
// (order 0..999) each allowing TCP connPort from one of connGroups
// selectors, each matching members remote endpoints (10.200.0.0/16)
// but never the client, then the last policy (order 1000) allowing it
// from app == 'client'. The other pod matches no selector, so it is
// denied at the end of the tier.
func connWorld(client, server, other netip.Addr, members int) policy.Resources {
	r := policy.Resources{Namespaces: []*policy.Namespace{{Name: "bench"}}}
	ep := func(name string, addr netip.Addr, labels map[string]string) *policy.Endpoint {
		return &policy.Endpoint{Name: name, Namespace: "bench", Labels: labels, Addresses: []netip.Addr{addr}}
	}
	r.Endpoints = append(r.Endpoints,
		ep("client", client, map[string]string{"app": "client"}),
		ep("server", server, map[string]string{"app": "server"}),
		ep("other", other, map[string]string{"app": "other"}))
	for i := range connGroups * members {
		r.Endpoints = append(r.Endpoints, ep(fmt.Sprintf("remote%d", i),
			netip.AddrFrom4([4]byte{10, 200, byte(i / 250), byte(1 + i%250)}),
			map[string]string{"group": fmt.Sprintf("g%d", i%connGroups)}))
	}
	tcp := policy.ProtoTCP
	allow := func(i int, sel string) *policy.NetworkPolicy {
		np := &policy.NetworkPolicy{}
		np.Name, np.Namespace = fmt.Sprintf("np%04d", i), "bench"
		np.Spec.Order = ptrTo(float64(i))
		np.Spec.Selector = "app == 'server'"
		np.Spec.Ingress = []policy.Rule{{Action: policy.Allow, Protocol: &tcp,
			Source:      policy.EntityRule{Selector: sel},
			Destination: policy.EntityRule{Ports: []policy.Port{policy.SinglePort(connPort)}}}}
		return np
	}
	for i := range connPolicies {
		r.NetworkPolicies = append(r.NetworkPolicies, allow(i, fmt.Sprintf("group == 'g%d'", i%connGroups)))
	}
	r.NetworkPolicies = append(r.NetworkPolicies, allow(connPolicies, "app == 'client'"))
	return r
}

var (
	setMatchRe    = regexp.MustCompile(`(!\s+)?-m set (!\s+)?--match-set (\S+) (\S+) `)
	hashCommentRe = regexp.MustCompile(`-m comment --comment "tabby:[^"]*" `)
)

// linearRules rewrites render (iptables-restore input of the compiled
// chains) into the same decision without ipsets: every rule matching one
// hash:net set by source or destination becomes one rule per member
// (`-s`/`-d member`), in the set's member order, at the same place (none
// for an empty set). Hash comments are dropped from every rule, so the
// linear peer pays for no comment match. Negated set matches and other
// set types are errors.
func linearRules(render string, members map[string][]ipsets.Member) (string, error) {
	var b strings.Builder
	for line := range strings.Lines(render) {
		line = hashCommentRe.ReplaceAllString(line, "")
		m := setMatchRe.FindStringSubmatch(line)
		if m == nil {
			b.WriteString(line)
			continue
		}
		if m[1] != "" || m[2] != "" || (m[4] != "src" && m[4] != "dst") {
			return "", fmt.Errorf("cannot linearise %q", strings.TrimSpace(line))
		}
		ms, ok := members[m[3]]
		if !ok {
			return "", fmt.Errorf("no members known for set %s", m[3])
		}
		if strings.Count(line, "--match-set") != 1 {
			return "", fmt.Errorf("several set matches in %q", strings.TrimSpace(line))
		}
		flag := "-s"
		if m[4] == "dst" {
			flag = "-d"
		}
		rest := strings.Replace(line, m[0], "", 1)
		f := strings.SplitN(rest, " ", 3) // "-A", chain, the rest
		if len(f) != 3 || f[0] != "-A" {
			return "", fmt.Errorf("unexpected set rule %q", strings.TrimSpace(line))
		}
		for _, mem := range ms {
			if mem.Port != 0 {
				return "", fmt.Errorf("set %s holds ports", m[3])
			}
			fmt.Fprintf(&b, "-A %s %s %s %s", f[1], flag, mem.Prefix, f[2])
		}
	}
	return b.String(), nil
}

// Ways the server's ingress policy is in force in BenchmarkConnRate.
const (
	kindNone   = "no-rules" // nothing: the floor of the node, veths and load generator
	kindSets   = "sets"     // the compiled chains and ipsets
	kindLinear = "linear"   // linearRules of the compiled chains, no ipsets
)

// connNode is one node with a client, a server (TCP listener on connPort)
// and another pod, and the server's ingress policy in force as kind.
type connNode struct {
	client, server, other *nettest.Pod
}

func newConnNode(b *testing.B, be iptables.Backend, kind string, members int) *connNode {
	topo := nettest.NewTopology(b, nettest.Nodes(1))
	node := topo.Node(0)
	n := &connNode{client: node.AddPod(b), server: node.AddPod(b), other: node.AddPod(b)}
	n.server.Listen(b, "tcp", connPort)
	c, ipt := newKernelCompiler(b, node.NS, netfilterHandle(b, node.NS), dppolicy.Config{}, be)
	res := connWorld(n.client.IP, n.server.IP, n.other.IP, members)
	for i, p := range []*nettest.Pod{n.client, n.server, n.other} {
		if err := c.SetInterface(res.Endpoints[i].Key(), p.Result.Host.Name); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Replace(res); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	plan, err := c.Apply(ctx)
	if err != nil {
		b.Fatal(err)
	}
	switch kind {
	case kindNone:
		clean(b, be, node.NS)
		nettest.ExpectConnect(b, n.client, n.server, connPort)
		return n
	case kindLinear:
		members := map[string][]ipsets.Member{}
		for _, s := range plan.Sets {
			members[s.Spec.Name] = s.Added
		}
		render := ipt.Render()
		rules, err := linearRules(render, members)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%s: %d compiled rules with %d sets, %d linear rules", be,
			strings.Count(render, "\n-"), len(members), strings.Count(rules, "\n-"))
		file := filepath.Join(b.TempDir(), "linear")
		if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
			b.Fatal(err)
		}
		clean(b, be, node.NS)
		runIn(b, node.NS, restoreCmd(be, file, benchLock(b)))
		if out, _ := node.NS.Run(ctx, "ipset", "list", "-n"); strings.TrimSpace(out) != "" {
			b.Fatalf("linear peer still has sets: %s", out)
		}
	}
	// Same decision on both: the client gets in, the other pod does not.
	nettest.ExpectConnect(b, n.client, n.server, connPort)
	nettest.ExpectNoConnect(b, n.other, n.server, connPort)
	return n
}

// connect opens total TCP connections from the client to the server with
// connWorkers concurrent dialers in the client's netns, each reading the
// server's reply; it returns how many failed.
func (n *connNode) connect(total int) (failed int64, err error) {
	to := netip.AddrPortFrom(n.server.IP, connPort).String()
	var next, fails atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, connWorkers)
	for range connWorkers {
		wg.Go(func() {
			// Sockets are made in the netns of the locked thread.
			errs <- n.client.NS.Do(func() error {
				d := net.Dialer{Timeout: time.Second}
				for next.Add(1) <= int64(total) {
					c, err := d.Dial("tcp", to)
					if err != nil {
						fails.Add(1)
						continue
					}
					_ = c.SetDeadline(time.Now().Add(time.Second))
					if _, err := io.ReadAll(c); err != nil {
						fails.Add(1)
					}
					_ = c.Close()
				}
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		if e != nil {
			return 0, e
		}
	}
	return fails.Load(), nil
}

// BenchmarkConnRate measures new TCP connections per second from a client
// pod to a server pod through the server's ingress policy (1,000 policies
// whose source selectors, 100 sets of 20 or 60 members, do not match the
// client, then one that does) on each backend: "sets" is the compiled
// chains and ipsets, "linear" the same decision with one -s rule per set
// member and no ipsets (linearRules), "no-rules" no filter rules at all
// (the floor), each on its own fresh node. It reports conns/s and logs the
// sets/linear ratio.
func BenchmarkConnRate(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(string(be), func(b *testing.B) {
			none := 0.0
			b.Run(kindNone, func(b *testing.B) { none = benchConns(b, be, kindNone, 0) })
			for _, members := range []int{20, 60} {
				b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
					rate := map[string]float64{}
					for _, kind := range []string{kindSets, kindLinear} {
						b.Run(kind, func(b *testing.B) { rate[kind] = benchConns(b, be, kind, members) })
					}
					if rate[kindLinear] > 0 {
						b.Logf("%s, %d members a set: no rules %.0f conns/s, sets %.0f conns/s, linear %.0f conns/s, sets/linear %.2fx",
							be, members, none, rate[kindSets], rate[kindLinear], rate[kindSets]/rate[kindLinear])
					}
				})
			}
		})
	}
}

// benchConns opens connsPerOp connections an iteration on a fresh node
// with the policy in force as kind and returns the connections/s.
func benchConns(b *testing.B, be iptables.Backend, kind string, members int) float64 {
	n := newConnNode(b, be, kind, members)
	var conns, failed int64
	start := time.Now()
	for b.Loop() {
		f, err := n.connect(connsPerOp)
		if err != nil {
			b.Fatal(err)
		}
		conns += connsPerOp
		failed += f
	}
	if failed*100 > conns {
		b.Fatalf("%d of %d connections failed", failed, conns)
	}
	rate := float64(conns-failed) / time.Since(start).Seconds()
	b.ReportMetric(rate, "conns/s")
	b.ReportMetric(float64(failed), "failed")
	return rate
}
