package nftables_test

import (
	"context"
	"net/netip"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	snft "github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// listTable is `nft list table` of the table in the namespace at path:
// nft decodes the kernel's expressions back into rules, so two tables
// that list the same hold the same rules.
func listTable(t *testing.T, family knftables.Family, path string) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+path, "nft", "list", "table", string(family), snft.DefaultTable).CombinedOutput()
	require.NoError(t, err, string(out))
	return string(out)
}

// TestNetlinkMatchesCLI renders the same series of syncs through the `nft`
// CLI into one namespace and through netlink into another, after each
// sync comparing `nft list table` of both (and the Fake's view of the
// netlink table with the Fake's own), for both families.
func TestNetlinkMatchesCLI(t *testing.T) {
	for _, fam := range []knftables.Family{knftables.IPv4Family, knftables.IPv6Family} {
		t.Run(string(fam), func(t *testing.T) {
			cliNS := nettest.NewNetns(t, "svccli") // skips unless root
			nlNS := nettest.NewNetns(t, "svcnl")
			cli, err := snft.NewInNetns(fam, snft.DefaultTable, cliNS.Path)
			require.NoError(t, err)
			nl, err := snft.NewNetlink(fam, snft.DefaultTable, nlNS.Path)
			require.NoError(t, err)
			t.Cleanup(func() { _ = nl.Close() })
			cidrs := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")}
			svcCIDRs := map[knftables.Family][][]netip.Prefix{
				knftables.IPv4Family: {prefixes("10.96.0.0/16"), prefixes("10.96.0.0/12", "172.30.0.0/16")},
				knftables.IPv6Family: {prefixes("fd00:10:96::/112"), prefixes("fd00:10:96::/108", "fd00:172:30::/64")},
			}[fam]
			var trs []*services.Tracker
			var ps []*snft.Proxier
			for _, nft := range []knftables.Interface{cli, nl} {
				tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
				p, err := snft.New(nft, tr, snft.Config{Family: fam, ClusterCIDRs: cidrs, ServiceCIDRs: svcCIDRs[0]})
				require.NoError(t, err)
				trs, ps = append(trs, tr), append(ps, p)
			}
			ctx := context.Background()
			steps := []func(tr *services.Tracker){
				st.Scenario,
				sixScenario,
				func(tr *services.Tracker) {
					tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", dnsPorts, st.Endpoint{IP: "10.244.2.99", Node: "node-b"}))
				},
				func(tr *services.Tracker) { tr.OnServiceDelete(st.Service("default", "web", "10.96.0.20")) },
				func(tr *services.Tracker) {
					tr.OnEndpointSliceUpdate(st.Slice("kube-system", "dns", "dns-1", dnsPorts))
					tr.OnEndpointSliceUpdate(sixSlice(st.Endpoint{IP: "fd00:10:244:1::99", Node: "node-a"}))
				},
			}
			for i, step := range steps {
				for j, tr := range trs {
					step(tr)
					require.NoError(t, ps[j].Sync(ctx), "step %d", i)
				}
				want := listTable(t, fam, cliNS.Path)
				assert.Equal(t, want, listTable(t, fam, nlNS.Path), "step %d", i)
				assert.Regexp(t, regexp.MustCompile(`chain services`), want)
			}
			// Service CIDRs changed (elements), removed (set and rule
			// go), added back (they return).
			for i, c := range [][]netip.Prefix{svcCIDRs[1], nil, svcCIDRs[0]} {
				for _, p := range ps {
					require.NoError(t, p.SetServiceCIDRs(c))
					require.NoError(t, p.Sync(ctx), "service CIDRs %d", i)
				}
				want := listTable(t, fam, cliNS.Path)
				assert.Equal(t, want, listTable(t, fam, nlNS.Path), "service CIDRs %d", i)
				assert.Equal(t, c != nil, regexp.MustCompile(`daddr @service-cidrs drop`).MatchString(want), "service CIDRs %d", i)
			}
			// The CLI can still add a rule reading an endpoint map of the
			// Netlink-written table (it evaluates it against the typeof
			// user data Netlink wrote).
			ip := "ip"
			if fam == knftables.IPv6Family {
				ip = "ip6"
			}
			out, err := exec.Command("nsenter", "--net="+nlNS.Path, "nft", "-c", "add", "rule", string(fam), snft.DefaultTable, "services",
				"meta", "l4proto", "tcp", "dnat", ip, "addr", ".", "port", "to", ip, "daddr", ".", "tcp", "dport", ".", "numgen", "random", "mod", "2", "map", "@service-endpoints-tcp").CombinedOutput()
			require.NoError(t, err, string(out))
			// Rebuild from scratch on a resync (both: a rebuilt table
			// lists its per-service sets in creation order, sorted by
			// name, unlike one grown sync by sync).
			for _, p := range ps {
				p.QueueResync()
				require.NoError(t, p.Sync(ctx))
			}
			assert.Equal(t, listTable(t, fam, cliNS.Path), listTable(t, fam, nlNS.Path))
		})
	}
}

// sixScenario adds IPv6 services (ignored by the IPv4 proxier).
func sixScenario(tr *services.Tracker) {
	tr.OnServiceUpdate(st.Service("default", "six", "fd00:10:96::20", st.Port("http", v1.ProtocolTCP, 80, 30099), func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeNodePort
		s.Spec.ExternalIPs = []string{"2001:db8::7"}
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	}))
	tr.OnEndpointSliceUpdate(sixSlice(st.Endpoint{IP: "fd00:10:244:1::12", Node: "node-a"}, st.Endpoint{IP: "fd00:10:244:2::12", Node: "node-b"}))
	// Without affinity: the endpoint maps, with a Local node port.
	tr.OnServiceUpdate(st.Service("default", "six-local", "fd00:10:96::21", st.Port("http", v1.ProtocolTCP, 80, 30098), func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeNodePort
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		s.Spec.ExternalIPs = []string{"2001:db8::8"}
	}))
	// An IPv6 load balancer with overlapping source ranges of both
	// families (the firewall set holds the outer IPv6 one only).
	tr.OnServiceUpdate(st.Service("default", "six-lb", "fd00:10:96::22", st.Port("http", v1.ProtocolTCP, 80, 30097),
		st.LoadBalancer("2001:db8::9"), st.SourceRanges("2001:db8:1::/48", "2001:db8:1:2::/64", "10.0.0.0/8")))
	sl6 := st.Slice("default", "six-lb", "six-lb-1", webPorts, st.Endpoint{IP: "fd00:10:244:1::15", Node: "node-a"})
	sl6.AddressType = discovery.AddressTypeIPv6
	tr.OnEndpointSliceUpdate(sl6)
	sl := st.Slice("default", "six-local", "six-local-1", webPorts,
		st.Endpoint{IP: "fd00:10:244:1::13", Node: "node-a"}, st.Endpoint{IP: "fd00:10:244:2::13", Node: "node-b"}, st.Endpoint{IP: "fd00:10:244:2::14", Node: "node-b"})
	sl.AddressType = discovery.AddressTypeIPv6
	tr.OnEndpointSliceUpdate(sl)
}

func sixSlice(eps ...st.Endpoint) *discovery.EndpointSlice {
	s := st.Slice("default", "six", "six-1", webPorts, eps...)
	s.AddressType = discovery.AddressTypeIPv6
	return s
}

// TestSyncContextDone: a Sync whose context is already done (cancelled,
// or its deadline passed) writes nothing and returns the context's
// error, on both executors alike (the netlink executor used to send
// the batch anyway: a cancelled context got nil, a passed deadline an
// error for a batch the kernel had applied); the next Sync with a live
// context writes the change.
func TestSyncContextDone(t *testing.T) {
	done := map[string]func() (context.Context, error){
		"cancelled": func() (context.Context, error) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, context.Canceled
		},
		"deadline passed": func() (context.Context, error) {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			t.Cleanup(cancel)
			return ctx, context.DeadlineExceeded
		},
	}
	for _, executor := range []string{"cli", "netlink"} {
		for name, mk := range done {
			t.Run(executor+"/"+name, func(t *testing.T) {
				ns := nettest.NewNetns(t, "svcctx") // skips unless root
				nft := newExecutor(t, executor, knftables.IPv4Family, ns.Path)
				tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, nil)
				p, err := snft.New(nft, tr, snft.Config{Family: knftables.IPv4Family})
				require.NoError(t, err)
				tr.OnServiceUpdate(st.Service("default", "a", "10.96.0.10", st.Port("http", v1.ProtocolTCP, 80, 0)))
				require.NoError(t, p.Sync(context.Background()))
				before := listTable(t, knftables.IPv4Family, ns.Path)

				tr.OnServiceUpdate(st.Service("default", "b", "10.96.0.11", st.Port("http", v1.ProtocolTCP, 80, 0)))
				ctx, want := mk()
				err = p.Sync(ctx)
				require.ErrorIs(t, err, want)
				assert.Equal(t, before, listTable(t, knftables.IPv4Family, ns.Path), "nothing written")

				require.NoError(t, p.Sync(context.Background()))
				assert.Contains(t, listTable(t, knftables.IPv4Family, ns.Path), "10.96.0.11 . tcp . 80")
			})
		}
	}
}

// TestNewInNetnsEmptyPath: NewInNetns with an empty nsPath is the
// caller's namespace, as for NewNetlink (it used to fail opening "").
// Called on a thread inside a test namespace, its transactions land
// there.
func TestNewInNetnsEmptyPath(t *testing.T) {
	ns := nettest.NewNetns(t, "svcempty") // skips unless root
	require.NoError(t, ns.Do(func() error {
		nft, err := snft.NewInNetns(knftables.IPv4Family, snft.DefaultTable, "")
		if err != nil {
			return err
		}
		tx := nft.NewTransaction()
		tx.Add(&knftables.Table{})
		tx.Add(&knftables.Chain{Name: "c"})
		return nft.Run(context.Background(), tx)
	}))
	assert.Contains(t, listTable(t, knftables.IPv4Family, ns.Path), "chain c")
}
