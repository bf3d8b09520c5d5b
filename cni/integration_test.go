package cni_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/cni"
	"github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/ipam/store/bboltstore"
)

// Integration tests: the tabby and tabby-ipam binaries (and upstream
// plugins) built into a temporary directory and driven through libcni, as
// a container runtime does, from inside a "node" network namespace into
// pod namespaces. They need root and skip otherwise.

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// upstream are the containernetworking/plugins used beside tabby, built at
// the version the module requires.
var upstream = []string{"main/ptp", "ipam/host-local", "meta/portmap", "meta/bandwidth"}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// plugins builds the binaries once per test run and returns their
// directory (the CNI_PATH).
func plugins(t testing.TB) string {
	t.Helper()
	nettest.RequireRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "tabby-cni-bin-")
		if buildErr != nil {
			return
		}
		run := func(env []string, args ...string) error {
			cmd := exec.Command("go", args...)
			cmd.Env = append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, out)
			}
			return nil
		}
		// Built as examples/cni/README.md says: -tags grpcnotrace drops
		// gRPC's golang.org/x/net/trace (and with it html/template) from
		// the binaries, which start faster (see README.md, Start-up).
		if buildErr = run(nil, "build", "-tags", "grpcnotrace", "-o", buildDir+"/", "github.com/tabbynet/tabby/examples/cni/tabby",
			"github.com/tabbynet/tabby/examples/cni/tabby-ipam"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/containernetworking/plugins").Output()
		if err != nil {
			buildErr = fmt.Errorf("go list -m containernetworking/plugins: %w", err)
			return
		}
		v := strings.TrimSpace(string(out))
		args := []string{"install"}
		for _, p := range upstream {
			args = append(args, "github.com/containernetworking/plugins/plugins/"+p+"@"+v)
		}
		buildErr = run([]string{"GOBIN=" + buildDir, "GOFLAGS="}, args...)
	})
	if buildErr != nil {
		t.Fatalf("build plugins: %v", buildErr)
	}
	return buildDir
}

// lab is one node namespace running the plugins through libcni, with an
// uplink to a client namespace (node 10.98.0.1/24, client 10.98.0.2/24, the
// node's default route via the client: proxy ARP for 169.254.1.1 answers
// only when the node has a route to it through another interface).
type lab struct {
	t      testing.TB
	bin    string
	node   *nettest.Netns
	client *nettest.Netns
	cfg    *libcni.CNIConfig
	db     string
}

func newLab(t testing.TB) *lab {
	t.Helper()
	bin := plugins(t)
	node := nettest.NewNetns(t, "cni-node")
	require.NoError(t, node.Sysctl("net.ipv4.ip_forward", "1"))
	client := nettest.NewNetns(t, "cni-client")
	uplink(t, node, client)
	dir := t.TempDir()
	return &lab{t: t, bin: bin, node: node, client: client, cfg: libcni.NewCNIConfigWithCacheDir([]string{bin}, filepath.Join(dir, "cache"), newExec()),
		db: filepath.Join(dir, "ipam.db")}
}

// newExec is libcni's default exec, given explicitly: libcni sets it
// lazily without a lock, which races when one CNIConfig serves concurrent
// calls.
func newExec() invoke.Exec {
	return &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
}

func uplink(t testing.TB, node, client *nettest.Netns) {
	t.Helper()
	nh, ch := node.Handle(), client.Handle()
	veth := &nl.Veth{LinkAttrs: nl.LinkAttrs{Name: "up0"}, PeerName: "eth0", PeerNamespace: nl.NsFd(int(client.NS().Fd()))}
	require.NoError(t, nh.LinkAdd(veth))
	up0, err := nh.LinkByName("up0")
	require.NoError(t, err)
	eth0, err := ch.LinkByName("eth0")
	require.NoError(t, err)
	na, _ := nl.ParseAddr("10.98.0.1/24")
	ca, _ := nl.ParseAddr("10.98.0.2/24")
	require.NoError(t, nh.AddrAdd(up0, na))
	require.NoError(t, ch.AddrAdd(eth0, ca))
	require.NoError(t, nh.LinkSetUp(up0))
	require.NoError(t, ch.LinkSetUp(eth0))
	_, dflt, _ := net.ParseCIDR("0.0.0.0/0")
	require.NoError(t, nh.RouteAdd(&nl.Route{Dst: dflt, Gw: net.ParseIP("10.98.0.2")}))
}

// tabbyList is a conflist with the tabby plugin and tabby-ipam (bbolt in
// the lab's directory); ipamExtra and more plugins are merged in.
func (l *lab) tabbyList(name string, ipamExtra map[string]any, top map[string]any, more ...map[string]any) *libcni.NetworkConfigList {
	l.t.Helper()
	ip := map[string]any{"type": "tabby-ipam", "datastore_path": l.db, "nodename": "node1",
		"pools": []any{map[string]any{"name": "pool1", "cidr": "10.77.0.0/24"}}}
	for k, v := range ipamExtra {
		ip[k] = v
	}
	plugin := map[string]any{"type": "tabby", "ipam": ip}
	for k, v := range top {
		plugin[k] = v
	}
	ps := append([]any{plugin}, anySlice(more)...)
	return l.list(map[string]any{"cniVersion": "1.1.0", "name": name, "plugins": ps})
}

func anySlice(ms []map[string]any) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

func (l *lab) list(v any) *libcni.NetworkConfigList {
	l.t.Helper()
	b, err := json.Marshal(v)
	require.NoError(l.t, err)
	list, err := libcni.ConfListFromBytes(b)
	require.NoError(l.t, err)
	return list
}

func rt(id, netns string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", id}}}
}

// in runs f in the node namespace: plugins exec'd from there run there.
func (l *lab) in(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return l.node.Do(func() error { return f(ctx) })
}

func (l *lab) add(list *libcni.NetworkConfigList, r *libcni.RuntimeConf) (*current.Result, error) {
	var res types.Result
	err := l.in(func(ctx context.Context) (err error) {
		res, err = l.cfg.AddNetworkList(ctx, list, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

func (l *lab) del(list *libcni.NetworkConfigList, r *libcni.RuntimeConf) error {
	return l.in(func(ctx context.Context) error { return l.cfg.DelNetworkList(ctx, list, r) })
}

func (l *lab) check(list *libcni.NetworkConfigList, r *libcni.RuntimeConf) error {
	return l.in(func(ctx context.Context) error { return l.cfg.CheckNetworkList(ctx, list, r) })
}

func cniCode(t *testing.T, err error) uint {
	t.Helper()
	var te *types.Error
	require.ErrorAs(t, err, &te, "want CNI error JSON, got %v", err)
	return te.Code
}

// assertClean says no tabby veth is left in the node and no address is
// held under the handles.
func (l *lab) assertClean(network string, ids ...string) {
	l.t.Helper()
	links, err := l.node.Handle().LinkList()
	require.NoError(l.t, err)
	for _, lk := range links {
		for _, id := range ids {
			assert.NotEqual(l.t, "tabby:"+cni.Handle(network, id), lk.Attrs().Alias, "link %s left behind", lk.Attrs().Name)
		}
	}
	m, err := cni.OpenIPAM(&cni.IPAMConf{DatastorePath: l.db}, nil, 5*time.Second)
	require.NoError(l.t, err)
	defer m.Close()
	for _, id := range ids {
		have, err := m.IPsByHandle(l.t.Context(), cni.Handle(network, id))
		require.NoError(l.t, err)
		assert.Empty(l.t, have, "addresses left under %s", id)
	}
}

// serve accepts TCP on addr:port inside pod and echoes one line per
// connection, until the test ends.
func serve(t *testing.T, pod *nettest.Netns, addr string, port int) {
	t.Helper()
	var ln net.Listener
	require.NoError(t, pod.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				_, _ = c.Write([]byte("echo " + line))
			}()
		}
	}()
}

// talk connects from inside from to addr:port and expects the echo.
func talk(from *nettest.Netns, addr string, port int) error {
	var c net.Conn
	err := from.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(addr, fmt.Sprint(port)), 5*time.Second)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "echo hello\n" {
		return fmt.Errorf("got %q", line)
	}
	return nil
}

func podAddr(t *testing.T, r *current.Result) string {
	t.Helper()
	require.NotEmpty(t, r.IPs)
	return r.IPs[0].Address.IP.String()
}

func TestIntegrationPodsTCPCheckDel(t *testing.T) {
	l := newLab(t)
	list := l.tabbyList("tabnet", nil, nil)
	var pods []*nettest.Netns
	var res []*current.Result
	for i := range 3 {
		pod := nettest.NewNetns(t, "cni-pod")
		r, err := l.add(list, rt(fmt.Sprint("pod", i), pod.Path))
		require.NoError(t, err)
		require.Len(t, r.Interfaces, 2)
		assert.Equal(t, "eth0", r.Interfaces[1].Name)
		assert.Equal(t, pod.Path, r.Interfaces[1].Sandbox)
		pods, res = append(pods, pod), append(res, r)
	}
	// Retried ADD: the same result.
	again, err := l.add(list, rt("pod0", pods[0].Path))
	require.NoError(t, err)
	assert.Equal(t, res[0].IPs[0].Address.String(), again.IPs[0].Address.String())
	assert.Equal(t, res[0].Interfaces[0].Name, again.Interfaces[0].Name)

	// Real TCP between every pair.
	for i, p := range pods {
		serve(t, p, podAddr(t, res[i]), 8080)
	}
	for i := range pods {
		for j := range pods {
			if i != j {
				assert.NoError(t, talk(pods[i], podAddr(t, res[j]), 8080), "pod%d -> pod%d", i, j)
			}
		}
	}

	// CHECK passes, then fails once a route or an address is gone.
	for i, p := range pods {
		require.NoError(t, l.check(list, rt(fmt.Sprint("pod", i), p.Path)))
	}
	h := pods[1].Handle()
	eth0, err := h.LinkByName("eth0")
	require.NoError(t, err)
	routes, err := h.RouteList(eth0, nl.FAMILY_V4)
	require.NoError(t, err)
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			require.NoError(t, h.RouteDel(&r))
		}
	}
	assert.Error(t, l.check(list, rt("pod1", pods[1].Path)), "default route deleted")
	h = pods[2].Handle()
	eth0, err = h.LinkByName("eth0")
	require.NoError(t, err)
	addrs, err := h.AddrList(eth0, nl.FAMILY_V4)
	require.NoError(t, err)
	require.NotEmpty(t, addrs)
	require.NoError(t, h.AddrDel(eth0, &addrs[0]))
	assert.Error(t, l.check(list, rt("pod2", pods[2].Path)), "address deleted")

	// DEL twice; DEL after the netns is gone.
	require.NoError(t, l.del(list, rt("pod0", pods[0].Path)))
	require.NoError(t, l.del(list, rt("pod0", pods[0].Path)))
	require.NoError(t, l.del(list, rt("pod1", pods[1].Path)))
	gone, err := nettest.CreateNetns(nettest.UniqueName("cni-gone"))
	require.NoError(t, err)
	r, err := l.add(list, rt("pod3", gone.Path))
	require.NoError(t, err)
	require.NotEmpty(t, r.IPs)
	require.NoError(t, gone.Delete())
	require.NoError(t, l.del(list, rt("pod3", gone.Path)))
	require.NoError(t, l.del(list, rt("pod2", pods[2].Path)))
	l.assertClean("tabnet", "pod0", "pod1", "pod2", "pod3")
}

// DEL detaches the pair: off the network at once, the pod's eth0 and the
// host name free for a new ADD into the same namespace, the pair gone
// with the namespace or with GC.
func TestIntegrationDelDetaches(t *testing.T) {
	l := newLab(t)
	list := l.tabbyList("tabnet", map[string]any{"gc_grace_seconds": -1}, nil)
	peer := nettest.NewNetns(t, "cni-pod")
	pr, err := l.add(list, rt("peer", peer.Path))
	require.NoError(t, err)
	serve(t, peer, podAddr(t, pr), 8080)
	pod := nettest.NewNetns(t, "cni-pod")
	r, err := l.add(list, rt("p", pod.Path))
	require.NoError(t, err)
	require.NoError(t, talk(pod, podAddr(t, pr), 8080))

	handle := cni.Handle("tabnet", "p")
	detached := netlink.DetachedIfaceName(handle)
	require.NoError(t, l.del(list, rt("p", pod.Path)))
	host, err := l.node.Handle().LinkByName(detached)
	require.NoError(t, err, "the host end is detached, not deleted")
	assert.Equal(t, "tabby-detached:"+handle, host.Attrs().Alias)
	assert.Zero(t, host.Attrs().Flags&net.FlagUp)
	_, err = l.node.Handle().LinkByName(r.Interfaces[0].Name)
	assert.Error(t, err, "the host name is free")
	routes, err := l.node.Handle().RouteGet(net.ParseIP(podAddr(t, r)))
	if err == nil {
		for _, rt := range routes {
			assert.NotEqual(t, host.Attrs().Index, rt.LinkIndex, "a host route still leads to the detached pair")
		}
	}
	links, err := pod.Handle().LinkList()
	require.NoError(t, err)
	var names []string
	for _, lk := range links {
		names = append(names, lk.Attrs().Name)
		addrs, err := pod.Handle().AddrList(lk, nl.FAMILY_ALL)
		require.NoError(t, err)
		if lk.Attrs().Name == detached {
			assert.Empty(t, addrs, "the detached pod end has no address")
			assert.Zero(t, lk.Attrs().Flags&net.FlagUp)
		}
	}
	assert.ElementsMatch(t, []string{"lo", detached}, names)
	l.assertClean("tabnet", "p")

	// The runtime re-attaches the same sandbox: a new ADD works.
	r2, err := l.add(list, rt("p", pod.Path))
	require.NoError(t, err)
	assert.Equal(t, r.Interfaces[0].Name, r2.Interfaces[0].Name)
	assert.Equal(t, "eth0", r2.Interfaces[1].Name)
	require.NoError(t, talk(pod, podAddr(t, pr), 8080))
	// A second DEL while the first pair is still detached deletes the new one.
	require.NoError(t, l.del(list, rt("p", pod.Path)))
	l.assertClean("tabnet", "p")
	_, err = l.node.Handle().LinkByName(detached)
	require.NoError(t, err)

	// GC (no valid attachment but the peer) deletes the detached pair of a
	// namespace the runtime kept.
	require.NoError(t, l.in(func(ctx context.Context) error {
		return l.cfg.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "peer", IfName: "eth0"}}})
	}))
	_, err = l.node.Handle().LinkByName(detached)
	assert.Error(t, err, "GC deletes the detached pair")
	links, err = pod.Handle().LinkList()
	require.NoError(t, err)
	assert.Len(t, links, 1, "only lo is left in the pod")

	// Usually the runtime removes the namespace after DEL: the kernel
	// deletes the pair with it.
	r3, err := l.add(list, rt("p", pod.Path))
	require.NoError(t, err)
	require.NoError(t, l.del(list, rt("p", pod.Path)))
	_, err = l.node.Handle().LinkByName(detached)
	require.NoError(t, err)
	require.NoError(t, pod.Delete())
	require.Eventually(t, func() bool {
		_, err := l.node.Handle().LinkByName(detached)
		return err != nil
	}, 10*time.Second, 10*time.Millisecond, "the detached pair goes with the namespace")
	assert.NotEmpty(t, r3.IPs)
	l.assertClean("tabnet", "p")
}

func TestIntegrationErrors(t *testing.T) {
	l := newLab(t)
	pod := nettest.NewNetns(t, "cni-pod")

	// Not JSON: skel and the plugin answer code 6; libcni would not even
	// send it, so exec the binary directly.
	err := l.in(func(ctx context.Context) error {
		_, err := invoke.ExecPluginWithResult(ctx, filepath.Join(l.bin, "tabby"), []byte("{"),
			&invoke.Args{Command: "ADD", ContainerID: "bad", NetNS: pod.Path, IfName: "eth0", Path: l.bin}, nil)
		return err
	})
	assert.Equal(t, types.ErrDecodingFailure, cniCode(t, err))
	// Valid JSON, invalid configuration (MTU): 7.
	err = l.in(func(ctx context.Context) error {
		_, err := invoke.ExecPluginWithResult(ctx, filepath.Join(l.bin, "tabby"),
			[]byte(`{"cniVersion":"1.1.0","name":"x","type":"tabby","mtu":5,"ipam":{"type":"tabby-ipam"}}`),
			&invoke.Args{Command: "ADD", ContainerID: "bad", NetNS: pod.Path, IfName: "eth0", Path: l.bin}, nil)
		return err
	})
	assert.Equal(t, types.ErrInvalidNetworkConfig, cniCode(t, err))

	_, err = l.add(l.tabbyList("tabnet", map[string]any{"ipv4_pools": []string{"nope"}}, nil), rt("unknown", pod.Path))
	assert.Equal(t, types.ErrInvalidNetworkConfig, cniCode(t, err), "%v", err)

	_, err = l.add(l.tabbyList("tabnet", nil, nil), rt("nons", "/var/run/netns/"+nettest.UniqueName("cni-missing")))
	assert.Equal(t, types.ErrUnknownContainer, cniCode(t, err), "%v", err)

	// The node's own namespace as CNI_NETNS: code 8 before anything is
	// done (no eth0 in the node, its default route untouched, nothing
	// allocated); DEL and CHECK refuse it too.
	routesBefore, err := l.node.Handle().RouteList(nil, nl.FAMILY_V4)
	require.NoError(t, err)
	linksBefore, err := l.node.Handle().LinkList()
	require.NoError(t, err)
	_, err = l.add(l.tabbyList("tabnet", nil, nil), rt("self", l.node.Path))
	assert.Equal(t, types.ErrInvalidNetNS, cniCode(t, err), "%v", err)
	assert.Equal(t, types.ErrInvalidNetNS, cniCode(t, l.del(l.tabbyList("tabnet", nil, nil), rt("self", l.node.Path))))
	routesAfter, err := l.node.Handle().RouteList(nil, nl.FAMILY_V4)
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(routesBefore), fmt.Sprint(routesAfter), "the node's routes are untouched")
	linksAfter, err := l.node.Handle().LinkList()
	require.NoError(t, err)
	assert.Len(t, linksAfter, len(linksBefore), "no link added to the node")
	l.assertClean("tabnet", "self")

	tiny := l.tabbyList("tiny", map[string]any{"ipv4_pools": []string{"tiny"},
		"pools": []any{map[string]any{"name": "tiny", "cidr": "10.78.0.0/30", "blockSize": 30}}}, nil)
	var ids []string
	for i := range 4 {
		p := nettest.NewNetns(t, "cni-pod")
		id := fmt.Sprint("t", i)
		_, err := l.add(tiny, rt(id, p.Path))
		require.NoError(t, err)
		ids = append(ids, id)
		t.Cleanup(func() { _ = l.del(tiny, rt(id, p.Path)) })
	}
	_, err = l.add(tiny, rt("t4", pod.Path))
	assert.Equal(t, cni.CodePoolExhausted, cniCode(t, err), "%v", err)
	// A missing netns is reported as such even when the pool is full.
	_, err = l.add(tiny, rt("t5", "/var/run/netns/"+nettest.UniqueName("cni-missing")))
	assert.Equal(t, types.ErrUnknownContainer, cniCode(t, err), "%v", err)

	// ADD makes the veth pair while IPAM assigns, so "unknown" and "t4"
	// also check that a pair made before IPAM failed is gone.
	l.assertClean("tabnet", "bad", "unknown", "nons")
	l.assertClean("tiny", "t4", "t5")
	links, err := pod.Handle().LinkList()
	require.NoError(t, err)
	assert.Len(t, links, 1, "only lo in the pod after failed ADDs")
	for _, id := range ids {
		require.NoError(t, l.del(tiny, rt(id, "")))
	}
	l.assertClean("tiny", ids...)
}

func TestIntegrationConcurrentAdds(t *testing.T) {
	l := newLab(t)
	list := l.tabbyList("tabnet", map[string]any{"timeout_seconds": 80}, map[string]any{"timeout_seconds": 80})
	const n = 20
	pods := make([]*nettest.Netns, n)
	for i := range pods {
		pods[i] = nettest.NewNetns(t, "cni-pod")
	}
	addrs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := l.add(list, rt(fmt.Sprint("c", i), pods[i].Path))
			if assert.NoError(t, err) {
				addrs[i] = podAddr(t, r)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, a := range addrs {
		assert.False(t, seen[a], "%s given twice", a)
		seen[a] = true
	}
	var ids []string
	for i := range n {
		id := fmt.Sprint("c", i)
		ids = append(ids, id)
		require.NoError(t, l.del(list, rt(id, pods[i].Path)))
	}
	l.assertClean("tabnet", ids...)
}

func TestIntegrationGCAndStatus(t *testing.T) {
	l := newLab(t)
	list := l.tabbyList("tabnet", map[string]any{"gc_grace_seconds": -1}, nil)
	for _, id := range []string{"a", "b", "c"} {
		p := nettest.NewNetns(t, "cni-pod")
		_, err := l.add(list, rt(id, p.Path))
		require.NoError(t, err)
	}
	// A runtime that lost its cache (fresh cache dir): only the plugins'
	// GC can find the leaks.
	fresh := libcni.NewCNIConfigWithCacheDir([]string{l.bin}, t.TempDir(), newExec())
	require.NoError(t, l.in(func(ctx context.Context) error {
		return fresh.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "b", IfName: "eth0"}}})
	}))
	l.assertClean("tabnet", "a", "c")
	m, err := cni.OpenIPAM(&cni.IPAMConf{DatastorePath: l.db}, nil, 5*time.Second)
	require.NoError(t, err)
	have, err := m.IPsByHandle(t.Context(), cni.Handle("tabnet", "b"))
	require.NoError(t, m.Close())
	require.NoError(t, err)
	assert.Len(t, have, 1)
	links, err := l.node.Handle().LinkList()
	require.NoError(t, err)
	var tabby int
	for _, lk := range links {
		if strings.HasPrefix(lk.Attrs().Alias, "tabby:") {
			tabby++
		}
	}
	assert.Equal(t, 1, tabby)

	require.NoError(t, l.in(func(ctx context.Context) error { return l.cfg.GetStatusNetworkList(ctx, list) }))
	down := l.tabbyList("tabnet", map[string]any{"datastore_path": "", "etcd_endpoints": []string{"http://127.0.0.1:2"},
		"timeout_seconds": 2}, map[string]any{"timeout_seconds": 2})
	err = l.in(func(ctx context.Context) error { return l.cfg.GetStatusNetworkList(ctx, down) })
	assert.Equal(t, types.ErrPluginNotAvailable, cniCode(t, err), "%v", err)
}

// A datastore held by another process: DEL gives up within its timeout
// with code 11 (try again later) instead of hanging the runtime.
func TestIntegrationDelBoundedWhenDatastoreStuck(t *testing.T) {
	l := newLab(t)
	list := l.tabbyList("tabnet", map[string]any{"timeout_seconds": 1}, map[string]any{"timeout_seconds": 1})
	pod := nettest.NewNetns(t, "cni-pod")
	_, err := l.add(list, rt("p", pod.Path))
	require.NoError(t, err)
	held, err := bboltstore.Open(l.db, bboltstore.WithExclusive())
	require.NoError(t, err)
	start := time.Now()
	err = l.del(list, rt("p", pod.Path))
	assert.Equal(t, types.ErrTryAgainLater, cniCode(t, err), "%v", err)
	assert.Less(t, time.Since(start), 15*time.Second)
	require.NoError(t, held.Close())
	require.NoError(t, l.del(list, rt("p", pod.Path)))
	l.assertClean("tabnet", "p")
}

func TestIntegrationTabbyIPAMUnderPTP(t *testing.T) {
	l := newLab(t)
	list := l.list(map[string]any{"cniVersion": "1.0.0", "name": "ptpnet", "plugins": []any{map[string]any{
		"type": "ptp",
		"ipam": map[string]any{"type": "tabby-ipam", "datastore_path": l.db, "nodename": "node1",
			"pools":  []any{map[string]any{"name": "ptp", "cidr": "10.79.0.0/24", "gateway": "10.79.0.1"}},
			"routes": []any{map[string]any{"dst": "0.0.0.0/0"}}},
	}}})
	var pods []*nettest.Netns
	var addrs []string
	for i := range 2 {
		p := nettest.NewNetns(t, "cni-pod")
		r, err := l.add(list, rt(fmt.Sprint("p", i), p.Path))
		require.NoError(t, err)
		a := podAddr(t, r)
		assert.True(t, netip.MustParsePrefix("10.79.0.0/24").Contains(netip.MustParseAddr(a)))
		assert.NotEqual(t, "10.79.0.1", a)
		serve(t, p, a, 9090)
		pods, addrs = append(pods, p), append(addrs, a)
	}
	assert.NoError(t, talk(pods[0], addrs[1], 9090))
	assert.NoError(t, talk(pods[1], addrs[0], 9090))
	for i, p := range pods {
		require.NoError(t, l.check(list, rt(fmt.Sprint("p", i), p.Path)))
		require.NoError(t, l.del(list, rt(fmt.Sprint("p", i), p.Path)))
		require.NoError(t, l.del(list, rt(fmt.Sprint("p", i), p.Path)))
	}
	l.assertClean("ptpnet", "p0", "p1")
}

func TestIntegrationChainedPortmapBandwidth(t *testing.T) {
	l := newLab(t)
	list := l.tabbyList("chained", nil, nil,
		map[string]any{"type": "portmap", "snat": true, "capabilities": map[string]any{"portMappings": true}},
		map[string]any{"type": "bandwidth", "capabilities": map[string]any{"bandwidth": true}})
	pod := nettest.NewNetns(t, "cni-pod")
	r := rt("web", pod.Path)
	r.CapabilityArgs = map[string]any{
		"portMappings": []map[string]any{{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}},
		"bandwidth":    map[string]any{"ingressRate": 8_000_000, "ingressBurst": 1_000_000, "egressRate": 8_000_000, "egressBurst": 1_000_000},
	}
	res, err := l.add(list, r)
	require.NoError(t, err)
	serve(t, pod, podAddr(t, res), 8080)

	// The hostPort, reached from another namespace through the node's uplink.
	assert.NoError(t, talk(l.client, "10.98.0.1", 18080))

	// bandwidth found the host veth in the result and shaped it.
	host, err := l.node.Handle().LinkByName(res.Interfaces[0].Name)
	require.NoError(t, err)
	qdiscs, err := l.node.Handle().QdiscList(host)
	require.NoError(t, err)
	var tbf bool
	for _, q := range qdiscs {
		tbf = tbf || q.Type() == "tbf"
	}
	assert.True(t, tbf, "no tbf qdisc on %s: %v", host.Attrs().Name, qdiscs)

	require.NoError(t, l.check(list, r))
	require.NoError(t, l.del(list, r))
	require.NoError(t, l.del(list, r))
	assert.Error(t, talk(l.client, "10.98.0.1", 18080), "hostPort still open after DEL")
	l.assertClean("chained", "web")
}

func TestIntegrationDelegatedHostLocal(t *testing.T) {
	l := newLab(t)
	data := t.TempDir()
	list := l.list(map[string]any{"cniVersion": "1.1.0", "name": "hlnet", "plugins": []any{map[string]any{
		"type": "tabby", "state_dir": t.TempDir(),
		"ipam": map[string]any{"type": "host-local", "dataDir": data,
			"ranges": []any{[]any{map[string]any{"subnet": "10.81.0.0/24"}}}},
	}}})
	var pods []*nettest.Netns
	var addrs []string
	for i := range 2 {
		p := nettest.NewNetns(t, "cni-pod")
		res, err := l.add(list, rt(fmt.Sprint("h", i), p.Path))
		require.NoError(t, err)
		a := podAddr(t, res)
		ones, _ := res.IPs[0].Address.Mask.Size()
		assert.Equal(t, 32, ones, "tabby installs the delegated address as /32")
		serve(t, p, a, 7070)
		pods, addrs = append(pods, p), append(addrs, a)
	}
	again, err := l.add(list, rt("h0", pods[0].Path))
	require.NoError(t, err)
	assert.Equal(t, addrs[0], podAddr(t, again), "retried ADD keeps the address")
	assert.NoError(t, talk(pods[0], addrs[1], 7070))
	assert.NoError(t, talk(pods[1], addrs[0], 7070))
	for i, p := range pods {
		require.NoError(t, l.check(list, rt(fmt.Sprint("h", i), p.Path)))
		require.NoError(t, l.del(list, rt(fmt.Sprint("h", i), p.Path)))
		require.NoError(t, l.del(list, rt(fmt.Sprint("h", i), p.Path)))
	}
	for _, a := range addrs {
		_, err := os.Stat(filepath.Join(data, "hlnet", a))
		assert.True(t, os.IsNotExist(err), "host-local still holds %s", a)
	}
}
