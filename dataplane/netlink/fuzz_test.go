package netlink

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// routeFromFuzz builds a route from fuzz input; most are invalid.
func routeFromFuzz(dst []byte, bits uint8, gw1, gw2 []byte, typ uint8, table, metric uint32, onlink bool, weight uint8, dev string) Route {
	d, _ := netip.AddrFromSlice(dst)
	r := Route{Dst: netip.PrefixFrom(d, int(bits)), Type: RouteType(typ % 5), Table: int(table % 300), Metric: int(metric % 5000)}
	if r.Dst.IsValid() {
		r.Dst = r.Dst.Masked()
	}
	for _, g := range [][]byte{gw1, gw2} {
		a, ok := netip.AddrFromSlice(g)
		if !ok && len(g) > 0 {
			continue
		}
		r.NextHops = append(r.NextHops, NextHop{Gateway: a, Dev: dev, OnLink: onlink, Weight: int(weight)})
	}
	return r
}

// FuzzRouteCodec checks, for every route that validates, that the kernel
// conversion round-trips (toKernel → fromKernel keeps key and meaning) and
// that the batch encoder produces a well-formed netlink message whose
// attributes parse.
func FuzzRouteCodec(f *testing.F) {
	f.Add([]byte{10, 244, 2, 0}, uint8(26), []byte{10, 99, 0, 12}, []byte{}, uint8(0), uint32(0), uint32(0), false, uint8(0), "")
	f.Add([]byte{10, 0, 0, 0}, uint8(8), []byte{10, 99, 0, 12}, []byte{10, 99, 0, 13}, uint8(0), uint32(100), uint32(5), false, uint8(3), "eth0")
	f.Add([]byte{10, 244, 1, 0}, uint8(26), []byte{}, []byte{}, uint8(1), uint32(0), uint32(0), false, uint8(0), "")
	f.Add(netip.MustParseAddr("fd00::").AsSlice(), uint8(64), netip.MustParseAddr("fe80::1").AsSlice(), []byte{}, uint8(0), uint32(0), uint32(0), true, uint8(0), "vxlan.tabby")
	f.Fuzz(func(t *testing.T, dst []byte, bits uint8, gw1, gw2 []byte, typ uint8, table, metric uint32, onlink bool, weight uint8, dev string) {
		r := routeFromFuzz(dst, bits, gw1, gw2, typ, table, metric, onlink, weight, dev)
		if r.Type != RouteUnicast {
			r.NextHops = nil
		}
		_ = r.String()
		if r.Validate() != nil {
			return
		}
		ln := linkNames{byName: map[string]int{}, byIndex: map[int]string{}}
		for _, nh := range r.NextHops {
			if nh.Dev != "" && ln.byName[nh.Dev] == 0 {
				i := len(ln.byName) + 2
				ln.byName[nh.Dev], ln.byIndex[i] = i, nh.Dev
			}
		}
		kr, err := toKernel(r, ProtocolRoutes, ln)
		require.NoError(t, err)
		back, ok := fromKernel(*kr, ln)
		require.True(t, ok)
		require.Equal(t, r.Key(), back.Key())
		require.True(t, satisfies(r, back), "%s != %s", r, back)

		for _, kind := range []RouteOpKind{RouteOpAdd, RouteOpReplace, RouteOpDelete} {
			b, err := appendRouteMsg(nil, RouteOp{Kind: kind, Route: kr}, 7)
			require.NoError(t, err)
			require.Equal(t, len(b), int(binary.NativeEndian.Uint32(b)))
			msgs, err := syscall.ParseNetlinkMessage(b)
			require.NoError(t, err)
			require.Len(t, msgs, 1)
			require.Equal(t, uint32(7), msgs[0].Header.Seq)
			// The library's decoder reads back what its encoder wrote.
			var rm rtnetlink.RouteMessage
			require.NoError(t, rm.UnmarshalBinary(msgs[0].Data))
			require.Equal(t, uint8(r.Dst.Bits()), rm.DstLength)
			require.Equal(t, uint8(ProtocolRoutes), rm.Protocol)
			wantTable := uint32(kr.Table)
			if wantTable == 0 {
				wantTable = unix.RT_TABLE_MAIN
			}
			require.Equal(t, wantTable, rm.Attributes.Table)
			if r.Dst.Bits() > 0 {
				got, _ := netip.AddrFromSlice(rm.Attributes.Dst)
				require.Equal(t, r.Dst.Addr(), got.Unmap())
			}
			if kind != RouteOpDelete {
				require.Len(t, rm.Attributes.Multipath, len(kr.MultiPath))
			}
		}
	})
}

// FuzzNames checks that derived host interface names are always valid and
// that ValidateIfName never panics.
func FuzzNames(f *testing.F) {
	f.Add("k8s-pod-network.abc", "eth0")
	f.Add("", "a/b")
	f.Fuzz(func(t *testing.T, id, name string) {
		_ = ValidateIfName(name)
		require.NoError(t, ValidateIfName(HostIfaceName(DefaultHostPrefix, id)))
		spec := WorkloadSpec{ID: id, Netns: "/x", IfName: name}
		_ = spec.Validate()
	})
}

// routesFromBytes decodes a small set of routes (3 bytes each: prefix
// index, kind, gateway) so the fuzzer explores overlapping keys.
func routesFromBytes(b []byte) []Route {
	var out []Route
	for i := 0; i+2 < len(b) && len(out) < 16; i += 3 {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, b[i] % 8, 0}), 26)
		if b[i]&0x80 != 0 {
			dst = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 7: b[i] % 8}), 64)
		}
		gw := netip.AddrFrom4([4]byte{10, 99, 0, 10 + b[i+2]%4})
		if dst.Addr().Is6() {
			gw = netip.AddrFrom16([16]byte{0xfd, 0, 0x99, 15: 10 + b[i+2]%4})
		}
		var r Route
		switch b[i+1] % 4 {
		case 0:
			r = Blackhole(dst)
		case 1:
			r = RouteVia(dst, gw)
		case 2:
			r = RouteVia(dst, gw, gw.Next())
		default:
			r = Route{Dst: dst, Table: 100, Type: RouteUnreachable}
		}
		out = append(out, r)
	}
	return out
}

// FuzzDiffConverges checks the diff's contract: applying the plan to the
// owned routes yields exactly the desired routes (first of each key), and
// diffing again yields an empty plan.
func FuzzDiffConverges(f *testing.F) {
	f.Add([]byte{1, 0, 0, 2, 1, 1}, []byte{1, 1, 0, 3, 2, 2})
	f.Add([]byte{0x81, 1, 0}, []byte{})
	f.Fuzz(func(t *testing.T, want, have []byte) {
		desired, owned := routesFromBytes(want), routesFromBytes(have)
		state := map[RouteKey]Route{}
		for _, r := range owned {
			state[r.Key()] = r
		}
		owned = owned[:0]
		for _, r := range state {
			owned = append(owned, r)
		}
		p := Diff(desired, owned)
		for _, r := range p.Delete {
			_, ok := state[r.Key()]
			require.True(t, ok, "delete of a route not owned: %s", r)
			delete(state, r.Key())
		}
		for _, r := range p.Add {
			_, ok := state[r.Key()]
			require.False(t, ok, "add over an existing key: %s", r)
			state[r.Key()] = r
		}
		for _, r := range p.Replace {
			_, ok := state[r.Key()]
			require.True(t, ok, "replace of a missing key: %s", r)
			state[r.Key()] = r
		}
		first := map[RouteKey]Route{}
		for _, r := range desired {
			if _, ok := first[r.Key()]; !ok {
				first[r.Key()] = r
			}
		}
		require.Len(t, state, len(first))
		var after []Route
		for k, r := range state {
			require.True(t, satisfies(first[k], r), "%s vs %s", first[k], r)
			after = append(after, r)
		}
		require.True(t, Diff(desired, after).Empty())
	})
}
