package ipam

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleBlock() *allocBlock {
	b := newBlock(pfx("fd00::40/122"), "node-a", time.Unix(0, 12345).UTC())
	at := Attribute{Handle: "k8s-pod-network.abc", Node: "node-b", Namespace: "ns", Pod: "pod", Use: UseWorkload,
		Extra: map[string]string{"z": "1", "a": "2"}, FloatingIPs: []netip.Addr{addr("192.0.2.1"), addr("2001:db8::1")},
		Created: time.Unix(100, 5).UTC()}
	idx := b.attrIndex(&at)
	b.Allocations[3], b.Allocations[9] = idx, idx
	b.Unallocated = append(b.Unallocated[:3], b.Unallocated[4:9]...)
	b.Unallocated = append(b.Unallocated, 10, 11)
	return b
}

// compactBlock holds the common case the flags shorten (a pod on the
// block's own node, a k8s handle, Workload use) beside the uncommon ones.
func compactBlock() *allocBlock {
	b := newBlock(pfx("10.0.0.0/26"), "node-a", time.Time{})
	for i, at := range []Attribute{
		{Handle: "k8s-pod-network.c1", Node: "node-a", Namespace: "ns", Pod: "p1", Use: UseWorkload, Created: time.Unix(1e9, 7).UTC()},
		{Handle: "k8s-pod-network.", Node: "", Use: UseTunnel},
		{Handle: "other", Node: "node-b", Use: "", Extra: map[string]string{"k": "v"}},
	} {
		b.Allocations[i] = b.attrIndex(&at)
	}
	b.Unallocated = b.Unallocated[3:]
	return b
}

func TestBlockCodecRoundTrip(t *testing.T) {
	for _, b := range []*allocBlock{sampleBlock(), compactBlock(), newBlock(pfx("10.0.0.0/26"), "", time.Time{}), newBlock(pfx("10.0.0.0/20"), "x", time.Time{})} {
		got, err := decodeBlock(encodeBlock(b))
		require.NoError(t, err)
		assert.Equal(t, b, got)
	}
	_, err := decodeBlock(nil)
	require.ErrorIs(t, err, errCorrupt)
	enc := encodeBlock(sampleBlock())
	for i := 0; i < len(enc); i++ {
		_, _ = decodeBlock(enc[:i]) // truncations must not panic
	}
	_, err = decodeBlock(append(enc, 0))
	require.ErrorIs(t, err, errCorrupt)
	bad := slices.Clone(enc)
	bad[0] = 1 // the first encoding, never released
	_, err = decodeBlock(bad)
	require.ErrorIs(t, err, errCorrupt)
}

// A pod's record on its own node's block is well under its spelled-out
// size (about half for short handles): every allocation rewrites the whole
// block, and these records are most of what it copies.
func TestAttributeEncodingIsCompact(t *testing.T) {
	at := Attribute{Handle: "k8s-pod-network.0123456789abcdef0123456789abcdef", Node: "worker-17",
		Namespace: "default", Pod: "web-7d9f8b6c5-x2x9k", Use: UseWorkload, Created: time.Unix(1.8e9, 0)}
	enc := appendAttribute(nil, &at, "worker-17")
	spelled := len(at.Handle) + len(at.Node) + len(at.Namespace) + len(at.Pod) + len(at.Use) + 8
	assert.Less(t, len(enc), spelled*3/4, "%d bytes", len(enc))
	d := &decoder{b: enc}
	var got Attribute
	d.attribute(&got, "worker-17")
	require.NoError(t, d.err)
	assert.True(t, got.equal(&at))
	d = &decoder{b: []byte{0x80}}
	d.attribute(&got, "")
	require.ErrorIs(t, d.err, errCorrupt, "unknown flags")
}

func FuzzDecodeBlock(f *testing.F) {
	f.Add(encodeBlock(sampleBlock()))
	f.Add(encodeBlock(newBlock(pfx("10.0.0.0/30"), "n", time.Time{})))
	f.Add(encodeBlock(compactBlock()))
	f.Add([]byte{2, 0, 0, 4, 10, 0, 0, 0, 30})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBlock(data)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes the same,
		// and the block maths on it must not panic.
		again, err := decodeBlock(encodeBlock(b))
		require.NoError(t, err)
		require.Equal(t, b.CIDR, again.CIDR)
		require.Equal(t, b.Allocations, again.Allocations)
		_ = b.consistency()
		b.repair()
		require.Empty(t, b.consistency())
		_ = b.handleCounts()
	})
}

func TestBlockMaths(t *testing.T) {
	p := IPPool{CIDR: pfx("10.0.0.0/16"), BlockSize: 26}
	assert.Equal(t, uint64(1024), blockCount(p))
	p6 := IPPool{CIDR: pfx("fd00::/48"), BlockSize: 122}
	assert.Equal(t, uint64(1<<62), blockCount(p6), "capped")
	for _, tc := range []struct {
		p    string
		last string
	}{{"10.0.0.0/26", "10.0.0.63"}, {"10.0.0.7/32", "10.0.0.7"}, {"fd00::/122", "fd00::3f"},
		{"fd00::/48", "fd00::ffff:ffff:ffff:ffff:ffff"}, {"fd00::1/128", "fd00::1"}, {"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}} {
		assert.Equal(t, addr(tc.last), fromU128(lastOf(pfx(tc.p)), pfx(tc.p).Addr().Is4()), tc.p)
	}
	v := toU128(addr("fd00::1:2:3:4:5")).sub(toU128(addr("fd00::")))
	assert.Equal(t, u128{hi: 1, lo: 0x0002000300040005}, v)
	assert.Equal(t, u128{lo: 0x0001000200030004}, v.shr(16))
	assert.Equal(t, u128{lo: 1}, v.shr(64))
	assert.Equal(t, v, v.shr(0))
	assert.Equal(t, u128{hi: ^uint64(0), lo: ^uint64(0)}, u128{}.sub(u128{lo: 1}), "wraps")
	assert.Equal(t, addr("fd00::40"), addrAt(pfx("fd00::/122"), 64-0-0) /* the next block */)
	assert.Equal(t, 5, ordinal(pfx("10.0.0.64/26"), addr("10.0.0.69")))
	assert.Equal(t, pfx("10.0.0.64/26"), blockFor(addr("10.0.0.69"), 26))
	mask, all := reservedMask(pfx("10.0.0.0/28"), []netip.Prefix{pfx("10.0.0.4/31"), pfx("fd00::/64")})
	assert.False(t, all)
	assert.Equal(t, []bool{false, false, false, false, true, true, false, false, false, false, false, false, false, false, false, false}, mask)
	_, all = reservedMask(pfx("10.0.0.0/28"), []netip.Prefix{pfx("10.0.0.0/24")})
	assert.True(t, all)

	var got []netip.Prefix
	blockCandidates(IPPool{CIDR: pfx("10.0.0.0/28"), BlockSize: 30}, "n", 10, func(b netip.Prefix) bool {
		got = append(got, b)
		return true
	})
	assert.Len(t, got, 4, "every block once")
	seen := map[netip.Prefix]bool{}
	for _, b := range got {
		seen[b] = true
	}
	assert.Len(t, seen, 4)
}
