package iptables_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	sipt "github.com/tabbynet/tabby/services/iptables"
	st "github.com/tabbynet/tabby/services/servicestest"
	"github.com/tabbynet/tabby/services/servicestest/kernelsuite"
)

// TestKernel runs the services conformance suite on both iptables
// backends (legacy and nft), with the default hairpin set (opened by New
// in the node's netns) and with per-endpoint hairpin rules
// (WithHairpinChains), and kernelsuite.HairpinPeer (the
// hairpin mark goes only to connections that land on their own client).
func TestKernel(t *testing.T) {
	for _, backend := range []ipt.Backend{ipt.BackendLegacy, ipt.BackendNFT} {
		for _, withSet := range []bool{false, true} {
			name := string(backend)
			if !withSet {
				name += "/hairpinchains"
			}
			t.Run(name, func(t *testing.T) {
				f := func(t *testing.T, node *nettest.Node, tr *services.Tracker, stale func(context.Context, []services.StaleFlow)) kernelsuite.Backend {
					table, err := sipt.NewIPTables(ipt.IPv4, backend, ipt.WithNetns(node.NS.Name))
					require.NoError(t, err)
					opts := []sipt.Option{sipt.WithStaleFlows(stale), sipt.WithSysctl(node.NS.Sysctl)}
					if !withSet {
						opts = append(opts, sipt.WithHairpinChains())
					}
					// withSet: the default, a set in the node's netns that New opens.
					p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(nettest.PoolCIDR)}, LocalhostNodePorts: true}, opts...)
					require.NoError(t, err)
					t.Cleanup(func() { assert.NoError(t, p.Close()) })
					return p
				}
				kernelsuite.Run(t, f, kernelsuite.Features{LocalhostNodePorts: true})
			})
		}
	}
}

// TestFakeMatchesKernel renders the shared scenario, then an incremental
// change, into ipt.Fake and into the kernel on both backends, and
// compares the owned chains and rules iptables-save prints with the
// fake's Dump.
func TestFakeMatchesKernel(t *testing.T) {
	for _, backend := range []ipt.Backend{ipt.BackendLegacy, ipt.BackendNFT} {
		for _, withSet := range []bool{false, true} {
			name := string(backend)
			if !withSet {
				name += "/hairpinchains"
			}
			t.Run(name, func(t *testing.T) { fakeMatchesKernel(t, backend, withSet) })
		}
	}
}

// fakeMatchesKernel is TestFakeMatchesKernel on one backend, with the
// hairpin set (an ipsets.Fake beside the kernel's, whose dumps are
// compared too) or without.
func fakeMatchesKernel(t *testing.T, backend ipt.Backend, withSet bool) {
	ns := nettest.NewNetns(t, "svcipt") // skips unless root
	ctx := context.Background()
	kex := ipt.OSExecer{Netns: ns.Name}
	fake := ipt.NewFake()
	fakeSets := ipsets.NewFake()
	var trs []*services.Tracker
	var ps []*sipt.Proxier
	for i, ex := range []ipt.Execer{fake, kex} {
		table, err := sipt.NewIPTables(ipt.IPv4, backend, ipt.WithExecer(ex))
		require.NoError(t, err)
		tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
		var opts []sipt.Option
		switch {
		case !withSet:
			opts = append(opts, sipt.WithHairpinChains())
		case i == 0:
			opts = append(opts, sipt.WithHairpinSet(ipsets.New(fakeSets, ipsets.WithPrefix(sipt.DefaultHairpinSetPrefix(ipt.IPv4)))))
		} // the kernel with a set: the default, opened by New in ns
		p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4, ClusterCIDRs: []netip.Prefix{podCIDR}}, opts...)
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, p.Close()) })
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
		if withSet {
			out, err := kex.Run(ctx, ipt.Command{Name: "ipset", Args: []string{"save"}})
			require.NoError(t, err)
			assert.Equal(t, fakeSets.Dump(), ipsetSave(t, string(out)))
		}
	}
	compare()
	for i, tr := range trs {
		tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", st.DNSPorts, st.Endpoint{IP: "10.244.2.99", Node: "node-b"}))
		tr.OnServiceDelete(st.Service("default", "web", "10.96.0.20"))
		require.NoError(t, ps[i].Sync(ctx))
	}
	compare()
}

// ipsetSave renders `ipset save` output like ipsets.Fake.Dump, through
// a Fake: create lines' family and maxelem, add lines' members.
func ipsetSave(t *testing.T, save string) string {
	t.Helper()
	f := ipsets.NewFake()
	s := ipsets.New(f, ipsets.WithPrefix(setPrefix))
	members := map[string][]ipsets.Member{}
	specs := map[string]ipsets.SetSpec{}
	for _, l := range strings.Split(save, "\n") {
		fl := strings.Fields(l)
		switch {
		case len(fl) >= 5 && fl[0] == "create":
			fam := map[string]ipsets.Family{"inet": ipsets.IPv4, "inet6": ipsets.IPv6}[fl[4]]
			specs[fl[1]] = ipsets.SetSpec{Name: fl[1], Type: ipsets.Type(fl[2]), Family: fam}
		case len(fl) == 3 && fl[0] == "add":
			m, err := ipsets.ParseMember(specs[fl[1]].Type, specs[fl[1]].Family, fl[2])
			require.NoError(t, err)
			members[fl[1]] = append(members[fl[1]], m)
		}
	}
	for n, sp := range specs {
		require.NoError(t, s.SetMembers(sp, members[n]))
	}
	require.NoError(t, s.Apply(context.Background()))
	return f.Dump()
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
				// The default hairpin set: the IPv4 and IPv6 Proxiers share
				// the node's netns, each owning its own set.
				p, err := sipt.New(table, tr, sipt.Config{Family: fam, ClusterCIDRs: []netip.Prefix{pool}})
				require.NoError(t, err)
				t.Cleanup(func() { assert.NoError(t, p.Close()) })
				return p
			})
		})
	}
}
