package ipsets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	nl "github.com/vishvananda/netlink"
	nlnl "github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// BatchHandle is a Handle that also writes many entries of one set per
// netlink message, as `ipset restore` does. IPSets uses it, when its Handle
// implements it, to fill and edit sets; otherwise it makes one IpsetAdd or
// IpsetDel call per member. KernelHandle (NewHandle) and Fake implement it.
//
// Both methods write entries in order and stop at the first entry that
// fails, returning an *EntryError naming its index in entries: the entries
// before it were written, none after it was. Unlike IpsetAdd and
// IpsetDel, an entry already present (add) or absent (delete) is not an
// error, the semantics IPSets gives both paths. A missing set is an
// EntryError for entry 0 wrapping ENOENT. An empty entries is a no-op.
type BatchHandle interface {
	Handle
	// IpsetAddEntries adds entries to set name, leaving present ones as
	// they are (`ipset add -exist` for each, batched).
	IpsetAddEntries(name string, entries []*nl.IPSetEntry) error
	// IpsetDelEntries deletes entries from set name, ignoring absent ones
	// (`ipset del -exist` for each, batched).
	IpsetDelEntries(name string, entries []*nl.IPSetEntry) error
}

// EntryError is the error of a BatchHandle call: the entry at Index (in
// the slice passed) failed with Err, the kernel's error value (so IsExist,
// IsHashFull, IsNotFound and errors.Is see through it).
type EntryError struct {
	Index int
	Err   error
}

func (e *EntryError) Error() string { return fmt.Sprintf("ipset entry %d: %v", e.Index, e.Err) }

// Unwrap returns Err.
func (e *EntryError) Unwrap() error { return e.Err }

// ErrUnsupportedEntry: a BatchHandle was given an entry field it does not
// encode. KernelHandle encodes the fields the set types of this package use
// (IP, CIDR, Protocol, Port, IP2); Comment, MAC, Timeout, Packets, Bytes,
// CIDR2, IFace and Mark are refused rather than dropped.
var ErrUnsupportedEntry = errors.New("ipset entry field not supported by the batched write")

// MaxBatchMessage is the largest netlink message, in bytes, KernelHandle
// sends for a batched write: about 2,040 IPv4 hash:ip or 740 IPv4
// hash:ip,port,ip entries. It is well under the default socket send
// buffer, and the kernel's error reply (which echoes the request) fits the
// 64 KiB receive buffer of vishvananda/netlink.
const MaxBatchMessage = 32 << 10

// KernelHandle is the real BatchHandle: a *netlink.Handle
// (vishvananda/netlink) for NETLINK_NETFILTER bound to one network
// namespace, used for every Handle method, plus a second netfilter socket
// in the same namespace for the batched writes. Close releases both.
// It is safe for concurrent use. After Close its Handle and BatchHandle
// methods fail with ErrClosed; the other methods of the embedded
// *netlink.Handle must not be called then (a closed vishvananda/netlink
// Handle acts on the calling thread's namespace). The zero value is not
// usable (make one with NewHandle): it acts as a closed one, and its Close
// does nothing.
type KernelHandle struct {
	*nl.Handle
	batch map[int]*nlnl.SocketHandle
	// mu is held shared by every call and exclusively by Close, so no
	// call uses the closed Handle.
	mu     sync.RWMutex
	closed bool
}

var _ BatchHandle = (*KernelHandle)(nil)

// NewHandle opens a KernelHandle in the network namespace ns (the
// namespace's ipsets are what `ip netns exec NS ipset` sees). The caller
// keeps ns open for its own use; the handle does not need it after
// NewHandle returns.
func NewHandle(ns netns.NsHandle) (*KernelHandle, error) {
	h, err := nl.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("open netfilter netlink handle: %w", err)
	}
	s, err := nlnl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open netfilter netlink socket: %w", err)
	}
	return &KernelHandle{Handle: h, batch: map[int]*nlnl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: s}}}, nil
}

// Close closes both sockets; it waits for the calls in flight. Closing
// twice does nothing.
func (k *KernelHandle) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || k.Handle == nil {
		return
	}
	k.closed = true
	k.Handle.Close()
	for _, s := range k.batch {
		s.Close()
	}
}

// do runs f unless the handle is closed or was not made by NewHandle (a
// nil vishvananda handle acts on the caller's namespace).
func (k *KernelHandle) do(f func() error) error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed || k.Handle == nil {
		return ErrClosed
	}
	return f()
}

// IpsetListAll implements Handle (`ipset list`).
func (k *KernelHandle) IpsetListAll() (res []nl.IPSetResult, err error) {
	err = k.do(func() error { res, err = k.Handle.IpsetListAll(); return err })
	return res, err
}

// IpsetCreate implements Handle (`ipset create`).
func (k *KernelHandle) IpsetCreate(name, typename string, opts nl.IpsetCreateOptions) error {
	return k.do(func() error { return k.Handle.IpsetCreate(name, typename, opts) })
}

// IpsetDestroy implements Handle (`ipset destroy`).
func (k *KernelHandle) IpsetDestroy(name string) error {
	return k.do(func() error { return k.Handle.IpsetDestroy(name) })
}

// IpsetSwap implements Handle (`ipset swap`).
func (k *KernelHandle) IpsetSwap(a, b string) error {
	return k.do(func() error { return k.Handle.IpsetSwap(a, b) })
}

// IpsetAdd implements Handle (`ipset add`).
func (k *KernelHandle) IpsetAdd(name string, e *nl.IPSetEntry) error {
	return k.do(func() error { return k.Handle.IpsetAdd(name, e) })
}

// IpsetDel implements Handle (`ipset del`).
func (k *KernelHandle) IpsetDel(name string, e *nl.IPSetEntry) error {
	return k.do(func() error { return k.Handle.IpsetDel(name, e) })
}

// IpsetAddEntries implements BatchHandle: IPSET_CMD_ADD messages without
// NLM_F_EXCL, each holding up to MaxBatchMessage bytes of entries in an
// IPSET_ATTR_ADT attribute.
func (k *KernelHandle) IpsetAddEntries(name string, entries []*nl.IPSetEntry) error {
	return k.do(func() error { return k.write(nlnl.IPSET_CMD_ADD, name, entries) })
}

// IpsetDelEntries implements BatchHandle, as IpsetAddEntries with
// IPSET_CMD_DEL.
func (k *KernelHandle) IpsetDelEntries(name string, entries []*nl.IPSetEntry) error {
	return k.do(func() error { return k.write(nlnl.IPSET_CMD_DEL, name, entries) })
}

// write sends entries in messages of at most MaxBatchMessage bytes, one ACK
// each. The kernel (ip_set_ad) applies a message's entries in order and
// stops at the first error without saying which entry failed (it would,
// with a line number per entry, in a reply vishvananda/netlink does not
// return), so a failed message is sent again one entry per message: the
// entries before the culprit are present already and are not errors
// without NLM_F_EXCL, and the culprit fails again with its own error.
func (k *KernelHandle) write(cmd int, name string, entries []*nl.IPSetEntry) error {
	for start := 0; start < len(entries); {
		req, end, encErr := k.message(cmd, name, entries, start, MaxBatchMessage)
		if end > start && k.execute(req) != nil {
			for i := start; i < end; i++ {
				one, _, _ := k.message(cmd, name, entries, i, 0)
				if err := k.execute(one); err != nil {
					return &EntryError{Index: i, Err: err}
				}
			}
		}
		if encErr != nil {
			return &EntryError{Index: end, Err: encErr}
		}
		start = end
	}
	return nil
}

// message builds one request holding entries from start on, as many as fit
// in limit bytes (at least one; exactly one when limit is 0), and returns
// the index after the last one it holds. An entry it cannot encode ends
// the request early: end is its index and the error ErrUnsupportedEntry.
func (k *KernelHandle) message(cmd int, name string, entries []*nl.IPSetEntry, start, limit int) (*nlnl.NetlinkRequest, int, error) {
	req := &nlnl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   unix.SizeofNlMsghdr,
			Type:  uint16(cmd | unix.NFNL_SUBSYS_IPSET<<8),
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK,
		},
		Sockets: k.batch,
	}
	req.AddData(&nlnl.Nfgenmsg{NfgenFamily: unix.AF_NETLINK, Version: nlnl.NFNETLINK_V0})
	req.AddData(nlnl.NewRtAttr(nlnl.IPSET_ATTR_PROTOCOL, nlnl.Uint8Attr(nlnl.IPSET_PROTOCOL)))
	req.AddData(nlnl.NewRtAttr(nlnl.IPSET_ATTR_SETNAME, nlnl.ZeroTerminated(name)))
	// The kernel requires a line number beside IPSET_ATTR_ADT.
	req.AddData(&nlnl.Uint32Attribute{Type: nlnl.IPSET_ATTR_LINENO | nlnl.NLA_F_NET_BYTEORDER})
	adt := nlnl.NewRtAttr(nlnl.IPSET_ATTR_ADT|int(nlnl.NLA_F_NESTED), nil)
	req.AddData(adt)
	size := unix.SizeofNlMsghdr + unix.SizeofRtAttr // with the ADT header
	for _, d := range req.Data[:len(req.Data)-1] {
		size += rtaAlign(d.Len())
	}
	end := start
	for ; end < len(entries) && (limit > 0 || end == start); end++ {
		data, err := encodeEntry(entries[end])
		if err != nil {
			return req, end, err
		}
		n := rtaAlign(data.Len())
		if end > start && size+n > limit {
			break
		}
		adt.AddChild(data)
		size += n
	}
	return req, end, nil
}

func (k *KernelHandle) execute(req *nlnl.NetlinkRequest) error {
	_, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	// Codes from IPSET_ERR_PRIVATE on are ipset's own, as vishvananda's
	// per-entry calls return them.
	var errno syscall.Errno
	if errors.As(err, &errno) && int(errno) >= nlnl.IPSET_ERR_PRIVATE {
		return nlnl.IPSetError(uintptr(errno))
	}
	return err
}

func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }

// encodeEntry returns e as one IPSET_ATTR_DATA attribute, with the
// attributes vishvananda/netlink's IpsetAdd writes for the same fields.
func encodeEntry(e *nl.IPSetEntry) (*nlnl.RtAttr, error) {
	if err := checkBatchEntry(e); err != nil {
		return nil, err
	}
	data := nlnl.NewRtAttr(nlnl.IPSET_ATTR_DATA|int(nlnl.NLA_F_NESTED), nil)
	if e.IP != nil {
		data.AddChild(ipAttr(nlnl.IPSET_ATTR_IP, e.IP))
	}
	if e.CIDR != 0 {
		data.AddChild(nlnl.NewRtAttr(nlnl.IPSET_ATTR_CIDR, nlnl.Uint8Attr(e.CIDR)))
	}
	if e.IP2 != nil {
		data.AddChild(ipAttr(nlnl.IPSET_ATTR_IP2, e.IP2))
	}
	if e.Port != nil {
		proto := uint8(unix.IPPROTO_TCP) // the kernel's and vishvananda's default
		if e.Protocol != nil {
			proto = *e.Protocol
		}
		data.AddChild(nlnl.NewRtAttr(nlnl.IPSET_ATTR_PROTO, nlnl.Uint8Attr(proto)))
		data.AddChild(nlnl.NewRtAttr(nlnl.IPSET_ATTR_PORT|int(nlnl.NLA_F_NET_BYTEORDER), binary.BigEndian.AppendUint16(nil, *e.Port)))
	}
	return data, nil
}

// checkBatchEntry refuses what a batched write does not encode.
func checkBatchEntry(e *nl.IPSetEntry) error {
	switch {
	case e == nil:
		return fmt.Errorf("%w: nil entry", ErrUnsupportedEntry)
	case e.Comment != "", e.MAC != nil, e.Timeout != nil, e.Packets != nil, e.Bytes != nil,
		e.CIDR2 != 0, e.IFace != "", e.Mark != nil:
		return fmt.Errorf("%w: only IP, CIDR, Protocol, Port and IP2 are written", ErrUnsupportedEntry)
	}
	return nil
}

// ipAttr nests ip as IPSET_ATTR_IPADDR_IPV4 when it has a 4-byte form,
// else as IPSET_ATTR_IPADDR_IPV6 (the kernel checks the set's family).
func ipAttr(typ int, ip net.IP) *nlnl.RtAttr {
	a := nlnl.NewRtAttr(typ|int(nlnl.NLA_F_NESTED), nil)
	if ip4 := ip.To4(); ip4 != nil {
		a.AddRtAttr(nlnl.IPSET_ATTR_IPADDR_IPV4|int(nlnl.NLA_F_NET_BYTEORDER), ip4)
	} else {
		a.AddRtAttr(nlnl.IPSET_ATTR_IPADDR_IPV6|int(nlnl.NLA_F_NET_BYTEORDER), ip)
	}
	return a
}
