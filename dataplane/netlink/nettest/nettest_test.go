package nettest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

func TestTwoNodesDirect(t *testing.T) {
	topo := nettest.NewTopology(t, nettest.Nodes(2))
	a := topo.Node(0).AddPod(t)
	b := topo.Node(1).AddPod(t)
	c := topo.Node(1).AddPod(t)
	nettest.ExpectConnect(t, a, b, 8080)
	nettest.ExpectConnect(t, b, a, 8080)
	nettest.ExpectConnect(t, b, c, 8080) // same node
	nettest.ExpectUDP(t, a, c, 5353)
	t.Log("\n" + topo.String())
}

func TestNetnsCommand(t *testing.T) {
	n := nettest.NewNetns(t, "tby-cmd")
	out, err := n.Run(context.Background(), "ip", "-o", "link", "show")
	require.NoError(t, err)
	assert.Contains(t, out, "lo:")
	assert.NotContains(t, out, "eth0")
	require.NoError(t, n.Sysctl("net.ipv4.ip_forward", "1"))
	out, err = n.Run(context.Background(), "cat", "/proc/sys/net/ipv4/ip_forward")
	require.NoError(t, err)
	assert.Equal(t, "1", strings.TrimSpace(out))
}
