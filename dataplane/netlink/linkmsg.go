package netlink

import (
	"encoding/binary"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kernel constants the x/sys/unix package does not name
// (include/uapi/linux/ip.h and neighbour.h).
const (
	ipv4DevconfForwarding = 1  // IPV4_DEVCONF_FORWARDING
	ipv4DevconfProxyARP   = 3  // IPV4_DEVCONF_PROXY_ARP
	ipv4DevconfLocalnet   = 26 // IPV4_DEVCONF_ROUTE_LOCALNET
	ndtaName              = 1  // NDTA_NAME
	ndtaParms             = 6  // NDTA_PARMS
	ndtpaIfindex          = 1  // NDTPA_IFINDEX
	ndtpaProxyDelay       = 13 // NDTPA_PROXY_DELAY (u64 milliseconds)
	vethInfoPeer          = 1  // VETH_INFO_PEER
)

// appendSetLinkMsg appends an RTM_SETLINK for link index that sets its
// alias, brings it up and sets IPv4 per-device settings through
// IFLA_AF_SPEC — `ip link set dev X alias A up` plus
// `sysctl net.ipv4.conf.X.proxy_arp=1 net.ipv4.conf.X.forwarding=1` in one
// message. ipv4Conf maps IPV4_DEVCONF_* numbers to values.
func appendSetLinkMsg(b []byte, index int, alias string, up bool, ipv4Conf [][2]uint32) []byte {
	start := len(b)
	b = nlHeader(b, unix.RTM_SETLINK, unix.NLM_F_REQUEST)
	var flags, change uint32
	if up {
		flags, change = unix.IFF_UP, unix.IFF_UP
	}
	b = append(b, unix.AF_UNSPEC, 0)
	b = binary.NativeEndian.AppendUint16(b, 0) // ifi_type
	b = binary.NativeEndian.AppendUint32(b, uint32(int32(index)))
	b = binary.NativeEndian.AppendUint32(b, flags)
	b = binary.NativeEndian.AppendUint32(b, change)
	if alias != "" {
		b = appendAttr(b, unix.IFLA_IFALIAS, []byte(alias))
	}
	if len(ipv4Conf) > 0 {
		var conf []byte
		for _, kv := range ipv4Conf {
			conf = appendAttr(conf, uint16(kv[0]), binary.NativeEndian.AppendUint32(nil, kv[1]))
		}
		inet := appendAttr(nil, unix.IFLA_INET_CONF, conf)
		b = appendAttr(b, unix.IFLA_AF_SPEC, appendAttr(nil, unix.AF_INET, inet))
	}
	return finish(b, start)
}

// appendProxyDelayMsg appends an RTM_SETNEIGHTBL that sets the ARP proxy
// delay of link index (`sysctl net.ipv4.neigh.X.proxy_delay`, given here
// in milliseconds).
func appendProxyDelayMsg(b []byte, index int, delayMs uint64) []byte {
	start := len(b)
	b = nlHeader(b, unix.RTM_SETNEIGHTBL, unix.NLM_F_REQUEST)
	b = append(b, unix.AF_INET, 0, 0, 0) // struct ndtmsg
	b = appendAttr(b, ndtaName, append([]byte("arp_cache"), 0))
	parms := appendAttr(nil, ndtpaIfindex, binary.NativeEndian.AppendUint32(nil, uint32(index)))
	parms = appendAttr(parms, ndtpaProxyDelay, binary.NativeEndian.AppendUint64(nil, delayMs))
	b = appendAttr(b, ndtaParms, parms)
	return finish(b, start)
}

// appendAddrMsg appends an RTM_NEWADDR that adds or replaces address p on
// link index (`ip addr replace P dev X [nodad]`).
func appendAddrMsg(b []byte, index int, p netip.Prefix, nodad bool) []byte {
	start := len(b)
	b = nlHeader(b, unix.RTM_NEWADDR, unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	family := uint8(unix.AF_INET)
	if p.Addr().Is6() {
		family = unix.AF_INET6
	}
	var flags uint32
	if nodad {
		flags = unix.IFA_F_NODAD
	}
	b = append(b, family, uint8(p.Bits()), uint8(flags), unix.RT_SCOPE_UNIVERSE)
	b = binary.NativeEndian.AppendUint32(b, uint32(index))
	a := p.Addr().AsSlice()
	b = appendAttr(b, unix.IFA_LOCAL, a)
	b = appendAttr(b, unix.IFA_ADDRESS, a)
	b = appendAttr(b, unix.IFA_FLAGS, binary.NativeEndian.AppendUint32(nil, flags))
	return finish(b, start)
}

// appendVethMsg appends an RTM_NEWLINK creating a veth pair (`ip link add
// NAME mtu M address MAC type veth peer name PEER mtu M address PMAC netns
// FD`): the peer is created directly in the namespace peerNsFd.
func appendVethMsg(b []byte, name, peer string, peerNsFd, mtu int, mac, peerMAC []byte) []byte {
	ifinfo := func(b []byte) []byte {
		b = append(b, unix.AF_UNSPEC, 0, 0, 0)
		return binary.NativeEndian.AppendUint32(append(binary.NativeEndian.AppendUint32(b, 0), 0, 0, 0, 0), 0)
	}
	start := len(b)
	b = nlHeader(b, unix.RTM_NEWLINK, unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	b = ifinfo(b)
	b = appendAttr(b, unix.IFLA_IFNAME, append([]byte(name), 0))
	b = appendAttr(b, unix.IFLA_MTU, binary.NativeEndian.AppendUint32(nil, uint32(mtu)))
	b = appendAttr(b, unix.IFLA_ADDRESS, mac)
	p := ifinfo(nil)
	p = appendAttr(p, unix.IFLA_IFNAME, append([]byte(peer), 0))
	p = appendAttr(p, unix.IFLA_MTU, binary.NativeEndian.AppendUint32(nil, uint32(mtu)))
	p = appendAttr(p, unix.IFLA_ADDRESS, peerMAC)
	p = appendAttr(p, unix.IFLA_NET_NS_FD, binary.NativeEndian.AppendUint32(nil, uint32(peerNsFd)))
	info := appendAttr(nil, unix.IFLA_INFO_KIND, []byte("veth"))
	info = appendAttr(info, unix.IFLA_INFO_DATA, appendAttr(nil, vethInfoPeer, p))
	b = appendAttr(b, unix.IFLA_LINKINFO, info)
	return finish(b, start)
}

// appendGetLinkMsg appends an RTM_GETLINK for the link called name
// (`ip link show NAME`); the kernel answers with an RTM_NEWLINK.
func appendGetLinkMsg(b []byte, name string) []byte {
	start := len(b)
	b = nlHeader(b, unix.RTM_GETLINK, unix.NLM_F_REQUEST)
	b = append(b, unix.AF_UNSPEC, 0, 0, 0)
	b = binary.NativeEndian.AppendUint32(append(binary.NativeEndian.AppendUint32(b, 0), 0, 0, 0, 0), 0)
	b = appendAttr(b, unix.IFLA_IFNAME, append([]byte(name), 0))
	return finish(b, start)
}

// parseLinkReply returns the ifindex of an RTM_NEWLINK answer and its
// IFLA_LINK (for a veth: the peer's ifindex in the peer's namespace).
func parseLinkReply(m syscall.NetlinkMessage) (index, link int, ok bool) {
	if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
		return 0, 0, false
	}
	index = int(int32(binary.NativeEndian.Uint32(m.Data[4:8])))
	// Walk the attributes by hand: syscall.ParseNetlinkRouteAttr panics on
	// some malformed input (found by FuzzParseLinkReply).
	for b := m.Data[unix.SizeofIfInfomsg:]; len(b) >= 4; {
		l, typ := int(binary.NativeEndian.Uint16(b)), binary.NativeEndian.Uint16(b[2:])
		if l < 4 || l > len(b) {
			break
		}
		if typ&^unix.NLA_F_NESTED == unix.IFLA_LINK && l >= 8 {
			link = int(int32(binary.NativeEndian.Uint32(b[4:8])))
		}
		b = b[min(len(b), (l+3)&^3):]
	}
	return index, link, true
}
