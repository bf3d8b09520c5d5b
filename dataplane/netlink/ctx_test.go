package netlink_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// A cancelled context fails a setup with an error that names the workload
// (as every error of the package names the object acted on) and wraps the
// context's error, on the fake and on the kernel alike; nothing is left.
func TestSetupCancelledNamesWorkload(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	addrs := func(context.Context) ([]netip.Addr, error) { return []netip.Addr{addr("10.81.0.2")}, nil }
	managers := map[string]func(t *testing.T) (tnl.WorkloadManager, string){
		"fake": func(t *testing.T) (tnl.WorkloadManager, string) {
			f, err := tnl.NewFakeWorkloads()
			require.NoError(t, err)
			f.AddNetns("/pod")
			return f, "/pod"
		},
		"kernel": func(t *testing.T) (tnl.WorkloadManager, string) {
			host, pod := nettest.NewNetns(t, "tby-ctx-h"), nettest.NewNetns(t, "tby-ctx-p")
			w, err := tnl.NewWorkloads(host.Path)
			require.NoError(t, err)
			t.Cleanup(func() { w.Close() })
			return w, pod.Path
		},
	}
	for name, mk := range managers {
		t.Run(name, func(t *testing.T) {
			m, pod := mk(t)
			calls := []struct {
				name  string
				setup func() error
			}{
				{"SetupWorkload", func() error {
					_, err := m.SetupWorkload(ctx, tnl.WorkloadSpec{ID: "ctx.1", Netns: pod, Addresses: []netip.Addr{addr("10.81.0.1")}})
					return err
				}},
				{"SetupWorkloadFunc", func() error {
					_, err := m.SetupWorkloadFunc(ctx, tnl.WorkloadSpec{ID: "ctx.2", Netns: pod, IfName: "eth1"}, addrs)
					return err
				}},
			}
			for _, c := range calls {
				err := c.setup()
				assert.ErrorIs(t, err, context.Canceled, c.name)
				assert.ErrorContains(t, err, "workload ctx.", c.name)
			}
			ids, err := m.ListWorkloads(context.Background())
			require.NoError(t, err)
			assert.Empty(t, ids)
		})
	}
}
