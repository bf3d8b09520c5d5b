package nftables

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"
)

// ErrUnsupportedObject is wrapped by Netlink for an object or operation
// the netlink executor does not write (rule handles and comments, typeof
// sets, unknown data types, ...).
var ErrUnsupportedObject = errors.New("object not supported by the netlink executor")

// elementsPerMessage bounds the elements of one NEWSETELEM/DELSETELEM
// message: the element list is one netlink attribute, whose length is
// 16 bits.
const elementsPerMessage = 256

// Netlink is a knftables.Interface for one table whose transactions from
// a Proxier go to the kernel as one nf_tables netlink batch (encoded by
// github.com/google/nftables), without running `nft`. The `nft` 1.0.6
// CLI lists the table's chains, sets and rules before every transaction
// to build its cache, and parses every line of a full sync; both grow
// with the table. A netlink batch costs what it carries.
//
// Only Proxier transactions take the netlink path: the embedded
// knftables.Interface (the `nft` CLI in the same namespace) serves List*,
// Check, and Run of transactions built by other callers. The batch is
// atomic: the kernel applies all of it or, on any error, none of it, and
// the error names the refused operation as the `nft` CLI writes it (as
// `nft` reports the failing command), e.g. "netlink batch of 3
// messages: add rule ip tabby-services c jump missing: netlink receive:
// no such file or directory", and wraps the errno (a *netlink.OpError,
// with the kernel's extended-ack message when there is one). Elements
// travel up to 256 per message; the element named is the one the
// kernel's extended ack points at (when it points at none, the
// message's first one, "(or one of the N other elements of its
// message)").
//
// A transaction whose context is already done is not sent: Run returns
// the context's error (wrapped) and the kernel is unchanged, as with the
// CLI executor. Once sent, the kernel's answer is awaited (at most 30 s)
// whatever the context, since the kernel applies the batch as it
// receives it.
//
// It keeps the set and map definitions it has written (their key types
// encode elements), so the Proxier must be the table's only writer,
// which it is by design (the first Sync recreates the table).
//
// The zero value is not usable: make one with NewNetlink (New refuses
// another with ErrInvalidConfig).
type Netlink struct {
	knftables.Interface
	family knftables.Family
	table  string
	nsPath string

	mu      sync.Mutex
	sets    map[string]setInfo // committed sets and maps by name
	conn    *netlink.Conn      // open between transactions; nil after an error
	bufSize int                // batch size the socket buffers were sized for
	seq     uint32             // sequence number of the last message sent
}

// NewNetlink returns a Netlink for table in family, inside the network
// namespace at nsPath (for example /var/run/netns/node1), or in the
// caller's namespace when nsPath is "". Its netlink socket stays open
// between transactions; Close releases it.
func NewNetlink(family knftables.Family, table, nsPath string) (*Netlink, error) {
	if family != knftables.IPv4Family && family != knftables.IPv6Family {
		return nil, fmt.Errorf("%w: family %q", ErrInvalidConfig, family)
	}
	cli, err := NewInNetns(family, table, nsPath)
	if err != nil {
		return nil, err
	}
	return &Netlink{Interface: cli, family: family, table: table, nsPath: nsPath, sets: map[string]setInfo{}}, nil
}

// setInfo is what encoding an element needs to know about its set.
type setInfo struct {
	keys     []gnft.SetDatatype
	data     []gnft.SetDatatype // a data map's value fields
	isMap    bool               // verdict map
	interval bool
	timeout  bool
}

var setTypes = map[string]gnft.SetDatatype{
	"ipv4_addr":    gnft.TypeIPAddr,
	"ipv6_addr":    gnft.TypeIP6Addr,
	"inet_proto":   gnft.TypeInetProto,
	"inet_service": gnft.TypeInetService,
	"mark":         gnft.TypeMark,
	"integer":      gnft.TypeInteger,
}

// batch translates one transaction into google/nftables calls on conn.
type batch struct {
	conn  *gnft.Conn
	table *gnft.Table
	comp  compiler
	sets  map[string]setInfo
	setID uint32
	fam   knftables.Family
	// typeof holds the user data of the endpoint maps created in this
	// batch, by name, for their NEWSET messages.
	typeof map[string][]byte
	// Consecutive element operations on one set are sent together, up to
	// elementsPerMessage per message.
	pend     []gnft.SetElement
	pendSet  *gnft.Set
	pendVerb verb
	// rules caches compiled rules by text: most rules of a sync are the
	// same few (`goto endpoints-tcp`, `jump mark-for-masquerade`), and
	// google/nftables encodes a rule's expressions when it is added, so
	// rules can share them.
	rules map[string][]expr.Any
	// What each message of the batch carries, to name the operation the
	// kernel refuses: message i (after BATCH_BEGIN) holds the items
	// itemOps[msgStart[i]:msgStart[i+1]], each the index in ops.list of
	// the operation it came from (one item for a table, chain, rule or
	// set message; one per list element for an element message, an
	// interval element making two). cur is the operation being
	// translated; pendOps are the pending elements' operations.
	cur               int32
	pendOps           []int32
	msgStart, itemOps []int32
}

// message records one message of the batch, carrying the operations ops.
func (b *batch) message(ops ...int32) {
	b.msgStart = append(b.msgStart, int32(len(b.itemOps)))
	b.itemOps = append(b.itemOps, ops...)
}

// flushElements writes the pending element operations.
func (b *batch) flushElements() error {
	for len(b.pend) > 0 {
		n := min(len(b.pend), elementsPerMessage)
		var err error
		if b.pendVerb == verbAdd {
			err = b.conn.SetAddElements(b.pendSet, b.pend[:n])
		} else {
			err = b.conn.SetDeleteElements(b.pendSet, b.pend[:n])
		}
		if err != nil {
			return fmt.Errorf("elements of %s: %w", b.pendSet.Name, err)
		}
		b.message(b.pendOps[:n]...)
		// google/nftables has encoded them: the buffer is reused.
		b.pend = append(b.pend[:0], b.pend[n:]...)
		b.pendOps = append(b.pendOps[:0], b.pendOps[n:]...)
	}
	b.pendSet = nil
	return nil
}

// appendElement queues el for the pending set, sending a full message's
// worth as soon as there is one.
func (b *batch) appendElement(el gnft.SetElement) error {
	b.pend, b.pendOps = append(b.pend, el), append(b.pendOps, b.cur)
	if len(b.pend) < elementsPerMessage {
		return nil
	}
	set := b.pendSet
	if err := b.flushElements(); err != nil {
		return err
	}
	b.pendSet = set
	return nil
}

// compileRule compiles rule, once per batch for each distinct text.
func (b *batch) compileRule(rule string) ([]expr.Any, error) {
	if ex, ok := b.rules[rule]; ok {
		return ex, nil
	}
	ex, err := b.comp.compileRule(rule)
	if err != nil {
		return nil, err
	}
	if b.rules == nil {
		b.rules = map[string][]expr.Any{}
	}
	b.rules[rule] = ex
	return ex, nil
}

// apply sends o as one netlink batch and waits for the kernel's answer.
// A ctx already done sends nothing and returns ctx.Err(), as the CLI
// executor (exec.CommandContext) does.
func (n *Netlink) apply(ctx context.Context, o *ops) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("netlink batch not sent: %w", err)
	}
	var captured []netlink.Message
	// google/nftables encodes; its test dial hands us the batch it would
	// send, so we can send it with acks disabled (one ack per message
	// would need a receive buffer as large as the batch) and a send
	// buffer sized to it.
	conn, err := gnft.New(gnft.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req == nil {
			return nil, io.EOF
		}
		captured = append(captured, req...)
		return nil, nil
	}))
	if err != nil {
		return err
	}
	fam := gnft.TableFamilyIPv4
	if n.family == knftables.IPv6Family {
		fam = gnft.TableFamilyIPv6
	}
	b := &batch{conn: conn, table: &gnft.Table{Name: n.table, Family: fam},
		comp: compiler{ip6: n.family == knftables.IPv6Family}, sets: maps.Clone(n.sets), fam: n.family, typeof: map[string][]byte{}}
	for i, x := range o.list {
		b.cur = int32(i)
		if err := b.op(x); err != nil {
			return err
		}
		if _, isElement := x.obj.(*knftables.Element); x.obj != nil && !isElement {
			// (Every other operation is one message; elements are
			// recorded as their messages are written.)
			b.message(b.cur)
		}
	}
	if err := b.flushElements(); err != nil {
		return err
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("encode netlink batch: %w", err)
	}
	if err := b.patchTypeof(captured); err != nil {
		return err
	}
	if err := n.send(captured, func(i, offset int) string { return b.describe(n, o, captured, i, offset) }); err != nil {
		return err
	}
	n.sets = b.sets
	return nil
}

// patchTypeof replaces the user data of the endpoint maps' NEWSET
// messages with typeofUserData.
func (b *batch) patchTypeof(msgs []netlink.Message) error {
	if len(b.typeof) == 0 {
		return nil
	}
	newSet := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSET)
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != newSet || len(m.Data) < 4 {
			continue
		}
		attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return fmt.Errorf("re-read NEWSET: %w", err)
		}
		name := ""
		for _, a := range attrs {
			if a.Type == unix.NFTA_SET_NAME {
				name = strings.TrimRight(string(a.Data), "\x00")
			}
		}
		ud, ok := b.typeof[name]
		if !ok {
			continue
		}
		out := attrs[:0]
		for _, a := range attrs {
			if a.Type != unix.NFTA_SET_USERDATA {
				out = append(out, a)
			}
		}
		out = append(out, netlink.Attribute{Type: unix.NFTA_SET_USERDATA, Data: ud})
		data, err := netlink.MarshalAttributes(out)
		if err != nil {
			return err
		}
		m.Data = append(m.Data[:4:4], data...)
		m.Header.Length = 0
	}
	return nil
}

// send writes the batch (BATCH_BEGIN … BATCH_END) in one sendmsg, asking
// for an ack on the last operation only, and reads until that ack or an
// error arrives. The kernel processes the batch synchronously in
// sendmsg and reports every failing message (and aborts the whole
// batch); errors arrive before the last message's ack. The first error
// is returned, wrapped with describe(i, offset) of its message (i
// counting from the first after BATCH_BEGIN; offset the kernel's
// extended-ack offset of the failing attribute in it, 0 when it sent
// none).
func (n *Netlink) send(msgs []netlink.Message, describe func(i, offset int) string) error {
	if len(msgs) <= 2 {
		return nil
	}
	c, err := n.dial()
	if err != nil {
		return err
	}
	// On any error the socket is closed, so no reply of a failed batch
	// is ever read as the answer to the next one.
	ok := false
	defer func() {
		if !ok {
			n.closeConn()
		}
	}()
	size := 0
	for i := range msgs {
		size += nlmsgAlign(nlmsgHeaderLen + len(msgs[i].Data))
	}
	last := len(msgs) - 2 // the last operation (msgs[len-1] is BATCH_END)
	if err := forceBuffer(c, unix.SO_SNDBUFFORCE, size+1<<16); err != nil {
		return err
	}
	// The kernel charges the batch to the receive side too (without room
	// for it the final ack is dropped with ENOBUFS); `nft` sizes its
	// receive buffer by the batch as well.
	if err := forceBuffer(c, unix.SO_RCVBUFFORCE, size+1<<20); err != nil {
		return err
	}
	buf := encode(msgs, size, last, n.seq)
	first := n.seq + 2 // the first operation's sequence number (after BATCH_BEGIN)
	want := n.seq + uint32(last) + 1
	n.seq += uint32(len(msgs))
	if err := sendBatch(c, buf); err != nil {
		return fmt.Errorf("netlink send (%d messages, %d bytes): %w", len(msgs), size, err)
	}
	// The kernel has applied or refused the batch by now (sendmsg
	// processes it), so its answer is read whatever ctx says: a ctx
	// deadline here would report an applied batch as failed.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	rbuf := make([]byte, 1<<16)
	for {
		acks, err := receiveAcks(c, rbuf)
		if err != nil {
			return fmt.Errorf("netlink batch of %d messages: %w", len(msgs)-2, err)
		}
		for _, a := range acks {
			if a.err != nil {
				what := ""
				if i := int(a.seq) - int(first); i >= 0 && i < len(msgs)-2 {
					what = describe(i, a.offset)
				}
				if what == "" {
					what = fmt.Sprintf("message %d", a.seq-first+1)
				}
				return fmt.Errorf("netlink batch of %d messages: %s: %w", len(msgs)-2, what, a.err)
			}
			if a.seq == want {
				ok = true
				return nil
			}
		}
	}
}

// Netlink message flags of an error/ack message (netlink(7)): the
// original message is echoed as its header only (NLM_F_CAPPED), and
// extended-ack attributes follow (NLM_F_ACK_TLVS).
const (
	nlmFCapped  = 0x100
	nlmFAckTLVs = 0x200
)

// ack is the kernel's answer to one message of a batch.
type ack struct {
	seq uint32
	// err is nil for an ack, else a *netlink.OpError with the errno and
	// the kernel's extended-ack message, if any.
	err error
	// offset is that of the failing attribute in the original message
	// (extended ack), 0 when the kernel sent none.
	offset int
}

// receiveAcks reads one datagram from c and returns its acks and
// errors. mdlayher/netlink's Receive cannot be used: with extended acks
// it misreads the capped error messages nf_tables sends and loses their
// errno.
func receiveAcks(c *netlink.Conn, buf []byte) ([]ack, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, os.NewSyscallError("recvfrom", rerr)
	}
	return parseAcks(buf[:n])
}

// parseAcks decodes the acks and errors of a datagram from the kernel
// (other messages are skipped): NLMSG_ERROR messages, each an errno, the
// original message's header (capped) and extended-ack attributes.
func parseAcks(b []byte) ([]ack, error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, fmt.Errorf("parse netlink reply: %w", err)
	}
	var out []ack
	for _, m := range msgs {
		if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4+nlmsgHeaderLen {
			continue
		}
		a := ack{seq: m.Header.Seq}
		errno := -int32(binary.NativeEndian.Uint32(m.Data))
		msg := ""
		if m.Header.Flags&nlmFAckTLVs != 0 {
			tlvs := 4 + nlmsgHeaderLen
			if m.Header.Flags&nlmFCapped == 0 {
				tlvs = 4 + nlmsgAlign(int(binary.NativeEndian.Uint32(m.Data[4:])))
			}
			if tlvs <= len(m.Data) {
				if ad, err := netlink.NewAttributeDecoder(m.Data[tlvs:]); err == nil {
					for ad.Next() {
						switch ad.Type() {
						case unix.NLMSGERR_ATTR_MSG:
							msg = ad.String()
						case unix.NLMSGERR_ATTR_OFFS:
							a.offset = int(ad.Uint32())
						}
					}
				}
			}
		}
		if errno != 0 {
			a.err = &netlink.OpError{Op: "receive", Err: unix.Errno(errno), Message: msg, Sequence: a.seq}
		}
		out = append(out, a)
	}
	return out, nil
}

// Netlink message header length and alignment (netlink(7)).
const (
	nlmsgHeaderLen = 16
	nlmsgAlignTo   = 4
)

func nlmsgAlign(n int) int { return (n + nlmsgAlignTo - 1) &^ (nlmsgAlignTo - 1) }

// encode lays msgs out as one datagram of size bytes (netlink(7): each
// message a struct nlmsghdr in host byte order, its payload, padding to
// 4 bytes), numbered from seq+1 on, asking for an ack on msgs[ack] only;
// PID 0 lets the kernel fill in the port. (mdlayher/netlink's
// SendMessages grows its buffer message by message, which costs a full
// sync more than encoding it.)
func encode(msgs []netlink.Message, size, ack int, seq uint32) []byte {
	buf := make([]byte, 0, size)
	for i, m := range msgs {
		l := nlmsgHeaderLen + len(m.Data)
		flags := m.Header.Flags &^ netlink.Acknowledge
		if i == ack {
			flags |= netlink.Acknowledge
		}
		buf = binary.NativeEndian.AppendUint32(buf, uint32(l))
		buf = binary.NativeEndian.AppendUint16(buf, uint16(m.Header.Type))
		buf = binary.NativeEndian.AppendUint16(buf, uint16(flags))
		buf = binary.NativeEndian.AppendUint32(buf, seq+uint32(i)+1)
		buf = binary.NativeEndian.AppendUint32(buf, 0)
		buf = append(buf, m.Data...)
		for range nlmsgAlign(l) - l {
			buf = append(buf, 0)
		}
	}
	return buf
}

// sendBatch writes buf to the kernel in one sendmsg.
func sendBatch(c *netlink.Conn, buf []byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), buf, nil, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}, 0)
		return !errors.Is(serr, unix.EAGAIN)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("sendmsg", serr)
	}
	return nil
}

// dial returns the Netlink's socket, opening it in the namespace the
// first time (and after an error).
func (n *Netlink) dial() (*netlink.Conn, error) {
	if n.conn != nil {
		return n.conn, nil
	}
	var cfg netlink.Config
	if n.nsPath != "" {
		f, err := os.Open(n.nsPath)
		if err != nil {
			return nil, fmt.Errorf("netns %s: %w", n.nsPath, err)
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &cfg)
	if err != nil {
		return nil, fmt.Errorf("netlink dial: %w", err)
	}
	// Errors without the failing message echoed back, with the kernel's
	// message and the offset of the failing attribute (receiveAcks
	// parses them).
	_ = c.SetOption(netlink.CapAcknowledge, true)
	_ = c.SetOption(netlink.ExtendedAcknowledge, true)
	n.conn, n.bufSize = c, 0
	return c, nil
}

func (n *Netlink) closeConn() {
	if n.conn != nil {
		_ = n.conn.Close()
		n.conn = nil
	}
}

// Close closes the Netlink's socket (a later transaction opens a new
// one). The embedded CLI interface holds nothing to close.
func (n *Netlink) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closeConn()
	return nil
}

func forceBuffer(c *netlink.Conn, opt, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, size) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("netlink socket buffer %d bytes: %w", size, serr)
	}
	return nil
}

// describe names the operation of message i of the batch msgs made of o,
// as the `nft` CLI would write it ("add rule ip tabby-services c jump
// missing"): for an element message, the element at the kernel's offset
// (the failing list item), or the message's first element and how many
// more it holds when the kernel gave no offset. "" when the batch's
// record does not match its messages.
func (b *batch) describe(n *Netlink, o *ops, msgs []netlink.Message, i, offset int) string {
	if len(b.msgStart) != len(msgs)-2 || i >= len(b.msgStart) {
		return ""
	}
	end := len(b.itemOps)
	if i+1 < len(b.msgStart) {
		end = int(b.msgStart[i+1])
	}
	items := b.itemOps[b.msgStart[i]:end]
	if len(items) == 0 {
		return ""
	}
	which, found := 0, len(items) == 1
	if !found && offset > 0 {
		if j, ok := elementAt(msgs[i+1].Data, offset-nlmsgHeaderLen); ok && j < len(items) {
			which, found = j, true
		}
	}
	x := o.list[items[which]]
	tx := n.NewTransaction()
	x.into(tx)
	what := strings.TrimSpace(tx.String())
	if what == "" {
		what = fmt.Sprintf("%v %T", x.verb, x.object())
	}
	if ops := distinct(items); !found && ops > 1 {
		what += fmt.Sprintf(" (or one of the %d other elements of its message)", ops-1)
	}
	return what
}

// distinct counts the operations among items (an interval element is
// two items of one operation).
func distinct(items []int32) int {
	n := 0
	for k := range items {
		if k == 0 || items[k] != items[k-1] {
			n++
		}
	}
	return n
}

// elementAt returns the index of the element list item that begins at
// offset pos of data, an element message's payload (nfgenmsg, then
// attributes, one of them NFTA_SET_ELEM_LIST_ELEMENTS): the kernel
// points its extended ack at the item it refused.
func elementAt(data []byte, pos int) (int, bool) {
	const nfgenmsgLen = 4
	off := nfgenmsgLen
	for off+4 <= len(data) {
		l := int(binary.NativeEndian.Uint16(data[off:]))
		typ := binary.NativeEndian.Uint16(data[off+2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || off+l > len(data) {
			return 0, false
		}
		if typ == unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			item := off + 4
			for j := 0; item+4 <= off+l; j++ {
				il := int(binary.NativeEndian.Uint16(data[item:]))
				if il < 4 {
					return 0, false
				}
				if pos >= item && pos < item+il {
					return j, true
				}
				item += nlmsgAlign(il)
			}
			return 0, false
		}
		off += nlmsgAlign(l)
	}
	return 0, false
}

func unsupported(v verb, obj knftables.Object) error {
	return fmt.Errorf("%w: %v %T", ErrUnsupportedObject, v, obj)
}

func (b *batch) op(x op) error {
	if x.obj == nil {
		return b.joinedElement(x.verb, x.el.Map, x.el.Key, x.el.Value)
	}
	if e, ok := x.obj.(*knftables.Element); ok {
		return b.element(x.verb, e)
	}
	if err := b.flushElements(); err != nil {
		return err
	}
	switch obj := x.obj.(type) {
	case *knftables.Table:
		switch x.verb {
		case verbAdd:
			b.conn.AddTable(b.table)
		case verbDelete:
			b.conn.DelTable(b.table)
			clear(b.sets)
		default:
			return unsupported(x.verb, obj)
		}
	case *knftables.Chain:
		return b.chain(x.verb, obj)
	case *knftables.Rule:
		if x.verb != verbAdd || obj.Index != nil || obj.Handle != nil || obj.Comment != nil {
			return unsupported(x.verb, obj)
		}
		exprs, err := b.compileRule(obj.Rule)
		if err != nil {
			return fmt.Errorf("chain %s: %w", obj.Chain, err)
		}
		b.conn.AddRule(&gnft.Rule{Table: b.table, Chain: &gnft.Chain{Name: obj.Chain, Table: b.table}, Exprs: exprs})
	case *knftables.Set:
		return b.set(x.verb, obj.Name, obj.Type, obj.TypeOf, obj.Flags, obj.Timeout, false)
	case *knftables.Map:
		if x.verb == verbAdd && obj.TypeOf != "" {
			return b.typeofMap(obj)
		}
		typ, val, ok := strings.Cut(obj.Type, " : ")
		if x.verb == verbAdd && (!ok || strings.TrimSpace(val) != "verdict") {
			return fmt.Errorf("%w: map %s of type %q (only verdict maps)", ErrUnsupportedObject, obj.Name, obj.Type)
		}
		return b.set(x.verb, obj.Name, typ, obj.TypeOf, obj.Flags, obj.Timeout, true)
	default:
		return unsupported(x.verb, obj)
	}
	return nil
}

func (b *batch) chain(v verb, c *knftables.Chain) error {
	ch := &gnft.Chain{Name: c.Name, Table: b.table}
	switch v {
	case verbAdd:
		if c.Comment != nil || c.Device != nil {
			return unsupported(v, c)
		}
		if c.Hook != nil {
			if c.Type == nil || c.Priority == nil {
				return fmt.Errorf("%w: base chain %s without type or priority", ErrUnsupportedObject, c.Name)
			}
			hook, prio, err := hookPriority(*c.Hook, *c.Priority)
			if err != nil {
				return fmt.Errorf("chain %s: %w", c.Name, err)
			}
			ch.Type, ch.Hooknum, ch.Priority = gnft.ChainType(*c.Type), &hook, &prio
		}
		b.conn.AddChain(ch)
	case verbFlush:
		b.conn.FlushChain(ch)
	case verbDelete:
		b.conn.DelChain(ch)
	}
	return nil
}

func hookPriority(h knftables.BaseChainHook, p knftables.BaseChainPriority) (gnft.ChainHook, gnft.ChainPriority, error) {
	hooks := map[knftables.BaseChainHook]gnft.ChainHook{
		knftables.PreroutingHook:  *gnft.ChainHookPrerouting,
		knftables.InputHook:       *gnft.ChainHookInput,
		knftables.ForwardHook:     *gnft.ChainHookForward,
		knftables.OutputHook:      *gnft.ChainHookOutput,
		knftables.PostroutingHook: *gnft.ChainHookPostrouting,
	}
	hook, ok := hooks[h]
	if !ok {
		return 0, 0, fmt.Errorf("%w: hook %q", ErrUnsupportedObject, h)
	}
	// Priority names of the ip/ip6 families (nft(8), "PRIORITY").
	names := map[knftables.BaseChainPriority]int64{
		knftables.RawPriority: -300, knftables.ManglePriority: -150, knftables.DNATPriority: -100,
		knftables.FilterPriority: 0, knftables.SecurityPriority: 50, knftables.SNATPriority: 100,
	}
	if v, ok := names[p]; ok {
		return hook, gnft.ChainPriority(int32(v)), nil
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(string(p), " ", ""), 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: priority %q", ErrUnsupportedObject, p)
	}
	return hook, gnft.ChainPriority(int32(v)), nil
}

func (b *batch) set(v verb, name, typ string, typeOf string, flags []knftables.SetFlag, timeout *time.Duration, isMap bool) error {
	s := &gnft.Set{Table: b.table, Name: name}
	switch v {
	case verbDelete:
		b.conn.DelSet(s)
		delete(b.sets, name)
		return nil
	case verbFlush:
		b.conn.FlushSet(s)
		return nil
	}
	if typeOf != "" {
		return fmt.Errorf("%w: set %s: typeof", ErrUnsupportedObject, name)
	}
	var info setInfo
	for _, t := range strings.Split(typ, " . ") {
		dt, ok := setTypes[strings.TrimSpace(t)]
		if !ok {
			return fmt.Errorf("%w: set %s: type %q", ErrUnsupportedObject, name, t)
		}
		info.keys = append(info.keys, dt)
	}
	key := info.keys[0]
	if len(info.keys) > 1 {
		var err error
		if key, err = gnft.ConcatSetType(info.keys...); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	for _, f := range flags {
		switch f {
		case knftables.IntervalFlag:
			s.Interval, info.interval = true, true
		case knftables.DynamicFlag:
			s.Dynamic = true
		case knftables.TimeoutFlag:
			s.HasTimeout, info.timeout = true, true
		case knftables.ConstantFlag:
			s.Constant = true
		default:
			return fmt.Errorf("%w: set %s: flag %q", ErrUnsupportedObject, name, f)
		}
	}
	if info.interval && len(info.keys) > 1 {
		return fmt.Errorf("%w: set %s: concatenated interval set", ErrUnsupportedObject, name)
	}
	if timeout != nil {
		s.HasTimeout, s.Timeout = true, *timeout
	}
	s.KeyType = key
	s.Concatenation = len(info.keys) > 1
	if isMap {
		s.IsMap, s.DataType, info.isMap = true, gnft.TypeVerdict, true
	}
	b.setID++
	s.ID = b.setID // set explicitly: google/nftables otherwise bumps a package-level counter
	if err := b.conn.AddSet(s, nil); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	b.sets[name] = info
	return nil
}

// typeofMap adds an endpoint map, the only typeof maps the renderer
// writes: "<addr> daddr . <proto> dport . numgen random mod 1 : <addr>
// daddr . <proto> dport" or "<proto> dport . numgen … : …".
func (b *batch) typeofMap(m *knftables.Map) error {
	udHex, ok := typeofUserData[[2]string{string(b.fam), m.Name}]
	ip, addr := "ip", gnft.TypeIPAddr
	if b.fam == knftables.IPv6Family {
		ip, addr = "ip6", gnft.TypeIP6Addr
	}
	proto := strings.TrimPrefix(strings.TrimPrefix(m.Name, mapServiceEndpoints+"-"), mapNodePortEndpoints+"-")
	keys := []gnft.SetDatatype{addr, gnft.TypeInetService, gnft.TypeInteger}
	want := fmt.Sprintf("%s daddr . %s dport . numgen random mod 1 : %s daddr . %s dport", ip, proto, ip, proto)
	if strings.HasPrefix(m.Name, mapNodePortEndpoints+"-") {
		keys = keys[1:]
		want = fmt.Sprintf("%s dport . numgen random mod 1 : %s daddr . %s dport", proto, ip, proto)
	}
	if !ok || m.TypeOf != want || len(m.Flags) > 0 || m.Timeout != nil {
		return fmt.Errorf("%w: map %s typeof %q", ErrUnsupportedObject, m.Name, m.TypeOf)
	}
	ud, err := hex.DecodeString(udHex)
	if err != nil {
		return err
	}
	key, err := gnft.ConcatSetType(keys...)
	if err != nil {
		return err
	}
	data, err := gnft.ConcatSetType(addr, gnft.TypeInetService)
	if err != nil {
		return err
	}
	b.setID++
	s := &gnft.Set{Table: b.table, Name: m.Name, ID: b.setID, IsMap: true, KeyType: key, DataType: data}
	if err := b.conn.AddSet(s, nil); err != nil {
		return fmt.Errorf("map %s: %w", m.Name, err)
	}
	b.typeof[m.Name] = ud
	b.sets[m.Name] = setInfo{keys: keys, data: []gnft.SetDatatype{addr, gnft.TypeInetService}}
	return nil
}

// concatKey encodes the " . "-joined fields of a key or value of types
// ts, each padded to 4 bytes when there are several.
func concatKey(joined string, ts []gnft.SetDatatype) ([]byte, error) {
	if n := strings.Count(joined, keySep) + 1; n != len(ts) {
		return nil, fmt.Errorf("%w: %q: %d fields, want %d", ErrUnsupportedObject, joined, n, len(ts))
	}
	key := make([]byte, 0, 4*len(ts)+16)
	rest := joined
	for _, t := range ts {
		var k string
		k, rest, _ = strings.Cut(rest, keySep)
		n := len(key)
		var err error
		if key, err = appendField(key, k, t); err != nil {
			return nil, err
		}
		if len(ts) > 1 {
			for (len(key)-n)%4 != 0 {
				key = append(key, 0)
			}
		}
	}
	return key, nil
}

// keySep joins the fields of a concatenated key or value.
const keySep = " . "

// element adds or deletes a knftables element (written by callers other
// than the Proxier's diff, which hands over its own elements).
func (b *batch) element(v verb, e *knftables.Element) error {
	if e.Comment != nil {
		return unsupported(v, e)
	}
	name := e.Set
	if e.Map != "" {
		name = e.Map
	}
	info, ok := b.sets[name]
	if ok && len(e.Key) != len(info.keys) {
		return fmt.Errorf("%w: element %v of %s: %d key fields, want %d", ErrUnsupportedObject, e.Key, name, len(e.Key), len(info.keys))
	}
	return b.joinedElement(v, name, strings.Join(e.Key, keySep), strings.Join(e.Value, keySep))
}

// joinedElement adds or deletes the element key (its fields joined by
// keySep) of set or map name, with value (ditto; a verdict for a
// verdict map) when adding to a map.
func (b *batch) joinedElement(v verb, name, key, value string) error {
	info, ok := b.sets[name]
	if !ok {
		return fmt.Errorf("%w: element of %s, a set this executor did not create", ErrUnsupportedObject, name)
	}
	if v != verbAdd && v != verbDelete {
		return fmt.Errorf("%w: %v element of %s", ErrUnsupportedObject, v, name)
	}
	if b.pendSet == nil || b.pendSet.Name != name || b.pendVerb != v {
		if err := b.flushElements(); err != nil {
			return err
		}
		b.pendSet, b.pendVerb = &gnft.Set{Table: b.table, Name: name, IsMap: info.isMap || info.data != nil, HasTimeout: info.timeout}, v
	}
	if info.interval {
		if len(info.keys) != 1 || strings.Contains(key, keySep) {
			return fmt.Errorf("%w: element %q of %s: want one key field", ErrUnsupportedObject, key, name)
		}
		start, end, err := intervalKeys(key, info.keys[0])
		if err != nil {
			return fmt.Errorf("element of %s: %w", name, err)
		}
		if err := b.appendElement(gnft.SetElement{Key: start}); err != nil {
			return err
		}
		if end != nil {
			return b.appendElement(gnft.SetElement{Key: end, IntervalEnd: true})
		}
		return nil
	}
	k, err := concatKey(key, info.keys)
	if err != nil {
		return fmt.Errorf("element of %s: %w", name, err)
	}
	el := gnft.SetElement{Key: k}
	switch {
	case info.isMap && v == verbAdd:
		vd, err := verdict(value)
		if err != nil {
			return fmt.Errorf("element %q of map %s: %w", key, name, err)
		}
		el.VerdictData = vd
	case info.data != nil && v == verbAdd:
		if el.Val, err = concatKey(value, info.data); err != nil {
			return fmt.Errorf("element %q of map %s: %w", key, name, err)
		}
	}
	return b.appendElement(el)
}

// appendField appends one key field of type t (network byte order; host
// order for integer and mark).
func appendField(dst []byte, s string, t gnft.SetDatatype) ([]byte, error) {
	switch t.Name {
	case gnft.TypeIPAddr.Name, gnft.TypeIP6Addr.Name:
		a, err := netip.ParseAddr(s)
		if err != nil || a.Is4In6() || (a.Is4() != (t.Name == gnft.TypeIPAddr.Name)) {
			return nil, fmt.Errorf("%w: %s %q", ErrUnsupportedObject, t.Name, s)
		}
		if a.Is4() {
			b := a.As4()
			return append(dst, b[:]...), nil
		}
		b := a.As16()
		return append(dst, b[:]...), nil
	case gnft.TypeInetService.Name:
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%w: port %q", ErrUnsupportedObject, s)
		}
		return append(dst, byte(p>>8), byte(p)), nil
	case gnft.TypeInteger.Name:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: integer %q", ErrUnsupportedObject, s)
		}
		return binary.NativeEndian.AppendUint32(dst, uint32(n)), nil
	}
	b, err := encodeField(s, t)
	return append(dst, b...), err
}

// encodeField encodes one key field of type t (network byte order).
func encodeField(s string, t gnft.SetDatatype) ([]byte, error) {
	switch t.Name {
	case gnft.TypeIPAddr.Name, gnft.TypeIP6Addr.Name:
		a, err := netip.ParseAddr(s)
		if err != nil || a.Is4In6() || (a.Is4() != (t.Name == gnft.TypeIPAddr.Name)) {
			return nil, fmt.Errorf("%w: %s %q", ErrUnsupportedObject, t.Name, s)
		}
		return a.AsSlice(), nil
	case gnft.TypeInetProto.Name:
		p, err := protoNumber(s)
		if err != nil {
			return nil, err
		}
		return []byte{p}, nil
	case gnft.TypeInetService.Name:
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%w: port %q", ErrUnsupportedObject, s)
		}
		return binaryutil.BigEndian.PutUint16(uint16(p)), nil
	case gnft.TypeInteger.Name:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: integer %q", ErrUnsupportedObject, s)
		}
		return binaryutil.NativeEndian.PutUint32(uint32(n)), nil
	case gnft.TypeMark.Name:
		m, err := strconv.ParseUint(s, 0, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: mark %q", ErrUnsupportedObject, s)
		}
		return binaryutil.NativeEndian.PutUint32(uint32(m)), nil
	}
	return nil, fmt.Errorf("%w: type %s", ErrUnsupportedObject, t.Name)
}

// intervalKeys encodes an address or prefix as an interval's start and
// end (the first address after it; nil when the prefix reaches the top
// of the address space).
func intervalKeys(s string, t gnft.SetDatatype) (start, end []byte, err error) {
	p, err := parsePrefix(s)
	if err != nil || p.Addr().Is4() != (t.Name == gnft.TypeIPAddr.Name) {
		return nil, nil, fmt.Errorf("%w: %s interval %q", ErrUnsupportedObject, t.Name, s)
	}
	p = p.Masked()
	start = p.Addr().AsSlice()
	last := make([]byte, len(start))
	copy(last, start)
	for i := range last {
		if host := p.Bits() - i*8; host < 8 {
			if host < 0 {
				host = 0
			}
			last[i] |= byte(0xff >> host)
		}
	}
	// end = last + 1, or nil on overflow.
	end = make([]byte, len(last))
	copy(end, last)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return start, end, nil
		}
	}
	return start, nil, nil
}
