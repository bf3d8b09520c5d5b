package netlink

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func TestRouteValidate(t *testing.T) {
	tests := []struct {
		name    string
		r       Route
		wantErr error
	}{
		{"via gateway", Route{Dst: pfx("10.244.2.0/26"), NextHops: []NextHop{{Gateway: addr("10.99.0.12")}}}, nil},
		{"dev only", Route{Dst: pfx("10.244.1.5/32"), NextHops: []NextHop{{Dev: "tby0123"}}}, nil},
		{"blackhole", Route{Dst: pfx("10.244.1.0/26"), Type: RouteBlackhole}, nil},
		{"ecmp", Route{Dst: pfx("10.0.0.0/8"), NextHops: []NextHop{{Gateway: addr("10.99.0.12")}, {Gateway: addr("10.99.0.13"), Weight: 3}}}, nil},
		{"v6 default", Route{Dst: pfx("::/0"), NextHops: []NextHop{{Gateway: addr("fe80::1"), Dev: "eth0"}}}, nil},
		{"no dst", Route{NextHops: []NextHop{{Dev: "eth0"}}}, ErrInvalidPrefix},
		{"host bits", Route{Dst: pfx("10.244.2.1/26"), NextHops: []NextHop{{Dev: "eth0"}}}, ErrInvalidPrefix},
		{"mapped", Route{Dst: pfx("::ffff:10.0.0.0/104"), NextHops: []NextHop{{Dev: "eth0"}}}, ErrInvalidPrefix},
		{"unicast without hop", Route{Dst: pfx("10.0.0.0/8")}, ErrInvalidRoute},
		{"blackhole with hop", Route{Dst: pfx("10.0.0.0/8"), Type: RouteBlackhole, NextHops: []NextHop{{Dev: "eth0"}}}, ErrInvalidRoute},
		{"family mismatch", Route{Dst: pfx("10.0.0.0/8"), NextHops: []NextHop{{Gateway: addr("fd00::1")}}}, ErrInvalidRoute},
		{"long dev", Route{Dst: pfx("10.0.0.0/8"), NextHops: []NextHop{{Dev: "abcdefghijklmnop"}}}, ErrInvalidName},
		{"onlink without dev", Route{Dst: pfx("10.0.0.0/8"), NextHops: []NextHop{{Gateway: addr("10.1.1.1"), OnLink: true}}}, ErrInvalidRoute},
		{"link-local v6 without dev", Route{Dst: pfx("::/0"), NextHops: []NextHop{{Gateway: addr("fe80::1")}}}, ErrInvalidRoute},
		{"local table", Route{Table: 255, Dst: pfx("10.0.0.0/8"), Type: RouteBlackhole}, ErrInvalidRoute},
		{"duplicate hop", Route{Dst: pfx("10.0.0.0/8"), NextHops: []NextHop{{Gateway: addr("10.1.1.1")}, {Gateway: addr("10.1.1.1")}}}, ErrInvalidRoute},
		{"weight single", Route{Dst: pfx("10.0.0.0/8"), NextHops: []NextHop{{Gateway: addr("10.1.1.1"), Weight: 2}}}, ErrInvalidRoute},
		{"src family", Route{Dst: pfx("10.0.0.0/8"), Type: RouteBlackhole, Src: addr("fd00::1")}, ErrInvalidRoute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestValidateIfName(t *testing.T) {
	for name, ok := range map[string]bool{
		"eth0": true, "vxlan.tabby": true, "tby0123456789ab": true, "": false,
		"tby0123456789abc": false, "a/b": false, "a:b": false, "a b": false, ".": false, "..": false,
	} {
		err := ValidateIfName(name)
		assert.Equal(t, ok, err == nil, "%q: %v", name, err)
		if !ok {
			assert.ErrorIs(t, err, ErrInvalidName)
		}
	}
}

func TestRouteStringAndKey(t *testing.T) {
	r := Route{Dst: pfx("10.0.0.0/8"), Table: 100, Metric: 5, NextHops: []NextHop{{Gateway: addr("10.1.1.1")}, {Gateway: addr("10.1.1.2"), Dev: "eth0", Weight: 2}}}
	assert.Equal(t, "10.0.0.0/8 nexthop via 10.1.1.1 nexthop via 10.1.1.2 dev eth0 weight 2 table 100 metric 5", r.String())
	assert.Equal(t, RouteKey{Table: 100, Dst: pfx("10.0.0.0/8"), Metric: 5}, r.Key())
	v6 := Route{Dst: pfx("fd00::/64"), Type: RouteBlackhole}
	assert.Equal(t, RouteKey{Table: TableMain, Dst: pfx("fd00::/64"), Metric: 1024}, v6.Key())
	assert.Equal(t, "blackhole fd00::/64", v6.String())
}

func TestDiff(t *testing.T) {
	a := Route{Dst: pfx("10.244.2.0/26"), NextHops: []NextHop{{Gateway: addr("10.99.0.12")}}}
	b := Route{Dst: pfx("10.244.1.0/26"), Type: RouteBlackhole}
	c := Route{Dst: pfx("10.244.3.0/26"), NextHops: []NextHop{{Gateway: addr("10.99.0.13")}}}
	aKernel := Route{Table: TableMain, Dst: a.Dst, NextHops: []NextHop{{Gateway: addr("10.99.0.12"), Dev: "eth0", Weight: 1}}}
	aMoved := Route{Dst: a.Dst, NextHops: []NextHop{{Gateway: addr("10.99.0.14")}}}
	ecmp := Route{Dst: pfx("10.9.0.0/16"), NextHops: []NextHop{{Gateway: addr("10.99.0.12")}, {Gateway: addr("10.99.0.13")}}}
	ecmpReordered := Route{Dst: ecmp.Dst, NextHops: []NextHop{{Gateway: addr("10.99.0.13"), Dev: "eth0"}, {Gateway: addr("10.99.0.12"), Dev: "eth0"}}}

	tests := []struct {
		name           string
		desired, owned []Route
		add, repl, del int
		wantEmpty      bool
	}{
		{name: "all missing", desired: []Route{a, b}, add: 2},
		{name: "in sync with kernel-filled dev", desired: []Route{a, b}, owned: []Route{aKernel, b}, wantEmpty: true},
		{name: "ecmp order independent", desired: []Route{ecmp}, owned: []Route{ecmpReordered}, wantEmpty: true},
		{name: "changed gateway", desired: []Route{aMoved}, owned: []Route{aKernel}, repl: 1},
		{name: "stale", desired: []Route{a}, owned: []Route{aKernel, c}, del: 1},
		{name: "type change", desired: []Route{{Dst: a.Dst, Type: RouteBlackhole}}, owned: []Route{aKernel}, repl: 1},
		{name: "nothing", wantEmpty: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Diff(tt.desired, tt.owned)
			assert.Equal(t, tt.wantEmpty, p.Empty(), p.String())
			assert.Len(t, p.Add, tt.add)
			assert.Len(t, p.Replace, tt.repl)
			assert.Len(t, p.Delete, tt.del)
		})
	}
}

func TestDiffSortedAndString(t *testing.T) {
	p := Diff([]Route{
		{Dst: pfx("10.3.0.0/16"), Type: RouteBlackhole},
		{Dst: pfx("10.1.0.0/16"), Type: RouteBlackhole},
	}, []Route{{Dst: pfx("10.2.0.0/16"), Type: RouteUnreachable}})
	assert.Equal(t, "+ blackhole 10.1.0.0/16\n+ blackhole 10.3.0.0/16\n- unreachable 10.2.0.0/16\n", p.String())
}

func newFakeNode(t *testing.T) (*FakeRouteHandle, *RouteOwner) {
	t.Helper()
	f := NewFakeRouteHandle()
	f.AddLink("eth0", pfx("10.99.0.11/24"), pfx("fd00:99::11/64"))
	f.AddLink("vxlan.tabby", pfx("10.244.1.0/32"))
	return f, mustRouteOwner(t, f)
}

func mustRouteOwner(t testing.TB, h RouteHandle, opts ...RouteOwnerOption) *RouteOwner {
	t.Helper()
	o, err := NewRouteOwner(h, opts...)
	require.NoError(t, err)
	return o
}

// noBatch hides the fake's RouteBatch, to test the one-call-per-route path.
type noBatch struct{ RouteHandle }

func TestRouteOwnerReconcile(t *testing.T) {
	t.Run("batched", func(t *testing.T) {
		f, o := newFakeNode(t)
		testRouteOwnerReconcile(t, f, o)
	})
	t.Run("one call per route", func(t *testing.T) {
		f, _ := newFakeNode(t)
		testRouteOwnerReconcile(t, f, mustRouteOwner(t, noBatch{f}))
	})
}

func testRouteOwnerReconcile(t *testing.T, f *FakeRouteHandle, o *RouteOwner) {
	ctx := context.Background()
	// A foreign route in the same table, and one with the same key as a desired route.
	foreign := &nl.Route{Dst: prefixToIPNet(pfx("192.168.0.0/16")), Gw: addrToIP(addr("10.99.0.1")), Protocol: unix.RTPROT_BOOT, Table: TableMain}
	require.NoError(t, f.RouteAdd(foreign))

	require.NoError(t, o.Set("blocks", []Route{{Dst: pfx("10.244.1.0/26"), Type: RouteBlackhole}}))
	require.NoError(t, o.Set("bgp", []Route{
		{Dst: pfx("10.244.2.0/26"), NextHops: []NextHop{{Gateway: addr("10.99.0.12")}}},
		{Dst: pfx("10.244.9.0/26"), NextHops: []NextHop{{Gateway: addr("10.99.0.12")}, {Gateway: addr("10.99.0.13")}}},
		{Dst: pfx("fd00:244:2::/122"), NextHops: []NextHop{{Gateway: addr("fd00:99::12")}}},
		{Dst: pfx("10.244.3.0/26"), Table: 100, NextHops: []NextHop{{Gateway: addr("10.244.3.0"), Dev: "vxlan.tabby", OnLink: true}}},
	}))
	res, err := o.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, ReconcileResult{Added: 5}, res)

	// Idempotent: a second reconcile writes nothing.
	res, err = o.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, ReconcileResult{}, res)
	adds, repl, dels := f.Counts()
	assert.Equal(t, []int{6, 0, 0}, []int{adds, repl, dels}) // 5 + the foreign one

	// A route deleted by hand comes back; a changed desired route is replaced; a removed one deleted.
	require.NoError(t, f.RouteDel(&nl.Route{Dst: prefixToIPNet(pfx("10.244.1.0/26")), Table: TableMain}))
	require.NoError(t, o.Upsert("bgp", Route{Dst: pfx("10.244.2.0/26"), NextHops: []NextHop{{Gateway: addr("10.99.0.14")}}}))
	o.Remove("bgp", RouteKey{Table: 100, Dst: pfx("10.244.3.0/26")})
	plan, err := o.Plan(ctx)
	require.NoError(t, err)
	assert.Equal(t, "+ blackhole 10.244.1.0/26\n~ 10.244.2.0/26 via 10.99.0.14\n- 10.244.3.0/26 via 10.244.3.0 dev vxlan.tabby onlink table 100\n", plan.String())
	res, err = o.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, ReconcileResult{Added: 1, Replaced: 1, Deleted: 1}, res)

	// The foreign route is untouched.
	all, err := f.RouteListFiltered(nl.FAMILY_ALL, &nl.Route{Protocol: unix.RTPROT_BOOT}, nl.RT_FILTER_PROTOCOL)
	require.NoError(t, err)
	require.Len(t, all, 1)

	// Forgetting every source deletes every owned route.
	for _, s := range []string{"blocks", "bgp"} {
		require.NoError(t, o.Set(s, nil))
	}
	res, err = o.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, 4, res.Deleted)
	assert.Empty(t, o.Desired())
}

func TestRouteOwnerErrors(t *testing.T) {
	ctx := context.Background()
	f, o := newFakeNode(t)
	require.NoError(t, f.RouteAdd(&nl.Route{Dst: prefixToIPNet(pfx("10.50.0.0/16")), Type: unix.RTN_BLACKHOLE, Protocol: unix.RTPROT_STATIC}))

	// Validation errors change nothing.
	err := o.Set("x", []Route{{Dst: pfx("10.1.0.0/16"), Type: RouteBlackhole}, {Dst: pfx("10.1.2.3/16"), Type: RouteBlackhole}})
	require.ErrorIs(t, err, ErrInvalidPrefix)
	assert.Empty(t, o.Desired())

	require.NoError(t, o.Set("x", []Route{
		{Dst: pfx("10.60.0.0/16"), NextHops: []NextHop{{Gateway: addr("172.16.0.1")}}}, // unreachable gateway
		{Dst: pfx("10.50.0.0/16"), Type: RouteBlackhole},                               // foreign key
		{Dst: pfx("10.70.0.0/16"), NextHops: []NextHop{{Dev: "nosuch0"}}},              // missing link
		{Dst: pfx("10.80.0.0/16"), NextHops: []NextHop{{Gateway: addr("10.99.0.12")}}}, // fine
	}))
	res, err := o.Reconcile(ctx)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNextHopUnreachable)
	assert.ErrorIs(t, err, ErrForeignRoute)
	assert.ErrorIs(t, err, ErrLinkNotFound)
	assert.Equal(t, 1, res.Added, "the good route is still added")

	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	_, err = o.Reconcile(ctxDone)
	require.ErrorIs(t, err, context.Canceled)
}

func TestRouteOwnerSourcePrecedence(t *testing.T) {
	_, o := newFakeNode(t)
	k := pfx("10.244.5.0/26")
	require.NoError(t, o.Set("b-bgp", []Route{{Dst: k, NextHops: []NextHop{{Gateway: addr("10.99.0.12")}}}}))
	require.NoError(t, o.Set("a-blocks", []Route{{Dst: k, Type: RouteBlackhole}}))
	d := o.Desired()
	require.Len(t, d, 1)
	assert.Equal(t, RouteBlackhole, d[0].Type)
	assert.Equal(t, ProtocolRoutes, o.Protocol())
	assert.Equal(t, 42, mustRouteOwner(t, NewFakeRouteHandle(), WithProtocol(42)).Protocol())
}

func TestOptionsRejectBadValues(t *testing.T) {
	tests := []struct {
		name string
		opts []RouteOwnerOption
		want string // "" = valid
	}{
		{"default", nil, ""},
		{"protocol 200", []RouteOwnerOption{WithProtocol(200)}, ""},
		{"protocol 300", []RouteOwnerOption{WithProtocol(300)}, "WithProtocol(300)"},
		{"protocol 0", []RouteOwnerOption{WithProtocol(0)}, "WithProtocol(0)"},
		{"protocol kernel", []RouteOwnerOption{WithProtocol(2)}, "WithProtocol(2)"},
		{"protocol -1", []RouteOwnerOption{WithProtocol(-1)}, "WithProtocol(-1)"},
		{"protocol of workloads", []RouteOwnerOption{WithProtocol(ProtocolWorkload)}, "WithProtocol(117)"},
		{"nil logger is the default", []RouteOwnerOption{WithLogger(nil)}, ""},
		{"first error wins", []RouteOwnerOption{WithProtocol(1), WithProtocol(999)}, "WithProtocol(1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := NewRouteOwner(NewFakeRouteHandle(), tt.opts...)
			if tt.want == "" {
				require.NoError(t, err)
				require.NotNil(t, o)
				return
			}
			require.ErrorIs(t, err, ErrInvalidOption)
			require.ErrorContains(t, err, tt.want)
			require.Nil(t, o)
		})
	}
	_, err := NewRouteOwner(nil)
	require.ErrorIs(t, err, ErrInvalidSpec)

	for _, tt := range []struct {
		prefix string
		ok     bool
	}{{"tby", true}, {"cali", true}, {"1234567", true}, {"", false}, {"12345678", false}, {"a/b", false}, {"a b", false}} {
		o, err := workloadsOptions([]WorkloadsOption{WithHostPrefix(tt.prefix), WithLogger(nil)})
		fw, fakeErr := NewFakeWorkloads(WithHostPrefix(tt.prefix))
		if tt.ok {
			require.NoError(t, err, tt.prefix)
			require.Equal(t, tt.prefix, o.hostPrefix)
			require.NoError(t, fakeErr, tt.prefix)
			require.NotNil(t, fw)
			continue
		}
		require.ErrorIs(t, err, ErrInvalidOption, tt.prefix)
		require.ErrorContains(t, err, "WithHostPrefix")
		require.ErrorIs(t, fakeErr, ErrInvalidOption, tt.prefix)
		// NewWorkloads checks its options before it opens any namespace.
		w, err := NewWorkloads("/nonexistent/netns", WithHostPrefix(tt.prefix))
		require.ErrorIs(t, err, ErrInvalidOption, tt.prefix)
		require.Nil(t, w)
	}
	_, err = vxlanOptions([]VXLANOption{WithLogger(nil)})
	require.NoError(t, err)
}

func TestFakeDelLinkRemovesRoutes(t *testing.T) {
	ctx := context.Background()
	f, o := newFakeNode(t)
	require.NoError(t, o.Set("vx", []Route{{Dst: pfx("10.244.3.0/26"), NextHops: []NextHop{{Gateway: addr("10.244.3.0"), Dev: "vxlan.tabby", OnLink: true}}}}))
	_, err := o.Reconcile(ctx)
	require.NoError(t, err)
	f.DelLink("vxlan.tabby")
	p, err := o.Plan(ctx)
	require.NoError(t, err)
	assert.Len(t, p.Add, 1)
}

func TestKernelConversionRoundTrip(t *testing.T) {
	ln := linkNames{byName: map[string]int{"eth0": 2, "vxlan.tabby": 3}, byIndex: map[int]string{2: "eth0", 3: "vxlan.tabby"}}
	for _, r := range []Route{
		{Dst: pfx("10.244.2.0/26"), NextHops: []NextHop{{Gateway: addr("10.99.0.12"), Dev: "eth0"}}},
		{Dst: pfx("10.244.1.0/26"), Type: RouteBlackhole, Metric: 7},
		{Dst: pfx("10.0.0.0/8"), Table: 100, NextHops: []NextHop{{Gateway: addr("10.99.0.12"), Dev: "eth0", Weight: 2}, {Gateway: addr("10.99.0.13"), Dev: "eth0"}}},
		{Dst: pfx("10.244.3.0/26"), NextHops: []NextHop{{Gateway: addr("10.244.3.0"), Dev: "vxlan.tabby", OnLink: true}}},
		{Dst: pfx("fd00::/64"), Type: RouteProhibit, Src: addr("fd00::1")},
		{Dst: pfx("0.0.0.0/0"), Type: RouteUnreachable},
	} {
		kr, err := toKernel(r, ProtocolRoutes, ln)
		require.NoError(t, err)
		back, ok := fromKernel(*kr, ln)
		require.True(t, ok)
		assert.True(t, satisfies(r, back), "%s -> %s", r, back)
		assert.Equal(t, r.Key(), back.Key())
	}
	_, ok := fromKernel(nl.Route{Type: unix.RTN_LOCAL}, ln)
	assert.False(t, ok)
}

// The tracker's fast equality agrees with satisfies.
func TestRouteSatisfiedMatchesSatisfies(t *testing.T) {
	gw, gw2 := addr("10.99.0.12"), addr("10.99.0.13")
	dst := pfx("10.244.2.0/26")
	routes := []Route{
		Blackhole(dst),
		{Dst: dst, Type: RouteUnreachable},
		RouteVia(dst, gw),
		RouteVia(dst, gw2),
		{Dst: dst, NextHops: []NextHop{{Gateway: gw, Dev: "eth0"}}},
		{Dst: dst, NextHops: []NextHop{{Gateway: gw, Dev: "eth1"}}},
		{Dst: dst, NextHops: []NextHop{{Gateway: gw, Weight: 1}}},
		{Dst: dst, NextHops: []NextHop{{Gateway: gw, Weight: 2}}},
		{Dst: dst, NextHops: []NextHop{{Gateway: gw, Dev: "vxlan.tabby", OnLink: true}}},
		{Dst: dst, Src: addr("10.244.1.0"), NextHops: []NextHop{{Gateway: gw}}},
		RouteVia(dst, gw, gw2),
		RouteVia(dst, gw2, gw),
	}
	for _, a := range routes {
		for _, b := range routes {
			assert.Equal(t, satisfies(a, b), routeSatisfied(a, b), "%s vs %s", a, b)
		}
	}
}

// The owner keeps the union of its sources incrementally; after any
// sequence of Set, Upsert and Remove it equals the union recomputed from
// scratch (the first source by name wins a key).
func TestRouteOwnerUnionIncremental(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	o := mustRouteOwner(t, NewFakeRouteHandle())
	shadow := map[string]map[RouteKey]Route{}
	sources := []string{"a-blocks", "bgp", "vxlan"}
	route := func() Route {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(r.IntN(8)), 0}), 26)
		if r.IntN(2) == 0 {
			return Blackhole(dst)
		}
		return RouteVia(dst, netip.AddrFrom4([4]byte{10, 99, 0, byte(10 + r.IntN(3))}))
	}
	for range 2000 {
		src := sources[r.IntN(len(sources))]
		switch r.IntN(3) {
		case 0:
			var rs []Route
			for range r.IntN(4) {
				rs = append(rs, route())
			}
			require.NoError(t, o.Set(src, rs))
			shadow[src] = map[RouteKey]Route{}
			for _, x := range rs {
				shadow[src][x.Key()] = x.normalized()
			}
		case 1:
			x := route()
			require.NoError(t, o.Upsert(src, x))
			if shadow[src] == nil {
				shadow[src] = map[RouteKey]Route{}
			}
			shadow[src][x.Key()] = x.normalized()
		case 2:
			k := route().Key()
			o.Remove(src, k)
			delete(shadow[src], k)
		}
		var want []Route
		seen := map[RouteKey]bool{}
		for _, n := range sources {
			for k, x := range shadow[n] {
				if !seen[k] {
					seen[k] = true
					want = append(want, x)
				}
			}
		}
		sortByKey(want)
		require.Equal(t, want, o.Desired())
	}
}
