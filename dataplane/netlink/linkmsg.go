package netlink

import (
	"net"
	"net/netip"
	"syscall"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"github.com/mdlayher/netlink"
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
	sizeofNdtmsg          = 4  // struct ndtmsg: family, 3 bytes padding
)

// The request builders below return complete netlink messages (header
// included, sequence number 0) for a pipeline. Bodies are
// jsimonetti/rtnetlink/v2 message types; what that library has no type for
// (IFLA_AF_SPEC, RTM_SETNEIGHTBL) is encoded with mdlayher/netlink's
// attribute encoder. An encoding failure yields a one-byte message, which
// a pipeline reports as malformed (ErrInvalidSpec); the values come from
// this package and always encode.

// appendSetLinkMsg appends an RTM_SETLINK for link index that sets its
// alias, brings it up and sets IPv4 per-device settings through
// IFLA_AF_SPEC — `ip link set dev X alias A up` plus
// `sysctl net.ipv4.conf.X.proxy_arp=1 net.ipv4.conf.X.forwarding=1` in one
// message. ipv4Conf maps IPV4_DEVCONF_* numbers to values.
func appendSetLinkMsg(b []byte, index int, alias string, up bool, ipv4Conf [][2]uint32) []byte {
	lm := rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: uint32(index), Attributes: &rtnetlink.LinkAttributes{}}
	if up {
		lm.Flags, lm.Change = unix.IFF_UP, unix.IFF_UP
	}
	if alias != "" {
		lm.Attributes.Alias = &alias
	}
	m, err := request(unix.RTM_SETLINK, netlink.Request, &lm)
	if err != nil {
		return append(b, 0)
	}
	if len(ipv4Conf) > 0 {
		ae := netlink.NewAttributeEncoder()
		ae.Nested(unix.IFLA_AF_SPEC, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(unix.AF_INET, func(ae *netlink.AttributeEncoder) error {
				ae.Nested(unix.IFLA_INET_CONF, func(ae *netlink.AttributeEncoder) error {
					for _, kv := range ipv4Conf {
						ae.Uint32(uint16(kv[0]), kv[1])
					}
					return nil
				})
				return nil
			})
			return nil
		})
		spec, err := ae.Encode()
		if err != nil {
			return append(b, 0)
		}
		m.Data = append(m.Data, spec...)
	}
	return appendMessage(b, m, 0)
}

// appendLinkDownMsg appends an RTM_SETLINK that sets link index down
// (`ip link set dev X down`).
func appendLinkDownMsg(b []byte, index int) []byte {
	lm := rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: uint32(index), Change: unix.IFF_UP}
	m, err := request(unix.RTM_SETLINK, netlink.Request, &lm)
	if err != nil {
		return append(b, 0)
	}
	return appendMessage(b, m, 0)
}

// appendRenameMsg appends an RTM_SETLINK that renames link index and sets
// its alias (`ip link set dev X name NAME alias A`); the kernel refuses to
// rename a link that is up (EBUSY).
func appendRenameMsg(b []byte, index int, name, alias string) []byte {
	lm := rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: uint32(index),
		Attributes: &rtnetlink.LinkAttributes{Name: name, Alias: &alias}}
	m, err := request(unix.RTM_SETLINK, netlink.Request, &lm)
	if err != nil {
		return append(b, 0)
	}
	return appendMessage(b, m, 0)
}

// appendProxyDelayMsg appends an RTM_SETNEIGHTBL that sets the ARP proxy
// delay of link index (`sysctl net.ipv4.neigh.X.proxy_delay`, given here
// in milliseconds).
func appendProxyDelayMsg(b []byte, index int, delayMs uint64) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.String(ndtaName, "arp_cache")
	ae.Nested(ndtaParms, func(ae *netlink.AttributeEncoder) error {
		ae.Uint32(ndtpaIfindex, uint32(index))
		ae.Uint64(ndtpaProxyDelay, delayMs)
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return append(b, 0)
	}
	data := append([]byte{unix.AF_INET, 0, 0, 0}[:sizeofNdtmsg], attrs...)
	return appendMessage(b, netlink.Message{Header: netlink.Header{Type: unix.RTM_SETNEIGHTBL, Flags: netlink.Request}, Data: data}, 0)
}

// appendAddrMsg appends an RTM_NEWADDR that adds or replaces address p on
// link index (`ip addr replace P dev X [nodad]`).
func appendAddrMsg(b []byte, index int, p netip.Prefix, nodad bool) []byte {
	am := rtnetlink.AddressMessage{
		Family: unix.AF_INET, PrefixLength: uint8(p.Bits()), Scope: unix.RT_SCOPE_UNIVERSE, Index: uint32(index),
		Attributes: &rtnetlink.AddressAttributes{Address: p.Addr().AsSlice(), Local: p.Addr().AsSlice()},
	}
	if p.Addr().Is6() {
		am.Family = unix.AF_INET6
	}
	if nodad {
		am.Flags, am.Attributes.Flags = unix.IFA_F_NODAD, unix.IFA_F_NODAD
	}
	m, err := request(unix.RTM_NEWADDR, netlink.Request|netlink.Create|netlink.Replace, &am)
	if err != nil {
		return append(b, 0)
	}
	return appendMessage(b, m, 0)
}

// appendVethMsg appends an RTM_NEWLINK creating a veth pair (`ip link add
// NAME mtu M address MAC type veth peer name PEER mtu M address PMAC netns
// FD`): the peer is created directly in the namespace peerNsFd.
func appendVethMsg(b []byte, name, peer string, peerNsFd, mtu int, mac, peerMAC []byte) []byte {
	lm := rtnetlink.LinkMessage{
		Family: unix.AF_UNSPEC,
		Attributes: &rtnetlink.LinkAttributes{
			Name: name, MTU: uint32(mtu), Address: net.HardwareAddr(mac),
			Info: &rtnetlink.LinkInfo{Kind: "veth", Data: &driver.Veth{PeerInfo: &rtnetlink.LinkMessage{
				Family: unix.AF_UNSPEC,
				Attributes: &rtnetlink.LinkAttributes{
					Name: peer, MTU: uint32(mtu), Address: net.HardwareAddr(peerMAC),
					NetNS: rtnetlink.NetNSForFD(uint32(peerNsFd)),
				},
			}}},
		},
	}
	m, err := request(unix.RTM_NEWLINK, netlink.Request|netlink.Create|netlink.Excl, &lm)
	if err != nil {
		return append(b, 0)
	}
	return appendMessage(b, m, 0)
}

// appendGetLinkMsg appends an RTM_GETLINK for the link called name
// (`ip link show NAME`); the kernel answers with an RTM_NEWLINK.
func appendGetLinkMsg(b []byte, name string) []byte {
	lm := rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Attributes: &rtnetlink.LinkAttributes{Name: name}}
	m, err := request(unix.RTM_GETLINK, netlink.Request, &lm)
	if err != nil {
		return append(b, 0)
	}
	return appendMessage(b, m, 0)
}

// parseLinkReply returns the ifindex of an RTM_NEWLINK answer and its
// IFLA_LINK (for a veth: the peer's ifindex in the peer's namespace). The
// header is decoded by rtnetlink.LinkMessage and only IFLA_LINK by
// netlink.AttributeDecoder: a full decode (statistics and all) costs
// microseconds on every workload set-up. When the attributes do not
// decode, link is 0.
func parseLinkReply(m syscall.NetlinkMessage) (index, link int, ok bool) {
	if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
		return 0, 0, false
	}
	var lm rtnetlink.LinkMessage
	if err := lm.UnmarshalBinary(m.Data[:unix.SizeofIfInfomsg]); err != nil {
		return 0, 0, false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofIfInfomsg:])
	if err != nil {
		return int(int32(lm.Index)), 0, true
	}
	for ad.Next() {
		if ad.Type() == unix.IFLA_LINK {
			link = int(int32(ad.Uint32()))
		}
	}
	if ad.Err() != nil {
		link = 0
	}
	return int(int32(lm.Index)), link, true
}
