package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// TestMain lets the test binary serve as a BGP speaker child: a test that
// runs the lab re-runs os.Executable (the test binary) with speakerCommand,
// which must not run the tests again.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == speakerCommand {
		os.Exit(speakerMain(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestRoutesDiff(t *testing.T) {
	want := map[netip.Prefix][]netip.Addr{
		prefix("10.96.0.0/16"):  {addr("10.99.0.11"), addr("10.99.0.12")},
		prefix("10.96.0.11/32"): nil, // must be absent
	}
	for _, tc := range []struct {
		name string
		got  map[netip.Prefix][]netip.Addr
		errs []string
	}{
		{"exact", map[netip.Prefix][]netip.Addr{prefix("10.96.0.0/16"): {addr("10.99.0.11"), addr("10.99.0.12")},
			prefix("10.244.0.0/26"): {addr("10.99.0.13")}}, nil},
		{"missing next hop", map[netip.Prefix][]netip.Addr{prefix("10.96.0.0/16"): {addr("10.99.0.11")}},
			[]string{"10.96.0.0/16: the router has next hops [10.99.0.11]"}},
		{"route that should be gone", map[netip.Prefix][]netip.Addr{
			prefix("10.96.0.0/16"):  {addr("10.99.0.11"), addr("10.99.0.12")},
			prefix("10.96.0.11/32"): {addr("10.99.0.11")}}, []string{"10.96.0.11/32"}},
		{"nothing", nil, []string{"10.96.0.0/16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := routesDiff(tc.got, want)
			if tc.errs == nil {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, e := range tc.errs {
				assert.Contains(t, err.Error(), e)
			}
		})
	}
}

// labNodes are nodes as the topology has them (only Name and IP are used).
func labNodes() []*nettest.Node {
	return []*nettest.Node{{Name: "node0", IP: addr("10.99.0.11")}, {Name: "node1", IP: addr("10.99.0.12")},
		{Name: "node2", IP: addr("10.99.0.13")}}
}

func TestWantServiceRoutesAndAnnounceDiff(t *testing.T) {
	nodes := labNodes()
	pods := []*pod{{name: "customer", node: "node0", labels: map[string]string{"app": "customer"}, addr: addr("10.244.0.1")},
		{name: "summary", node: "node1", labels: map[string]string{"app": "summary"}, addr: addr("10.244.0.65")}}
	customer, customerLocal, gateway := labServices(pods, nodes)
	all := []*labService{customer, customerLocal, gateway}

	assert.Equal(t, []string{"customer"}, customerLocal.answers)
	assert.Equal(t, []string{"node1", "node2"}, gateway.answers)
	assert.Equal(t, map[netip.Prefix][]netip.Addr{
		prefix(serviceCIDR):     {addr("10.99.0.11"), addr("10.99.0.12"), addr("10.99.0.13")},
		prefix("10.96.0.11/32"): {addr("10.99.0.11")},
		prefix("10.96.0.12/32"): {addr("10.99.0.12"), addr("10.99.0.13")},
	}, wantServiceRoutes(nodes, all))

	good := map[string][]netip.Prefix{
		"node0": {prefix(serviceCIDR), prefix("10.96.0.11/32")},
		"node1": {prefix(serviceCIDR), prefix("10.96.0.12/32")},
		"node2": {prefix(serviceCIDR), prefix("10.96.0.12/32")},
	}
	assert.NoError(t, announceDiff(nodes, all, good))
	bad := map[string][]netip.Prefix{"node0": {prefix(serviceCIDR)}, "node1": good["node1"],
		"node2": {prefix(serviceCIDR), prefix("10.96.0.11/32"), prefix("10.96.0.12/32")}}
	err := announceDiff(nodes, all, bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "node0 announces")
	assert.Contains(t, err.Error(), "node2 announces")

	// Not ready: the /32 has no next hop left, the range stays.
	customerLocal.slice.Endpoints[0].Conditions.Ready = new(bool)
	w := wantServiceRoutes(nodes, all)
	assert.Nil(t, w[prefix("10.96.0.11/32")])
	assert.Contains(t, w, prefix("10.96.0.11/32"))
	assert.Len(t, w[prefix(serviceCIDR)], 3)
}

func TestBIRDConfig(t *testing.T) {
	conf := birdConfig(labNodes())
	for _, want := range []string{
		"router id 10.99.0.254;",
		"merge paths on;",
		"local 10.99.0.254 as 65000;",
		"protocol bgp node0 from tabbynode { neighbor 10.99.0.11 as 64512; }",
		"protocol bgp node2 from tabbynode { neighbor 10.99.0.13 as 64512; }",
	} {
		assert.Contains(t, conf, want)
	}
}

// TestSpeakerProtocol drives speakerMain over pipes without starting BGP:
// requests before start fail with a reply, EOF ends it with 0, garbage
// with 1.
func TestSpeakerProtocol(t *testing.T) {
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	require.NoError(t, enc.Encode(speakerMsg{Op: "status"}))
	require.NoError(t, enc.Encode(speakerMsg{Op: "start"}))
	var out bytes.Buffer
	assert.Equal(t, 0, speakerMain(&in, &out))
	dec := json.NewDecoder(&out)
	var r speakerReply
	require.NoError(t, dec.Decode(&r))
	assert.Equal(t, "status before start", r.Err)
	require.NoError(t, dec.Decode(&r))
	assert.Equal(t, "start without config or topology", r.Err)

	assert.Equal(t, 1, speakerMain(strings.NewReader("{not json"), &out))
}
