// Package cni_examples_test checks that the shipped network configurations
// parse as libcni and the tabby plugin read them.
package cni_examples_test

import (
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/cni"
)

func TestConflists(t *testing.T) {
	for _, f := range []string{"tabby.conflist", "tabby-chained.conflist"} {
		t.Run(f, func(t *testing.T) {
			list, err := libcni.ConfListFromFile(f)
			require.NoError(t, err)
			require.NotEmpty(t, list.Plugins)
			assert.Equal(t, cni.PluginType, list.Plugins[0].Network.Type)
			// What the plugin receives: the plugin's config with the
			// list's name and version injected.
			conf, err := libcni.InjectConf(list.Plugins[0], map[string]any{"name": list.Name, "cniVersion": list.CNIVersion})
			require.NoError(t, err)
			nc, err := cni.ParseConfig(conf.Bytes)
			require.NoError(t, err)
			require.NotNil(t, nc.IPAMConf)
			assert.Equal(t, "/var/lib/tabby/ipam.db", nc.IPAMConf.DatastorePath)
			require.Len(t, nc.IPAMConf.Pools, 1)
		})
	}
}
