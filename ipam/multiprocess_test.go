package ipam

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/ipam/store/bboltstore"
	"github.com/tabbynet/tabby/ipam/store/etcdstore"
	"github.com/tabbynet/tabby/ipam/store/etcdstore/etcdtest"
)

// The multi-process tests re-run this test binary as child processes; the
// child role is chosen by these environment variables, set on the child's
// exec.Cmd only.
const (
	envChildBackend = "TABBY_IPAM_CHILD_BACKEND" // "bbolt" or "etcd"
	envChildTarget  = "TABBY_IPAM_CHILD_TARGET"  // file path or etcd endpoint
	envChildNodes   = "TABBY_IPAM_CHILD_NODES"   // comma-separated node names
	envChildCount   = "TABBY_IPAM_CHILD_COUNT"   // assignments per node
)

// openBackend opens the store a child or parent uses.
func openBackend(tb testing.TB, backend, target string) store.Store {
	switch backend {
	case "bbolt":
		s, err := bboltstore.Open(target)
		require.NoError(tb, err)
		tb.Cleanup(func() { _ = s.Close() })
		return s
	case "etcd":
		s, err := etcdstore.New(etcdtest.Client(tb, target))
		require.NoError(tb, err)
		return s
	}
	tb.Fatalf("unknown backend %q", backend)
	return nil
}

// TestChildProcess is the child role; it does nothing in a normal run.
// Each of its nodes assigns count addresses, releasing every third handle
// at once, and prints the addresses it still holds as "HELD addr handle".
func TestChildProcess(t *testing.T) {
	backend := os.Getenv(envChildBackend)
	if backend == "" {
		t.Skip("child role for the multi-process tests")
	}
	s := openBackend(t, backend, os.Getenv(envChildTarget))
	a := mustNew(t, s)
	count, err := strconv.Atoi(os.Getenv(envChildCount))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var out bytes.Buffer
	var wg sync.WaitGroup
	for _, node := range strings.Split(os.Getenv(envChildNodes), ",") {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range count {
				handle := fmt.Sprintf("k8s-pod-network.%s-%d", node, i)
				r, err := a.Assign(ctx, AssignArgs{Handle: handle, Node: node, Num4: 1})
				if !assert.NoError(t, err) {
					return
				}
				if i%3 == 0 {
					got, err := a.ReleaseByHandle(ctx, handle)
					assert.NoError(t, err)
					assert.Equal(t, []netip.Addr{r.IPv4[0].Addr}, got)
					continue
				}
				mu.Lock()
				fmt.Fprintf(&out, "HELD %s %s\n", r.IPv4[0].Addr, handle)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Print(out.String())
}

// runProcesses starts procs children with nodesPer nodes each and returns
// what they hold at the end.
func runProcesses(t *testing.T, backend, target string, procs, nodesPer, count int) map[netip.Addr][]string {
	type result struct {
		out []byte
		err error
	}
	results := make([]result, procs)
	var wg sync.WaitGroup
	for p := range procs {
		var nodes []string
		for n := range nodesPer {
			nodes = append(nodes, fmt.Sprintf("proc%d-node%d", p, n))
		}
		cmd := exec.Command(os.Args[0], "-test.run", "^TestChildProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), envChildBackend+"="+backend, envChildTarget+"="+target,
			envChildNodes+"="+strings.Join(nodes, ","), envChildCount+"="+strconv.Itoa(count))
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := cmd.CombinedOutput()
			results[p] = result{out, err}
		}()
	}
	wg.Wait()
	held := map[netip.Addr][]string{}
	for p, r := range results {
		require.NoError(t, r.err, "child %d:\n%s", p, r.out)
		sc := bufio.NewScanner(bytes.NewReader(r.out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "HELD" {
				a := netip.MustParseAddr(f[1])
				held[a] = append(held[a], f[2])
			}
		}
	}
	return held
}

// multiProcess runs children against one store and checks that no address
// was handed out twice, every release is visible, and the store holds
// exactly what the children hold.
func multiProcess(t *testing.T, backend, target string) {
	procs, nodesPer, count := 4, 4, 10000/16
	cidr, block := "10.0.0.0/19", 22 // 8 blocks for 16 nodes: half of them borrow
	if testing.Short() {
		procs, nodesPer, count = 4, 2, 50
		cidr, block = "10.0.0.0/23", 25 // 4 blocks for 8 nodes
	}
	parent := mustNew(t, openBackend(t, backend, target))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, err := parent.CreatePool(ctx, IPPool{Name: "p", CIDR: netip.MustParsePrefix(cidr), BlockSize: block})
	require.NoError(t, err)

	start := time.Now()
	held := runProcesses(t, backend, target, procs, nodesPer, count)
	total := procs * nodesPer * count
	t.Logf("%d processes × %d nodes, %d assignments in %s", procs, nodesPer, total, time.Since(start))

	for a, hs := range held {
		require.Len(t, hs, 1, "%s held by %v", a, hs)
	}
	want := procs * nodesPer * (count - (count+2)/3)
	require.Len(t, held, want)
	r, err := parent.Check(ctx, CheckOptions{LiveHandles: func(string) bool { return true }})
	require.NoError(t, err)
	require.True(t, r.OK(), r.String())
	require.Equal(t, want, r.Allocations, "every release visible, nothing extra")
	for a, hs := range held {
		info, err := parent.Lookup(ctx, a)
		require.NoError(t, err)
		require.True(t, info.Allocated, a)
		require.Equal(t, hs[0], info.Attribute.Handle)
	}
	u, err := parent.Usage(ctx)
	require.NoError(t, err)
	t.Logf("blocks %d, used %d, borrowed %d", u.Pools[0].Blocks, u.Pools[0].Used, u.Borrowed())
}

func TestMultiProcessBbolt(t *testing.T) {
	multiProcess(t, "bbolt", filepath.Join(t.TempDir(), "ipam.db"))
}

func TestMultiProcessEtcd(t *testing.T) {
	multiProcess(t, "etcd", etcdtest.Start(t))
}
