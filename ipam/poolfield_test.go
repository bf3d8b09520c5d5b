package ipam

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/selector"
)

// TestPoolFieldError: Validate and Conflict (CreatePool's checks, exported
// for decoders such as ipam/manifest) name the field at fault.
func TestPoolFieldError(t *testing.T) {
	tests := []struct {
		name  string
		pool  IPPool
		field string
		err   error
	}{
		{"name", IPPool{CIDR: pfx("10.0.0.0/16")}, "name", ErrInvalid},
		{"cidr", IPPool{Name: "p", CIDR: pfx("10.0.0.1/16")}, "cidr", ErrInvalid},
		{"v4-mapped", IPPool{Name: "p", CIDR: pfx("::fffe:0:0/95")}, "cidr", ErrInvalid},
		{"blockSize", IPPool{Name: "p", CIDR: pfx("10.0.0.0/16"), BlockSize: 33}, "blockSize", ErrInvalid},
		{"nodeSelector", IPPool{Name: "p", CIDR: pfx("10.0.0.0/16"), NodeSelector: "a =="}, "nodeSelector", selector.ErrInvalid},
		{"ipipMode", IPPool{Name: "p", CIDR: pfx("fd00::/64"), IPIPMode: EncapAlways}, "ipipMode", ErrInvalid},
		{"vxlanMode", IPPool{Name: "p", CIDR: pfx("10.0.0.0/16"), VXLANMode: "x"}, "vxlanMode", ErrInvalid},
		{"allowedUses", IPPool{Name: "p", CIDR: pfx("10.0.0.0/16"), AllowedUses: []Use{"x"}}, "allowedUses", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.pool.WithDefaults().Validate()
			require.ErrorIs(t, err, ErrInvalid)
			require.ErrorIs(t, err, tc.err)
			var pe *PoolFieldError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.field, pe.Field)
			assert.Equal(t, tc.pool.Name, pe.Pool)
		})
	}
	a := IPPool{Name: "a", CIDR: pfx("10.0.0.0/16")}
	var pe *PoolFieldError
	err := IPPool{Name: "b", CIDR: pfx("10.0.128.0/17")}.Conflict(a)
	require.ErrorIs(t, err, ErrOverlap)
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "cidr", pe.Field)
	assert.Equal(t, `pool "b": cidr: 10.0.128.0/17 overlaps pool "a" (10.0.0.0/16): pool overlaps an existing pool`, err.Error())
	err = IPPool{Name: "a", CIDR: pfx("10.1.0.0/16")}.Conflict(a)
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "name", pe.Field)
	assert.NoError(t, IPPool{Name: "c", CIDR: pfx("10.1.0.0/16")}.Conflict(a))
	assert.NoError(t, a.WithDefaults().Validate())
}
