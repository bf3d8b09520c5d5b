package nftables_test

import (
	"context"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	snft "github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
	"github.com/tabbynet/tabby/services/servicestest/kernelsuite"
)

// TestKernel runs the services conformance suite (shared with
// services/iptables) on this backend, with each executor: the `nft` CLI
// and Netlink.
func TestKernel(t *testing.T) {
	for _, executor := range []string{"cli", "netlink"} {
		t.Run(executor, func(t *testing.T) {
			kernelsuite.Run(t, func(t *testing.T, node *nettest.Node, tr *services.Tracker, stale func(context.Context, []services.StaleFlow)) kernelsuite.Backend {
				nft := newExecutor(t, executor, knftables.IPv4Family, node.NS.Path)
				p, err := snft.New(nft, tr, snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(nettest.PoolCIDR)}},
					snft.WithStaleFlows(stale))
				require.NoError(t, err)
				return p
			}, kernelsuite.Features{RejectUnservedClusterIPPorts: true})
		})
	}
}

// newExecutor returns the executor named "cli" (knftables running nft in
// the namespace at nsPath) or "netlink" (Netlink, closed with the test).
func newExecutor(t *testing.T, executor string, fam knftables.Family, nsPath string) knftables.Interface {
	t.Helper()
	if executor == "netlink" {
		nl, err := snft.NewNetlink(fam, snft.DefaultTable, nsPath)
		require.NoError(t, err)
		t.Cleanup(func() { _ = nl.Close() })
		return nl
	}
	nft, err := snft.NewInNetns(fam, snft.DefaultTable, nsPath)
	require.NoError(t, err)
	return nft
}

// TestKernelIPv6: kernelsuite.DualStack with one Proxier per family (an
// ip and an ip6 table), through each executor.
func TestKernelIPv6(t *testing.T) {
	for _, executor := range []string{"cli", "netlink"} {
		t.Run(executor, func(t *testing.T) {
			kernelsuite.DualStack(t, func(t *testing.T, node *nettest.Node, tr *services.Tracker, v6 bool, pool netip.Prefix) kernelsuite.Backend {
				fam := map[bool]knftables.Family{false: knftables.IPv4Family, true: knftables.IPv6Family}[v6]
				nft := newExecutor(t, executor, fam, node.NS.Path)
				p, err := snft.New(nft, tr, snft.Config{Family: fam, ClusterCIDRs: []netip.Prefix{pool}})
				require.NoError(t, err)
				return p
			})
		})
	}
}

// TestFakeMatchesKernel renders the same scenario into knftables.Fake and
// the kernel, then an incremental change, and compares what each holds:
// chains, sets, maps, rule counts per chain and map elements.
func TestFakeMatchesKernel(t *testing.T) {
	ns := nettest.NewNetns(t, "svcfake") // skips unless root
	kernel, err := snft.NewInNetns(knftables.IPv4Family, snft.DefaultTable, ns.Path)
	require.NoError(t, err)
	fake := knftables.NewFake(knftables.IPv4Family, snft.DefaultTable)
	ctx := context.Background()
	var trs []*services.Tracker
	var ps []*snft.Proxier
	for _, nft := range []knftables.Interface{fake, kernel} {
		tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
		p, err := snft.New(nft, tr, snft.Config{Family: knftables.IPv4Family, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
		require.NoError(t, err)
		scenario(tr)
		require.NoError(t, p.Sync(ctx))
		trs, ps = append(trs, tr), append(ps, p)
	}
	compare := func() {
		t.Helper()
		snap := func(nft knftables.Interface) map[string]any {
			out := map[string]any{}
			for _, typ := range []string{"chain", "set", "map"} {
				names, err := nft.List(ctx, typ)
				require.NoError(t, err)
				slices.Sort(names)
				out[typ] = names
				for _, n := range names {
					switch typ {
					case "chain":
						rules, err := nft.ListRules(ctx, n)
						require.NoError(t, err)
						out["rules "+n] = len(rules)
					case "map":
						elems, err := nft.ListElements(ctx, typ, n)
						require.NoError(t, err)
						var keys []string
						for _, e := range elems {
							keys = append(keys, strings.Join(e.Key, " . "))
						}
						slices.Sort(keys)
						out["elements "+n] = keys
					}
				}
			}
			return out
		}
		assert.Equal(t, snap(fake), snap(kernel))
	}
	compare()
	for i, tr := range trs {
		tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", dnsPorts, st.Endpoint{IP: "10.244.2.99", Node: "node-b"}))
		tr.OnServiceDelete(st.Service("default", "web", "10.96.0.20"))
		require.NoError(t, ps[i].Sync(ctx))
	}
	compare()
}

// TestKernelServiceCIDRs: with Config.ServiceCIDRs, a connection from a
// pod or from the node to an unallocated address of the service CIDR is
// dropped on the node: the fabric namespace, the node's default gateway,
// counts no packet to the CIDR (an nft counter there), and the client
// is not refused (dropped, not rejected). A served cluster IP still
// answers and an unserved port of it is still refused. With the CIDRs
// removed (SetServiceCIDRs(nil)), the same connection leaves toward the
// gateway again, as without the feature.
func TestKernelServiceCIDRs(t *testing.T) {
	for _, executor := range []string{"cli", "netlink"} {
		t.Run(executor, func(t *testing.T) {
			topo := nettest.NewTopology(t, nettest.Nodes(1)) // skips unless root
			node := topo.Node(0)
			backend := node.AddPod(t)
			backend.ListenTCP(t, 8080)
			client := node.AddPod(t)
			ctx := context.Background()
			for _, args := range [][]string{
				{"add", "table", "ip", "tabby-probe"},
				{"add", "chain", "ip", "tabby-probe", "pre", "{", "type", "filter", "hook", "prerouting", "priority", "-300", ";", "}"},
				{"add", "rule", "ip", "tabby-probe", "pre", "ip", "daddr", "10.96.0.0/16", "counter"},
			} {
				_, err := topo.Fabric.Run(ctx, "nft", args...)
				require.NoError(t, err)
			}
			atGateway := func() int {
				t.Helper()
				out, err := topo.Fabric.Run(ctx, "nft", "list", "chain", "ip", "tabby-probe", "pre")
				require.NoError(t, err)
				m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(out)
				require.NotNil(t, m, out)
				n, err := strconv.Atoi(m[1])
				require.NoError(t, err)
				return n
			}

			tr := services.NewTracker(services.TrackerConfig{NodeName: node.Name}, nil)
			nft := newExecutor(t, executor, knftables.IPv4Family, node.NS.Path)
			p, err := snft.New(nft, tr, snft.Config{Family: knftables.IPv4Family,
				ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(nettest.PoolCIDR)}, ServiceCIDRs: prefixes("10.96.0.0/16")})
			require.NoError(t, err)
			tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.21", st.Port("http", v1.ProtocolTCP, 80, 0)))
			tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-1", webPorts, st.Endpoint{IP: backend.IP.String(), Node: node.Name}))
			require.NoError(t, p.Sync(ctx))

			name, err := client.Probe("tcp", netip.MustParseAddrPort("10.96.0.21:80"), 2*time.Second)
			require.NoError(t, err, "allocated cluster IP")
			assert.Equal(t, backend.Name, name)
			_, err = client.Probe("tcp", netip.MustParseAddrPort("10.96.0.21:81"), 2*time.Second)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "refused", "unserved port of a cluster IP")

			unallocated := netip.MustParseAddrPort("10.96.0.99:80")
			for _, from := range []*nettest.Pod{client, node.Host()} {
				_, err = from.Probe("tcp", unallocated, 700*time.Millisecond)
				require.Error(t, err, "from %s", from.Name)
				assert.NotContains(t, err.Error(), "refused", "from %s: dropped, not rejected", from.Name)
				assert.Zero(t, atGateway(), "from %s: nothing reaches the gateway", from.Name)
			}

			require.NoError(t, p.SetServiceCIDRs(nil))
			require.NoError(t, p.Sync(ctx))
			_, err = client.Probe("tcp", unallocated, 700*time.Millisecond)
			require.Error(t, err)
			assert.Positive(t, atGateway(), "without ServiceCIDRs the packet is routed to the gateway")
			_, err = client.Probe("tcp", netip.MustParseAddrPort("10.96.0.21:80"), 2*time.Second)
			require.NoError(t, err, "allocated cluster IP, without ServiceCIDRs")
		})
	}
}
