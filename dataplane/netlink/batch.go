package netlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/containernetworking/plugins/pkg/ns"
	nl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RouteOpKind is the kind of a batched route write.
type RouteOpKind uint8

const (
	// RouteOpAdd is `ip route add` (fails with EEXIST when the key is taken).
	RouteOpAdd RouteOpKind = iota
	// RouteOpReplace is `ip route replace`.
	RouteOpReplace
	// RouteOpDelete is `ip route del`.
	RouteOpDelete
)

// RouteOp is one route write of a batch.
type RouteOp struct {
	Kind  RouteOpKind
	Route *nl.Route
}

// RouteBatcher is implemented by route handles that can apply many writes
// with few system calls. A RouteOwner uses it when its handle has it.
type RouteBatcher interface {
	// RouteBatch applies ops in order and returns one error (nil on
	// success) per op. A failed op does not stop the following ones.
	RouteBatch(ops []RouteOp) []error
}

// ErrBatchLost: the kernel's answers to a batch could not all be read
// (receive buffer overflow); the ops concerned may or may not have applied.
var ErrBatchLost = errors.New("netlink batch answer lost")

// batchChunk is how many route messages go into one sendmsg; small enough
// that the error answers of a chunk where everything fails fit the socket's
// receive buffer.
const batchChunk = 256

// KernelHandle is the production RouteHandle/OverlayHandle: a
// *netlink.Handle bound to one network namespace, plus a second netlink
// socket in that namespace for pipelined route batches (RouteBatcher):
// a chunk of route messages goes in one sendmsg with only its last message
// asking for an acknowledgement, so the kernel answers only errors and the
// final ack: two system calls per chunk instead of two per route.
type KernelHandle struct {
	*nl.Handle
	pipe *pipeline
}

var (
	_ RouteHandle   = (*KernelHandle)(nil)
	_ RouteBatcher  = (*KernelHandle)(nil)
	_ OverlayHandle = (*KernelHandle)(nil)
)

// NewKernelHandle opens netlink sockets in the namespace at netnsPath
// ("" = the calling thread's). Close it when done.
func NewKernelHandle(netnsPath string) (*KernelHandle, error) {
	n, err := openNetns(netnsPath)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	h, err := nl.NewHandleAt(netns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", n.Path(), err)
	}
	p, err := openPipeline(n)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &KernelHandle{Handle: h, pipe: p}, nil
}

// Close closes both sockets.
func (k *KernelHandle) Close() {
	k.pipe.close()
	k.Handle.Close()
}

// RouteBatch implements RouteBatcher.
func (k *KernelHandle) RouteBatch(ops []RouteOp) []error {
	msgs := make([][]byte, len(ops))
	pre := make([]error, len(ops))
	for i, op := range ops {
		msgs[i], pre[i] = appendRouteMsg(nil, op, 0)
	}
	errs := k.pipe.exec(msgs)
	for i, err := range pre {
		if err != nil {
			errs[i] = err
		}
	}
	return errs
}

// pipeline is a raw NETLINK_ROUTE socket in one namespace that sends many
// requests per sendmsg and reads back only failures and one final ack.
type pipeline struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
}

// openPipeline opens the socket from a thread inside namespace n.
func openPipeline(n ns.NetNS) (*pipeline, error) {
	fd := -1
	err := n.Do(func(ns.NetNS) error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		return err
	})
	if err == nil {
		err = setupBatchSocket(fd)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("netlink batch socket in %s: %w", n.Path(), err)
	}
	return &pipeline{fd: fd, buf: make([]byte, 1<<16)}, nil
}

func setupBatchSocket(fd int) error {
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	// Error answers carry only the header of the failed request.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	tv := unix.Timeval{Sec: 10}
	return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
}

func (p *pipeline) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

// exec sends the complete netlink messages msgs (nil entries are skipped)
// in order, in chunks of batchChunk, and returns one error per message.
// It sets each message's sequence number and the ACK flag of each chunk's
// last message.
func (p *pipeline) exec(msgs [][]byte) []error {
	return p.execReplies(msgs, nil)
}

// execNamed is exec for a short list of steps named by what; it returns
// the failures joined, each prefixed with its step's name.
func (p *pipeline) execNamed(msgs [][]byte, what []string) error {
	var errs []error
	for i, err := range p.exec(msgs) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what[i], err))
		}
	}
	return errors.Join(errs...)
}

// execReplies is exec that also hands every non-error answer (the reply
// to a GET request) to onReply with the index of the message it answers.
func (p *pipeline) execReplies(msgs [][]byte, onReply func(i int, m syscall.NetlinkMessage)) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := make([]error, len(msgs))
	for start := 0; start < len(msgs); start += batchChunk {
		end := min(start+batchChunk, len(msgs))
		var f func(int, syscall.NetlinkMessage)
		if onReply != nil {
			f = func(i int, m syscall.NetlinkMessage) { onReply(start+i, m) }
		}
		p.chunk(msgs[start:end], errs[start:end], f)
	}
	return errs
}

func (p *pipeline) chunk(msgs [][]byte, errs []error, onReply func(int, syscall.NetlinkMessage)) {
	if p.fd < 0 {
		for i := range errs {
			errs[i] = fmt.Errorf("netlink batch: %w", unix.EBADF)
		}
		return
	}
	first := p.seq + 1
	var buf []byte
	lastStart := -1
	for _, m := range msgs {
		p.seq++
		if len(m) < unix.NLMSG_HDRLEN {
			continue // never sent, never answered
		}
		binary.NativeEndian.PutUint32(m[8:], p.seq)
		lastStart = len(buf)
		buf = append(buf, m...)
	}
	if lastStart < 0 {
		return
	}
	// Only the last message asks for an acknowledgement; the kernel answers
	// the others only when they fail.
	flags := binary.NativeEndian.Uint16(buf[lastStart+6:])
	binary.NativeEndian.PutUint16(buf[lastStart+6:], flags|unix.NLM_F_ACK)
	last := binary.NativeEndian.Uint32(buf[lastStart+8:])
	if err := unix.Sendto(p.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("netlink batch send: %w", err)
		}
		return
	}
	for {
		n, _, err := unix.Recvfrom(p.fd, p.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			for i := range errs {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("%w: %w", ErrBatchLost, err)
				}
			}
			return
		}
		answers, err := syscall.ParseNetlinkMessage(p.buf[:n])
		if err != nil {
			continue
		}
		done := false
		for _, m := range answers {
			seq := m.Header.Seq
			if seq < first || seq > last {
				continue // an answer to an earlier, abandoned batch
			}
			if m.Header.Type != unix.NLMSG_ERROR {
				if onReply != nil {
					onReply(int(seq-first), m)
				}
				continue
			}
			if len(m.Data) < 4 {
				continue
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
				errs[seq-first] = syscall.Errno(-code)
			}
			if seq == last {
				done = true
			}
		}
		if done {
			return
		}
	}
}

// nlHeader appends a netlink message header (length patched by finish).
func nlHeader(b []byte, typ, flags uint16) []byte {
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, 0) // seq, set by pipeline.exec
	return binary.NativeEndian.AppendUint32(b, 0)
}

// finish patches the length of the message that starts at start.
func finish(b []byte, start int) []byte {
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// appendRouteMsg serialises one RTM_NEWROUTE/RTM_DELROUTE message for op,
// as `ip route add|replace|del` would, and appends it to b.
func appendRouteMsg(b []byte, op RouteOp, seq uint32) ([]byte, error) {
	r := op.Route
	if r == nil || r.Dst == nil {
		return b, fmt.Errorf("%w: route without destination", ErrInvalidRoute)
	}
	dst := ipNetToPrefix(r.Dst, r.Family)
	family := unix.AF_INET
	if dst.Addr().Is6() {
		family = unix.AF_INET6
	}
	typ, flags := uint16(unix.RTM_NEWROUTE), uint16(unix.NLM_F_REQUEST)
	switch op.Kind {
	case RouteOpAdd:
		flags |= unix.NLM_F_CREATE | unix.NLM_F_EXCL
	case RouteOpReplace:
		flags |= unix.NLM_F_CREATE | unix.NLM_F_REPLACE
	case RouteOpDelete:
		typ = unix.RTM_DELROUTE
	default:
		return b, fmt.Errorf("%w: unknown route op %d", ErrInvalidRoute, op.Kind)
	}
	start := len(b)
	b = nlHeader(b, typ, flags)
	binary.NativeEndian.PutUint32(b[start+8:], seq)

	table := r.Table
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	rtmTable := uint8(unix.RT_TABLE_UNSPEC)
	if table < 256 {
		rtmTable = uint8(table)
	}
	scope := uint8(r.Scope)
	rtype := uint8(r.Type)
	if rtype == unix.RTN_UNSPEC && op.Kind != RouteOpDelete {
		rtype = unix.RTN_UNICAST // as the netlink package does
	}
	if op.Kind == RouteOpDelete {
		scope = unix.RT_SCOPE_NOWHERE // match any scope
	}
	b = append(b, uint8(family), uint8(dst.Bits()), 0, uint8(r.Tos), rtmTable, uint8(r.Protocol), scope, rtype)
	b = binary.NativeEndian.AppendUint32(b, uint32(r.Flags))

	if dst.Bits() > 0 {
		b = appendAttr(b, unix.RTA_DST, dst.Addr().AsSlice())
	}
	b = appendAttr(b, unix.RTA_TABLE, binary.NativeEndian.AppendUint32(nil, uint32(table)))
	if r.Priority != 0 {
		b = appendAttr(b, unix.RTA_PRIORITY, binary.NativeEndian.AppendUint32(nil, uint32(r.Priority)))
	}
	if src := ipToAddr(r.Src); src.IsValid() {
		b = appendAttr(b, unix.RTA_PREFSRC, src.AsSlice())
	}
	if op.Kind != RouteOpDelete {
		if r.LinkIndex != 0 {
			b = appendAttr(b, unix.RTA_OIF, binary.NativeEndian.AppendUint32(nil, uint32(r.LinkIndex)))
		}
		if gw := ipToAddr(r.Gw); gw.IsValid() {
			b = appendAttr(b, unix.RTA_GATEWAY, gw.AsSlice())
		}
		if len(r.MultiPath) > 0 {
			var mp []byte
			for _, nh := range r.MultiPath {
				var gwAttr []byte
				if gw := ipToAddr(nh.Gw); gw.IsValid() {
					gwAttr = appendAttr(nil, unix.RTA_GATEWAY, gw.AsSlice())
				}
				mp = binary.NativeEndian.AppendUint16(mp, uint16(8+len(gwAttr)))
				mp = append(mp, uint8(nh.Flags), uint8(nh.Hops))
				mp = binary.NativeEndian.AppendUint32(mp, uint32(int32(nh.LinkIndex)))
				mp = append(mp, gwAttr...)
			}
			b = appendAttr(b, unix.RTA_MULTIPATH, mp)
		}
	}
	return finish(b, start), nil
}

// appendAttr appends one rtattr (length, type, data, padding to 4 bytes).
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// RouteBatch implements RouteBatcher on the fake by applying each op in turn.
func (f *FakeRouteHandle) RouteBatch(ops []RouteOp) []error {
	errs := make([]error, len(ops))
	for i, op := range ops {
		switch op.Kind {
		case RouteOpAdd:
			errs[i] = f.RouteAdd(op.Route)
		case RouteOpReplace:
			errs[i] = f.RouteReplace(op.Route)
		case RouteOpDelete:
			errs[i] = f.RouteDel(op.Route)
		default:
			errs[i] = fmt.Errorf("%w: unknown route op %d", ErrInvalidRoute, op.Kind)
		}
	}
	return errs
}
