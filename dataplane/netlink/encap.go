package netlink

import (
	"fmt"
	"net/netip"
)

// EncapMode is an IP pool's vxlanMode or ipipMode, as Calico spells them.
type EncapMode string

// Encapsulation modes.
const (
	EncapNever       EncapMode = "Never"
	EncapAlways      EncapMode = "Always"
	EncapCrossSubnet EncapMode = "CrossSubnet"
)

// ParseEncapMode accepts "Never", "Always", "CrossSubnet" and "" (Never).
func ParseEncapMode(s string) (EncapMode, error) {
	switch m := EncapMode(s); m {
	case "":
		return EncapNever, nil
	case EncapNever, EncapAlways, EncapCrossSubnet:
		return m, nil
	}
	return "", fmt.Errorf("%w: encapsulation mode %q (want Never, Always or CrossSubnet)", ErrInvalidSpec, s)
}

// Encapsulate reports whether traffic to a peer node at peerIP goes through
// the tunnel: always for Always, never for Never, and for CrossSubnet only
// when the peer is outside this node's underlay subnet (then a plain route
// via the peer's IP is used instead).
func (m EncapMode) Encapsulate(underlay netip.Prefix, peerIP netip.Addr) bool {
	switch m {
	case EncapAlways:
		return true
	case EncapCrossSubnet:
		return !underlay.Contains(peerIP)
	}
	return false
}
