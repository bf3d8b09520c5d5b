package iptables_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/services"
	sipt "github.com/tabbynet/tabby/services/iptables"
	"github.com/tabbynet/tabby/services/servicestest/kernelsuite"
)

// TestKernel runs the services conformance suite on both iptables
// backends (legacy and nft).
func TestKernel(t *testing.T) {
	for _, backend := range []ipt.Backend{ipt.BackendLegacy, ipt.BackendNFT} {
		t.Run(string(backend), func(t *testing.T) {
			kernelsuite.Run(t, func(t *testing.T, node *nettest.Node, tr *services.Tracker, stale func(context.Context, []services.StaleFlow)) kernelsuite.Backend {
				table, err := sipt.NewIPTables(ipt.IPv4, backend, ipt.WithNetns(node.NS.Name))
				require.NoError(t, err)
				p, err := sipt.New(table, tr, sipt.Config{Family: ipt.IPv4, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(nettest.PoolCIDR)}, LocalhostNodePorts: true},
					sipt.WithStaleFlows(stale), sipt.WithSysctl(node.NS.Sysctl))
				require.NoError(t, err)
				return p
			}, kernelsuite.Features{LocalhostNodePorts: true})
		})
	}
}
