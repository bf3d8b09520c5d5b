package netlink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// sysctl is one /proc/sys setting, Key in slash form ("net/ipv4/ip_forward").
type sysctl struct{ Key, Value string }

// writeSysctls writes settings inside netns n. /proc/sys/net shows the
// namespace of the thread that opens the file, so the writes run through
// ns.Do, which locks a fresh goroutine to its OS thread, enters n and
// restores the thread's namespace afterwards.
//
// When the calling thread is already in n (a CNI plugin working in its own
// host namespace), the writes happen directly on the locked thread, saving
// two namespace switches.
func writeSysctls(n ns.NetNS, settings []sysctl) error {
	write := func(ns.NetNS) error {
		for _, s := range settings {
			if err := os.WriteFile(filepath.Join("/proc/sys", s.Key), []byte(s.Value), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(s.Key, "/", "."), s.Value, err)
			}
		}
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if threadInNetns(n) {
		return write(n)
	}
	return n.Do(write)
}

// threadInNetns reports whether the calling (locked) thread is in n.
func threadInNetns(n ns.NetNS) bool {
	var cur, want unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &cur); err != nil {
		return false
	}
	if err := unix.Fstat(int(n.Fd()), &want); err != nil {
		return false
	}
	return cur.Dev == want.Dev && cur.Ino == want.Ino
}

// readSysctl reads one setting inside netns n.
func readSysctl(n ns.NetNS, key string) (string, error) {
	var v string
	err := n.Do(func(ns.NetNS) error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", key))
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	return v, nil
}

// openNetns opens a network namespace by path; "" is the calling thread's
// current namespace. A missing path wraps ErrNetnsNotFound.
func openNetns(path string) (ns.NetNS, error) {
	if path == "" {
		n, err := ns.GetCurrentNS()
		if err != nil {
			return nil, fmt.Errorf("open current netns: %w", err)
		}
		return n, nil
	}
	n, err := ns.GetNS(path)
	if err != nil {
		var missing ns.NSPathNotExistErr
		if errors.As(err, &missing) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNetnsNotFound, path)
		}
		var notNS ns.NSPathNotNSErr
		if errors.As(err, &notNS) {
			return nil, fmt.Errorf("%w: %s is not a network namespace", ErrInvalidSpec, path)
		}
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	return n, nil
}

// EnableForwarding turns on IPv4 and IPv6 forwarding in the network
// namespace at path ("" = current): net.ipv4.ip_forward=1 and
// net.ipv6.conf.all.forwarding=1. A node needs it once; the node agent (or
// nettest) calls it, never on a namespace it does not own.
func EnableForwarding(path string) error {
	n, err := openNetns(path)
	if err != nil {
		return err
	}
	defer n.Close()
	return writeSysctls(n, []sysctl{{"net/ipv4/ip_forward", "1"}, {"net/ipv6/conf/all/forwarding", "1"}})
}
