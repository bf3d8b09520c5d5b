package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/selector"
)

// TestBGPPeerSourceAddressAndLocalAS: BGPPeer's sourceAddress and
// numAllowedLocalASNumbers reach the resolved Peer and the session GoBGP
// is configured with (its local address and allow-own-as), for peerIP and
// peerSelector peers; unset, the session binds the node IP and allows no
// own AS, as Calico's defaults.
func TestBGPPeerSourceAddressAndLocalAS(t *testing.T) {
	s, cfg := startIdleSpeaker(t, func(c *Config) { c.NodeToNodeMeshEnabled = new(bool) })
	rr := selector.MustParse("has(rr)")
	nodes := []Node{
		{Name: "node-1", IPv4: loopNode(1)},
		{Name: "node-5", IPv4: loopNode(5), Labels: map[string]string{"rr": ""}},
	}
	topo := Topology{Nodes: nodes, BGPPeers: []BGPPeer{
		{Name: "tor", PeerIP: loopNode(2).String(), ASNumber: 65000, SourceAddress: SourceAddressNone, NumAllowedLocalASNumbers: 2},
		{Name: "core", PeerIP: loopNode(3).String(), ASNumber: 65001, SourceAddress: SourceAddressUseNodeIP},
		{Name: "plain", PeerIP: loopNode(4).String(), ASNumber: 65002},
		{Name: "to-rr", PeerSelector: &rr, NumAllowedLocalASNumbers: 1},
	}}
	peers, err := ResolvePeers(cfg, topo)
	require.NoError(t, err)
	got := map[string]Peer{}
	for _, p := range peers {
		got[p.Name] = p
	}
	assert.Equal(t, SourceAddressNone, got["bgppeer/tor"].SourceAddressMode)
	assert.Equal(t, 2, got["bgppeer/tor"].NumAllowedLocalASNumbers)
	assert.Equal(t, SourceAddressUseNodeIP, got["bgppeer/core"].SourceAddressMode)
	assert.Equal(t, 1, got["bgppeer/to-rr/node-5"].NumAllowedLocalASNumbers)

	require.NoError(t, s.SetTopology(context.Background(), topo))
	for _, tt := range []struct {
		addr       netip.Addr
		local      string
		allowOwnAS uint32
	}{
		{loopNode(2), "0.0.0.0", 2}, // None: GoBGP binds no address, the kernel picks
		{loopNode(3), loopNode(1).String(), 0},
		{loopNode(4), loopNode(1).String(), 0},
		{loopNode(5), loopNode(1).String(), 1},
	} {
		gp := gobgpPeer(t, s, tt.addr)
		require.NotNil(t, gp, "peer %s", tt.addr)
		assert.Equal(t, tt.local, gp.GetTransport().GetLocalAddress(), "peer %s local address", tt.addr)
		assert.Equal(t, tt.allowOwnAS, gp.GetConf().GetAllowOwnAsn(), "peer %s allow own AS", tt.addr)
	}

	// A change of either is a change of the session.
	topo.BGPPeers[0].NumAllowedLocalASNumbers = 3
	require.NoError(t, s.SetTopology(context.Background(), topo))
	assert.Equal(t, uint32(3), gobgpPeer(t, s, loopNode(2)).GetConf().GetAllowOwnAsn())
}

// TestBGPPeerSourceAddressValidation: Calico accepts only UseNodeIP and
// None (empty is UseNodeIP); numAllowedLocalASNumbers is a count GoBGP
// keeps in 8 bits; Peer.SourceAddress goes with UseNodeIP only.
func TestBGPPeerSourceAddressValidation(t *testing.T) {
	cfg := Config{NodeName: "a", NodeIP: netip.MustParseAddr("10.0.0.1")}
	nodes := []Node{{Name: "a", IPv4: cfg.NodeIP}}
	for _, tt := range []struct {
		bp  BGPPeer
		msg string
	}{
		{BGPPeer{Name: "x", Node: "zz", PeerIP: "10.1.1.1", ASNumber: 1, SourceAddress: "rubbish"}, `sourceAddress "rubbish"`},
		{BGPPeer{Name: "x", Node: "zz", PeerIP: "10.1.1.1", ASNumber: 1, NumAllowedLocalASNumbers: -1}, "numAllowedLocalASNumbers -1"},
		{BGPPeer{Name: "x", Node: "zz", PeerIP: "10.1.1.1", ASNumber: 1, NumAllowedLocalASNumbers: 256}, "numAllowedLocalASNumbers 256"},
	} {
		_, err := ResolvePeers(cfg, Topology{Nodes: nodes, BGPPeers: []BGPPeer{tt.bp}})
		assert.ErrorIs(t, err, ErrInvalidPeer, tt.msg)
		assert.ErrorContains(t, err, tt.msg)
	}
	ok := BGPPeer{Name: "ok", PeerIP: "10.1.1.1", ASNumber: 1, SourceAddress: SourceAddressNone, NumAllowedLocalASNumbers: 255}
	_, err := ResolvePeers(cfg, Topology{Nodes: nodes, BGPPeers: []BGPPeer{ok}})
	require.NoError(t, err)

	base := Peer{Name: "p", Address: netip.MustParseAddr("10.1.1.1"), ASNumber: 1}
	for _, tt := range []struct {
		mod func(*Peer)
		msg string
	}{
		{func(p *Peer) { p.SourceAddressMode = "rubbish" }, `sourceAddress "rubbish"`},
		{func(p *Peer) {
			p.SourceAddressMode = SourceAddressNone
			p.SourceAddress = netip.MustParseAddr("10.0.0.1")
		}, "sourceAddress None"},
		{func(p *Peer) { p.NumAllowedLocalASNumbers = 300 }, "numAllowedLocalASNumbers 300"},
	} {
		p := base
		tt.mod(&p)
		err := validatePeers([]Peer{p})
		assert.ErrorIs(t, err, ErrInvalidPeer, tt.msg)
		assert.ErrorContains(t, err, tt.msg)
	}
}

// TestBIRDAllowLocalAS: BIRD announces a route whose AS path already holds
// the node's AS (another site of one AS, Calico's use of
// numAllowedLocalASNumbers). With the default 0 the speaker drops it as a
// loop; with 1 on the peer it is learned and programmed into the kernel;
// back to 0 it is gone again.
func TestBIRDAllowLocalAS(t *testing.T) {
	requireBIRD(t)
	b := newBIRD(t, 1, birdASN)
	b.static = []string{fmt.Sprintf(
		"protocol static s4 { ipv4 { import filter { bgp_path.prepend(%d); accept; }; }; route 10.77.0.0/24 blackhole; }\n"+
			"protocol static s5 { ipv4; route 10.78.0.0/24 blackhole; }", tabbyASN)}
	b.start(tabbyASN)
	s, _ := kernelSpeaker(t, tabbyASN, b)
	ctx := context.Background()
	require.NoError(t, s.Start(ctx))
	t.Cleanup(s.Stop)
	peer := Peer{Name: "bird1-v4", Address: b.addr4(), ASNumber: birdASN, SourceAddress: b.local4()}
	require.NoError(t, s.SetPeers(ctx, []Peer{peer}))
	// The route without the node's AS arrives; the other one never does.
	require.Eventually(t, func() bool { return kernelRoute(t, "10.78.0.0/24") != "" }, 30*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		out, _ := b.birdc("show", "route", "export", "tabby4", "10.77.0.0/24")
		return strings.Contains(out, "10.77.0.0/24")
	}, 10*time.Second, 50*time.Millisecond, "BIRD exports the looped route")
	// GoBGP received both routes and accepted one.
	require.Eventually(t, func() bool {
		ps, err := s.Peers(ctx)
		return err == nil && len(ps) == 1 && ps[0].Received == 2 && ps[0].Accepted == 1
	}, 10*time.Second, 50*time.Millisecond)
	assert.Empty(t, kernelRoute(t, "10.77.0.0/24"), "dropped as an AS loop by default")
	assert.False(t, s.Why(pfx("10.77.0.0/24")).Learned)

	peer.NumAllowedLocalASNumbers = 1
	require.NoError(t, s.SetPeers(ctx, []Peer{peer}))
	require.Eventually(t, func() bool { return strings.Contains(kernelRoute(t, "10.77.0.0/24"), "via "+b.addr4().String()) },
		30*time.Second, 50*time.Millisecond, "allowed once: %q", kernelRoute(t, "10.77.0.0/24"))

	peer.NumAllowedLocalASNumbers = 0
	require.NoError(t, s.SetPeers(ctx, []Peer{peer}))
	require.Eventually(t, func() bool {
		return kernelRoute(t, "10.77.0.0/24") == "" && kernelRoute(t, "10.78.0.0/24") != ""
	}, 30*time.Second, 50*time.Millisecond, "dropped again: %q", kernelRoute(t, "10.77.0.0/24"))
}
