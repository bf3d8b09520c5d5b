package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ipamConf(t *testing.T, extra map[string]any) []byte {
	t.Helper()
	ip := map[string]any{"type": "tabby-ipam", "gc_grace_seconds": -1,
		"pools":  []any{map[string]any{"name": "p1", "cidr": "10.40.0.0/24", "gateway": "10.40.0.1"}},
		"routes": []any{map[string]any{"dst": "0.0.0.0/0"}}}
	for k, v := range extra {
		ip[k] = v
	}
	b, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "net2", "type": "ptp", "ipam": ip})
	require.NoError(t, err)
	return b
}

func TestIPAMPlugin(t *testing.T) {
	m, err := NewMemoryIPAM(t.Context())
	require.NoError(t, err)
	p := NewIPAMPlugin(WithIPAM(m), WithHostname(func() (string, error) { return "node1", nil }))
	c := ipamConf(t, nil)
	r, err := p.Add(t.Context(), &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", StdinData: c})
	require.NoError(t, err)
	cr, err := current.NewResultFromResult(r)
	require.NoError(t, err)
	require.Len(t, cr.IPs, 1)
	assert.Equal(t, "10.40.0.1", cr.IPs[0].Gateway.String())
	ones, _ := cr.IPs[0].Address.Mask.Size()
	assert.Equal(t, 24, ones)
	assert.NotEqual(t, "10.40.0.1", cr.IPs[0].Address.IP.String(), "the gateway is reserved")
	require.Len(t, cr.Routes, 1)

	again, err := p.Add(t.Context(), &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", StdinData: c})
	require.NoError(t, err)
	assert.Equal(t, r, again)

	var mm map[string]any
	require.NoError(t, json.Unmarshal(c, &mm))
	raw, _ := json.Marshal(cr)
	var pr map[string]any
	require.NoError(t, json.Unmarshal(raw, &pr))
	mm["prevResult"] = pr
	withPrev, _ := json.Marshal(mm)
	require.NoError(t, p.Check(t.Context(), &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", StdinData: withPrev}))
	assert.Error(t, p.Check(t.Context(), &skel.CmdArgs{ContainerID: "other", IfName: "eth0", StdinData: withPrev}))

	_, err = p.Add(t.Context(), &skel.CmdArgs{ContainerID: "c2", IfName: "eth0", StdinData: c})
	require.NoError(t, err)
	delete(mm, "prevResult")
	mm["cni.dev/valid-attachments"] = []any{map[string]any{"containerID": "c2", "ifname": "eth0"}}
	gc, _ := json.Marshal(mm)
	require.NoError(t, p.GC(t.Context(), &skel.CmdArgs{StdinData: gc}))
	have, err := m.IPsByHandle(t.Context(), "net2.c1")
	require.NoError(t, err)
	assert.Empty(t, have)
	have, err = m.IPsByHandle(t.Context(), "net2.c2")
	require.NoError(t, err)
	assert.Len(t, have, 1)

	require.NoError(t, p.Del(t.Context(), &skel.CmdArgs{ContainerID: "c2", IfName: "eth0", StdinData: c}))
	require.NoError(t, p.Del(t.Context(), &skel.CmdArgs{ContainerID: "c2", IfName: "eth0", StdinData: c}))
	require.NoError(t, p.Status(t.Context(), &skel.CmdArgs{StdinData: c}))

	_, err = p.Add(t.Context(), &skel.CmdArgs{ContainerID: "c3", IfName: "eth0", StdinData: ipamConf(t, map[string]any{"ipv4_pools": []string{"none"}})})
	assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, err))
	_, err = p.Add(t.Context(), &skel.CmdArgs{ContainerID: "c3", IfName: "eth0", StdinData: []byte(`{"cniVersion":"1.1.0","name":"x"}`)})
	assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, err))
}

// A pool with a gateway is a subnet: exhausting it hands out neither the
// gateway nor the network or broadcast address, as host-local.
func TestIPAMPluginSubnetPoolSkipsNetworkAndBroadcast(t *testing.T) {
	m, err := NewMemoryIPAM(t.Context())
	require.NoError(t, err)
	p := NewIPAMPlugin(WithIPAM(m), WithHostname(func() (string, error) { return "node1", nil }))
	c := ipamConf(t, map[string]any{"pools": []any{map[string]any{"name": "small", "cidr": "10.41.0.0/28", "gateway": "10.41.0.1", "blockSize": 28}}})
	got := map[string]bool{}
	for i := range 16 {
		r, err := p.Add(t.Context(), &skel.CmdArgs{ContainerID: fmt.Sprint("c", i), IfName: "eth0", StdinData: c})
		if i >= 13 {
			require.Error(t, err, "a /28 has 13 addresses besides network, gateway and broadcast")
			continue
		}
		require.NoError(t, err)
		cr, err := current.NewResultFromResult(r)
		require.NoError(t, err)
		got[cr.IPs[0].Address.IP.String()] = true
	}
	assert.Len(t, got, 13)
	for _, a := range []string{"10.41.0.0", "10.41.0.1", "10.41.0.15"} {
		assert.False(t, got[a], a)
	}
}

// A pool made without a gateway gets its subnet's reservations once a
// configuration declares one; the same name with another CIDR is code 7.
func TestIPAMPluginExistingPool(t *testing.T) {
	m, err := NewMemoryIPAM(t.Context())
	require.NoError(t, err)
	p := NewIPAMPlugin(WithIPAM(m), WithHostname(func() (string, error) { return "node1", nil }))
	pool := func(cidr, gw string) []byte {
		pc := map[string]any{"name": "g", "cidr": cidr, "blockSize": 28}
		if gw != "" {
			pc["gateway"] = gw
		}
		return ipamConf(t, map[string]any{"pools": []any{pc}})
	}
	_, err = p.Add(t.Context(), &skel.CmdArgs{ContainerID: "first", IfName: "eth0", StdinData: pool("10.42.0.0/28", "")})
	require.NoError(t, err)
	require.NoError(t, p.Del(t.Context(), &skel.CmdArgs{ContainerID: "first", IfName: "eth0", StdinData: pool("10.42.0.0/28", "")}))
	got := map[string]bool{}
	for i := range 14 {
		r, err := p.Add(t.Context(), &skel.CmdArgs{ContainerID: fmt.Sprint("c", i), IfName: "eth0", StdinData: pool("10.42.0.0/28", "10.42.0.1")})
		if i == 13 {
			assert.Equal(t, CodePoolExhausted, code(t, err))
			continue
		}
		require.NoError(t, err)
		cr, err := current.NewResultFromResult(r)
		require.NoError(t, err)
		got[cr.IPs[0].Address.IP.String()] = true
	}
	for _, a := range []string{"10.42.0.0", "10.42.0.1", "10.42.0.15"} {
		assert.False(t, got[a], a)
	}
	_, err = p.Add(t.Context(), &skel.CmdArgs{ContainerID: "other", IfName: "eth0", StdinData: pool("10.42.9.0/28", "10.42.9.1")})
	assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, err), "%v", err)
}

func TestSubnetReserved(t *testing.T) {
	for _, tc := range []struct{ cidr, gw, want string }{
		{"10.0.0.0/24", "10.0.0.1", "[10.0.0.1/32 10.0.0.0/32 10.0.0.255/32]"},
		{"10.0.0.0/24", "10.0.0.254", "[10.0.0.254/32 10.0.0.0/32 10.0.0.255/32]"},
		{"10.0.0.0/31", "10.0.0.1", "[10.0.0.1/32]"},
		{"fd00::/120", "fd00::1", "[fd00::1/128 fd00::/128]"},
		{"fd00::/127", "fd00::1", "[fd00::1/128]"},
	} {
		got := subnetReserved(netip.MustParsePrefix(tc.cidr), netip.MustParseAddr(tc.gw))
		assert.Equal(t, tc.want, fmt.Sprint(got), tc.cidr)
	}
}

func TestParseIPAMConfigErrors(t *testing.T) {
	f := false
	for name, extra := range map[string]map[string]any{
		"both stores":     {"datastore_path": "/x", "etcd_endpoints": []string{"http://a"}},
		"no family":       {"assign_ipv4": f},
		"pool no name":    {"pools": []any{map[string]any{"cidr": "10.0.0.0/24"}}},
		"pool twice":      {"pools": []any{map[string]any{"name": "a", "cidr": "10.0.0.0/24"}, map[string]any{"name": "a", "cidr": "10.1.0.0/24"}}},
		"unmasked cidr":   {"pools": []any{map[string]any{"name": "a", "cidr": "10.0.0.1/24"}}},
		"gateway outside": {"pools": []any{map[string]any{"name": "a", "cidr": "10.0.0.0/24", "gateway": "10.9.0.1"}}},
		"route no dst":    {"routes": []any{map[string]any{}}},
		"bad timeout":     {"timeout_seconds": -1},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := ParseIPAMConfig(ipamConf(t, extra))
			assert.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
	// A pool that does not decode is named by index and name.
	_, _, err := ParseIPAMConfig(ipamConf(t, map[string]any{"pools": []any{
		map[string]any{"name": "a", "cidr": "10.0.0.0/24"}, map[string]any{"name": "p", "cidr": "10.244.0.0/33"}}}))
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, `ipam.pools[1] ("p")`)
	assert.ErrorContains(t, err, "10.244.0.0/33")

	_, ic, err := ParseIPAMConfig(ipamConf(t, map[string]any{"pools": nil}))
	require.NoError(t, err)
	assert.Equal(t, DefaultDatastorePath, ic.DatastorePath)
}
