package cni

import (
	"context"
	"encoding/json"
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
