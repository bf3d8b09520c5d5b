package policy_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"tby:R:i:0:0123456789abcdef", "tby:T:e:-:fedcba9876543210", "tby:R:i:01:0123456789abcdef", "", "tby::::", "calico-packet: "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := dppolicy.ParsePrefix(s)
		if err != nil {
			require.ErrorIs(t, err, dppolicy.ErrBadPrefix)
			return
		}
		require.Equal(t, s, p.String(), "a prefix that parses round-trips")
	})
}

func TestParsePrefix(t *testing.T) {
	p, err := dppolicy.ParsePrefix("tby:R:e:12:0123456789abcdef")
	require.NoError(t, err)
	assert.Equal(t, dppolicy.Prefix{Kind: dppolicy.KindRule, Direction: policy.Egress, Rule: 12, ID: "0123456789abcdef"}, p)
	for _, bad := range []string{"tby:R:e:-:0123456789abcdef", "tby:T:e:1:0123456789abcdef", "tby:X:e:1:0123456789abcdef",
		"tby:R:x:1:0123456789abcdef", "tby:R:e:1:0123456789ABCDEF", "tby:R:e:-1:0123456789abcdef", "x:R:e:1:0123456789abcdef"} {
		_, err := dppolicy.ParsePrefix(bad)
		assert.ErrorIs(t, err, dppolicy.ErrBadPrefix, bad)
	}
}

// nflogMsg builds an NFULNL_MSG_PACKET body: nfgenmsg and attributes.
func nflogMsg(prefix string, payload []byte) []byte {
	b := []byte{2, 0, 0, 7}
	attr := func(typ uint16, data []byte) {
		h := make([]byte, 4)
		binary.LittleEndian.PutUint16(h, uint16(4+len(data)))
		binary.LittleEndian.PutUint16(h[2:], typ)
		b = append(b, h...)
		b = append(b, data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	attr(10, append([]byte(prefix), 0))
	attr(9, payload)
	return b
}

func ipv4TCP() []byte {
	h := make([]byte, 24)
	h[0] = 0x45
	h[9] = 6
	copy(h[12:], []byte{10, 0, 0, 1})
	copy(h[16:], []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint16(h[20:], 40000)
	binary.BigEndian.PutUint16(h[22:], 80)
	return h
}

func TestParseLoggedPacket(t *testing.T) {
	p, err := dppolicy.ParseLoggedPacket(nflogMsg("tby:T:i:-:0123456789abcdef", ipv4TCP()))
	require.NoError(t, err)
	assert.Equal(t, "tby:T:i:-:0123456789abcdef", p.Prefix)
	assert.Equal(t, "10.0.0.1", p.Src.String())
	assert.Equal(t, "10.0.0.2", p.Dst.String())
	assert.Equal(t, uint8(6), p.Protocol)
	assert.Equal(t, uint16(80), p.DstPort)
	_, err = dppolicy.ParseLoggedPacket([]byte{1})
	assert.ErrorIs(t, err, dppolicy.ErrBadPacket)
}

func FuzzParseLoggedPacket(f *testing.F) {
	f.Add(nflogMsg("tby:T:i:-:0123456789abcdef", ipv4TCP()))
	f.Add(nflogMsg("x", make([]byte, 40)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := dppolicy.ParseLoggedPacket(b)
		if err != nil && !errors.Is(err, dppolicy.ErrBadPacket) {
			t.Fatalf("error not wrapping ErrBadPacket: %v", err)
		}
	})
}
