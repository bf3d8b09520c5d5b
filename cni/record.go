package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// The record of a delegated allocation: <StateDir>/<handle>, a JSON list
// of the addresses the IPAM plugin gave, written after a successful
// delegated ADD and removed by DEL, so a retried ADD neither asks the IPAM
// plugin again (host-local refuses) nor releases the first allocation
// when it fails.

func recordPath(dir, handle string) string { return filepath.Join(dir, handle) }

// readRecord returns the recorded addresses of handle; none when there is
// no record.
func readRecord(dir, handle string) ([]netip.Addr, error) {
	data, err := os.ReadFile(recordPath(dir, handle))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read record %s: %w", handle, err)
	}
	var addrs []netip.Addr
	if err := json.Unmarshal(data, &addrs); err != nil {
		return nil, nil //nolint:nilerr // a torn record is as good as none: ask the IPAM plugin
	}
	return addrs, nil
}

func writeRecord(dir, handle string, addrs []netip.Addr) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	data, _ := json.Marshal(addrs)
	tmp := recordPath(dir, "."+handle+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write record %s: %w", handle, err)
	}
	if err := os.Rename(tmp, recordPath(dir, handle)); err != nil {
		return fmt.Errorf("write record %s: %w", handle, err)
	}
	return nil
}

func removeRecord(dir, handle string) error {
	if err := os.Remove(recordPath(dir, handle)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove record %s: %w", handle, err)
	}
	return nil
}

// recordYoungerThan reports whether handle's record was written less than
// grace ago (an ADD GC must not undo).
func recordYoungerThan(dir, handle string, grace time.Duration) bool {
	fi, err := os.Stat(recordPath(dir, handle))
	return err == nil && time.Since(fi.ModTime()) < grace
}
