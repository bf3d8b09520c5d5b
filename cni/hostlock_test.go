package cni

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// holdLock takes path's flock as another plugin process would.
func holdLock(t *testing.T, path string) (release func()) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_EX))
	var once sync.Once
	release = func() { once.Do(func() { _ = f.Close() }) }
	t.Cleanup(release)
	return release
}

// etcdConf is a configuration naming etcd (the IPAM itself is the memory
// one WithIPAM gives) and the lock file lock.
func etcdConf(t *testing.T, lock string) []byte {
	return conf(t, "1.1.0", map[string]any{"timeout_seconds": 1},
		map[string]any{"etcd_endpoints": []string{"http://127.0.0.1:2"}, "ipam_lock_file": lock})
}

// With etcd, ADD and DEL wait for the host's IPAM lock (Calico's
// ipam_lock_file); a holder that does not let go within timeout_seconds
// gives code 11 naming the lock file. With bbolt the lock is not taken.
func TestIPAMLockWaitedFor(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "run", "ipam.lock")
	e := newEnv(t)
	c := etcdConf(t, lock)
	e.add("c1", c)

	release := holdLock(t, lock)
	e.wm.AddNetns("/run/netns/c2")
	_, err := e.p.Add(t.Context(), args("c2", "/run/netns/c2", c))
	require.Error(t, err)
	assert.Equal(t, uint(11), code(t, err))
	assert.Contains(t, err.Error(), lock)
	have, err := e.m.IPsByHandle(t.Context(), "net1.c2")
	require.NoError(t, err)
	assert.Empty(t, have, "nothing assigned while the lock was held")

	err = e.p.Del(t.Context(), args("c1", "/run/netns/c1", c))
	assert.Equal(t, uint(11), code(t, err))

	// bbolt (no etcd_endpoints): the lock is not taken.
	bb := conf(t, "1.1.0", map[string]any{"timeout_seconds": 1}, map[string]any{"ipam_lock_file": lock})
	e.add("c3", bb)

	release()
	e.add("c2", c)
	require.NoError(t, e.p.Del(t.Context(), args("c1", "/run/netns/c1", c)))
}

// countingIPAM records how many Assign calls run at once.
type countingIPAM struct {
	IPAM
	now, most atomic.Int32
}

func (c *countingIPAM) Assign(ctx context.Context, r AssignRequest) ([]netip.Addr, error) {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for {
		m := c.most.Load()
		if n <= m || c.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	return c.IPAM.Assign(ctx, r)
}

// Concurrent ADDs on one node assign one at a time with etcd, so they do
// not each claim a block (trial finding: 8 parallel ADDs left 4 IPv6
// blocks affine to a fresh node).
func TestIPAMLockSerialisesADDs(t *testing.T) {
	m, err := NewMemoryIPAM(t.Context())
	require.NoError(t, err)
	ci := &countingIPAM{IPAM: m}
	e := newEnv(t, WithIPAM(ci))
	c := conf(t, "1.1.0", nil, map[string]any{"etcd_endpoints": []string{"http://127.0.0.1:2"},
		"ipam_lock_file": filepath.Join(t.TempDir(), "ipam.lock")})
	var wg sync.WaitGroup
	for i := range 8 {
		id := "c" + string(rune('a'+i))
		e.wm.AddNetns("/run/netns/" + id)
		wg.Go(func() {
			_, err := e.p.Add(t.Context(), args(id, "/run/netns/"+id, c))
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), ci.most.Load(), "Assign calls overlapped")
}

// The lock is best effort: a lock file that cannot be created leaves the
// plugin working without it.
func TestIPAMLockBestEffort(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	e := newEnv(t)
	e.add("c1", etcdConf(t, filepath.Join(file, "ipam.lock")))
}

func TestIPAMLockFileConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		top, ipam map[string]any
		want      string
	}{
		"none":         {want: ""},
		"top level":    {top: map[string]any{"ipam_lock_file": "/a"}, want: "/a"},
		"ipam section": {ipam: map[string]any{"ipam_lock_file": "/b"}, want: "/b"},
		"ipam wins":    {top: map[string]any{"ipam_lock_file": "/a"}, ipam: map[string]any{"ipam_lock_file": "/b"}, want: "/b"},
	} {
		t.Run(name, func(t *testing.T) {
			data := conf(t, "1.1.0", tc.top, tc.ipam)
			nc, err := ParseConfig(data)
			require.NoError(t, err)
			assert.Equal(t, tc.want, nc.IPAMConf.IPAMLockFile)
			_, ic, err := ParseIPAMConfig(data)
			require.NoError(t, err)
			assert.Equal(t, tc.want, ic.IPAMLockFile)
		})
	}
}
