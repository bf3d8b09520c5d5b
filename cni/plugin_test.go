package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/ipam"
)

// env is a plugin on the fakes: FakeWorkloads and ipam on a memory store.
type env struct {
	t  *testing.T
	wm *netlink.FakeWorkloads
	m  IPAM
	p  *Plugin
}

func newEnv(t *testing.T, opts ...Option) *env {
	t.Helper()
	m, err := NewMemoryIPAM(t.Context())
	require.NoError(t, err)
	wm, err := netlink.NewFakeWorkloads()
	require.NoError(t, err)
	e := &env{t: t, wm: wm, m: m}
	e.p = New(append([]Option{WithWorkloads(e.wm), WithIPAM(m), WithHostname(func() (string, error) { return "node1", nil })}, opts...)...)
	return e
}

// conf is a tabby network configuration; extra keys are merged into the
// ipam section (under "ipam") or the top level.
func conf(t *testing.T, version string, top, ipamExtra map[string]any) []byte {
	t.Helper()
	ip := map[string]any{"type": "tabby-ipam", "pools": []any{map[string]any{"name": "p1", "cidr": "10.22.0.0/24"}}}
	for k, v := range ipamExtra {
		ip[k] = v
	}
	c := map[string]any{"cniVersion": version, "name": "net1", "type": "tabby", "ipam": ip}
	for k, v := range top {
		c[k] = v
	}
	b, err := json.Marshal(c)
	require.NoError(t, err)
	return b
}

func args(id, netns string, stdin []byte) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: id, Netns: netns, IfName: "eth0", StdinData: stdin,
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + id}
}

func code(t *testing.T, err error) uint {
	t.Helper()
	var te *types.Error
	require.ErrorAs(t, err, &te, "want a *types.Error, got %v", err)
	return te.Code
}

func (e *env) add(id string, stdin []byte) *current.Result {
	e.t.Helper()
	e.wm.AddNetns("/run/netns/" + id)
	r, err := e.p.Add(e.t.Context(), args(id, "/run/netns/"+id, stdin))
	require.NoError(e.t, err)
	cr, err := current.NewResultFromResult(r)
	require.NoError(e.t, err)
	return cr
}

func TestAddDelLifecycle(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", map[string]any{"dns": map[string]any{"nameservers": []string{"10.96.0.10"}}}, nil)
	r := e.add("c1", c)
	require.Len(t, r.Interfaces, 2)
	assert.Equal(t, e.wm.HostIfaceName("net1.c1"), r.Interfaces[0].Name)
	assert.Empty(t, r.Interfaces[0].Sandbox)
	assert.Equal(t, "eth0", r.Interfaces[1].Name)
	assert.Equal(t, "/run/netns/c1", r.Interfaces[1].Sandbox)
	require.Len(t, r.IPs, 1)
	assert.Equal(t, 1, *r.IPs[0].Interface)
	assert.Equal(t, "169.254.1.1", r.IPs[0].Gateway.String())
	ones, _ := r.IPs[0].Address.Mask.Size()
	assert.Equal(t, 32, ones)
	assert.True(t, netip.MustParsePrefix("10.22.0.0/24").Contains(netip.MustParseAddr(r.IPs[0].Address.IP.String())))
	require.Len(t, r.Routes, 1)
	assert.Equal(t, "0.0.0.0/0", r.Routes[0].Dst.String())
	assert.Equal(t, []string{"10.96.0.10"}, r.DNS.Nameservers)

	// A retried ADD returns the same result and allocates nothing new.
	r2, err := e.p.Add(t.Context(), args("c1", "/run/netns/c1", c))
	require.NoError(t, err)
	assert.Equal(t, r, r2)
	have, err := e.m.IPsByHandle(t.Context(), "net1.c1")
	require.NoError(t, err)
	assert.Len(t, have, 1)

	// A second pod gets another address.
	r3 := e.add("c2", c)
	assert.NotEqual(t, r.IPs[0].Address.String(), r3.IPs[0].Address.String())

	// DEL twice, DEL of a container never added, DEL after the netns went.
	require.NoError(t, e.p.Del(t.Context(), args("c1", "/run/netns/c1", c)))
	assert.Equal(t, []string{"net1.c1"}, e.wm.DetachedWorkloads(), "DEL detaches the pair")
	require.NoError(t, e.p.Del(t.Context(), args("c1", "/run/netns/c1", c)))
	require.NoError(t, e.p.Del(t.Context(), args("never", "", c)))
	e.wm.DeleteNetns("/run/netns/c1")
	assert.Empty(t, e.wm.DetachedWorkloads(), "the pair goes with the netns")
	e.wm.DeleteNetns("/run/netns/c2")
	require.NoError(t, e.p.Del(t.Context(), args("c2", "/run/netns/c2", c)))
	ids, err := e.wm.ListWorkloads(t.Context())
	require.NoError(t, err)
	assert.Empty(t, ids)
	for _, h := range []string{"net1.c1", "net1.c2"} {
		have, err := e.m.IPsByHandle(t.Context(), h)
		require.NoError(t, err)
		assert.Empty(t, have, h)
	}
}

func TestAddResultVersions(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			e := newEnv(t)
			e.wm.AddNetns("/run/netns/c1")
			r, err := e.p.Add(t.Context(), args("c1", "/run/netns/c1", conf(t, v, nil, nil)))
			require.NoError(t, err)
			assert.Equal(t, v, r.Version())
		})
	}
}

func TestAddErrors(t *testing.T) {
	tests := []struct {
		name  string
		stdin func(t *testing.T) []byte
		netns string
		code  uint
	}{
		{"not JSON", func(*testing.T) []byte { return []byte("{") }, "/run/netns/c", types.ErrDecodingFailure},
		{"wrong JSON type", func(*testing.T) []byte { return []byte(`{"name": 3}`) }, "/run/netns/c", types.ErrDecodingFailure},
		{"no name", func(t *testing.T) []byte { return conf(t, "1.1.0", map[string]any{"name": ""}, nil) }, "/run/netns/c", types.ErrInvalidNetworkConfig},
		{"unsupported version", func(t *testing.T) []byte { return conf(t, "0.2.0", nil, nil) }, "/run/netns/c", types.ErrIncompatibleCNIVersion},
		{"bad mtu", func(t *testing.T) []byte { return conf(t, "1.1.0", map[string]any{"mtu": 10}, nil) }, "/run/netns/c", types.ErrInvalidNetworkConfig},
		{"unknown pool", func(t *testing.T) []byte {
			return conf(t, "1.1.0", nil, map[string]any{"ipv4_pools": []string{"nope"}})
		}, "/run/netns/c", types.ErrInvalidNetworkConfig},
		{"missing netns", func(t *testing.T) []byte { return conf(t, "1.1.0", nil, nil) }, "/run/netns/gone", types.ErrUnknownContainer},
		{"bad CNI_ARGS IP", func(t *testing.T) []byte { return conf(t, "1.1.0", nil, nil) }, "/run/netns/c", types.ErrInvalidEnvironmentVariables},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.wm.AddNetns("/run/netns/c")
			a := args("c", tc.netns, tc.stdin(t))
			if tc.name == "bad CNI_ARGS IP" {
				a.Args = "IP=notanip"
			}
			_, err := e.p.Add(t.Context(), a)
			assert.Equal(t, tc.code, code(t, err), "%v", err)
			assertNothingLeft(t, e, "net1.c")
		})
	}
}

func assertNothingLeft(t *testing.T, e *env, handle string) {
	t.Helper()
	ids, err := e.wm.ListWorkloads(t.Context())
	require.NoError(t, err)
	assert.Empty(t, ids, "workloads left")
	have, err := e.m.IPsByHandle(t.Context(), handle)
	require.NoError(t, err)
	assert.Empty(t, have, "addresses left")
}

func TestAddExhaustedPool(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", nil, map[string]any{"pools": []any{map[string]any{"name": "tiny", "cidr": "10.30.0.0/30", "blockSize": 30}}})
	for i := range 4 {
		e.add(fmt.Sprint("c", i), c)
	}
	e.wm.AddNetns("/run/netns/c9")
	_, err := e.p.Add(t.Context(), args("c9", "/run/netns/c9", c))
	assert.Equal(t, CodePoolExhausted, code(t, err), "%v", err)
	ids, _ := e.wm.ListWorkloads(t.Context())
	assert.Len(t, ids, 4)
}

// No pool at all in the datastore: code 100, and the error says how to
// declare one.
func TestAddNoPools(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", nil, map[string]any{"pools": nil})
	e.wm.AddNetns("/run/netns/c0")
	_, err := e.p.Add(t.Context(), args("c0", "/run/netns/c0", c))
	assert.Equal(t, CodePoolExhausted, code(t, err), "%v", err)
	assert.ErrorContains(t, err, "declare one under ipam.pools")
}

// failingWorkloads fails the setup after the IPAM allocation, to prove
// ADD rolls the allocation back: SetupWorkloadFunc makes the workload, as
// the fake does, then fails as a pair that never runs does.
type failingWorkloads struct {
	*netlink.FakeWorkloads
}

func (failingWorkloads) SetupWorkload(context.Context, netlink.WorkloadSpec) (netlink.WorkloadResult, error) {
	return netlink.WorkloadResult{}, netlink.ErrNotReady
}

func (f failingWorkloads) SetupWorkloadFunc(ctx context.Context, spec netlink.WorkloadSpec, addrs func(context.Context) ([]netip.Addr, error)) (netlink.WorkloadResult, error) {
	if _, err := f.FakeWorkloads.SetupWorkloadFunc(ctx, spec, addrs); err != nil {
		return netlink.WorkloadResult{}, err
	}
	return netlink.WorkloadResult{}, netlink.ErrNotReady
}

// pairFirstIPAM fails (or completes) Assign only once the workload's veth
// pair exists, proving ADD makes the pair while IPAM assigns (an ADD that
// made it after IPAM would never see it here).
type pairFirstIPAM struct {
	IPAM
	t    *testing.T
	wm   *netlink.FakeWorkloads
	fail error
}

func (m pairFirstIPAM) Assign(ctx context.Context, req AssignRequest) ([]netip.Addr, error) {
	assert.Eventually(m.t, func() bool {
		ids, err := m.wm.ListWorkloads(ctx)
		return err == nil && slices.Contains(ids, req.Handle)
	}, 5*time.Second, time.Millisecond, "the pair exists while IPAM assigns")
	if m.fail != nil {
		return nil, m.fail
	}
	return m.IPAM.Assign(ctx, req)
}

func TestAddMakesPairWhileIPAMAssigns(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", nil, nil)
	hostname := WithHostname(func() (string, error) { return "node1", nil })

	// IPAM fails after the pair exists: the pair goes, IPAM's code comes back.
	e.p = New(WithWorkloads(e.wm), WithIPAM(pairFirstIPAM{e.m, t, e.wm, ipam.ErrPoolExhausted}), hostname)
	e.wm.AddNetns("/run/netns/c1")
	_, err := e.p.Add(t.Context(), args("c1", "/run/netns/c1", c))
	assert.Equal(t, CodePoolExhausted, code(t, err), "%v", err)
	assertNothingLeft(t, e, "net1.c1")
	assert.Equal(t, []string{"lo"}, e.wm.PodLinks("/run/netns/c1"))

	// IPAM succeeds: the pair gets the addresses; a retried ADD returns
	// the same addresses and interface.
	e.p = New(WithWorkloads(e.wm), WithIPAM(pairFirstIPAM{e.m, t, e.wm, nil}), hostname)
	r1 := e.add("c1", c)
	e.p = New(WithWorkloads(e.wm), WithIPAM(e.m), hostname)
	r2 := e.add("c1", c)
	assert.Equal(t, r1.IPs, r2.IPs)
	assert.Equal(t, r1.Interfaces, r2.Interfaces)
	have, err := e.m.IPsByHandle(t.Context(), "net1.c1")
	require.NoError(t, err)
	assert.Len(t, have, 1, "one allocation under the handle")
	_, err = e.wm.CheckWorkload(t.Context(), netlink.WorkloadSpec{ID: "net1.c1", Netns: "/run/netns/c1", Addresses: have})
	assert.NoError(t, err)
}

func TestAddRollsBack(t *testing.T) {
	e := newEnv(t)
	e.p = New(WithWorkloads(failingWorkloads{e.wm}), WithIPAM(e.m), WithHostname(func() (string, error) { return "n", nil }))
	e.wm.AddNetns("/run/netns/c")
	_, err := e.p.Add(t.Context(), args("c", "/run/netns/c", conf(t, "1.1.0", nil, nil)))
	assert.Equal(t, types.ErrInternal, code(t, err))
	assertNothingLeft(t, e, "net1.c")
}

// goneMidAdd loses the pod's namespace during setup (the pair was made)
// and cannot remove the pair again.
type goneMidAdd struct {
	*netlink.FakeWorkloads
}

func (g goneMidAdd) SetupWorkloadFunc(ctx context.Context, spec netlink.WorkloadSpec, addrs func(context.Context) ([]netip.Addr, error)) (netlink.WorkloadResult, error) {
	if _, err := g.FakeWorkloads.SetupWorkloadFunc(ctx, spec, addrs); err != nil {
		return netlink.WorkloadResult{}, err
	}
	return netlink.WorkloadResult{}, fmt.Errorf("%s: %w", spec.Netns, netlink.ErrNetnsNotFound)
}

func (goneMidAdd) TeardownWorkload(context.Context, string) error {
	return errors.New("host link busy")
}

// TestAddRollbackIncompleteNotCode3: an ADD whose namespace went away is
// code 3 (no DEL needed) only when its rollback left nothing; with the
// pair left behind it is 999, so the runtime's DEL cleans up.
func TestAddRollbackIncompleteNotCode3(t *testing.T) {
	e := newEnv(t)
	e.p = New(WithWorkloads(goneMidAdd{e.wm}), WithIPAM(e.m), WithHostname(func() (string, error) { return "n", nil }))
	e.wm.AddNetns("/run/netns/c")
	_, err := e.p.Add(t.Context(), args("c", "/run/netns/c", conf(t, "1.1.0", nil, nil)))
	require.Error(t, err)
	assert.ErrorContains(t, err, "network namespace not found")
	assert.ErrorContains(t, err, ErrRollbackIncomplete.Error()+": handle net1.c: host link busy")
	assert.Equal(t, types.ErrInternal, code(t, err))
	have, err := e.m.IPsByHandle(t.Context(), "net1.c")
	require.NoError(t, err)
	assert.Empty(t, have, "the address was released all the same")

	// The same failure with a clean rollback stays code 3.
	e.p = New(WithWorkloads(failingNetns{e.wm}), WithIPAM(e.m), WithHostname(func() (string, error) { return "n", nil }))
	_, err = e.p.Add(t.Context(), args("c", "/run/netns/c", conf(t, "1.1.0", nil, nil)))
	assert.Equal(t, types.ErrUnknownContainer, code(t, err), "%v", err)
	assertNothingLeft(t, e, "net1.c")
}

// failingNetns is goneMidAdd with a teardown that works.
type failingNetns struct {
	*netlink.FakeWorkloads
}

func (f failingNetns) SetupWorkloadFunc(ctx context.Context, spec netlink.WorkloadSpec, addrs func(context.Context) ([]netip.Addr, error)) (netlink.WorkloadResult, error) {
	return goneMidAdd(f).SetupWorkloadFunc(ctx, spec, addrs)
}

func TestAnnotations(t *testing.T) {
	static := map[string]any{
		"pods": map[string]any{
			"default/fixed": map[string]string{ipam.AnnotationIPAddrs: `["10.23.0.77"]`},
			"default/inuse": map[string]string{ipam.AnnotationIPAddrs: `["10.23.0.77"]`},
			"default/bad":   map[string]string{ipam.AnnotationIPAddrs: `not json`},
		},
		"namespaces": map[string]any{"default": map[string]string{ipam.AnnotationIPv4Pools: `["p2"]`}},
	}
	pools := map[string]any{"pools": []any{
		map[string]any{"name": "p1", "cidr": "10.22.0.0/24"},
		map[string]any{"name": "p2", "cidr": "10.23.0.0/24"}}}
	c := conf(t, "1.1.0", map[string]any{"annotations": static}, pools)
	e := newEnv(t)
	r := e.add("fixed", c)
	assert.Equal(t, "10.23.0.77/32", r.IPs[0].Address.String())
	r = e.add("other", c) // namespace annotation picks p2
	assert.Contains(t, r.IPs[0].Address.String(), "10.23.0.")

	e.wm.AddNetns("/run/netns/inuse")
	_, err := e.p.Add(t.Context(), args("inuse", "/run/netns/inuse", c))
	assert.Equal(t, CodeAddressInUse, code(t, err), "%v", err)
	e.wm.AddNetns("/run/netns/bad")
	_, err = e.p.Add(t.Context(), args("bad", "/run/netns/bad", c))
	assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, err), "%v", err)
}

// ipAddrsNoIpam, as Calico: off unless feature_control enables it; then
// the annotation's addresses are used without IPAM (even outside every
// pool), CHECK accepts them, DEL releases nothing and leaves nothing.
func TestIPAddrsNoIPAM(t *testing.T) {
	static := map[string]any{"pods": map[string]any{
		"default/given": map[string]string{ipam.AnnotationIPAddrsNoIPAM: `["192.0.2.10", "2001:db8::10"]`},
	}}
	tests := []struct {
		name    string
		feature bool
		wantErr string
	}{
		{name: "feature off", wantErr: "requested feature is not enabled: ip_addrs_no_ipam"},
		{name: "feature on", feature: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			top := map[string]any{"annotations": static}
			if tc.feature {
				top["feature_control"] = map[string]any{"ip_addrs_no_ipam": true}
			}
			c := conf(t, "1.1.0", top, nil)
			e := newEnv(t)
			e.wm.AddNetns("/run/netns/given")
			r, err := e.p.Add(t.Context(), args("given", "/run/netns/given", c))
			if tc.wantErr != "" {
				assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, err), "%v", err)
				assert.ErrorContains(t, err, tc.wantErr)
				assertNothingLeft(t, e, "net1.given")
				return
			}
			require.NoError(t, err)
			cr, err := current.NewResultFromResult(r)
			require.NoError(t, err)
			require.Len(t, cr.IPs, 2)
			assert.Equal(t, "192.0.2.10/32", cr.IPs[0].Address.String())
			assert.Equal(t, "2001:db8::10/128", cr.IPs[1].Address.String())
			held, err := e.m.IPsByHandle(t.Context(), Handle("net1", "given"))
			require.NoError(t, err)
			assert.Empty(t, held, "nothing allocated in IPAM")

			again := e.add("given", c) // a retried ADD: the same addresses
			assert.Equal(t, cr.IPs[0].Address.String(), again.IPs[0].Address.String())

			prev := withPrevResult(t, c, cr)
			require.NoError(t, e.p.Check(t.Context(), args("given", "/run/netns/given", prev)))
			require.NoError(t, e.p.Del(t.Context(), args("given", "/run/netns/given", c)))
			assertNothingLeft(t, e, "net1.given")
		})
	}
}

// withPrevResult returns the configuration c with r as its prevResult.
func withPrevResult(t *testing.T, c []byte, r *current.Result) []byte {
	t.Helper()
	raw, err := json.Marshal(r)
	require.NoError(t, err)
	return withRawPrevResult(t, c, raw)
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", nil, nil)
	r := e.add("c1", c)
	withPrev := func(r *current.Result) []byte { return withPrevResult(t, c, r) }
	require.NoError(t, e.p.Check(t.Context(), args("c1", "/run/netns/c1", withPrev(r))))

	bad := clone(t, r)
	bad.IPs[0].Address.IP = []byte{10, 22, 0, 200}
	assert.Error(t, e.p.Check(t.Context(), args("c1", "/run/netns/c1", withPrev(bad))))
	bad = clone(t, r)
	bad.Interfaces[1].Mac = "02:00:00:00:00:01"
	assert.Error(t, e.p.Check(t.Context(), args("c1", "/run/netns/c1", withPrev(bad))))
	bad = clone(t, r)
	bad.Routes = nil
	assert.Error(t, e.p.Check(t.Context(), args("c1", "/run/netns/c1", withPrev(bad))))

	// The IPAM record is checked too.
	require.NoError(t, e.m.ReleaseByHandle(t.Context(), "net1.c1"))
	assert.ErrorContains(t, e.p.Check(t.Context(), args("c1", "/run/netns/c1", withPrev(r))), "IPAM handle")
	// No prevResult is a config error.
	assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, e.p.Check(t.Context(), args("c1", "/run/netns/c1", c))))
	// The pod gone.
	e.wm.DeleteNetns("/run/netns/c1")
	assert.Error(t, e.p.Check(t.Context(), args("c1", "/run/netns/c1", withPrev(r))))
}

func clone(t *testing.T, r *current.Result) *current.Result {
	t.Helper()
	raw, err := json.Marshal(r)
	require.NoError(t, err)
	out, err := current.NewResult(raw)
	require.NoError(t, err)
	return out.(*current.Result)
}

func TestGC(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", nil, map[string]any{"gc_grace_seconds": -1})
	for _, id := range []string{"a", "b", "c", "d"} {
		e.add(id, c)
	}
	require.NoError(t, e.p.Del(t.Context(), args("d", "/run/netns/d", c)))
	require.Equal(t, []string{"net1.d"}, e.wm.DetachedWorkloads())
	require.NoError(t, e.p.GC(t.Context(), gcArgs(t, c, "b")))
	ids, err := e.wm.ListWorkloads(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []string{"net1.b"}, ids)
	assert.Empty(t, e.wm.DetachedWorkloads(), "GC deletes the pairs DEL detached")
	for h, n := range map[string]int{"net1.a": 0, "net1.b": 1, "net1.c": 0} {
		have, err := e.m.IPsByHandle(t.Context(), h)
		require.NoError(t, err)
		assert.Len(t, have, n, h)
	}
}

// A second ADD of the same container and network under another
// CNI_IFNAME is refused; the first interface stays.
func TestAddSecondIfNameRefused(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", nil, nil)
	r := e.add("c1", c)
	a := args("c1", "/run/netns/c1", c)
	a.IfName = "eth1"
	_, err := e.p.Add(t.Context(), a)
	require.ErrorIs(t, AsCNIError(err), err)
	assert.Contains(t, err.Error(), "already has eth0")
	assert.Equal(t, []string{"eth0", "lo"}, e.wm.PodLinks("/run/netns/c1"))
	have, err := e.m.IPsByHandle(t.Context(), "net1.c1")
	require.NoError(t, err)
	assert.Equal(t, r.IPs[0].Address.IP.String(), have[0].String(), "the first attachment's address is kept")
}

// gcArgs is a GC call of stdin's network with these valid attachments.
func gcArgs(t *testing.T, stdin []byte, valid ...string) *skel.CmdArgs {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(stdin, &m))
	atts := []any{}
	for _, id := range valid {
		atts = append(atts, map[string]any{"containerID": id, "ifname": "eth0"})
	}
	m["cni.dev/valid-attachments"] = atts
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return &skel.CmdArgs{StdinData: b}
}

// GC keeps a workload younger than the grace period, interface and
// address alike (an ADD that raced the runtime's list).
func TestGCKeepsYoungWorkloads(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", nil, nil) // default grace: a minute
	e.add("a", c)
	e.add("b", c)
	require.NoError(t, e.p.GC(t.Context(), gcArgs(t, c, "a")))
	ids, err := e.wm.ListWorkloads(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []string{"net1.a", "net1.b"}, ids, "b is young: its interface stays")
	have, err := e.m.IPsByHandle(t.Context(), "net1.b")
	require.NoError(t, err)
	assert.Len(t, have, 1)
}

// GC of network "net" leaves network "net.v2" alone, though its handles
// start with "net.".
func TestGCNetworkNamesWithDots(t *testing.T) {
	e := newEnv(t)
	grace := map[string]any{"gc_grace_seconds": -1}
	net := conf(t, "1.1.0", nil, grace)
	v2 := conf(t, "1.1.0", map[string]any{"name": "net1.v2"}, grace)
	e.add("a", net)
	e.add("b", v2)
	require.NoError(t, e.p.GC(t.Context(), gcArgs(t, net)))
	ids, err := e.wm.ListWorkloads(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []string{"net1.v2.b"}, ids)
	have, err := e.m.IPsByHandle(t.Context(), "net1.v2.b")
	require.NoError(t, err)
	assert.Len(t, have, 1, "net1.v2's allocation stays")
	require.NoError(t, e.p.GC(t.Context(), gcArgs(t, v2)))
	ids, err = e.wm.ListWorkloads(t.Context())
	require.NoError(t, err)
	assert.Empty(t, ids)
}

func TestOwnedBy(t *testing.T) {
	for _, tc := range []struct {
		network, handle string
		want            bool
	}{
		{"net", "net.abc123", true},
		{"net", "net.v2.abc123", false}, // net + "v2.abc123", or net.v2 + "abc123"
		{"net.v2", "net.v2.abc123", true},
		{"net", "net.", false},
		{"net", "network.abc", false},
		{"net", "other.abc", false},
	} {
		assert.Equal(t, tc.want, ownedBy(tc.network, tc.handle), "%s in %s", tc.handle, tc.network)
	}
}

// stuckIPAM never answers: every call waits for its context.
type stuckIPAM struct{ IPAM }

func (stuckIPAM) ReleaseByHandle(ctx context.Context, _ string) error {
	<-ctx.Done()
	return ctx.Err()
}

func (stuckIPAM) Ping(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestDelBoundedAndStatus(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", map[string]any{"timeout_seconds": 1}, map[string]any{"timeout_seconds": 1})
	require.NoError(t, e.p.Status(t.Context(), &skel.CmdArgs{StdinData: c}))

	p := New(WithWorkloads(e.wm), WithIPAM(stuckIPAM{e.m}))
	start := time.Now()
	err := p.Del(t.Context(), args("c1", "", c))
	assert.Equal(t, types.ErrTryAgainLater, code(t, err), "%v", err)
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.Equal(t, types.ErrPluginNotAvailable, code(t, p.Status(t.Context(), &skel.CmdArgs{StdinData: c})))

	// A datastore that cannot be opened.
	bad := New(WithWorkloads(e.wm), func(p *Plugin) {
		p.openIPAM = func(*IPAMConf, time.Duration) (IPAM, error) { return nil, fmt.Errorf("%w: down", ErrDatastore) }
		p.ipamGiven = true
	})
	assert.Equal(t, types.ErrPluginNotAvailable, code(t, bad.Status(t.Context(), &skel.CmdArgs{StdinData: c})))
	assert.Equal(t, types.ErrTryAgainLater, code(t, bad.Del(t.Context(), args("c1", "", c))))
}

func TestConcurrentAdds(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", nil, nil)
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for i := range 20 {
		id := fmt.Sprint("c", i)
		e.wm.AddNetns("/run/netns/" + id)
		wg.Go(func() {
			r, err := e.p.Add(t.Context(), args(id, "/run/netns/"+id, c))
			if !assert.NoError(t, err) {
				return
			}
			cr, _ := current.NewResultFromResult(r)
			mu.Lock()
			defer mu.Unlock()
			a := cr.IPs[0].Address.String()
			assert.Empty(t, seen[a], "%s given twice", a)
			seen[a] = id
		})
	}
	wg.Wait()
	assert.Len(t, seen, 20)
}

func TestCodeTable(t *testing.T) {
	tests := []struct {
		err  error
		code uint
	}{
		{ErrInvalidConfig, 7},
		{ErrOwnNetns, 8},
		{ipam.ErrUnknownPool, 7},
		{ErrInvalidArgs, 4},
		{netlink.ErrNetnsNotFound, 3},
		{errors.Join(netlink.ErrNetnsNotFound, ErrRollbackIncomplete), 999},
		{&ipam.AllocationError{Reason: ipam.ErrPoolExhausted}, CodePoolExhausted},
		{ipam.ErrAddressInUse, CodeAddressInUse},
		{fmt.Errorf("x: %w", ErrDatastore), 11},
		{fmt.Errorf("x: %w", ErrAnnotationsUnavailable), 11},
		{context.DeadlineExceeded, 11},
		{fmt.Errorf("assign: %w", context.Canceled), 11},
		{types.NewError(42, "m", ""), 42},
		{errors.New("other"), 999},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.code, Code(tc.err), "%v", tc.err)
	}
	assert.Nil(t, AsCNIError(nil))
}

func TestDualStack(t *testing.T) {
	e := newEnv(t)
	tr := true
	c := conf(t, "1.1.0", nil, map[string]any{"assign_ipv6": tr, "pools": []any{
		map[string]any{"name": "v4", "cidr": "10.22.0.0/24"},
		map[string]any{"name": "v6", "cidr": "fd00:22::/120"}}})
	r := e.add("c1", c)
	require.Len(t, r.IPs, 2)
	assert.Equal(t, "169.254.1.1", r.IPs[0].Gateway.String())
	assert.Contains(t, r.IPs[1].Address.String(), "fd00:22::")
	assert.Equal(t, "fe80::ecee:eeff:feee:eeee", r.IPs[1].Gateway.String())
	require.Len(t, r.Routes, 2)
	assert.Equal(t, "::/0", r.Routes[1].Dst.String())
	require.NoError(t, e.p.Del(t.Context(), args("c1", "/run/netns/c1", c)))
	assertNothingLeft(t, e, "net1.c1")
}

func TestCNIArgsIP(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", nil, nil)
	e.wm.AddNetns("/run/netns/c1")
	a := args("c1", "/run/netns/c1", c)
	a.Args += ";IP=10.22.0.50"
	r, err := e.p.Add(t.Context(), a)
	require.NoError(t, err)
	assert.Equal(t, "10.22.0.50/32", r.(*current.Result).IPs[0].Address.String())
	e.wm.AddNetns("/run/netns/c2")
	b := args("c2", "/run/netns/c2", c)
	b.Args += ";IP=10.22.0.50"
	_, err = e.p.Add(t.Context(), b)
	assert.Equal(t, CodeAddressInUse, code(t, err))
	require.NoError(t, e.p.Del(t.Context(), a))
	assertNothingLeft(t, e, "net1.c2")
}

// STATUS creates nothing: a bbolt file not made yet is fine when an ADD
// could create it, and code 50 when it could not.
func TestStatusCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	p := New(WithWorkloads(nil))
	for _, tc := range []struct {
		path string
		code uint
	}{
		{filepath.Join(dir, "a", "b", "ipam.db"), 0},
		{filepath.Join(dir, "file", "ipam.db"), types.ErrPluginNotAvailable},
	} {
		if tc.code != 0 {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "file"), nil, 0o600))
		}
		c := conf(t, "1.1.0", nil, map[string]any{"datastore_path": tc.path})
		err := p.Status(t.Context(), &skel.CmdArgs{StdinData: c})
		if tc.code == 0 {
			require.NoError(t, err, tc.path)
		} else {
			assert.Equal(t, tc.code, code(t, err), tc.path)
		}
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the test's own file")
	assert.Equal(t, "file", entries[0].Name())
}

// DEL and GC of a datastore file that does not exist have nothing to do
// and create nothing; GC without cni.dev/valid-attachments is refused.
func TestNoDatastoreCreatedByDelGC(t *testing.T) {
	dir := t.TempDir()
	wm, err := netlink.NewFakeWorkloads()
	require.NoError(t, err)
	p := New(WithWorkloads(wm), WithHostname(func() (string, error) { return "node1", nil }))
	c := conf(t, "1.1.0", nil, map[string]any{"datastore_path": filepath.Join(dir, "sub", "ipam.db")})
	require.NoError(t, p.Del(t.Context(), args("c1", "/run/netns/c1", c)))
	require.NoError(t, p.GC(t.Context(), gcArgs(t, c)))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)

	e := newEnv(t)
	e.add("c1", c)
	assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, e.p.GC(t.Context(), &skel.CmdArgs{StdinData: c})))
	ids, err := e.wm.ListWorkloads(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []string{"net1.c1"}, ids, "a GC without the list removes nothing")
}

// STATUS is 50 when no ADD could find a pool: none in the datastore and
// none declared; a declared one (which ADD creates) is enough.
func TestStatusNeedsAPool(t *testing.T) {
	e := newEnv(t) // a memory datastore without pools
	var m map[string]any
	require.NoError(t, json.Unmarshal(conf(t, "1.1.0", nil, nil), &m))
	delete(m["ipam"].(map[string]any), "pools")
	bare, err := json.Marshal(m)
	require.NoError(t, err)
	err = e.p.Status(t.Context(), &skel.CmdArgs{StdinData: bare})
	assert.Equal(t, types.ErrPluginNotAvailable, code(t, err))
	assert.Contains(t, err.Error(), "no IP pool")
	require.NoError(t, e.p.Status(t.Context(), &skel.CmdArgs{StdinData: conf(t, "1.1.0", nil, nil)}))
	e.add("c1", conf(t, "1.1.0", nil, nil)) // creates pool p1
	require.NoError(t, e.p.Status(t.Context(), &skel.CmdArgs{StdinData: bare}))
}

// ADD with a prevResult (tabby after another plugin) outputs it with
// tabby's interfaces, addresses and routes appended (CNI spec, ADD), and
// CHECK accepts that result.
func TestAddKeepsPrevResult(t *testing.T) {
	lo := `"interfaces":[{"name":"lo","sandbox":"/run/netns/c1"}],"ips":[{"address":"127.0.0.1/8","interface":0}],` +
		`"routes":[{"dst":"10.1.0.0/16"}],"dns":{"nameservers":["10.0.0.10"]}`
	for _, tc := range []struct {
		name, version, prev string
		dns                 []string // the configuration's nameservers
		wantIfaces          []string
		wantDNS             []string
	}{
		{name: "none", version: "1.1.0", wantIfaces: []string{"host", "eth0"}},
		{name: "1.1.0", version: "1.1.0", prev: `{"cniVersion":"1.1.0",` + lo + `}`,
			wantIfaces: []string{"lo", "host", "eth0"}, wantDNS: []string{"10.0.0.10"}},
		{name: "conf DNS wins", version: "1.0.0", prev: `{"cniVersion":"1.0.0",` + lo + `}`, dns: []string{"10.96.0.10"},
			wantIfaces: []string{"lo", "host", "eth0"}, wantDNS: []string{"10.96.0.10"}},
		{name: "0.4.0", version: "0.4.0", prev: `{"cniVersion":"0.4.0",` +
			`"interfaces":[{"name":"lo","sandbox":"/run/netns/c1"}],"ips":[{"version":"4","address":"127.0.0.1/8","interface":0}]}`,
			wantIfaces: []string{"lo", "host", "eth0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			top := map[string]any{}
			if tc.dns != nil {
				top["dns"] = map[string]any{"nameservers": tc.dns}
			}
			c := conf(t, tc.version, top, nil)
			if tc.prev != "" {
				c = withRawPrevResult(t, c, []byte(tc.prev))
			}
			r := e.add("c1", c)
			var names []string
			for _, i := range r.Interfaces {
				names = append(names, i.Name)
			}
			host := e.wm.HostIfaceName("net1.c1")
			want := slices.Clone(tc.wantIfaces)
			want[slices.Index(want, "host")] = host
			assert.Equal(t, want, names)
			eth0 := slices.Index(names, "eth0")
			var pod []string
			for _, ipc := range r.IPs {
				require.NotNil(t, ipc.Interface)
				if *ipc.Interface == eth0 {
					pod = append(pod, ipc.Address.String())
				}
			}
			have, err := e.m.IPsByHandle(t.Context(), "net1.c1")
			require.NoError(t, err)
			require.Len(t, have, 1)
			assert.Equal(t, []string{netip.PrefixFrom(have[0], 32).String()}, pod, "tabby's address on eth0's index")
			if tc.prev != "" {
				assert.Equal(t, "127.0.0.1/8", r.IPs[0].Address.String())
				assert.Equal(t, 0, *r.IPs[0].Interface)
			}
			assert.Equal(t, tc.wantDNS, r.DNS.Nameservers)
			// CHECK gets the chain's final result in the configuration's version.
			out, err := r.GetAsVersion(tc.version)
			require.NoError(t, err)
			raw, err := json.Marshal(out)
			require.NoError(t, err)
			check := withRawPrevResult(t, conf(t, tc.version, top, nil), raw)
			require.NoError(t, e.p.Check(t.Context(), args("c1", "/run/netns/c1", check)))
		})
	}
}

// withRawPrevResult returns the configuration c with the JSON prev as its
// prevResult, as given (any result version).
func withRawPrevResult(t *testing.T, c, prev []byte) []byte {
	t.Helper()
	return setKeys(t, c, map[string]any{"prevResult": json.RawMessage(prev)})
}

// runtimeConfig.ips (the "ips" capability) are assigned exactly, by the
// tabby plugin and by tabby-ipam, and win over IP= in CNI_ARGS.
func TestRuntimeConfigIPs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ips     any
		cniArgs string
		want    []string // addresses on the pod; nil: an error
		code    uint
	}{
		{name: "cidr", ips: []string{"10.22.0.40/24"}, want: []string{"10.22.0.40/32"}},
		{name: "plain ip", ips: []string{"10.22.0.41"}, want: []string{"10.22.0.41/32"}},
		{name: "wins over CNI_ARGS IP", ips: []string{"10.22.0.42/24"}, cniArgs: ";IP=10.22.0.43", want: []string{"10.22.0.42/32"}},
		{name: "empty list: the pools", ips: []string{}, cniArgs: ";IP=10.22.0.44", want: []string{"10.22.0.44/32"}},
		{name: "outside the pools", ips: []string{"10.99.0.1/24"}, code: types.ErrInvalidNetworkConfig},
		{name: "not an address", ips: []string{"banana"}, code: types.ErrInvalidNetworkConfig},
		{name: "not a list", ips: "10.22.0.40", code: types.ErrDecodingFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := conf(t, "1.1.0", map[string]any{"runtimeConfig": map[string]any{"ips": tc.ips}}, nil)
			e.wm.AddNetns("/run/netns/c1")
			a := args("c1", "/run/netns/c1", c)
			a.Args += tc.cniArgs
			r, err := e.p.Add(t.Context(), a)
			if tc.want == nil {
				assert.Equal(t, tc.code, code(t, err))
				assertNothingLeft(t, e, "net1.c1")
				return
			}
			require.NoError(t, err)
			var got []string
			for _, ipc := range r.(*current.Result).IPs {
				got = append(got, ipc.Address.String())
			}
			assert.Equal(t, tc.want, got)

			// tabby-ipam under another plugin reads them too.
			ip := NewIPAMPlugin(WithIPAM(e.m), WithHostname(func() (string, error) { return "node1", nil }))
			_, err = ip.Add(t.Context(), &skel.CmdArgs{ContainerID: "c2", IfName: "eth0", StdinData: c, Args: "IgnoreUnknown=1" + tc.cniArgs})
			assert.Equal(t, CodeAddressInUse, code(t, err), "the same address again")
		})
	}
}

// An ipam.type that names no plugin in CNI_PATH is a configuration error
// (code 7) for every verb that delegates, not an internal one.
func TestUnknownIPAMType(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "host-local"), []byte("#!/bin/sh\n"), 0o755))
	c, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "net1", "type": "tabby",
		"ipam": map[string]any{"type": "no-such-ipam"}, "cni.dev/valid-attachments": []any{}})
	require.NoError(t, err)
	e := newEnv(t)
	e.wm.AddNetns("/run/netns/c1")
	prev := &current.Result{CNIVersion: "1.1.0", Interfaces: []*current.Interface{{Name: "eth0", Sandbox: "/run/netns/c1"}},
		IPs: []*current.IPConfig{{Interface: current.Int(0), Address: *prefixToIPNet(netip.MustParsePrefix("10.22.0.5/32"))}}}
	withPrev := withPrevResult(t, c, prev)
	for _, tc := range []struct {
		name string
		run  func(*skel.CmdArgs) error
		conf []byte
	}{
		{"ADD", func(a *skel.CmdArgs) error { _, err := e.p.Add(t.Context(), a); return err }, c},
		{"DEL", func(a *skel.CmdArgs) error { return e.p.Del(t.Context(), a) }, c},
		{"CHECK", func(a *skel.CmdArgs) error { return e.p.Check(t.Context(), a) }, withPrev},
		{"GC", func(a *skel.CmdArgs) error { return e.p.GC(t.Context(), a) }, c},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := args("c1", "/run/netns/c1", tc.conf)
			a.Path = dir
			err := tc.run(a)
			assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, err))
			assert.ErrorContains(t, err, `ipam.type "no-such-ipam"`)
		})
	}
	assertNothingLeft(t, e, "net1.c1")
	assert.NoError(t, e.p.ipamPluginFound("host-local", dir))
	assert.NoError(t, e.p.ipamPluginFound("no-such-ipam", ""), "without CNI_PATH the delegation reports")
}

// Unknown CNI_ARGS keys are ignored unless CNI_ARGS asks otherwise.
func TestParseArgsIgnoreUnknown(t *testing.T) {
	for _, tc := range []struct {
		args string
		ok   bool
	}{
		{"K8S_POD_NAME=web;FOO=bar", true},
		{"IgnoreUnknown=1;FOO=bar", true},
		{"IgnoreUnknown=0;FOO=bar", false},
		{"IgnoreUnknown=false;K8S_POD_NAME=web", true},
	} {
		t.Run(tc.args, func(t *testing.T) {
			_, err := ParseArgs(tc.args)
			if tc.ok {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, ErrInvalidArgs)
		})
	}
}

// recordingResolver records the pods it is asked about.
type recordingResolver struct {
	mu    sync.Mutex
	asked []string
	StaticAnnotations
}

func (r *recordingResolver) Annotations(ctx context.Context, namespace, pod string) (map[string]string, map[string]string, error) {
	r.mu.Lock()
	r.asked = append(r.asked, namespace+"/"+pod)
	r.mu.Unlock()
	return r.StaticAnnotations.Annotations(ctx, namespace, pod)
}

// Annotations are read only when CNI_ARGS name both the pod's namespace
// and its name (trial finding: K8S_POD_NAME alone looked up "/<pod>").
func TestAnnotationsNeedPodNamespaceAndName(t *testing.T) {
	for name, tc := range map[string]struct {
		cniArgs string
		asked   []string
		want    string // the address's prefix
	}{
		"both":           {"K8S_POD_NAMESPACE=default;K8S_POD_NAME=web", []string{"default/web"}, "10.22.0.77"},
		"name only":      {"K8S_POD_NAME=web", nil, "10.22.0."},
		"namespace only": {"K8S_POD_NAMESPACE=default", nil, "10.22.0."},
		"neither":        {"", nil, "10.22.0."},
	} {
		t.Run(name, func(t *testing.T) {
			r := &recordingResolver{StaticAnnotations: StaticAnnotations{Pods: map[string]map[string]string{
				"default/web": {ipam.AnnotationIPAddrs: `["10.22.0.77"]`},
				"/web":        {ipam.AnnotationIPAddrs: `["10.22.0.66"]`},
			}}}
			e := newEnv(t, WithResolver(r))
			e.wm.AddNetns("/run/netns/c1")
			a := args("c1", "/run/netns/c1", conf(t, "1.1.0", nil, nil))
			a.Args = tc.cniArgs
			res, err := e.p.Add(t.Context(), a)
			require.NoError(t, err)
			cr, err := current.NewResultFromResult(res)
			require.NoError(t, err)
			require.Len(t, cr.IPs, 1)
			assert.Contains(t, cr.IPs[0].Address.IP.String(), tc.want)
			assert.Equal(t, tc.asked, r.asked)
		})
	}
}

// failingResolver is an API server that does not answer.
type failingResolver struct{}

func (failingResolver) Annotations(context.Context, string, string) (map[string]string, map[string]string, error) {
	return nil, nil, errors.New("dial tcp 10.0.0.1:6443: connect: connection refused")
}

// A resolver that cannot answer is code 11 and says so, not "IPAM
// datastore unavailable" (trial finding: the API server's refusal was
// reported as the datastore's).
func TestAnnotationsUnavailable(t *testing.T) {
	e := newEnv(t, WithResolver(failingResolver{}))
	e.wm.AddNetns("/run/netns/c1")
	_, err := e.p.Add(t.Context(), args("c1", "/run/netns/c1", conf(t, "1.1.0", nil, nil)))
	require.Error(t, err)
	assert.Equal(t, uint(11), code(t, err))
	assert.Contains(t, err.Error(), "pod annotations unavailable: default/c1: dial tcp")
	assert.NotContains(t, err.Error(), ErrDatastore.Error())
}

// A bad annotation is reported as the pod's or as its namespace's,
// whichever holds it (trial finding: a namespace's bad ipv4pools was
// reported as the pod's). So is an unknown pool an annotation names
// (code 7, from ipam.ErrUnknownPool, as before).
func TestBadAnnotationNamesItsObject(t *testing.T) {
	bad := map[string]string{ipam.AnnotationIPv4Pools: "p1"} // not JSON
	unknown4 := map[string]string{ipam.AnnotationIPv4Pools: `["nope"]`}
	unknown6 := map[string]string{ipam.AnnotationIPv6Pools: `["nope6"]`}
	for name, tc := range map[string]struct {
		ann  StaticAnnotations
		conf map[string]any // ipam keys beside the p1 pool
		want string
	}{
		"pod": {StaticAnnotations{Pods: map[string]map[string]string{"default/c1": bad}}, nil,
			"pod default/c1: invalid: annotation " + ipam.AnnotationIPv4Pools},
		"namespace": {StaticAnnotations{Namespaces: map[string]map[string]string{"default": bad}}, nil,
			"namespace default (pod default/c1): invalid: annotation " + ipam.AnnotationIPv4Pools},
		"unknown pool, pod": {StaticAnnotations{Pods: map[string]map[string]string{"default/c1": unknown4}}, nil,
			"annotation " + ipam.AnnotationIPv4Pools + " of pod default/c1: pool \"nope\": unknown pool"},
		"unknown pool, namespace": {StaticAnnotations{Namespaces: map[string]map[string]string{"default": unknown4}}, nil,
			"annotation " + ipam.AnnotationIPv4Pools + " of namespace default (pod default/c1): pool \"nope\": unknown pool"},
		"unknown IPv6 pool, pod": {StaticAnnotations{Pods: map[string]map[string]string{"default/c1": unknown6}},
			map[string]any{"assign_ipv6": true},
			"annotation " + ipam.AnnotationIPv6Pools + " of pod default/c1: pool \"nope6\": unknown pool"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, WithResolver(&tc.ann))
			e.wm.AddNetns("/run/netns/c1")
			_, err := e.p.Add(t.Context(), args("c1", "/run/netns/c1", conf(t, "1.1.0", nil, tc.conf)))
			require.Error(t, err)
			assert.Equal(t, uint(7), code(t, err))
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// An unknown pool from the CNI config (not an annotation) is not blamed on
// an annotation, even when one names pools of the other family.
func TestUnknownConfigPoolNotBlamedOnAnnotation(t *testing.T) {
	ann := StaticAnnotations{Pods: map[string]map[string]string{"default/c1": {ipam.AnnotationIPv6Pools: `["p6"]`}}}
	e := newEnv(t, WithResolver(&ann))
	e.wm.AddNetns("/run/netns/c1")
	_, err := e.p.Add(t.Context(), args("c1", "/run/netns/c1", conf(t, "1.1.0", nil, map[string]any{
		"ipv4_pools": []string{"nope"}})))
	require.Error(t, err)
	assert.Equal(t, uint(7), code(t, err))
	assert.Contains(t, err.Error(), `pool "nope": unknown pool`)
	assert.NotContains(t, err.Error(), "annotation")
}
