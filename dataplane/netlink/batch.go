package netlink

import (
	"encoding"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
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
// (receive buffer overflow, or no answer within the batch timeout); the
// ops concerned may or may not have applied.
var ErrBatchLost = errors.New("netlink batch answer lost")

const (
	// batchChunk is how many messages go into one sendmsg; small enough
	// that the error answers of a chunk where everything fails fit the
	// socket's receive buffer.
	batchChunk = 256
	// batchTimeout bounds the wait for the answers to one chunk.
	batchTimeout = 10 * time.Second
	// batchRcvBuf is the socket receive buffer asked for (SO_RCVBUFFORCE).
	batchRcvBuf = 1 << 20
	// podReadBuf is the read buffer of a short-lived pipeline in a pod:
	// its answers are errors, acks and at most a link or two (~2 KiB).
	podReadBuf = 16 << 10
)

// KernelHandle is the production RouteHandle/OverlayHandle: a
// *netlink.Handle (vishvananda/netlink) bound to one network namespace,
// plus a github.com/mdlayher/netlink connection in that namespace for
// pipelined route batches (RouteBatcher): a chunk of route messages
// (jsimonetti/rtnetlink/v2 RouteMessage) goes in one sendmsg with only its
// last message asking for an acknowledgement, so the kernel answers only
// errors and the final ack: two system calls per chunk instead of two per
// route.
//
// After Close, its RouteHandle, OverlayHandle and RouteBatcher methods fail
// with ErrClosed. The other methods of the embedded *netlink.Handle must
// not be called then: a closed vishvananda/netlink Handle acts on the
// calling thread's namespace. The zero value is not usable (make one with
// NewKernelHandle): it acts as a closed one, and its Close does nothing.
type KernelHandle struct {
	*nl.Handle
	pipe  *pipeline
	guard closeGuard
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
	return &KernelHandle{Handle: h, pipe: p, guard: closeGuard{open: true}}, nil
}

// Close closes both sockets; it waits for the calls in flight. Closing
// twice does nothing.
func (k *KernelHandle) Close() {
	k.guard.close(func() {
		k.pipe.close()
		k.Handle.Close()
	})
}

// RouteBatch implements RouteBatcher.
func (k *KernelHandle) RouteBatch(ops []RouteOp) []error {
	if err := k.guard.enter(); err != nil {
		errs := make([]error, len(ops))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	defer k.guard.leave()
	return k.pipe.send(len(ops), func(i int) (netlink.Message, error) { return routeMessage(ops[i]) }, nil)
}

// pipeline is a NETLINK_ROUTE connection (mdlayher/netlink) in one
// namespace that sends many requests per sendmsg and reads back only
// failures, GET replies and one final ack per chunk.
type pipeline struct {
	mu   sync.Mutex
	conn *netlink.Conn
	// fd, when conn is nil, is a raw NETLINK_ROUTE socket a caller opened
	// inside a namespace and handed over (openPodConn); the first use
	// replaces it by a connection in the same namespace (found with
	// SIOCGSKNS). -1: closed. buf is unused.
	fd  int
	buf []byte
}

// openPipeline opens the connection in namespace n.
func openPipeline(n ns.NetNS) (*pipeline, error) {
	c, err := dialBatchConn(int(n.Fd()), 1<<16)
	if err != nil {
		return nil, fmt.Errorf("netlink batch socket in %s: %w", n.Path(), err)
	}
	return &pipeline{conn: c, fd: -1}, nil
}

// newPipelineHere opens a pipeline in the network namespace of the calling
// thread, without switching threads: call it with the OS thread locked
// inside the namespace (as openPodConn is between its two setns calls).
func newPipelineHere() (*pipeline, error) {
	c, err := dialBatchConn(0, podReadBuf)
	if err != nil {
		return nil, fmt.Errorf("netlink batch socket: %w", err)
	}
	return &pipeline{conn: c, fd: -1}, nil
}

// dialBatchConn opens a NETLINK_ROUTE connection in the namespace nsFd
// refers to (0: the calling thread's), with error answers capped to the
// failed request's header (NETLINK_CAP_ACK) and a socket receive buffer
// large enough for a chunk's errors. bufSize > 0 gives it a fixed read
// buffer of that many bytes (one recvmsg per answer; a larger answer
// fails), 0 sizes each read by peeking first.
func dialBatchConn(nsFd, bufSize int) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: nsFd, MessageBufferSize: bufSize})
	if err != nil {
		return nil, err
	}
	_ = c.SetOption(netlink.CapAcknowledge, true)
	forced := false
	if raw, err := c.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, batchRcvBuf) == nil
		})
	}
	if !forced {
		_ = c.SetReadBuffer(batchRcvBuf)
	}
	return c, nil
}

// setupBatchSocket checks that fd, handed to a pipeline literal
// (openPodConn), is a netlink socket; the pipeline replaces it on first use.
func setupBatchSocket(fd int) error {
	d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err == nil && d != unix.AF_NETLINK {
		err = fmt.Errorf("fd %d is not a netlink socket: %w", fd, unix.ENOTSOCK)
	}
	return err
}

// connLocked returns the connection, first replacing a handed-over raw
// socket by a connection in the socket's namespace.
func (p *pipeline) connLocked() (*netlink.Conn, error) {
	if p.conn != nil {
		return p.conn, nil
	}
	if p.fd < 0 {
		return nil, fmt.Errorf("%w: %w", ErrClosed, unix.EBADF)
	}
	// Only a netlink socket is taken over (and closed): a zero pipeline's
	// fd 0 is someone else's.
	if d, err := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || d != unix.AF_NETLINK {
		return nil, fmt.Errorf("fd %d is not a netlink socket: %w", p.fd, unix.EBADF)
	}
	nsFd, err := unix.IoctlRetInt(p.fd, unix.SIOCGSKNS)
	unix.Close(p.fd)
	p.fd = -1
	if err != nil {
		return nil, fmt.Errorf("namespace of netlink socket: %w", err)
	}
	defer unix.Close(nsFd)
	if p.conn, err = dialBatchConn(nsFd, podReadBuf); err != nil {
		return nil, err
	}
	return p.conn, nil
}

func (p *pipeline) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

// exec sends the complete netlink messages msgs (as built by the append*Msg
// functions; nil entries are skipped) in order, in chunks of batchChunk,
// and returns one error per message. Sequence numbers and the ACK flag are
// the pipeline's: whatever msgs carry there is replaced.
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
	var f func(int, netlink.Message)
	if onReply != nil {
		f = func(i int, m netlink.Message) {
			onReply(i, syscall.NetlinkMessage{
				Header: syscall.NlMsghdr{Len: m.Header.Length, Type: uint16(m.Header.Type), Flags: uint16(m.Header.Flags), Seq: m.Header.Sequence, Pid: m.Header.PID},
				Data:   m.Data,
			})
		}
	}
	return p.send(len(msgs), func(i int) (netlink.Message, error) {
		var m netlink.Message
		if len(msgs[i]) == 0 {
			return m, nil // skipped
		}
		if err := m.UnmarshalBinary(msgs[i]); err != nil {
			return netlink.Message{}, fmt.Errorf("%w: malformed netlink message: %w", ErrInvalidSpec, err)
		}
		return m, nil
	}, f)
}

// send sends n messages, message i built by encode(i) (an error is that
// message's result; a zero Message is skipped), in chunks of batchChunk,
// and returns one error per message. Beyond one chunk, a goroutine builds
// the next chunk while the kernel processes the current one.
func (p *pipeline) send(n int, encode func(i int) (netlink.Message, error), onReply func(int, netlink.Message)) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := make([]error, n)
	conn, err := p.connLocked()
	if err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("netlink batch: %w", err)
		}
		return errs
	}
	msgs := make([]netlink.Message, n)
	build := func(start, end int) {
		for i := start; i < end; i++ {
			msgs[i], errs[i] = encode(i)
		}
	}
	if n <= batchChunk {
		build(0, n)
		chunk(conn, msgs, errs, 0, onReply)
		return errs
	}
	// Each chunk's messages and build errors are written before its start
	// index is sent on ready, and read only after it is received.
	ready := make(chan int, 2)
	go func() {
		defer close(ready)
		for start := 0; start < n; start += batchChunk {
			build(start, min(start+batchChunk, n))
			ready <- start
		}
	}()
	for start := range ready {
		end := min(start+batchChunk, n)
		chunk(conn, msgs[start:end], errs[start:end], start, onReply)
	}
	return errs
}

// chunk sends msgs in one sendmsg, only the last asking for an ack, and
// reads answers until that ack (or its error) arrives. Answers are matched
// by sequence number; errs[i] gets the kernel's errno for msgs[i];
// onReply gets GET replies with the index off+i.
func chunk(conn *netlink.Conn, msgs []netlink.Message, errs []error, off int, onReply func(int, netlink.Message)) {
	send := make([]netlink.Message, 0, len(msgs))
	index := make([]int, 0, len(msgs)) // send[j] is msgs[index[j]]
	for i, m := range msgs {
		if m.Header.Type == 0 {
			continue // never sent, never answered
		}
		m.Header.Sequence = 0 // numbered by conn
		m.Header.Flags = m.Header.Flags&^netlink.Acknowledge | netlink.Request
		send = append(send, m)
		index = append(index, i)
	}
	if len(send) == 0 {
		return
	}
	send[len(send)-1].Header.Flags |= netlink.Acknowledge
	sent, err := conn.SendMessages(send)
	if err != nil {
		for _, i := range index {
			errs[i] = fmt.Errorf("netlink batch send: %w", err)
		}
		return
	}
	first, last := sent[0].Header.Sequence, sent[len(sent)-1].Header.Sequence
	at := func(seq uint32) (int, bool) { // index in msgs of the answer to seq
		j := int(seq - first) // sequence numbers are consecutive, wrapping
		if j < 0 || j >= len(sent) || sent[j].Header.Sequence != seq {
			return 0, false // an answer to an earlier, abandoned batch
		}
		return index[j], true
	}
	_ = conn.SetReadDeadline(time.Now().Add(batchTimeout))
	defer conn.SetReadDeadline(time.Time{})
	for {
		answers, err := conn.Receive()
		if err != nil {
			var oe *netlink.OpError
			if errors.As(err, &oe) {
				if errno, ok := oe.Err.(syscall.Errno); ok {
					if i, mine := at(oe.Sequence); mine {
						errs[i] = errno
						if oe.Sequence == last {
							return
						}
					}
					continue
				}
			}
			for _, i := range index {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("%w: %w", ErrBatchLost, err)
				}
			}
			return
		}
		for _, m := range answers {
			i, mine := at(m.Header.Sequence)
			switch {
			case !mine:
			case m.Header.Type == netlink.Error: // the ack (errno 0)
				if m.Header.Sequence == last {
					return
				}
			case onReply != nil:
				onReply(off+i, m)
			}
		}
	}
}

// routeMessage builds the RTM_NEWROUTE/RTM_DELROUTE request for op, as
// `ip route add|replace|del` would.
func routeMessage(op RouteOp) (netlink.Message, error) {
	r := op.Route
	if r == nil || r.Dst == nil {
		return netlink.Message{}, fmt.Errorf("%w: route without destination", ErrInvalidRoute)
	}
	dst := ipNetToPrefix(r.Dst, r.Family)
	typ, flags := netlink.HeaderType(unix.RTM_NEWROUTE), netlink.Request
	switch op.Kind {
	case RouteOpAdd:
		flags |= netlink.Create | netlink.Excl
	case RouteOpReplace:
		flags |= netlink.Create | netlink.Replace
	case RouteOpDelete:
		typ = unix.RTM_DELROUTE
	default:
		return netlink.Message{}, fmt.Errorf("%w: unknown route op %d", ErrInvalidRoute, op.Kind)
	}
	rm := rtnetlink.RouteMessage{
		Family:    unix.AF_INET,
		DstLength: uint8(dst.Bits()),
		Tos:       uint8(r.Tos),
		Table:     unix.RT_TABLE_UNSPEC, // the table is in RTA_TABLE
		Protocol:  uint8(r.Protocol),
		Scope:     uint8(r.Scope),
		Type:      uint8(r.Type),
		Flags:     uint32(r.Flags),
	}
	if dst.Addr().Is6() {
		rm.Family = unix.AF_INET6
	}
	a := &rm.Attributes
	a.Table = uint32(r.Table)
	if a.Table == 0 {
		a.Table = unix.RT_TABLE_MAIN
	}
	if a.Table < 256 {
		rm.Table = uint8(a.Table)
	}
	if rm.Type == unix.RTN_UNSPEC && op.Kind != RouteOpDelete {
		rm.Type = unix.RTN_UNICAST // as vishvananda/netlink does
	}
	if op.Kind == RouteOpDelete {
		rm.Scope = unix.RT_SCOPE_NOWHERE // match any scope
	}
	// Addresses go as the net.IPs they are (the encoder writes IPv4 ones
	// in 4 bytes); an invalid one fails the encoding.
	if dst.Bits() > 0 {
		a.Dst = r.Dst.IP
	}
	a.Priority = uint32(r.Priority)
	if len(r.Src) > 0 {
		a.Src = r.Src
	}
	if op.Kind != RouteOpDelete {
		a.OutIface = uint32(r.LinkIndex)
		if len(r.Gw) > 0 {
			a.Gateway = r.Gw
		}
		for _, nh := range r.MultiPath {
			hop := rtnetlink.NextHop{Hop: rtnetlink.RTNextHop{Flags: uint8(nh.Flags), Hops: uint8(nh.Hops), IfIndex: uint32(nh.LinkIndex)}}
			if len(nh.Gw) > 0 {
				hop.Gateway = nh.Gw
			}
			a.Multipath = append(a.Multipath, hop)
		}
	}
	return request(typ, flags, &rm)
}

// request wraps an rtnetlink message body in a netlink request.
func request(typ netlink.HeaderType, flags netlink.HeaderFlags, body encoding.BinaryMarshaler) (netlink.Message, error) {
	data, err := body.MarshalBinary()
	if err != nil {
		return netlink.Message{}, fmt.Errorf("%w: encode %s: %w", ErrInvalidSpec, typ, err)
	}
	return netlink.Message{Header: netlink.Header{Type: typ, Flags: flags}, Data: data}, nil
}

// appendMessage appends m, serialised with sequence number seq, to b. If m
// cannot be serialised it appends one byte instead, which a pipeline
// reports as a malformed message (ErrInvalidSpec) rather than skipping it.
func appendMessage(b []byte, m netlink.Message, seq uint32) []byte {
	m.Header.Sequence = seq
	m.Header.Length = uint32(unix.NLMSG_HDRLEN + (len(m.Data)+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1))
	out, err := m.MarshalBinary()
	if err != nil {
		return append(b, 0)
	}
	return append(b, out...)
}

// appendRouteMsg serialises one route request for op (routeMessage) with
// sequence number seq and appends it to b.
func appendRouteMsg(b []byte, op RouteOp, seq uint32) ([]byte, error) {
	m, err := routeMessage(op)
	if err != nil {
		return b, err
	}
	return appendMessage(b, m, seq), nil
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
