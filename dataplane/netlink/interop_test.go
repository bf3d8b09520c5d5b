package netlink_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tnl "github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// eventually polls f every 100 ms until it returns true or the timeout passes.
func eventually(timeout time.Duration, f func() bool) bool {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return f()
}

// TestInteropBIRD runs BIRD 2 in a node beside a RouteOwner: each keeps its
// own routes in the main table (proto bird vs proto 116), neither removes
// the other's, and BIRD's kernel protocol with `learn` sees tabby's routes
// (what a BIRD-based BGP setup would export).
func TestInteropBIRD(t *testing.T) {
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("interop test: bird (Debian bird2) is not installed")
	}
	ctx := context.Background()
	topo := nettest.NewTopology(t, nettest.Nodes(1))
	n := topo.Node(0)
	ours := []tnl.Route{tnl.Blackhole(pfx("10.33.0.0/26")), tnl.RouteVia(pfx("10.50.0.0/16"), addr("10.99.0.1"))}
	require.NoError(t, n.Routes.Set("test", ours))
	_, err := n.Routes.Reconcile(ctx)
	require.NoError(t, err)

	dir := t.TempDir()
	conf := filepath.Join(dir, "bird.conf")
	require.NoError(t, os.WriteFile(conf, []byte(`router id 10.99.0.11;
protocol device { scan time 1; }
protocol kernel { scan time 1; learn; ipv4 { import all; export all; }; }
protocol static { ipv4; route 10.60.0.0/16 via 10.99.0.1; }
`), 0o644))
	ctl := filepath.Join(dir, "bird.ctl")
	n.NS.Start(t, "bird", "-f", "-c", conf, "-s", ctl, "-P", filepath.Join(dir, "bird.pid"))

	show := func(args ...string) string {
		out, _ := n.NS.Run(ctx, "ip", append([]string{"route", "show"}, args...)...)
		return out
	}
	require.True(t, eventually(10*time.Second, func() bool { return strings.Contains(show("proto", "bird"), "10.60.0.0/16") }),
		"BIRD did not install its route: %s", show())

	// BIRD learns tabby's routes.
	assert.True(t, eventually(5*time.Second, func() bool {
		out, _ := n.NS.Run(ctx, "birdc", "-s", ctl, "show", "route")
		return strings.Contains(out, "10.50.0.0/16")
	}), "BIRD did not learn tabby's route")

	// After a few BIRD scans, our routes are intact and a reconcile changes nothing.
	time.Sleep(1500 * time.Millisecond)
	res, err := n.Routes.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, tnl.ReconcileResult{}, res)
	assert.Contains(t, show("proto", "116"), "10.50.0.0/16")

	// Dropping our route leaves BIRD's alone.
	require.NoError(t, n.Routes.Set("test", ours[:1]))
	res, err = n.Routes.Reconcile(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Deleted)
	assert.Contains(t, show("proto", "bird"), "10.60.0.0/16")
	assert.NotContains(t, show(), "10.50.0.0/16")
}
