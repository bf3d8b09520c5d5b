package ipam

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHandleCodec(t *testing.T) {
	for _, h := range []handleRecord{
		{Blocks: map[string]int{}},
		{Blocks: map[string]int{"10.0.0.0/26": 3, "fd00::40/122": 1, "junk": -2}, Updated: time.Unix(0, 0).UTC()},
		{Blocks: map[string]int{"10.0.0.64/26": 1}, Updated: time.Date(2026, 11, 25, 1, 2, 3, 456789, time.UTC)},
		{Blocks: map[string]int{"10.0.0.64/26": 1}, Updated: time.Date(9999, 1, 1, 0, 0, 0, 1, time.UTC)},
	} {
		got, err := decodeHandle(encodeHandle(&h))
		require.NoError(t, err)
		require.Equal(t, h, got)
	}
	now := time.Date(2026, 11, 25, 1, 2, 3, 4, time.UTC)
	got, err := decodeHandle(encodeNewHandle(pfx("fd00::/122"), 2, now))
	require.NoError(t, err)
	require.Equal(t, handleRecord{Blocks: map[string]int{"fd00::/122": 2}, Updated: now}, got)
	require.Equal(t, encodeHandle(&got), encodeNewHandle(pfx("fd00::/122"), 2, now))

	got, err = decodeHandle([]byte(`{"blocks":{"10.0.0.0/26":3}}`))
	require.NoError(t, err)
	require.Equal(t, map[string]int{"10.0.0.0/26": 3}, got.Blocks)

	enc := encodeHandle(&handleRecord{Blocks: map[string]int{"10.0.0.0/26": 3}, Updated: now})
	for i := range enc {
		_, err := decodeHandle(enc[:i])
		require.Error(t, err, "truncated at %d", i)
	}
	_, err = decodeHandle(append(enc, 0))
	require.Error(t, err)
}

func TestBlockKey(t *testing.T) {
	for _, p := range []netip.Prefix{pfx("10.0.0.0/26"), pfx("fd00::40/122"), netip.MustParsePrefix("::ffff:1.2.3.0/120"), {}} {
		require.Equal(t, keyBlocks+strings.Replace(p.String(), "/", "-", 1), blockKey(p))
	}
}

// FuzzDecodeHandle: any input decodes to a record or an error, never a
// panic, and a record decoded from the binary form re-encodes to a form
// that decodes to the same record.
func FuzzDecodeHandle(f *testing.F) {
	now := time.Date(2026, 11, 25, 1, 2, 3, 4, time.UTC)
	f.Add(encodeNewHandle(netip.MustParsePrefix("10.0.0.0/26"), 2, now))
	f.Add(encodeHandle(&handleRecord{Blocks: map[string]int{"10.0.0.0/26": 3, "fd00::/122": -1}}))
	f.Add([]byte(`{"blocks":{"10.0.0.0/26":3}}`))
	f.Add([]byte{handleCodecVersion, 1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHandle(b)
		if err != nil || (len(b) > 0 && b[0] == '{') {
			return
		}
		again, err := decodeHandle(encodeHandle(&h))
		require.NoError(t, err)
		require.Equal(t, h, again)
	})
}
