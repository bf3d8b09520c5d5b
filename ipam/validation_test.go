package ipam

import (
	"net/netip"
	"testing"

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
