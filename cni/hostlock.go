package cni

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DefaultIPAMLockFile is the host-wide lock file that serialises the IPAM
// work of the plugin processes on one node when the datastore is etcd
// (IPAMConf.IPAMLockFile), as Calico's /var/run/calico/ipam.lock.
const DefaultIPAMLockFile = "/var/run/tabby/ipam.lock"

// lockHost takes the exclusive flock(2) on path, waiting until it is free
// or ctx ends (then an ErrDatastore error: code 11, try again later). It is
// best effort, as Calico's: when the file cannot be created or locked the
// plugin goes on without it (a warning is logged), since the lock only
// keeps concurrent ADDs of one node from claiming a block each; IPAM's
// compare-and-swap keeps the addresses unique either way. The returned
// function releases the lock (closing the file does).
func (p *Plugin) lockHost(ctx context.Context, path string) (unlock func(), err error) {
	if err := mkdirFor(path); err != nil {
		p.log.Warn("IPAM lock unavailable, going on without it", "path", path, "err", err)
		return func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		p.log.Warn("IPAM lock unavailable, going on without it", "path", path, "err", err)
		return func() {}, nil
	}
	got := make(chan error, 1)
	go func() {
		for {
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if !errors.Is(err, unix.EINTR) {
				got <- err
				return
			}
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			_ = f.Close()
			p.log.Warn("IPAM lock unavailable, going on without it", "path", path, "err", err)
			return func() {}, nil
		}
		return func() { _ = f.Close() }, nil
	case <-ctx.Done():
		// The waiting flock returns once the holder lets go; close then.
		go func() { <-got; _ = f.Close() }()
		return nil, fmt.Errorf("%w: waiting for the host's IPAM lock %s: %w", ErrDatastore, path, ctx.Err())
	}
}

// lockIPAM takes the host's IPAM lock when ic's datastore is etcd (a bbolt
// file is locked by bbolt itself) and returns its release.
func (p *Plugin) lockIPAM(ctx context.Context, ic *IPAMConf) (func(), error) {
	if len(ic.EtcdEndpoints) == 0 {
		return func() {}, nil
	}
	path := ic.IPAMLockFile
	if path == "" {
		path = DefaultIPAMLockFile
	}
	return p.lockHost(ctx, path)
}
