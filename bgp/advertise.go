package bgp

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v3/api"
)

// Advertise adds (or updates) prefixes in the DefaultSource set. It is
// Source(DefaultSource).Advertise.
func (s *Speaker) Advertise(ctx context.Context, ads ...Advertisement) error {
	return s.Source(DefaultSource).Advertise(ctx, ads...)
}

// Withdraw removes prefixes from the DefaultSource set; unknown prefixes are
// ignored. A prefix another source still wants stays advertised.
func (s *Speaker) Withdraw(ctx context.Context, prefixes ...netip.Prefix) error {
	return s.Source(DefaultSource).Withdraw(ctx, prefixes...)
}

// SetAdvertisements makes the DefaultSource set exactly ads and sends only
// the difference to peers.
func (s *Speaker) SetAdvertisements(ctx context.Context, ads []Advertisement) error {
	return s.Source(DefaultSource).Set(ctx, ads)
}

// Advertiser is the seam for controllers that only advertise (a
// LoadBalancer IP allocator, the service advertiser, the block
// advertiser): Speaker.Source returns one. For tests, a Speaker that is
// never started is the fake: it validates, merges sources and answers
// Advertised and Why exactly as a running one, and sends nothing.
type Advertiser interface {
	// Advertise adds or updates prefixes.
	Advertise(ctx context.Context, ads ...Advertisement) error
	// Withdraw removes prefixes; unknown ones are ignored.
	Withdraw(ctx context.Context, prefixes ...netip.Prefix) error
	// Set makes the set exactly ads.
	Set(ctx context.Context, ads []Advertisement) error
}

var _ Advertiser = Source{}

// Source is the injection API: a named set of advertisements owned by one
// controller (the pod-block advertiser, a LoadBalancer IP allocator, ...)
// sharing the one speaker. The speaker advertises the union of all sources;
// communities of a prefix several sources want are merged. Source values
// are cheap handles; they are safe for concurrent use.
type Source struct {
	s    *Speaker
	name string
}

// Source returns the handle of the named source (created on first write).
// The name "config/service-cidrs" is reserved for the service CIDRs of
// Config (SetConfig changes them), and a source needs a name: Advertise,
// Withdraw and Set of a handle with either name return an error wrapping
// ErrInvalidSource and change nothing.
func (s *Speaker) Source(name string) Source { return Source{s: s, name: name} }

// serviceCIDRSource is the source holding Config's service CIDRs.
const serviceCIDRSource = "config/service-cidrs"

func (src Source) check(op string) error {
	switch src.name {
	case "":
		return fmt.Errorf("%s: a source needs a name: %w", op, ErrInvalidSource)
	case serviceCIDRSource:
		return fmt.Errorf("%s of source %q: reserved for Config's service CIDRs: %w", op, src.name, ErrInvalidSource)
	}
	return nil
}

// Advertise adds or updates prefixes of the source. Invalid prefixes wrap
// ErrInvalidPrefix and then nothing changes. On a running speaker the
// change is sent to GoBGP before it returns.
func (src Source) Advertise(ctx context.Context, ads ...Advertisement) error {
	if err := src.check("advertise"); err != nil {
		return err
	}
	if err := src.s.begin(ctx, "advertise from "+src.name); err != nil {
		return err
	}
	if err := validateAds(ads); err != nil {
		return fmt.Errorf("advertise from %s: %w", src.name, err)
	}
	s := src.s
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.sources[src.name]
	if m == nil {
		m = map[netip.Prefix]Advertisement{}
		s.sources[src.name] = m
	}
	touched := make([]netip.Prefix, 0, len(ads))
	for _, a := range ads {
		m[a.Prefix] = a
		touched = append(touched, a.Prefix)
	}
	s.recomputeLocked(touched)
	return s.flushAdvertisementsLocked(ctx)
}

// Withdraw removes prefixes of the source; unknown prefixes are ignored.
func (src Source) Withdraw(ctx context.Context, prefixes ...netip.Prefix) error {
	if err := src.check("withdraw"); err != nil {
		return err
	}
	if err := src.s.begin(ctx, "withdraw from "+src.name); err != nil {
		return err
	}
	s := src.s
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.sources[src.name]
	for _, p := range prefixes {
		delete(m, p)
	}
	if len(m) == 0 {
		delete(s.sources, src.name)
	}
	s.recomputeLocked(prefixes)
	return s.flushAdvertisementsLocked(ctx)
}

// Set makes the source's set exactly ads (nil empties it).
func (src Source) Set(ctx context.Context, ads []Advertisement) error {
	if err := src.check("set advertisements"); err != nil {
		return err
	}
	if err := src.s.begin(ctx, "set advertisements of "+src.name); err != nil {
		return err
	}
	if err := validateAds(ads); err != nil {
		return fmt.Errorf("set advertisements of %s: %w", src.name, err)
	}
	s := src.s
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.sources[src.name]
	m := make(map[netip.Prefix]Advertisement, len(ads))
	for _, a := range ads {
		m[a.Prefix] = a
	}
	touched := slices.Collect(maps.Keys(old))
	for p, a := range m {
		if o, ok := old[p]; !ok || !slices.Equal(o.Communities, a.Communities) || o.Kind != a.Kind || o.Interface != a.Interface {
			touched = append(touched, p)
		}
	}
	if len(m) == 0 {
		delete(s.sources, src.name)
	} else {
		s.sources[src.name] = m
	}
	s.recomputeLocked(touched)
	return s.flushAdvertisementsLocked(ctx)
}

func validateAds(ads []Advertisement) error {
	for _, a := range ads {
		if err := a.validate(); err != nil {
			return err
		}
	}
	return nil
}

// recomputeLocked renders the desired advertisement of each prefix in
// touched (all known prefixes when touched is nil) from every source.
func (s *Speaker) recomputeLocked(touched []netip.Prefix) {
	if touched == nil {
		all := map[netip.Prefix]bool{}
		for _, m := range s.sources {
			for p := range m {
				all[p] = true
			}
		}
		for p := range s.adv.Desired().All() {
			all[p] = true
		}
		for p := range s.advWhy {
			all[p] = true
		}
		touched = slices.Collect(maps.Keys(all))
	}
	for _, p := range touched {
		pa, why := s.renderLocked(p)
		if why != "" {
			s.adv.Desired().Delete(p)
			s.advWhy[p] = why
			continue
		}
		delete(s.advWhy, p)
		if pa == nil {
			s.adv.Desired().Delete(p)
			continue
		}
		s.adv.Desired().Set(p, *pa)
	}
}

// renderLocked decides one prefix: the path to send, or nil with the reason
// it is not advertised ("" when no source wants it).
func (s *Speaker) renderLocked(p netip.Prefix) (*path, string) {
	var cs []Community
	wanted := false
	var why, iface string
	for _, name := range slices.Sorted(maps.Keys(s.sources)) {
		a, ok := s.sources[name][p]
		if !ok {
			continue
		}
		if a.Kind != KindOther && !prefixWithin(p, s.cfg.serviceRange(a.Kind)) {
			why = fmt.Sprintf("source %s: %s %s is outside the configured %s CIDRs", name, a.Kind, p, a.Kind)
			continue
		}
		wanted = true
		cs = append(cs, a.Communities...)
		if iface == "" {
			iface = a.Interface
		}
	}
	if !wanted {
		return nil, why
	}
	if p.Addr().Is4() && !s.cfg.NodeIP.IsValid() || p.Addr().Is6() && !s.cfg.NodeIPv6.IsValid() {
		return nil, "the node has no address of this family to use as next hop"
	}
	if act, i := s.cfg.Export.DecideRoute(FilterRoute{Prefix: p, Interface: iface}); act == Reject {
		return nil, fmt.Sprintf("rejected by export filter rule %d", i)
	}
	cs = append(cs, s.cfg.communitiesFor(p)...)
	pa := newPath(cs)
	pa.iface = iface
	return &pa, ""
}

// flushAdvertisementsLocked sends pending changes to GoBGP.
func (s *Speaker) flushAdvertisementsLocked(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	var errs []error
	if s.usesInterfacesLocked() {
		// Interface rules list the matching advertisements: update them
		// before the paths they match are sent.
		if err := s.setPoliciesLocked(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for p := range s.adv.PendingDeletions() {
		ap, err := toAPIPath(p, nil, true)
		if err == nil {
			err = s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: ap.Family, Path: ap})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
			continue
		}
		s.adv.Dataplane().Delete(p)
	}
	for p, pa := range s.adv.PendingUpdates() {
		ap, err := toAPIPath(p, pa.list, false)
		if err == nil {
			_, err = s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: ap})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("advertise %s: %w", p, err))
			continue
		}
		s.adv.Dataplane().Set(p, pa)
	}
	setGauge(s.o.metrics.Advertised, s.adv.Dataplane().Len())
	return joinErrs(errs)
}

// advertisedLocked reports whether the node itself advertises p.
func (s *Speaker) advertised(p netip.Prefix) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.adv.Desired().Get(p)
	return ok
}
