package cni

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// delegatedConf is a tabby configuration delegating IPAM to host-local.
func delegatedConf(t *testing.T, top map[string]any) []byte {
	t.Helper()
	c := map[string]any{"cniVersion": "1.1.0", "name": "net1", "type": "tabby",
		"ipam": map[string]any{"type": "host-local", "subnet": "10.23.0.0/24"}}
	for k, v := range top {
		c[k] = v
	}
	b, err := json.Marshal(c)
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
