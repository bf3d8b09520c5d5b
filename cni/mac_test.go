package cni

import (
	"net"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink"
)

func TestParseMAC(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" for an error
	}{
		{"1c:0c:0a:c0:ff:ee", "1c:0c:0a:c0:ff:ee"},
		{"1C:0C:0A:C0:FF:EE", "1c:0c:0a:c0:ff:ee"},
		{"1c-0c-0a-c0-ff-ee", "1c:0c:0a:c0:ff:ee"},
		{"1c0c.0ac0.ffee", "1c:0c:0a:c0:ff:ee"},
		{" 02:00:00:00:00:01 ", "02:00:00:00:00:01"},
		{"", ""},
		{"invalid MAC address", ""}, // Calico's own test value
		{"1c:0c:0a:c0:ff", ""},
		{"01:00:5e:00:00:01", ""}, // multicast
		{"ff:ff:ff:ff:ff:ff", ""}, // broadcast
		{"00:00:00:00:00:00", ""},
		{"02:00:00:00:00:00:00:01", ""}, // EUI-64: not for a veth
	} {
		t.Run(tc.in, func(t *testing.T) {
			mac, err := ParseMAC(tc.in)
			if tc.want == "" {
				require.ErrorIs(t, err, ErrInvalidConfig)
				assert.ErrorContains(t, err, "MAC")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, mac.String())
		})
	}
}

// The pod's MAC: runtimeConfig.mac wins over the hwAddr annotation, which
// is read from the pod only and only for a Kubernetes pod; a bad one is
// code 7 and leaves nothing.
func TestAddMAC(t *testing.T) {
	annotations := map[string]any{
		"pods": map[string]any{
			"default/c1":  map[string]string{AnnotationHWAddr: "1c:0c:0a:c0:ff:ee"},
			"default/up":  map[string]string{AnnotationHWAddr: "1C-0C-0A-C0-FF-01"},
			"default/bad": map[string]string{AnnotationHWAddr: "invalid MAC address"},
			"default/mc":  map[string]string{AnnotationHWAddr: "01:00:5e:00:00:01"},
			"default/nil": map[string]string{AnnotationHWAddr: ""},
		},
		"namespaces": map[string]any{"default": map[string]string{AnnotationHWAddr: "02:00:00:00:00:0a"}},
	}
	for _, tc := range []struct {
		name    string
		pod     string
		cniArgs string // "" = the pod's K8S_ args
		runtime string // runtimeConfig.mac
		want    string // the MAC; "" = ContainerMAC; "code N" for an error
	}{
		{name: "annotation", pod: "c1", want: "1c:0c:0a:c0:ff:ee"},
		{name: "annotation upper case, dashes", pod: "up", want: "1c:0c:0a:c0:ff:01"},
		{name: "none: derived, the namespace's ignored", pod: "plain", want: ""},
		{name: "runtimeConfig", pod: "plain", runtime: "02:ca:fe:00:00:01", want: "02:ca:fe:00:00:01"},
		{name: "runtimeConfig wins over annotation", pod: "c1", runtime: "02:ca:fe:00:00:01", want: "02:ca:fe:00:00:01"},
		{name: "runtimeConfig wins over a bad annotation", pod: "bad", runtime: "02:ca:fe:00:00:01", want: "02:ca:fe:00:00:01"},
		{name: "not a pod: no annotation", pod: "c1", cniArgs: "K8S_POD_NAME=c1", want: ""},
		{name: "bad annotation", pod: "bad", want: "code 7"},
		{name: "multicast annotation", pod: "mc", want: "code 7"},
		{name: "empty annotation", pod: "nil", want: "code 7"},
		{name: "bad runtimeConfig", pod: "plain", runtime: "02:ca:fe", want: "code 7"},
		{name: "zero runtimeConfig", pod: "c1", runtime: "00:00:00:00:00:00", want: "code 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			top := map[string]any{"annotations": annotations}
			if tc.runtime != "" {
				top["runtimeConfig"] = map[string]any{"mac": tc.runtime}
			}
			netns := "/run/netns/" + tc.pod
			e.wm.AddNetns(netns)
			a := args(tc.pod, netns, conf(t, "1.1.0", top, nil))
			if tc.cniArgs != "" {
				a.Args = tc.cniArgs
			}
			res, err := e.p.Add(t.Context(), a)
			if tc.want == "code 7" {
				require.Error(t, err)
				assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, err), "%v", err)
				assert.ErrorContains(t, err, "MAC")
				assertNothingLeft(t, e, "net1."+tc.pod)
				return
			}
			require.NoError(t, err)
			cr, err := current.NewResultFromResult(res)
			require.NoError(t, err)
			want := tc.want
			if want == "" {
				want = netlink.ContainerMAC("net1." + tc.pod).String()
			}
			require.Len(t, cr.Interfaces, 2)
			assert.Equal(t, want, cr.Interfaces[1].Mac, "result's container interface")
			// CHECK holds the pod to the MAC ADD gave it.
			require.NoError(t, e.p.Check(t.Context(), args(tc.pod, netns, withPrevResult(t, conf(t, "1.1.0", top, nil), cr))))
		})
	}
}

// The bad annotation's error names the pod and the annotation.
func TestAddBadMACNamesAnnotation(t *testing.T) {
	e := newEnv(t, WithResolver(&StaticAnnotations{Pods: map[string]map[string]string{
		"default/c1": {AnnotationHWAddr: "zz:zz"}}}))
	e.wm.AddNetns("/run/netns/c1")
	_, err := e.p.Add(t.Context(), args("c1", "/run/netns/c1", conf(t, "1.1.0", nil, nil)))
	require.Error(t, err)
	assert.ErrorContains(t, err, "pod default/c1: annotation "+AnnotationHWAddr)
	assertNothingLeft(t, e, "net1.c1")
}

// CHECK compares the MAC: prevResult's against the kernel's (fake), and a
// runtimeConfig.mac against prevResult's.
func TestCheckMAC(t *testing.T) {
	e := newEnv(t)
	mac := "02:ca:fe:00:00:01"
	c := conf(t, "1.1.0", map[string]any{"runtimeConfig": map[string]any{"mac": mac}}, nil)
	r := e.add("c1", c)
	require.Equal(t, mac, r.Interfaces[1].Mac)
	check := func(c []byte, r *current.Result) error {
		return e.p.Check(t.Context(), args("c1", "/run/netns/c1", withPrevResult(t, c, r)))
	}
	require.NoError(t, check(c, r))

	bad := clone(t, r)
	bad.Interfaces[1].Mac = "02:ca:fe:00:00:02"
	err := check(conf(t, "1.1.0", nil, nil), bad)
	assert.Equal(t, types.ErrInternal, code(t, err))
	assert.ErrorContains(t, err, "check failed")
	assert.ErrorContains(t, err, "MAC 02:ca:fe:00:00:01, want 02:ca:fe:00:00:02")

	err = check(conf(t, "1.1.0", map[string]any{"runtimeConfig": map[string]any{"mac": "02:ca:fe:00:00:03"}}, nil), r)
	assert.Equal(t, types.ErrInternal, code(t, err))
	assert.ErrorContains(t, err, "check failed: runtimeConfig.mac is 02:ca:fe:00:00:03")

	bad.Interfaces[1].Mac = "not a mac"
	assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, check(conf(t, "1.1.0", nil, nil), bad)))
}

func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"1c:0c:0a:c0:ff:ee", "1c0c.0ac0.ffee", "01:00:5e:00:00:01", "", "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mac, err := ParseMAC(s)
		if err != nil {
			return
		}
		if len(mac) != 6 || mac[0]&1 != 0 || net.HardwareAddr(make([]byte, 6)).String() == mac.String() {
			t.Fatalf("ParseMAC(%q) accepted %s", s, mac)
		}
	})
}

// A bad runtimeConfig.mac fails ADD (code 7) but not the DEL the runtime
// sends after that failed ADD with the same configuration: DEL does not
// use the MAC, and a DEL that fails leaves the runtime unable to tear the
// sandbox down.
func TestDelIgnoresBadRuntimeMAC(t *testing.T) {
	e := newEnv(t)
	c := conf(t, "1.1.0", map[string]any{"runtimeConfig": map[string]any{"mac": "01:00:5e:00:00:01"}}, nil)
	e.wm.AddNetns("/run/netns/c1")
	_, err := e.p.Add(t.Context(), args("c1", "/run/netns/c1", c))
	assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, err), "%v", err)
	assert.ErrorContains(t, err, "runtimeConfig.mac")
	require.NoError(t, e.p.Del(t.Context(), args("c1", "/run/netns/c1", c)))
	assertNothingLeft(t, e, "net1.c1")
}
