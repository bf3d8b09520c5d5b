package policy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nfnetlink_log constants (linux/netfilter/nfnetlink_log.h).
const (
	nfnlSubsysULOG      = 4
	nfulnlMsgPacket     = 0
	nfulnlMsgConfig     = 1
	nfulaCfgCmd         = 1
	nfulaCfgMode        = 2
	nfulnlCfgCmdBind    = 1
	nfulnlCopyPacket    = 2
	nfulaPayload        = 9
	nfulaPrefix         = 10
	nfulaIfindexIndev   = 4
	nfulaIfindexOutdev  = 5
	defaultCopyRange    = 128
	readPollingInterval = 200 * time.Millisecond
)

// ErrBadPacket: an nfnetlink_log message that cannot be decoded.
var ErrBadPacket = errors.New("cannot decode NFLOG message")

// LoggedPacket is one packet the kernel sent to the NFLOG group: the rule's
// prefix, the interfaces (ifindex, 0 when none) and the addresses, protocol
// and ports read from its IP header.
type LoggedPacket struct {
	Prefix            string
	InIndex, OutIndex uint32
	Src, Dst          netip.Addr
	Protocol          uint8
	SrcPort, DstPort  uint16
}

// DropReader reads the packets logged to one NFLOG group (nfnetlink_log
// over netlink, as `ulogd` does), in one network namespace. The zero value
// is not usable; make one with ListenDrops (its methods return
// ErrInvalidConfig).
type DropReader struct {
	conn *netlink.Conn
}

// ListenDrops binds NFLOG group in the network namespace whose file
// descriptor is netnsFD (0: the caller's) and returns a reader. Only one
// listener can bind a group in a namespace. Close it when done.
func ListenDrops(group uint16, netnsFD int) (*DropReader, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFD})
	if err != nil {
		return nil, fmt.Errorf("nflog group %d: dial: %w", group, err)
	}
	cfg := func(attrType uint16, data []byte) error {
		ae := netlink.NewAttributeEncoder()
		ae.Bytes(attrType, data)
		attrs, err := ae.Encode()
		if err != nil {
			return err
		}
		hdr := []byte{unix.AF_UNSPEC, 0, 0, 0}
		binary.BigEndian.PutUint16(hdr[2:], group)
		_, err = conn.Execute(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig),
				Flags: netlink.Request | netlink.Acknowledge},
			Data: append(hdr, attrs...),
		})
		return err
	}
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, defaultCopyRange)
	mode[4] = nfulnlCopyPacket
	if err := cfg(nfulaCfgCmd, []byte{nfulnlCfgCmdBind}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("nflog group %d: bind: %w", group, err)
	}
	if err := cfg(nfulaCfgMode, mode); err != nil {
		conn.Close()
		return nil, fmt.Errorf("nflog group %d: copy mode: %w", group, err)
	}
	return &DropReader{conn: conn}, nil
}

// Close releases the group.
func (r *DropReader) Close() error {
	if err := r.check("close"); err != nil {
		return err
	}
	return r.conn.Close()
}

// check returns nil when ListenDrops made r, else an error of op wrapping
// ErrInvalidConfig.
func (r *DropReader) check(op string) error {
	if r == nil || r.conn == nil {
		return fmt.Errorf("nflog %s: policy.DropReader is not bound (make it with ListenDrops): %w", op, ErrInvalidConfig)
	}
	return nil
}

// Read returns the next logged packets, waiting until at least one arrives
// or ctx is done (then ctx.Err()).
func (r *DropReader) Read(ctx context.Context) ([]LoggedPacket, error) {
	if err := r.check("read"); err != nil {
		return nil, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := r.conn.SetReadDeadline(time.Now().Add(readPollingInterval)); err != nil {
			return nil, err
		}
		msgs, err := r.conn.Receive()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return nil, fmt.Errorf("nflog receive: %w", err)
		}
		var out []LoggedPacket
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(nfnlSubsysULOG<<8|nfulnlMsgPacket) {
				continue
			}
			p, err := ParseLoggedPacket(m.Data)
			if err != nil {
				continue
			}
			out = append(out, p)
		}
		if len(out) > 0 {
			return out, nil
		}
	}
}

// ParseLoggedPacket decodes the body of an NFULNL_MSG_PACKET message
// (nfgenmsg header and attributes). The IP header fields are filled when
// the payload holds one. Errors wrap ErrBadPacket.
func ParseLoggedPacket(b []byte) (LoggedPacket, error) {
	var p LoggedPacket
	if len(b) < 4 {
		return p, fmt.Errorf("%w: %d bytes", ErrBadPacket, len(b))
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return p, fmt.Errorf("%w: %v", ErrBadPacket, err)
	}
	ad.ByteOrder = binary.BigEndian
	var payload []byte
	for ad.Next() {
		switch ad.Type() {
		case nfulaPrefix:
			p.Prefix = ad.String()
		case nfulaIfindexIndev:
			if len(ad.Bytes()) == 4 {
				p.InIndex = ad.Uint32()
			}
		case nfulaIfindexOutdev:
			if len(ad.Bytes()) == 4 {
				p.OutIndex = ad.Uint32()
			}
		case nfulaPayload:
			payload = ad.Bytes()
		}
	}
	if err := ad.Err(); err != nil {
		return p, fmt.Errorf("%w: %v", ErrBadPacket, err)
	}
	parseIP(&p, payload)
	return p, nil
}

// parseIP fills addresses, protocol and ports from an IPv4 or IPv6 header
// (no extension headers), leaving them zero when b is too short.
func parseIP(p *LoggedPacket, b []byte) {
	if len(b) < 1 {
		return
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0x0f) * 4
		if len(b) < 20 || ihl < 20 || len(b) < ihl {
			return
		}
		p.Protocol = b[9]
		p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		l4 = b[ihl:]
	case 6:
		if len(b) < 40 {
			return
		}
		p.Protocol = b[6]
		p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40:]
	default:
		return
	}
	switch p.Protocol {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_SCTP:
		if len(l4) >= 4 {
			p.SrcPort = binary.BigEndian.Uint16(l4)
			p.DstPort = binary.BigEndian.Uint16(l4[2:])
		}
	}
}
