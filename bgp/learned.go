package bgp

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/tabbynet/tabby/dataplane/netlink"
)

// nextHops is a sorted, comma-joined set of next-hop addresses: a
// comparable value for the delta tracker.
type nextHops string

func makeNextHops(as []netip.Addr) nextHops {
	slices.SortFunc(as, netip.Addr.Compare)
	as = slices.Compact(as)
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return nextHops(strings.Join(parts, ","))
}

func (n nextHops) addrs() []netip.Addr {
	if n == "" {
		return nil
	}
	var out []netip.Addr
	for _, s := range strings.Split(string(n), ",") {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// LearnedRoute is a route the speaker selected from what peers sent: one
// prefix with every equal-cost next hop.
type LearnedRoute struct {
	Prefix   netip.Prefix
	NextHops []netip.Addr
}

func (l LearnedRoute) kernel() netlink.Route {
	r := netlink.Route{Dst: l.Prefix}
	for _, nh := range l.NextHops {
		r.NextHops = append(r.NextHops, netlink.NextHop{Gateway: nh})
	}
	return r
}

// programmerResync is how often the route programmer's sync function runs
// when no learned route changed (the runner's maximum interval).
const programmerResync = time.Minute

// syncLearned reads GoBGP's RIB, selects the equal-cost next hops of every
// learned prefix, and (after the startup sync) hands the difference to the
// RouteProgrammer. It runs on the sync runner, one run at a time, and
// calls the RouteProgrammer without holding lmu.
func (s *Speaker) syncLearned(ctx context.Context) error {
	s.mu.Lock()
	srv := s.srv
	own := map[netip.Addr]bool{s.cfg.NodeIP: true, s.cfg.NodeIPv6: true}
	imp := s.cfg.Import
	nPeers := s.peers.Dataplane().Len()
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	s.lmu.Lock()
	idle := nPeers == 0 && s.learned.Desired().Len() == 0 && s.learned.Dataplane().Len() == 0
	s.lmu.Unlock()
	if idle {
		// Nothing can have been learned. Not reading the RIB also keeps a
		// speaker that has no peers yet off GoBGP's package-level route
		// selection settings while another speaker in the process starts.
		return nil
	}
	desired := map[netip.Prefix]nextHops{}
	why := map[netip.Prefix]string{}
	for _, fam := range []*api.Family{familyV4, familyV6} {
		// Collect first: the callback runs while GoBGP's management loop
		// is busy, so it must not take s.mu (Advertise holds it while
		// waiting for that loop).
		var dests []*api.Destination
		err := srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam}, func(d *api.Destination) {
			dests = append(dests, d)
		})
		if err != nil {
			return fmt.Errorf("list %s RIB: %w", fam.Afi, err)
		}
		for _, d := range dests {
			p, err := netip.ParsePrefix(d.Prefix)
			if err != nil {
				return fmt.Errorf("RIB prefix %q: %w", d.Prefix, err)
			}
			nh, reason := s.selectNextHops(p, d.Paths, own, imp)
			if reason != "" {
				why[p] = reason
				continue
			}
			if nh != "" {
				desired[p] = nh
			}
		}
	}
	if ctx.Err() != nil {
		// Stopping: the RIB may already lack the routes of deleted peers,
		// which stay in the kernel.
		return nil
	}
	s.lmu.Lock()
	s.learned.Desired().ReplaceAll(maps.All(desired))
	s.learnedWhy = why
	select {
	case <-s.synced:
	default:
		s.lmu.Unlock()
		return nil // keep what the kernel has until the startup sync
	}
	if s.o.rp == nil {
		s.learned.Dataplane().ReplaceAll(maps.All(desired))
		s.lmu.Unlock()
		setGauge(s.o.metrics.Learned, len(desired))
		return nil
	}
	// The difference is taken under lmu and handed to the programmer
	// without it: a slow kernel write must not hold up Synced, Why,
	// Learned, GoBGP's event handler or Stop. Only this function changes
	// the dataplane side of s.learned, and the runner calls it one at a
	// time, so the difference stays valid while the lock is released; a
	// RIB change meanwhile triggers the next run, which diffs the newer
	// state against what this run programmed.
	var keys []netlink.RouteKey
	for p := range s.learned.PendingDeletions() {
		keys = append(keys, netlink.RouteKey{Dst: p})
	}
	updates := maps.Collect(s.learned.PendingUpdates())
	s.lmu.Unlock()
	if len(keys) > 0 {
		s.o.rp.Remove(s.o.rpName, keys...)
		s.lmu.Lock()
		for _, k := range keys {
			s.learned.Dataplane().Delete(k.Dst)
		}
		s.lmu.Unlock()
	}
	if len(updates) > 0 {
		routes := make([]netlink.Route, 0, len(updates))
		for p, nh := range updates {
			routes = append(routes, LearnedRoute{Prefix: p, NextHops: nh.addrs()}.kernel())
		}
		if err := s.o.rp.Upsert(s.o.rpName, routes...); err != nil {
			return fmt.Errorf("program %d learned routes: %w", len(routes), err)
		}
		s.lmu.Lock()
		for p, nh := range updates {
			s.learned.Dataplane().Set(p, nh)
		}
		s.lmu.Unlock()
	}
	s.lmu.Lock()
	n := s.learned.Dataplane().Len()
	s.lmu.Unlock()
	setGauge(s.o.metrics.Learned, n)
	// Without changes the programmer is still synced every
	// programmerResync, so one that applies only deltas (RouteOwner.Apply)
	// gets to repair drift.
	if s.o.rpSync != nil && (len(keys) > 0 || len(updates) > 0 || s.needSync || time.Since(s.lastRPSync) >= programmerResync) {
		s.needSync = true // until it succeeds
		if err := s.o.rpSync(ctx); err != nil {
			return fmt.Errorf("sync learned routes to the kernel: %w", err)
		}
		s.needSync = false
		s.lastRPSync = time.Now()
	}
	return nil
}

// selectNextHops picks the next hops for p from its paths: the best path
// and every path tying with it (equalCost), minus next hops that are this
// node. reason says why nothing is programmed.
func (s *Speaker) selectNextHops(p netip.Prefix, paths []*api.Path, own map[netip.Addr]bool, imp Filter) (nextHops, string) {
	var all []learnedPath
	var best *learnedPath
	for _, ap := range paths {
		lp, ok := fromAPIPath(ap)
		if !ok {
			continue
		}
		all = append(all, lp)
		if lp.best {
			best = &all[len(all)-1]
		}
	}
	switch {
	case len(all) == 0:
		return "", "" // only our own path
	case s.advertised(p):
		return "", "the node advertises this prefix itself"
	}
	if act, i := imp.DecideRoute(FilterRoute{Prefix: p, FromPeer: true}); act == Reject {
		return "", fmt.Sprintf("rejected by import filter rule %d", i)
	}
	if best == nil {
		best = &all[0]
	}
	var nhs []netip.Addr
	for _, lp := range all {
		if equalCost(lp, *best) && !own[lp.nextHop] {
			nhs = append(nhs, lp.nextHop)
		}
	}
	if len(nhs) == 0 {
		return "", "every next hop is this node"
	}
	return makeNextHops(nhs), ""
}
