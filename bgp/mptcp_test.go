package bgp

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestListenerRefuses(t *testing.T) {
	tests := []struct {
		name  string
		peer  Peer
		port  int32
		mptcp bool
		want  []string
	}{
		{name: "password on an MPTCP listener", peer: Peer{Password: "s"}, port: 179, mptcp: true, want: []string{"password (TCP MD5)"}},
		{name: "password and ttlSecurity", peer: Peer{Password: "s", TTLSecurity: 2}, port: 179, mptcp: true,
			want: []string{"password (TCP MD5)", "ttlSecurity"}},
		{name: "plain TCP listener", peer: Peer{Password: "s", TTLSecurity: 2}, port: 179, mptcp: false},
		{name: "not listening", peer: Peer{Password: "s", TTLSecurity: 2}, port: -1, mptcp: true},
		{name: "neither", peer: Peer{EBGPMultihopTTL: 3}, port: 179, mptcp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, listenerRefuses(tt.peer, tt.port, tt.mptcp))
		})
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPasswordPeerOnMPTCPListenerWarns: a peer with a password added to a
// listening speaker whose listener is Multipath TCP (Go's default for
// go >= 1.24 modules, where the kernel refuses TCP_MD5SIG on it, so the
// peer's connections fail) gets a Warn that names the peer and the
// GODEBUG fix; with a plain TCP listener it does not.
func TestPasswordPeerOnMPTCPListenerWarns(t *testing.T) {
	for _, mptcp := range []bool{true, false} {
		var buf lockedBuffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
		s, _ := startSpeaker(t, 1, freePort(t), nil, WithLogger(log))
		s.mu.Lock()
		s.mptcp = mptcp
		s.mu.Unlock()
		require.NoError(t, s.SetPeers(context.Background(), []Peer{
			{Name: "tor", Address: loopNode(2), ASNumber: 65000, Password: "s3cret"},
			{Name: "plain", Address: loopNode(3), ASNumber: 65000}}))
		out := buf.String()
		if !mptcp {
			assert.NotContains(t, out, "multipathtcp=0")
			continue
		}
		assert.Contains(t, out, "peer=tor")
		assert.Contains(t, out, "password (TCP MD5)")
		assert.Contains(t, out, "GODEBUG=multipathtcp=0")
		assert.NotContains(t, out, "peer=plain")
		s.Stop()
	}
}
