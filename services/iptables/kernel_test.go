package iptables_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	sipt "github.com/tabbynet/tabby/services/iptables"
	st "github.com/tabbynet/tabby/services/servicestest"
	"github.com/tabbynet/tabby/services/servicestest/kernelsuite"
)

// TestKernel runs the services conformance suite on both iptables
// backends (legacy and nft), and kernelsuite.HairpinPeer (the hairpin
// mark goes only to connections that land on their own client).
func TestKernel(t *testing.T) {
	for _, backend := range []ipt.Backend{ipt.BackendLegacy, ipt.BackendNFT} {
		t.Run(string(backend), func(t *testing.T) {
			f := func(t *testing.T, node *nettest.Node, tr *services.Tracker, stale func(context.Context, []services.StaleFlow)) kernelsuite.Backend {
				table, err := sipt.NewIPTables(ipt.IPv4, backend, ipt.WithNetns(node.NS.Name))
				require.NoError(t, err)
				p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(nettest.PoolCIDR)}, LocalhostNodePorts: true},
					sipt.WithStaleFlows(stale), sipt.WithSysctl(node.NS.Sysctl))
				require.NoError(t, err)
				return p
			}
			kernelsuite.Run(t, f, kernelsuite.Features{LocalhostNodePorts: true})
		})
	}
}

// TestFakeMatchesKernel renders the shared scenario, then an incremental
// change, into ipt.Fake and into the kernel on both backends, and
// compares the owned chains and rules iptables-save prints with the
// fake's Dump.
func TestFakeMatchesKernel(t *testing.T) {
	for _, backend := range []ipt.Backend{ipt.BackendLegacy, ipt.BackendNFT} {
		t.Run(string(backend), func(t *testing.T) {
			ns := nettest.NewNetns(t, "svcipt") // skips unless root
			ctx := context.Background()
			kex := ipt.OSExecer{Netns: ns.Name}
			fake := ipt.NewFake()
			var trs []*services.Tracker
			var ps []*sipt.Proxier
			for _, ex := range []ipt.Execer{fake, kex} {
				table, err := sipt.NewIPTables(ipt.IPv4, backend, ipt.WithExecer(ex))
				require.NoError(t, err)
				tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
				p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4, ClusterCIDRs: []netip.Prefix{podCIDR}})
				require.NoError(t, err)
				st.Scenario(tr)
				require.NoError(t, p.Sync(ctx))
				trs, ps = append(trs, tr), append(ps, p)
			}
			owned := func(save string) []string {
				var out []string
				for _, l := range strings.Split(save, "\n") {
					if strings.HasPrefix(l, "*") || strings.HasPrefix(l, ":TABBY-") || (strings.HasPrefix(l, "-A ") && strings.Contains(l, sipt.HashPrefix)) {
						out = append(out, l)
					}
				}
				return out
			}
			compare := func() {
				t.Helper()
				var kernel string
				for _, tb := range []string{"filter", "nat"} {
					out, err := kex.Run(ctx, ipt.Command{Name: "iptables-" + string(backend) + "-save", Args: []string{"-t", tb}})
					require.NoError(t, err)
					kernel += string(out)
				}
				want := owned(fake.Dump())
				require.Greater(t, len(want), 50)
				assert.Equal(t, want, owned(kernel))
			}
			compare()
			for i, tr := range trs {
				tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", st.DNSPorts, st.Endpoint{IP: "10.244.2.99", Node: "node-b"}))
				tr.OnServiceDelete(st.Service("default", "web", "10.96.0.20"))
				require.NoError(t, ps[i].Sync(ctx))
			}
			compare()
		})
	}
}

// TestKernelIPv6: a dual-stack Service on a dual-stack node, rendered
// by an IPv4 and an IPv6 Proxier (ip6tables), on both backends: a pod
// reaches the cluster IP of each family and is spread over the
// backends, an external client reaches the node port on the node's
// IPv6 address, and an IPv6 cluster IP and node port without endpoints
// refuse the connection.
func TestKernelIPv6(t *testing.T) {
	for _, backend := range []ipt.Backend{ipt.BackendLegacy, ipt.BackendNFT} {
		t.Run(string(backend), func(t *testing.T) {
			kernelsuite.DualStack(t, func(t *testing.T, node *nettest.Node, tr *services.Tracker, v6 bool, pool netip.Prefix) kernelsuite.Backend {
				fam := map[bool]ipt.Family{false: ipt.IPv4, true: ipt.IPv6}[v6]
				table, err := sipt.NewIPTables(fam, backend, ipt.WithNetns(node.NS.Name))
				require.NoError(t, err)
				p, err := sipt.New(table, tr, sipt.Config{Family: fam, ClusterCIDRs: []netip.Prefix{pool}})
				require.NoError(t, err)
				return p
			})
		})
	}
}
