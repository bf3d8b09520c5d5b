package nettest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	nl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named namespaces live, as with `ip netns add`.
const NetnsDir = "/var/run/netns"

// RequireRoot skips the test unless it runs as root with network
// namespace support, with a message saying why.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root to create network namespaces (run as root, e.g. `sudo go test`)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		t.Skipf("kernel test: no network namespace support: %v", err)
	}
}

// UniqueName returns prefix + "-" + 8 random hex digits, for namespaces
// that must not collide with other tests or leftovers of crashed runs.
func UniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Netns is a named network namespace created for a test. A process runs
// inside it with `ip netns exec <Name> CMD` (or `nsenter --net=<Path> CMD`);
// Command and Start do exactly that.
type Netns struct {
	// Name is the `ip netns` name.
	Name string
	// Path is the bind-mounted namespace file, /var/run/netns/<Name>.
	Path string

	ns      ns.NetNS
	h       *nl.Handle
	deleted bool
}

// NewNetns creates a uniquely named namespace (name = UniqueName(prefix))
// with lo up, and deletes it in t.Cleanup (processes started with Start are
// stopped first). It skips the test when not root.
func NewNetns(t testing.TB, prefix string) *Netns {
	t.Helper()
	RequireRoot(t)
	return newNetnsNamed(t, UniqueName(prefix))
}

func newNetnsNamed(t testing.TB, name string) *Netns {
	t.Helper()
	n, err := CreateNetns(name)
	if err != nil {
		t.Fatalf("nettest: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Delete(); err != nil {
			t.Errorf("nettest: %v", err)
		}
	})
	return n
}

// CreateNetns creates the named namespace with lo up. The caller deletes it
// with Delete. For tests prefer NewNetns.
func CreateNetns(name string) (*Netns, error) {
	path := filepath.Join(NetnsDir, name)
	errc := make(chan error, 1)
	go func() {
		// Creating a namespace moves the thread into it: do it on a locked
		// thread and move back; if moving back fails, keep the thread locked
		// so the runtime destroys it instead of reusing it.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		created, err := netns.NewNamed(name)
		if err == nil {
			created.Close()
		}
		if serr := netns.Set(orig); serr != nil {
			errc <- errors.Join(err, serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	n, err := ns.GetNS(path)
	if err != nil {
		_ = netns.DeleteNamed(name)
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	h, err := nl.NewHandleAt(netns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		n.Close()
		_ = netns.DeleteNamed(name)
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	out := &Netns{Name: name, Path: path, ns: n, h: h}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		_ = out.Delete()
		return nil, fmt.Errorf("netns %s: set lo up: %w", name, err)
	}
	return out, nil
}

// Delete closes the handles and removes the namespace. Links inside it
// (and veth peers outside) disappear with it once no process holds it.
// Deleting it again does nothing.
func (n *Netns) Delete() error {
	if n.deleted {
		return nil
	}
	n.deleted = true
	n.h.Close()
	err := n.ns.Close()
	if derr := netns.DeleteNamed(n.Name); derr != nil && !errors.Is(derr, os.ErrNotExist) && !errors.Is(derr, syscall.EINVAL) {
		err = errors.Join(err, fmt.Errorf("delete netns %s: %w", n.Name, derr))
	}
	return err
}

// Handle returns a netlink handle bound to the namespace (owned by n; do not close).
func (n *Netns) Handle() *nl.Handle { return n.h }

// NS returns the namespace as a containernetworking ns.NetNS (owned by n; do not close).
func (n *Netns) NS() ns.NetNS { return n.ns }

// Do runs f on an OS thread that has entered the namespace (sockets created
// by f belong to it), and restores the thread afterwards.
func (n *Netns) Do(f func() error) error {
	return n.ns.Do(func(ns.NetNS) error { return f() })
}

// Sysctl writes /proc/sys/<key> inside the namespace; key in dotted or
// slash form ("net.ipv4.ip_forward"). Interface names with dots need the slash form.
func (n *Netns) Sysctl(key, value string) error {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return n.Do(func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s in %s: %w", key, n.Name, err)
		}
		return nil
	})
}

// Command returns `ip netns exec <Name> name args...`, which runs the
// program inside the namespace (with /sys remounted for it, so tools that
// read /sys/class/net see the namespace's links). BIRD, socat, iptables, ...
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
func (n *Netns) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// Start starts a long-running command inside the namespace and stops it
// (SIGTERM, then SIGKILL after 2 s) in t.Cleanup, before the namespace is
// deleted. Output goes to t.Log.
func (n *Netns) Start(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := n.Command(context.Background(), name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w := &logWriter{t: t, prefix: n.Name + " " + name + ": "}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("nettest: start %s in %s: %v", name, n.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		w.close()
	})
	return cmd
}
