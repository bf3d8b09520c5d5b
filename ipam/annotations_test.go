package ipam

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAnnotations(t *testing.T) {
	tests := []struct {
		name    string
		pod, ns map[string]string
		want    AnnotationRequest
		err     string
	}{
		{name: "none"},
		{name: "pod pools beat namespace pools per family",
			pod:  map[string]string{AnnotationIPv4Pools: `["pod-v4"]`},
			ns:   map[string]string{AnnotationIPv4Pools: `["ns-v4"]`, AnnotationIPv6Pools: `["ns-v6", "fd00::/64"]`},
			want: AnnotationRequest{IPv4Pools: []string{"pod-v4"}, IPv6Pools: []string{"ns-v6", "fd00::/64"}}},
		{name: "ip addrs",
			pod:  map[string]string{AnnotationIPAddrs: `["10.0.0.5", "fd00::5"]`, AnnotationFloatingIPs: `["1.2.3.4"]`},
			want: AnnotationRequest{Addrs: []netip.Addr{addr("10.0.0.5"), addr("fd00::5")}, FloatingIPs: []netip.Addr{addr("1.2.3.4")}}},
		{name: "namespace pools still apply with ip addrs",
			pod:  map[string]string{AnnotationIPAddrs: `["10.0.0.5"]`},
			ns:   map[string]string{AnnotationIPv4Pools: `["x"]`},
			want: AnnotationRequest{IPv4Pools: []string{"x"}, Addrs: []netip.Addr{addr("10.0.0.5")}}},
		{name: "no ipam", pod: map[string]string{AnnotationIPAddrsNoIPAM: `["10.0.0.5"]`},
			want: AnnotationRequest{NoIPAMAddrs: []netip.Addr{addr("10.0.0.5")}}},
		{name: "mapped v4 is unmapped", pod: map[string]string{AnnotationIPAddrs: `["::ffff:10.0.0.5"]`},
			want: AnnotationRequest{Addrs: []netip.Addr{addr("10.0.0.5")}}},
		{name: "not json", pod: map[string]string{AnnotationIPv4Pools: `pool-a`}, err: "JSON list"},
		{name: "not a list of strings", pod: map[string]string{AnnotationIPAddrs: `[1]`}, err: "JSON list"},
		{name: "empty pool name", pod: map[string]string{AnnotationIPv4Pools: `[""]`}, err: "empty entry"},
		{name: "bad ip", pod: map[string]string{AnnotationIPAddrs: `["10.0.0.300"]`}, err: "not an IP"},
		{name: "cidr is not an ip", pod: map[string]string{AnnotationIPAddrs: `["10.0.0.0/24"]`}, err: "not an IP"},
		{name: "two v4", pod: map[string]string{AnnotationIPAddrs: `["10.0.0.1", "10.0.0.2"]`}, err: "at most one"},
		{name: "duplicate", pod: map[string]string{AnnotationFloatingIPs: `["1.1.1.1", "1.1.1.1"]`}, err: "twice"},
		{name: "ipAddrs and noIpam", pod: map[string]string{AnnotationIPAddrs: `["10.0.0.1"]`, AnnotationIPAddrsNoIPAM: `["10.0.0.2"]`}, err: "together"},
		{name: "ipAddrs and pod pools", pod: map[string]string{AnnotationIPAddrs: `["10.0.0.1"]`, AnnotationIPv4Pools: `["p"]`}, err: "pool annotations"},
		{name: "empty ipAddrs is absent (Calico)", pod: map[string]string{AnnotationIPAddrs: ``}, want: AnnotationRequest{}},
		{name: "blank ipAddrsNoIpam", pod: map[string]string{AnnotationIPAddrsNoIPAM: ` `}, err: AnnotationIPAddrsNoIPAM + ": blank value"},
		{name: "empty floatingIPs is absent", pod: map[string]string{AnnotationFloatingIPs: ``}, want: AnnotationRequest{}},
		{name: "empty pod pools leave the namespace's", pod: map[string]string{AnnotationIPv4Pools: ``}, ns: map[string]string{AnnotationIPv4Pools: `["x"]`},
			want: AnnotationRequest{IPv4Pools: []string{"x"}}},
		{name: "empty pod pools do not conflict with ipAddrs", pod: map[string]string{AnnotationIPv4Pools: ``, AnnotationIPAddrs: `["10.0.0.1"]`},
			want: AnnotationRequest{Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}},
		{name: "empty namespace pools are absent", ns: map[string]string{AnnotationIPv6Pools: ``}, want: AnnotationRequest{}},
		{name: "blank namespace pools", ns: map[string]string{AnnotationIPv6Pools: "\t"}, err: AnnotationIPv6Pools + ": blank value"},
		{name: "leading space", pod: map[string]string{AnnotationIPAddrs: `[" 10.0.0.1"]`}, err: AnnotationIPAddrs + `: " 10.0.0.1" is not an IP`},
		{name: "trailing space", pod: map[string]string{AnnotationFloatingIPs: `["1.1.1.1 "]`}, err: AnnotationFloatingIPs + `: "1.1.1.1 " is not an IP`},
		{name: "zone", pod: map[string]string{AnnotationIPAddrs: `["fe80::1%eth0"]`}, err: "not an IP"},
		{name: "empty list is nothing", pod: map[string]string{AnnotationIPAddrs: `[]`}, want: AnnotationRequest{}},
		{name: "noIpam and floating", pod: map[string]string{AnnotationIPAddrsNoIPAM: `["10.0.0.1"]`, AnnotationFloatingIPs: `["1.1.1.1"]`}, err: "cannot be combined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAnnotations(tc.pod, tc.ns)
			if tc.err != "" {
				require.ErrorIs(t, err, ErrInvalid)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestAnnotationsDriveAssign shows the CNI flow: annotations → pools or
// specific addresses, with unknown pools rejected by Assign.
func TestAnnotationsDriveAssign(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("default", "10.1.0.0/24", 28)
		e.pool("blue", "10.2.0.0/24", 28, func(p *IPPool) { p.NodeSelector = "has(blue)" })
		req, err := ParseAnnotations(nil, map[string]string{AnnotationIPv4Pools: `["blue"]`})
		require.NoError(t, err)
		r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h1", Node: "n", Num4: 1, IPv4Pools: req.IPv4Pools})
		require.NoError(t, err)
		assert.Equal(t, "blue", r.IPv4[0].Pool)

		req, err = ParseAnnotations(map[string]string{AnnotationIPv4Pools: `["missing"]`}, nil)
		require.NoError(t, err)
		_, err = e.ipam.Assign(e.ctx, AssignArgs{Handle: "h2", Node: "n", Num4: 1, IPv4Pools: req.IPv4Pools})
		require.ErrorIs(t, err, ErrUnknownPool)

		req, err = ParseAnnotations(map[string]string{AnnotationIPAddrs: `["10.1.0.77"]`, AnnotationFloatingIPs: `["192.0.2.1"]`}, nil)
		require.NoError(t, err)
		ips, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: req.Addrs, Handle: "h3", Node: "n", FloatingIPs: req.FloatingIPs})
		require.NoError(t, err)
		info, err := e.ipam.Lookup(e.ctx, ips[0].Addr)
		require.NoError(t, err)
		assert.Equal(t, []netip.Addr{addr("192.0.2.1")}, info.Attribute.FloatingIPs)
	})
}

func FuzzParseAnnotations(f *testing.F) {
	f.Add(`["a","b"]`, `["10.0.0.1","fd00::1"]`, `["1.2.3.4"]`, `["ns"]`)
	f.Add(`[]`, `["::ffff:1.2.3.4"]`, ``, `null`)
	f.Add(`{`, `["x"]`, `[1]`, `[""]`)
	f.Fuzz(func(t *testing.T, pools, addrs, floating, nsPools string) {
		pod := map[string]string{AnnotationIPv4Pools: pools, AnnotationIPAddrs: addrs, AnnotationFloatingIPs: floating}
		ns := map[string]string{AnnotationIPv6Pools: nsPools}
		r, err := ParseAnnotations(pod, ns)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		for _, a := range append(append([]netip.Addr{}, r.Addrs...), r.FloatingIPs...) {
			require.True(t, a.IsValid())
			require.False(t, a.Is4In6())
		}
		for _, p := range append(append([]string{}, r.IPv4Pools...), r.IPv6Pools...) {
			require.NotEmpty(t, p)
		}
	})
}
