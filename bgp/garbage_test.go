package bgp

import (
	"context"
	"crypto/rand"
	"net"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGarbagePeer: a configured peer that sends garbage, or opens a session
// and resets it in the middle of an UPDATE, never crashes the speaker; a
// real session still works afterwards.
func TestGarbagePeer(t *testing.T) {
	port := freePort(t)
	a, _ := startSpeaker(t, 1, port, nil)
	b, fb := startSpeaker(t, 2, port, nil)
	ctx := context.Background()
	evil := loopNode(20)
	require.NoError(t, a.SetPeers(ctx, []Peer{
		{Name: "evil", Address: evil, ASNumber: 65000, Passive: true},
		{Name: "b", Address: loopNode(2), Port: port, ASNumber: DefaultASNumber},
	}))
	require.NoError(t, b.SetPeers(ctx, []Peer{{Name: "a", Address: loopNode(1), Port: port, ASNumber: DefaultASNumber, Passive: true}}))

	dial := func() *net.TCPConn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: evil.AsSlice()}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", net.JoinHostPort(loopNode(1).String(), formatPort(port)))
		require.NoError(t, err)
		return c.(*net.TCPConn)
	}
	drain := func(c *net.TCPConn) {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}
	// 1. Random bytes.
	junk := make([]byte, 512)
	_, _ = rand.Read(junk)
	c := dial()
	_, _ = c.Write(junk)
	drain(c)
	c.Close()

	// 2. A valid marker with an absurd length and type.
	hdr := make([]byte, 19)
	for i := range 16 {
		hdr[i] = 0xff
	}
	hdr[16], hdr[17], hdr[18] = 0xff, 0xff, 42
	c = dial()
	_, _ = c.Write(hdr)
	drain(c)
	c.Close()

	// 3. A real OPEN and KEEPALIVE, then half an UPDATE and a reset.
	open := bgp.NewBGPOpenMessage(65000, 90, evil.String(), []bgp.OptionParameterInterface{
		bgp.NewOptionParameterCapability([]bgp.ParameterCapabilityInterface{
			bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC), bgp.NewCapFourOctetASNumber(65000)})})
	ob, err := open.Serialize()
	require.NoError(t, err)
	kb, err := bgp.NewBGPKeepAliveMessage().Serialize()
	require.NoError(t, err)
	upd := bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(2, []uint32{65000})}),
		bgp.NewPathAttributeNextHop(evil.String())}, []*bgp.IPAddrPrefix{bgp.NewIPAddrPrefix(24, "10.77.0.0")})
	ub, err := upd.Serialize()
	require.NoError(t, err)
	c = dial()
	_, _ = c.Write(ob)
	_, _ = c.Write(kb)
	time.Sleep(200 * time.Millisecond)
	_, _ = c.Write(ub[:len(ub)/2])
	_ = c.SetLinger(0)
	c.Close()

	// 4. A truncated attribute inside a well-framed UPDATE.
	c = dial()
	_, _ = c.Write(ob)
	_, _ = c.Write(kb)
	time.Sleep(200 * time.Millisecond)
	bad := append([]byte(nil), ub...)
	bad[19+2+1] = 0xff // path attribute length field: lie
	_, _ = c.Write(bad)
	drain(c)
	c.Close()

	// The speaker still serves real peers.
	waitEstablished(t, b, 1)
	require.NoError(t, a.Advertise(ctx, Advertisement{Prefix: pfx("10.244.1.0/26")}))
	require.Eventually(t, func() bool { return fb.nextHops(pfx("10.244.1.0/26")) != nil }, 10*time.Second, 20*time.Millisecond)
	ps, err := a.Peers(ctx)
	require.NoError(t, err)
	assert.Len(t, ps, 2)
	assert.Empty(t, a.Why(pfx("10.77.0.0/24")).NextHops, "nothing from the reset UPDATE is programmed")
}
