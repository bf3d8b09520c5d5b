package netlink

import (
	"encoding/binary"
	"strings"
	"syscall"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestLinkMessagesWellFormed(t *testing.T) {
	msgs := [][]byte{
		appendSetLinkMsg(nil, 7, "tabby:net.c1", true, [][2]uint32{{ipv4DevconfProxyARP, 1}, {ipv4DevconfForwarding, 1}}),
		appendSetLinkMsg(nil, 7, "", true, nil),
		appendProxyDelayMsg(nil, 7, 0),
		appendAddrMsg(nil, 3, pfx("10.244.1.2/32"), false),
		appendAddrMsg(nil, 3, pfx("fd00::2/128"), true),
	}
	types := []uint16{unix.RTM_SETLINK, unix.RTM_SETLINK, unix.RTM_SETNEIGHTBL, unix.RTM_NEWADDR, unix.RTM_NEWADDR}
	var all []byte
	for i, m := range msgs {
		require.Equal(t, len(m), int(binary.NativeEndian.Uint32(m)), "length of message %d", i)
		require.Zero(t, len(m)%4, "message %d is aligned", i)
		all = append(all, m...)
	}
	parsed, err := syscall.ParseNetlinkMessage(all)
	require.NoError(t, err)
	require.Len(t, parsed, len(msgs))
	for i, m := range parsed {
		assert.Equal(t, types[i], m.Header.Type)
		assert.NotZero(t, m.Header.Flags&unix.NLM_F_REQUEST)
	}
	// The link messages carry their attributes where the kernel expects them.
	asNewLink := parsed[0]
	asNewLink.Header.Type = unix.RTM_NEWLINK // the parser knows RTM_NEWLINK's layout, the same as RTM_SETLINK's
	attrs, err := syscall.ParseNetlinkRouteAttr(&asNewLink)
	require.NoError(t, err)
	got := map[uint16][]byte{}
	for _, a := range attrs {
		got[a.Attr.Type] = a.Value
	}
	assert.Equal(t, "tabby:net.c1", strings.TrimRight(string(got[unix.IFLA_IFALIAS]), "\x00"))
	assert.Contains(t, got, uint16(unix.IFLA_AF_SPEC|unix.NLA_F_NESTED))
	addr, err := syscall.ParseNetlinkRouteAttr(&parsed[4])
	require.NoError(t, err)
	require.NotEmpty(t, addr)
}

func TestPipelineClosed(t *testing.T) {
	p := &pipeline{fd: -1}
	errs := p.exec([][]byte{appendSetLinkMsg(nil, 1, "", true, nil)})
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], unix.EBADF)
}

func TestVethAndGetLinkMessages(t *testing.T) {
	mac := ContainerMAC("net.c1")
	assert.Equal(t, mac.String(), ContainerMAC("net.c1").String(), "stable")
	assert.NotEqual(t, mac.String(), ContainerMAC("net.c2").String())
	assert.Equal(t, byte(0x02), mac[0]&0x03, "locally administered unicast")

	b := appendVethMsg(nil, "tby0123456789ab", "eth0", 9, 1450, HostMAC(), mac)
	b = appendGetLinkMsg(b, "tby0123456789ab")
	msgs, err := syscall.ParseNetlinkMessage(b)
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	assert.Equal(t, uint16(unix.RTM_NEWLINK), msgs[0].Header.Type)
	assert.Equal(t, uint16(unix.RTM_GETLINK), msgs[1].Header.Type)
	attrs, err := syscall.ParseNetlinkRouteAttr(&msgs[0])
	require.NoError(t, err)
	got := map[uint16][]byte{}
	for _, a := range attrs {
		got[a.Attr.Type] = a.Value
	}
	assert.Equal(t, "tby0123456789ab\x00", string(got[unix.IFLA_IFNAME]))
	assert.Equal(t, uint32(1450), binary.NativeEndian.Uint32(got[unix.IFLA_MTU]))
	assert.Contains(t, string(got[unix.IFLA_LINKINFO]), "veth")
	assert.Contains(t, string(got[unix.IFLA_LINKINFO]), "eth0")
}

func TestParseLinkReply(t *testing.T) {
	// An RTM_NEWLINK answer for index 7 whose IFLA_LINK is 3.
	lm := rtnetlink.LinkMessage{Index: 7, Attributes: &rtnetlink.LinkAttributes{Name: "tby0", Type: 3}}
	m, err := request(unix.RTM_NEWLINK, 0, &lm)
	require.NoError(t, err)
	msgs, err := syscall.ParseNetlinkMessage(appendMessage(nil, m, 0))
	require.NoError(t, err)
	idx, link, ok := parseLinkReply(msgs[0])
	assert.True(t, ok)
	assert.Equal(t, 7, idx)
	assert.Equal(t, 3, link)
	// Attributes that do not decode: the index, no link.
	broken := msgs[0]
	broken.Data = append(append([]byte(nil), broken.Data[:unix.SizeofIfInfomsg]...), 0xff, 0xff, 0, 0)
	idx, link, ok = parseLinkReply(broken)
	assert.True(t, ok)
	assert.Equal(t, 7, idx)
	assert.Zero(t, link)
	msgs[0].Header.Type = unix.NLMSG_ERROR
	_, _, ok = parseLinkReply(msgs[0])
	assert.False(t, ok)
}

// FuzzParseLinkReply: the decoder of kernel link answers never panics.
func FuzzParseLinkReply(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 5, 0, 3, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: unix.RTM_NEWLINK, Len: uint32(unix.NLMSG_HDRLEN + len(data))}, Data: data}
		_, _, _ = parseLinkReply(m)
	})
}
