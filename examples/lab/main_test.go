package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
	"github.com/tabbynet/tabby/ipam"
)

// TestStopSignalsCancel sends the lab process each signal that ends an
// interactive run (Ctrl-C, kill or timeout, the terminal closing): each
// must cancel the lab's context, so that it removes what it built, and not
// kill the process (a missing one kills this test binary).
func TestStopSignalsCancel(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, stop := signal.NotifyContext(context.Background(), stopSignals()...)
			defer stop()
			require.NoError(t, syscall.Kill(syscall.Getpid(), sig))
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("%v did not stop the lab", sig)
			}
		})
	}
}

// TestMissingTools checks the lab's up-front check of the executables it
// runs, with PATH holding only the named fake executables.
func TestMissingTools(t *testing.T) {
	all := []string{"ip", "iptables-nft-restore", "bird", "birdc", "go"}
	for _, tc := range []struct {
		name    string
		present []string
		goBuild bool
		missing []string // in the error, in order; none: no error
	}{
		{name: "all there", present: all, goBuild: true},
		{name: "legacy iptables will do", present: []string{"ip", "iptables-legacy-restore", "bird", "birdc"}},
		{name: "no go needed with --cni-bin-dir", present: all[:4]},
		{name: "no BIRD", present: []string{"ip", "iptables-nft-restore", "go"}, goBuild: true,
			missing: []string{"bird (Debian package bird2)", "birdc (Debian package bird2)"}},
		{name: "nothing", goBuild: true, missing: []string{"ip (Debian package iproute2)",
			"iptables-nft-restore or iptables-legacy-restore (Debian package iptables)",
			"bird (Debian package bird2)", "birdc (Debian package bird2)", "go (the Go toolchain; or pass --cni-bin-dir)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, n := range tc.present {
				require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755))
			}
			t.Setenv("PATH", dir)
			err := missingTools(tc.goBuild)
			if tc.missing == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, errMissingTools)
			require.Contains(t, err.Error(), strings.Join(tc.missing, ", "))
		})
	}
}

// TestParseFlags checks the lab's command line: flags only, a usage that
// says what the lab does, -h not an error to the user.
func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    options
		err     string // in the error; empty: none
		errIs   error
		printed []string // in what went to stderr
	}{
		{name: "defaults", want: options{routing: "vxlan"}},
		{name: "both flags", args: []string{"--routing", "direct", "-cni-bin-dir=/opt/cni/bin"},
			want: options{routing: "direct", cniBinDir: "/opt/cni/bin"}},
		{name: "help", args: []string{"-h"}, errIs: flag.ErrHelp,
			printed: []string{"usage: make demo", "Needs root", "-routing", "-cni-bin-dir"}},
		{name: "argument", args: []string{"extra"}, err: `unexpected argument "extra"`,
			printed: []string{`unexpected argument "extra"`, "usage: make demo"}},
		{name: "unknown flag", args: []string{"--nodes", "5"}, err: "flag provided but not defined: -nodes",
			printed: []string{"usage: make demo"}},
		{name: "unknown routing", args: []string{"--routing", "bogus"}, err: `unknown -routing "bogus"`,
			printed: []string{`unknown -routing "bogus" (want vxlan or direct)`, "usage: make demo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := parseFlags(tc.args, &stderr)
			switch {
			case tc.errIs != nil:
				require.ErrorIs(t, err, tc.errIs)
			case tc.err != "":
				require.ErrorContains(t, err, tc.err)
			default:
				require.NoError(t, err)
				assert.Equal(t, tc.want, got)
				assert.Empty(t, stderr.String())
			}
			for _, p := range tc.printed {
				assert.Contains(t, stderr.String(), p)
			}
		})
	}
}

// TestRoutingFor checks the --routing modes: the pod MTU leaves room for
// the VXLAN headers only when the nodes encapsulate (Calico's MTU sizing).
func TestRoutingFor(t *testing.T) {
	for _, tc := range []struct {
		flag    string
		routing nettest.Routing
		mode    ipam.EncapMode
		mtu     int
	}{
		{"vxlan", nettest.RoutingVXLAN, ipam.EncapAlways, 1450},
		{"direct", nettest.RoutingDirect, ipam.EncapNever, 1500},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			r, mode, mtu, err := routingFor(tc.flag)
			require.NoError(t, err)
			assert.Equal(t, tc.routing, r)
			assert.Equal(t, tc.mode, mode)
			assert.Equal(t, tc.mtu, mtu)
		})
	}
	_, _, _, err := routingFor("ipip")
	require.ErrorContains(t, err, `unknown -routing "ipip" (want vxlan or direct)`)
}

// TestLabPool: the lab's Calico pool manifest decodes into the pool the
// lab needs for each routing mode, with ipam's defaults filled in.
func TestLabPool(t *testing.T) {
	for _, mode := range []ipam.EncapMode{ipam.EncapAlways, ipam.EncapNever} {
		t.Run(string(mode), func(t *testing.T) {
			p, err := labPool(mode)
			require.NoError(t, err)
			assert.Equal(t, "default-ipv4-ippool", p.Name)
			assert.Equal(t, netip.MustParsePrefix(poolCIDR), p.CIDR)
			assert.Equal(t, blockSize, p.BlockSize)
			assert.Equal(t, mode, p.VXLANMode)
			assert.Equal(t, ipam.EncapNever, p.IPIPMode)
			assert.Equal(t, "all()", p.NodeSelector)
			require.NoError(t, p.Validate())
		})
	}
}

// TestInterrupted checks what an interrupted lab says: that everything is
// removed only when every leftover check finds nothing.
func TestInterrupted(t *testing.T) {
	clean := func() error { return nil }
	err := interrupted([]func() error{clean, clean})
	require.Equal(t, errInterrupted, err)
	assert.Equal(t, "interrupted; everything it had made is removed", interruptedMessage(err))

	assert.Equal(t, errInterrupted, interrupted(nil), "interrupted before it made anything")

	err = interrupted([]func() error{clean, func() error { return errors.New("left behind: tby-1-n0") }})
	require.ErrorIs(t, err, errInterrupted)
	assert.Equal(t, "interrupted; left behind: tby-1-n0", interruptedMessage(err))
}

// TestElapsed checks how steps print their durations: milliseconds, and
// no "0s" for a step that took less than one.
func TestElapsed(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "under 1ms"},
		{300 * time.Microsecond, "under 1ms"},
		{700 * time.Microsecond, "1ms"},
		{107 * time.Millisecond, "107ms"},
		{1002400 * time.Microsecond, "1.002s"},
	} {
		assert.Equal(t, tc.want, elapsed(tc.d), "%v", tc.d)
	}
}

// TestLastCleanup checks that the last cleanup step says the lab removes
// the plugin it built and leaves the one --cni-bin-dir names.
func TestLastCleanup(t *testing.T) {
	assert.Contains(t, lastCleanup(""), "removing the plugin binary")
	got := lastCleanup("/opt/cni/bin")
	assert.NotContains(t, got, "removing the plugin")
	assert.Contains(t, got, "the plugin in /opt/cni/bin stays")
}
