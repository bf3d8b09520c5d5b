package bgp

// Translation between tabby's types and GoBGP's API messages. Nothing here
// is exported: protobuf types never leave the package.

import (
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

var (
	familyV4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyV6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

func familyOf(a netip.Addr) *api.Family {
	if a.Is4() {
		return familyV4
	}
	return familyV6
}

// anys marshals messages into Any values; it only fails for messages that
// cannot be marshalled, which none of ours are.
func anys(ms ...proto.Message) ([]*anypb.Any, error) {
	out := make([]*anypb.Any, len(ms))
	for i, m := range ms {
		a, err := anypb.New(m)
		if err != nil {
			return nil, fmt.Errorf("marshal %T: %w", m, err)
		}
		out[i] = a
	}
	return out, nil
}

// toAPIPath builds a locally originated path for prefix p with the given
// communities; the unspecified next hop makes GoBGP put the session's
// local address (next hop self).
func toAPIPath(p netip.Prefix, cs []Community, withdraw bool) (*api.Path, error) {
	fam := familyOf(p.Addr())
	n, err := anys(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	if err != nil {
		return nil, err
	}
	nlri := n[0]
	msgs := []proto.Message{&api.OriginAttribute{Origin: 0}}
	if p.Addr().Is4() {
		msgs = append(msgs, &api.NextHopAttribute{NextHop: "0.0.0.0"})
	} else {
		msgs = append(msgs, &api.MpReachNLRIAttribute{Family: fam, NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri}})
	}
	var std []uint32
	var large []*api.LargeCommunity
	for _, c := range cs {
		if c.Large {
			large = append(large, &api.LargeCommunity{GlobalAdmin: c.A, LocalData1: c.B, LocalData2: c.C})
		} else {
			std = append(std, c.standard())
		}
	}
	if len(std) > 0 {
		msgs = append(msgs, &api.CommunitiesAttribute{Communities: std})
	}
	if len(large) > 0 {
		msgs = append(msgs, &api.LargeCommunitiesAttribute{Communities: large})
	}
	attrs, err := anys(msgs...)
	if err != nil {
		return nil, err
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: attrs, IsWithdraw: withdraw}, nil
}

// learnedPath is the part of a received path that route selection and the
// kernel need.
type learnedPath struct {
	neighbor  netip.Addr
	nextHop   netip.Addr
	localPref uint32
	asPathLen int
	origin    uint32
	med       uint32
	best      bool
	stale     bool
}

// fromAPIPath decodes a path from GoBGP's RIB; ok is false for paths that
// are withdrawn, locally originated, or undecodable.
func fromAPIPath(p *api.Path) (learnedPath, bool) {
	if p.IsWithdraw {
		return learnedPath{}, false
	}
	nb, err := netip.ParseAddr(p.NeighborIp)
	if err != nil || nb.IsUnspecified() {
		return learnedPath{}, false // locally originated
	}
	lp := learnedPath{neighbor: nb.Unmap(), localPref: 100, best: p.Best, stale: p.Stale}
	for _, a := range p.Pattrs {
		m, err := a.UnmarshalNew()
		if err != nil {
			continue
		}
		switch v := m.(type) {
		case *api.NextHopAttribute:
			lp.nextHop, _ = netip.ParseAddr(v.NextHop)
		case *api.MpReachNLRIAttribute:
			for _, nh := range v.NextHops {
				if a, err := netip.ParseAddr(nh); err == nil && !a.IsLinkLocalUnicast() {
					lp.nextHop = a
					break
				}
			}
		case *api.LocalPrefAttribute:
			lp.localPref = v.LocalPref
		case *api.OriginAttribute:
			lp.origin = v.Origin
		case *api.MultiExitDiscAttribute:
			lp.med = v.Med
		case *api.AsPathAttribute:
			for _, s := range v.Segments {
				if s.Type == api.AsSegment_AS_SET {
					lp.asPathLen++
				} else {
					lp.asPathLen += len(s.Numbers)
				}
			}
		}
	}
	lp.nextHop = lp.nextHop.Unmap()
	if !lp.nextHop.IsValid() || lp.nextHop.IsUnspecified() {
		lp.nextHop = lp.neighbor
	}
	return lp, true
}

// equalCost reports whether two paths tie on everything BGP compares
// before the tie-breakers (local preference, AS path length, origin, MED),
// which is when BIRD's "merge paths" would combine them.
func equalCost(a, b learnedPath) bool {
	return a.localPref == b.localPref && a.asPathLen == b.asPathLen && a.origin == b.origin && a.med == b.med
}
