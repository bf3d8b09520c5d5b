package netlink

import (
	"encoding/binary"
	"syscall"
	"testing"

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
	assert.Equal(t, "tabby:net.c1", string(got[unix.IFLA_IFALIAS]))
	assert.Contains(t, got, uint16(unix.IFLA_AF_SPEC))
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
