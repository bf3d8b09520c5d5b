package cni

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink"
)

// Tests of the verbs against the CNI spec (SPEC.md of
// containernetworking/cni 1.1) where the unit tests elsewhere do not
// already cover them.

// fakeExec is an invoke.Exec whose delegated plugins answer every verb
// with err (nil: success with an empty output).
type fakeExec struct {
	err   error
	calls []string // CNI_COMMAND of each call
}

func (f *fakeExec) ExecPlugin(_ context.Context, _ string, _ []byte, environ []string) ([]byte, error) {
	for _, kv := range environ {
		if len(kv) > len("CNI_COMMAND=") && kv[:len("CNI_COMMAND=")] == "CNI_COMMAND=" {
			f.calls = append(f.calls, kv[len("CNI_COMMAND="):])
		}
	}
	return nil, f.err
}

func (f *fakeExec) FindInPath(plugin string, _ []string) (string, error) {
	return "/fake/" + plugin, nil
}

func (f *fakeExec) Decode(jsonBytes []byte) (version.PluginInfo, error) {
	return version.PluginSupports("1.1.0"), nil
}

// delegatedConf is a tabby configuration delegating IPAM to host-local,
// with top's keys set.
func delegatedConf(t *testing.T, top map[string]any) []byte {
	t.Helper()
	c := map[string]any{"cniVersion": "1.1.0", "name": "net1", "type": "tabby",
		"ipam": map[string]any{"type": "host-local", "subnet": "10.23.0.0/24"}}
	b, err := json.Marshal(c)
	require.NoError(t, err)
	return setKeys(t, b, top)
}

// setKeys returns the configuration c with the top-level keys of kv set.
func setKeys(t *testing.T, c []byte, kv map[string]any) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(c, &m))
	for k, v := range kv {
		m[k] = v
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

// STATUS with a delegated IPAM plugin passes the delegate's 50 or 51 on
// as it is (51 also tells the runtime that existing containers may have
// lost connectivity); any other error of the delegate is 50.
func TestStatusKeepsDelegateCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want uint
	}{
		{"not available", types.NewError(types.ErrPluginNotAvailable, "down", ""), types.ErrPluginNotAvailable},
		{"limited connectivity", types.NewError(errLimitedConnectivity, "dataplane down", ""),
			errLimitedConnectivity},
		{"try again", types.NewError(types.ErrTryAgainLater, "busy", ""), types.ErrPluginNotAvailable},
		{"internal", types.NewError(types.ErrInternal, "boom", ""), types.ErrPluginNotAvailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := &fakeExec{err: tc.err}
			e := newEnv(t, WithExec(x))
			err := e.p.Status(t.Context(), &skel.CmdArgs{StdinData: delegatedConf(t, nil)})
			assert.Equal(t, tc.want, code(t, err))
			assert.ErrorContains(t, err, tc.err.(*types.Error).Msg)
			assert.Equal(t, []string{"STATUS"}, x.calls)
		})
	}
	x := &fakeExec{}
	e := newEnv(t, WithExec(x))
	require.NoError(t, e.p.Status(t.Context(), &skel.CmdArgs{StdinData: delegatedConf(t, nil)}))
}

// The network name and the container ID become the name of the
// delegated-IPAM record under state_dir (Handle): a name or an ID that
// would lead out of it is refused by the library verbs as skel refuses
// it for the binaries (codes 7 and 4), and no file outside state_dir is
// written or removed.
func TestHandleStaysInStateDir(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "a", "state")
	victim := filepath.Join(dir, "victim")
	for _, tc := range []struct {
		name, network, id string
		want              uint
	}{
		{"DEL container ID", "net1", "/../../../victim", types.ErrInvalidEnvironmentVariables},
		{"DEL network name", "../../../victim", "x", types.ErrInvalidNetworkConfig},
		{"ADD network name", "../../../victim", "x", types.ErrInvalidNetworkConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(victim+".x", []byte("keep"), 0o600))
			require.NoError(t, os.WriteFile(victim, []byte("keep"), 0o600))
			e := newEnv(t, WithExec(&fakeExec{}))
			e.wm.AddNetns("/run/netns/p")
			c := delegatedConf(t, map[string]any{"name": tc.network, "state_dir": state})
			a := &skel.CmdArgs{ContainerID: tc.id, Netns: "/run/netns/p", IfName: "eth0", StdinData: c}
			var err error
			if tc.name[:3] == "ADD" {
				_, err = e.p.Add(t.Context(), a)
			} else {
				err = e.p.Del(t.Context(), a)
			}
			assert.Equal(t, tc.want, code(t, err), "%v", err)
			for _, f := range []string{victim, victim + ".x"} {
				b, err := os.ReadFile(f)
				require.NoError(t, err, "%s removed", f)
				assert.Equal(t, "keep", string(b), "%s overwritten", f)
			}
		})
	}
	_, err := ParseConfig(delegatedConf(t, map[string]any{"name": "a/b"}))
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, _, err = ParseIPAMConfig(conf(t, "1.1.0", map[string]any{"name": "a b"}, nil))
	require.ErrorIs(t, err, ErrInvalidConfig)
}

// listFails is a WorkloadManager whose ListWorkloads fails.
type listFails struct{ netlink.WorkloadManager }

func (listFails) ListWorkloads(context.Context) ([]string, error) {
	return nil, errors.New("list links: injected")
}

// gcFails is an IPAM whose GC fails.
type gcFails struct{ IPAM }

func (gcFails) GC(context.Context, string, string, func(string) bool, time.Duration) ([]netip.Addr, error) {
	return nil, errors.New("scan blocks: injected")
}

// GC goes on past an error and removes what it still can, reporting the
// error (SPEC.md, GC: "If an error is encountered, a plugin should
// continue; removing as many resources as possible"): the host's links
// not listed, it still releases the stale allocations and deletes the
// pairs DEL detached; IPAM failing, it touches no listed interface (their
// allocations' ages are unknown) but still deletes the detached pairs.
func TestGCContinuesPastErrors(t *testing.T) {
	for _, tc := range []struct {
		name         string
		listFails    bool
		ipamFails    bool
		wantReleased bool
		wantIfaces   []string
	}{
		{"links not listed", true, false, true, []string{"net1.a", "net1.b"}},
		{"IPAM GC fails", false, true, false, []string{"net1.a", "net1.b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := conf(t, "1.1.0", nil, map[string]any{"gc_grace_seconds": -1})
			for _, id := range []string{"a", "b", "d"} {
				e.add(id, c)
			}
			require.NoError(t, e.p.Del(t.Context(), args("d", "/run/netns/d", c)))
			require.Equal(t, []string{"net1.d"}, e.wm.DetachedWorkloads())
			var wm netlink.WorkloadManager = e.wm
			if tc.listFails {
				wm = listFails{e.wm}
			}
			var m IPAM = e.m
			if tc.ipamFails {
				m = gcFails{e.m}
			}
			p := New(WithWorkloads(wm), WithIPAM(m), WithHostname(func() (string, error) { return "node1", nil }))
			err := p.GC(t.Context(), gcArgs(t, c, "b"))
			require.Error(t, err)
			assert.ErrorContains(t, err, "injected")
			assert.Empty(t, e.wm.DetachedWorkloads(), "the detached pairs go whatever failed")
			ids, err := e.wm.ListWorkloads(t.Context())
			require.NoError(t, err)
			assert.Equal(t, tc.wantIfaces, ids)
			have, err := e.m.IPsByHandle(t.Context(), "net1.a")
			require.NoError(t, err)
			assert.Equal(t, tc.wantReleased, len(have) == 0, "stale allocation released: %v", have)
			have, err = e.m.IPsByHandle(t.Context(), "net1.b")
			require.NoError(t, err)
			assert.Len(t, have, 1, "the valid attachment keeps its address")
		})
	}
}

// A cniVersion the plugins do not speak is code 1 (SPEC.md, Error: 1
// "Incompatible CNI version"), as skel answers for the binaries, and so
// is a verb the configuration's version does not have: CHECK before
// 0.4.0, GC and STATUS before 1.1.0 (skel's checks, which the library
// verbs skipped).
func TestIncompatibleVersionCode(t *testing.T) {
	e := newEnv(t)
	e.wm.AddNetns("/run/netns/v")
	withAtts := func(c []byte) []byte { return setKeys(t, c, map[string]any{"cni.dev/valid-attachments": []any{}}) }
	ip := NewIPAMPlugin(WithIPAM(e.m), WithHostname(func() (string, error) { return "node1", nil }))
	verbs := map[string]func(*skel.CmdArgs) error{
		"ADD":       func(a *skel.CmdArgs) error { _, err := e.p.Add(t.Context(), a); return err },
		"DEL":       func(a *skel.CmdArgs) error { return e.p.Del(t.Context(), a) },
		"CHECK":     func(a *skel.CmdArgs) error { return e.p.Check(t.Context(), a) },
		"GC":        func(a *skel.CmdArgs) error { return e.p.GC(t.Context(), a) },
		"STATUS":    func(a *skel.CmdArgs) error { return e.p.Status(t.Context(), a) },
		"IPAM ADD":  func(a *skel.CmdArgs) error { _, err := ip.Add(t.Context(), a); return err },
		"IPAM GC":   func(a *skel.CmdArgs) error { return ip.GC(t.Context(), a) },
		"IPAM STAT": func(a *skel.CmdArgs) error { return ip.Status(t.Context(), a) },
	}
	for _, tc := range []struct {
		verb, version string
	}{
		{"ADD", "0.2.0"}, {"ADD", "9.9.9"}, {"ADD", ""}, {"DEL", "0.1.0"}, {"IPAM ADD", "0.2.0"},
		{"CHECK", "0.3.1"}, {"GC", "1.0.0"}, {"STATUS", "1.0.0"}, {"IPAM GC", "0.4.0"}, {"IPAM STAT", "1.0.0"},
	} {
		t.Run(tc.verb+" "+tc.version, func(t *testing.T) {
			err := verbs[tc.verb](args("v", "/run/netns/v", withAtts(conf(t, tc.version, nil, nil))))
			assert.Equal(t, types.ErrIncompatibleCNIVersion, code(t, err), "%v", err)
		})
	}
	assertNothingLeft(t, e, "net1.v")
	_, err := ParseConfig(conf(t, "0.2.0", nil, nil))
	assert.ErrorIs(t, err, ErrIncompatibleVersion)
	assert.ErrorIs(t, err, ErrInvalidConfig, "still a configuration error")
	assert.Equal(t, types.ErrIncompatibleCNIVersion, Code(err))
}

// An ipam.type naming the tabby plugin itself is refused (code 7) before
// anything is run: tabby would delegate IPAM to a tabby process that
// delegates again, one process more per level until the timeout.
func TestIPAMTypeTabbyRefused(t *testing.T) {
	x := &fakeExec{}
	e := newEnv(t, WithExec(x))
	e.wm.AddNetns("/run/netns/r")
	c := delegatedConf(t, map[string]any{"ipam": map[string]any{"type": PluginType}})
	_, err := ParseConfig(c)
	require.ErrorIs(t, err, ErrInvalidConfig)
	a := args("r", "/run/netns/r", c)
	_, err = e.p.Add(t.Context(), a)
	assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, err), "%v", err)
	assert.ErrorContains(t, err, "ipam.type")
	assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, e.p.Del(t.Context(), a)))
	assert.Empty(t, x.calls, "no IPAM plugin run")
}

// A prevResult with a null interface, IP or route is an invalid
// configuration (code 7) for every verb of both plugins, never a panic
// (CHECK dereferenced the entries) nor a result passing the null on (ADD).
func TestPrevResultNullEntries(t *testing.T) {
	for _, prev := range []string{
		`{"cniVersion":"1.1.0","ips":[null]}`,
		`{"cniVersion":"1.1.0","interfaces":[null],"ips":[{"address":"10.22.0.5/32"}]}`,
		`{"cniVersion":"1.1.0","ips":[{"address":"10.22.0.5/32"}],"routes":[null]}`,
		`{"cniVersion":"0.4.0","ips":[null]}`,
	} {
		t.Run(prev, func(t *testing.T) {
			e := newEnv(t)
			e.wm.AddNetns("/run/netns/x")
			var pr map[string]any
			require.NoError(t, json.Unmarshal([]byte(prev), &pr))
			c := setKeys(t, conf(t, "1.1.0", nil, nil), map[string]any{"cniVersion": pr["cniVersion"], "prevResult": pr})
			ip := NewIPAMPlugin(WithIPAM(e.m), WithHostname(func() (string, error) { return "node1", nil }))
			for name, run := range map[string]func(*skel.CmdArgs) error{
				"ADD":        func(a *skel.CmdArgs) error { _, err := e.p.Add(t.Context(), a); return err },
				"CHECK":      func(a *skel.CmdArgs) error { return e.p.Check(t.Context(), a) },
				"IPAM CHECK": func(a *skel.CmdArgs) error { return ip.Check(t.Context(), a) },
			} {
				var err error
				require.NotPanics(t, func() { err = run(args("x", "/run/netns/x", c)) }, name)
				assert.Equal(t, types.ErrInvalidNetworkConfig, code(t, err), "%s: %v", name, err)
			}
			assertNothingLeft(t, e, "net1.x")
		})
	}
}
