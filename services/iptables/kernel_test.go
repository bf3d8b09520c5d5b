package iptables_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

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
			topo := nettest.NewTopology(t, nettest.Nodes(1), nettest.IPv6()) // skips unless root
			node := topo.Node(0)
			var backends []*nettest.Pod
			for range 2 {
				b := node.AddPod(t)
				b.ListenTCP(t, 8080)
				backends = append(backends, b)
			}
			client := node.AddPod(t)
			ext := topo.AddClient(t)
			ctx := context.Background()
			var ps []*sipt.Proxier
			for _, fam := range []struct {
				f    ipt.Family
				pool string
			}{{ipt.IPv4, nettest.PoolCIDR}, {ipt.IPv6, nettest.PoolCIDR6}} {
				table, err := sipt.NewIPTables(fam.f, backend, ipt.WithNetns(node.NS.Name))
				require.NoError(t, err)
				tr := services.NewTracker(services.TrackerConfig{NodeName: node.Name}, nil)
				dual := func(s *v1.Service) {
					s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, strings.Replace(s.Spec.ClusterIP, "10.96.0.", "fd00:96::", 1))
					s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
				}
				tr.OnServiceUpdate(st.Service("default", "web", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 30080), dual))
				tr.OnServiceUpdate(st.Service("default", "empty", "10.96.0.11", st.Port("http", v1.ProtocolTCP, 80, 30081), dual))
				var eps4, eps6 []st.Endpoint
				for _, b := range backends {
					eps4 = append(eps4, st.Endpoint{IP: b.IP.String(), Node: node.Name})
					eps6 = append(eps6, st.Endpoint{IP: b.IP6.String(), Node: node.Name})
				}
				tr.OnEndpointSliceUpdate(st.Slice("default", "web", "web-v4", st.WebPorts, eps4...))
				s6 := st.Slice("default", "web", "web-v6", st.WebPorts, eps6...)
				s6.AddressType = discovery.AddressTypeIPv6
				tr.OnEndpointSliceUpdate(s6)
				p, err := sipt.New(table, tr, sipt.Config{Family: fam.f, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(fam.pool)}})
				require.NoError(t, err)
				require.NoError(t, p.Sync(ctx))
				ps = append(ps, p)
			}
			for _, vip := range []string{"10.96.0.10:80", "[fd00:96::10]:80"} {
				got := map[string]int{}
				for range 30 {
					name, err := client.Probe("tcp", netip.MustParseAddrPort(vip), 2*time.Second)
					require.NoError(t, err, vip)
					got[name]++
				}
				assert.Len(t, got, 2, "%s spreads over both backends: %v", vip, got)
			}
			name, err := ext.Probe("tcp", netip.AddrPortFrom(node.IP6, 30080), 2*time.Second)
			require.NoError(t, err, "IPv6 node port")
			assert.Contains(t, []string{backends[0].Name, backends[1].Name}, name)
			for _, c := range []struct {
				from *nettest.Pod
				to   netip.AddrPort
			}{
				{client, netip.MustParseAddrPort("[fd00:96::11]:80")},
				{ext, netip.AddrPortFrom(node.IP6, 30081)},
			} {
				_, err := c.from.Probe("tcp", c.to, 2*time.Second)
				require.Error(t, err, "%v has no endpoints", c.to)
				assert.Contains(t, err.Error(), "refused")
			}
		})
	}
}
