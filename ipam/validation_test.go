package ipam

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/ipam/store"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSetReservationValidation(t *testing.T) {
	tests := []struct {
		name  string
		cidrs []netip.Prefix
		err   error
		want  string
	}{
		{"ipv4", []netip.Prefix{pfx("10.0.0.0/30")}, nil, ""},
		{"ipv6", []netip.Prefix{pfx("fd00::/126")}, nil, ""},
		{"ipv4-mapped", []netip.Prefix{pfx("::ffff:10.0.0.0/124")}, ErrInvalid, "IPv4-mapped"},
		{"ipv4-mapped after a good one", []netip.Prefix{pfx("10.0.0.0/30"), pfx("::ffff:10.0.0.0/124")}, ErrInvalid, "IPv4-mapped"},
		{"no CIDRs", nil, ErrInvalid, "no CIDRs"},
		{"empty CIDRs", []netip.Prefix{}, ErrInvalid, "no CIDRs"},
		{"zero CIDR", []netip.Prefix{{}}, ErrInvalid, "invalid CIDR"},
		{"host bits", []netip.Prefix{pfx("10.0.0.1/30")}, ErrInvalid, "host bits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			err := e.ipam.SetReservation(e.ctx, IPReservation{Name: "r", CIDRs: tc.cidrs})
			rs, lerr := e.ipam.Reservations(e.ctx)
			require.NoError(t, lerr)
			if tc.err == nil {
				require.NoError(t, err)
				assert.Len(t, rs, 1)
				return
			}
			require.ErrorIs(t, err, tc.err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), `reservation "r"`)
			assert.Empty(t, rs, "nothing stored")
		})
	}
}

func TestLookupValidation(t *testing.T) {
	tests := []struct {
		name string
		addr netip.Addr
		err  error
		want string
	}{
		{"zero address", netip.Addr{}, ErrInvalid, "zero address"},
		{"ipv4-mapped", addr("::ffff:10.0.0.1"), ErrInvalid, "::ffff:10.0.0.1"},
		{"zone", addr("fe80::1%eth0"), ErrInvalid, "fe80::1%eth0"},
		{"ipv4 in a pool", addr("10.0.0.1"), nil, ""},
		{"ipv6 in no pool", addr("fd00::1"), nil, ""},
	}
	e := newEnv(t)
	e.pool("p", "10.0.0.0/24", 26)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := e.ipam.Lookup(e.ctx, tc.addr)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				assert.Contains(t, err.Error(), tc.want)
				assert.Equal(t, IPInfo{}, info)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.addr, info.Addr)
		})
	}
}

func TestSetNodeLabelsValidation(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   string // "" for success
	}{
		{"plain", map[string]string{"zone": "a"}, ""},
		{"prefixed", map[string]string{"topology.kubernetes.io/zone": "a"}, ""},
		{"none", nil, ""},
		{"empty key", map[string]string{"": "a"}, `label key ""`},
		{"space in key", map[string]string{"my zone": "a"}, `label key "my zone"`},
		{"bad prefix", map[string]string{"-bad-/zone": "a"}, `label key "-bad-/zone"`},
		{"name too long", map[string]string{strings.Repeat("a", 64): "a"}, "label key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			err := e.ipam.SetNodeLabels(e.ctx, "n", tc.labels)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), `node "n"`)
		})
	}
}

func TestWatchNegativeRevision(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		watch func(rev int64) error
	}{
		{"blocks", func(rev int64) error { _, err := e.ipam.WatchBlocks(e.ctx, rev); return err }},
		{"affinities", func(rev int64) error { _, err := e.ipam.WatchAffinities(e.ctx, rev); return err }},
		{"pools", func(rev int64) error { _, err := e.ipam.WatchPools(e.ctx, rev); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.watch(-5)
			require.ErrorIs(t, err, ErrInvalid)
			require.ErrorIs(t, err, store.ErrInvalidRevision)
			assert.Contains(t, err.Error(), "-5")
			require.NoError(t, tc.watch(0))
		})
	}
}
