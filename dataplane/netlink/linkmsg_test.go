package netlink

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	nl "github.com/vishvananda/netlink"
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

	// A pipeline never takes over (nor closes) a descriptor that is not a
	// netlink socket.
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	require.Error(t, setupBatchSocket(int(r.Fd())))
	errs = (&pipeline{fd: int(r.Fd())}).exec([][]byte{appendSetLinkMsg(nil, 1, "", true, nil)})
	assert.ErrorIs(t, errs[0], unix.EBADF)
	_, err = w.Write([]byte("x"))
	require.NoError(t, err, "still open")
}

// newTestNetns makes a named network namespace for an internal test (the
// nettest package imports this one) and removes it in t.Cleanup.
func newTestNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	name := fmt.Sprintf("tby-pl-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	require.NoError(t, err, string(out))
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/run/netns/" + name
}

// getLo asks p for lo and checks the answer: ifindex 1.
func getLo(t *testing.T, p *pipeline) {
	t.Helper()
	index := 0
	errs := p.execReplies([][]byte{appendSetLinkMsg(nil, 1, "", true, nil), appendGetLinkMsg(nil, "lo")}, func(i int, m syscall.NetlinkMessage) {
		if idx, _, ok := parseLinkReply(m); ok && i == 1 {
			index = idx
		}
	})
	require.Equal(t, []error{nil, nil}, errs)
	require.Equal(t, 1, index)
}

// The three ways a pipeline gets its connection: dialled into a namespace
// (openPipeline), dialled by a thread inside it (newPipelineHere), and from
// a raw socket opened inside it (the literal openPodConn builds).
func TestPipelineInNamespace(t *testing.T) {
	path := newTestNetns(t)
	n, err := openNetns(path)
	require.NoError(t, err)
	defer n.Close()

	p, err := openPipeline(n)
	require.NoError(t, err)
	getLo(t, p)
	p.close()

	var here *pipeline
	var raw int
	require.NoError(t, n.Do(func(ns.NetNS) error {
		var err error
		if here, err = newPipelineHere(); err != nil {
			return err
		}
		raw, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		return err
	}))
	getLo(t, here)
	here.close()
	require.NoError(t, setupBatchSocket(raw))
	lit := &pipeline{fd: raw, buf: make([]byte, 4096)}
	getLo(t, lit)
	lit.close()
	errs := lit.exec([][]byte{appendGetLinkMsg(nil, "lo")})
	require.ErrorIs(t, errs[0], unix.EBADF, "closed")

	// Failures come back per message; the others still apply.
	p, err = openPipeline(n)
	require.NoError(t, err)
	defer p.close()
	errs = p.exec([][]byte{appendSetLinkMsg(nil, 999, "", true, nil), nil, appendSetLinkMsg(nil, 1, "", true, nil), {1, 2, 3}})
	require.ErrorIs(t, errs[0], unix.ENODEV)
	require.NoError(t, errs[1])
	require.NoError(t, errs[2])
	require.ErrorIs(t, errs[3], ErrInvalidSpec)

	// A batch of several chunks (built while the previous one is sent)
	// with failures spread over it: each op gets its own answer.
	kh, err := NewKernelHandle(path)
	require.NoError(t, err)
	defer kh.Close()
	const total = 3*batchChunk + 17
	ops := make([]RouteOp, total)
	for i := range ops {
		j := i
		if i%100 == 99 {
			j = i - 1 // the same route again: EEXIST
		}
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(j >> 8), byte(j)}), 32)
		ops[i] = RouteOp{Kind: RouteOpAdd, Route: &nl.Route{Dst: prefixToIPNet(dst), Type: unix.RTN_BLACKHOLE, Protocol: ProtocolRoutes}}
	}
	ops[5].Route = nil // fails before sending
	for i, err := range kh.RouteBatch(ops) {
		switch {
		case i == 5:
			require.ErrorIs(t, err, ErrInvalidRoute)
		case i%100 == 99:
			require.ErrorIs(t, err, unix.EEXIST, "op %d", i)
		default:
			require.NoError(t, err, "op %d", i)
		}
	}
	routes, err := kh.RouteListFiltered(nl.FAMILY_V4, &nl.Route{Protocol: ProtocolRoutes}, nl.RT_FILTER_PROTOCOL)
	require.NoError(t, err)
	require.Len(t, routes, total-1-total/100)
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
