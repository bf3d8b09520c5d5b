package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/cni"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// echoServer accepts TCP on loopback and echoes until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func TestSocketBridgeJoinsAndCloses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etcd.sock")
	b, err := bridgeSocket(path, echoServer(t))
	require.NoError(t, err)
	assert.Equal(t, "unix://"+path, b.endpoint())

	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))

	// Closing the bridge ends the joined connection and removes the socket.
	b.close()
	_, err = c.Read(buf)
	assert.Error(t, err)
	_, err = os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = net.Dial("unix", path)
	assert.Error(t, err)
}

func TestSocketBridgeUnreachableTarget(t *testing.T) {
	// A target nobody listens on: the bridge accepts and closes, the
	// client sees the connection end (etcd's client then retries).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	target := ln.Addr().String()
	ln.Close()
	path := filepath.Join(t.TempDir(), "s.sock")
	b, err := bridgeSocket(path, target)
	require.NoError(t, err)
	defer b.close()
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
}

// TestConflistParsesAsTabby: the conflist the lab gives each node is one
// the plugin accepts (libcni adds name and cniVersion to the entry).
func TestConflistParsesAsTabby(t *testing.T) {
	l := &cniLab{bridge: &socketBridge{path: "/run/lab/etcd.sock"}}
	list, err := l.conflist("node1", 1450)
	require.NoError(t, err)
	assert.Equal(t, network, list.Name)
	require.Len(t, list.Plugins, 1)
	var entry map[string]any
	require.NoError(t, json.Unmarshal(list.Plugins[0].Bytes, &entry))
	entry["name"], entry["cniVersion"] = list.Name, list.CNIVersion
	b, err := json.Marshal(entry)
	require.NoError(t, err)
	conf, err := cni.ParseConfig(b)
	require.NoError(t, err)
	assert.Equal(t, "tabby", conf.Type)
	assert.Equal(t, "node1", conf.Nodename)
	assert.Equal(t, 1450, conf.MTU)
	require.NotNil(t, conf.IPAMConf)
	assert.Equal(t, []string{"unix:///run/lab/etcd.sock"}, conf.IPAMConf.EtcdEndpoints)
	assert.Empty(t, conf.IPAMConf.DatastorePath)
}

// TestLab runs the whole lab, as `make demo` does (about 10 s: it builds
// the plugin); it needs root and is left out with -short.
func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole lab: run without -short")
	}
	nettest.RequireRoot(t)
	var out bytes.Buffer
	ok, err := run(&out, "vxlan", "")
	require.NoError(t, err, out.String())
	assert.True(t, ok, out.String())
	assert.Contains(t, out.String(), "checks PASSED")
	assert.False(t, strings.Contains(out.String(), "FAIL"), out.String())
}

// TestShellJoinRoundTrips checks that the build command the lab prints
// pastes into a shell as the arguments it runs (-ldflags=-s -w is one).
func TestShellJoinRoundTrips(t *testing.T) {
	for _, args := range [][]string{
		buildArgs("/tmp/tabby-lab-1/bin"),
		{"plain", "two words", "it's", "", `a"b`, "$HOME", "x;y", "tab\there"},
	} {
		line := shellJoin(args)
		out, err := exec.Command("sh", "-c", `printf '%s\0' `+line).Output()
		require.NoError(t, err, line)
		assert.Equal(t, strings.Join(args, "\x00")+"\x00", string(out), line)
	}
	assert.Contains(t, shellJoin(buildArgs("/d")), "'-ldflags=-s -w'")
}
