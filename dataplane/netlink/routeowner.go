package netlink

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	nl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteOwner keeps the kernel's routes marked with its protocol number equal
// to a desired set, in every table. Desired routes come from named sources
// (for example "blocks", "bgp", "vxlan") so that several producers can share
// one owner without overwriting each other; Reconcile writes the union.
//
// It is safe for concurrent use. Writes to the kernel happen only in Reconcile.
// The zero value is not usable; make one with NewRouteOwner (its methods
// that return an error return ErrInvalidSpec, Remove does nothing, Desired
// and Protocol return zero values).
type RouteOwner struct {
	h     RouteHandle
	proto int
	log   *slog.Logger

	mu      sync.Mutex
	sources map[string]map[RouteKey]Route
	// track holds the union of the sources (kept by Set, Upsert, Remove)
	// against the kernel's routes of the owner's protocol (resynced from a
	// dump by each Plan and Reconcile).
	track *routeTracker
	// resync bounds how long Apply trusts the tracker's kernel side;
	// synced says whether it can be trusted at all (a dump happened and
	// no write failed since), lastDump when it was last loaded.
	resync   time.Duration
	synced   bool
	lastDump time.Time
}

// ReconcileResult counts what one Reconcile changed.
type ReconcileResult struct {
	Added, Replaced, Deleted int
}

// NewRouteOwner returns an owner writing through h (a KernelHandle or a
// *netlink.Handle from netlink.NewHandleAt for the node's namespace, or a
// FakeRouteHandle). It fails with an error wrapping ErrInvalidOption for an
// option with a bad value, and ErrInvalidSpec for a nil handle.
func NewRouteOwner(h RouteHandle, opts ...RouteOwnerOption) (*RouteOwner, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: route owner without a handle", ErrInvalidSpec)
	}
	o, err := routeOwnerOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("route owner: %w", err)
	}
	return &RouteOwner{h: h, proto: o.protocol, log: o.log, sources: map[string]map[RouteKey]Route{}, track: newRouteTracker(),
		resync: o.resync}, nil
}

// made reports whether NewRouteOwner made o: only it sets the tracker,
// never changed afterwards, so reading it needs no lock.
func (o *RouteOwner) made() bool { return o != nil && o.track != nil }

// errNotMade is the error of op on a value of type typ (RouteOwner, VXLAN,
// Workloads) that its constructor, New+typ, did not make.
func errNotMade(typ, op string) error {
	return fmt.Errorf("%s: netlink.%s has no configuration (make it with New%s): %w", op, typ, typ, ErrInvalidSpec)
}

// Protocol returns the route protocol number this owner marks routes with.
func (o *RouteOwner) Protocol() int {
	if !o.made() {
		return 0
	}
	return o.proto
}

func validateAll(routes []Route) error {
	for _, r := range routes {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Set replaces all desired routes of source. Routes are validated first; on
// error nothing changes. Set(source, nil) forgets the source.
func (o *RouteOwner) Set(source string, routes []Route) error {
	if !o.made() {
		return errNotMade("RouteOwner", "set routes")
	}
	if err := validateAll(routes); err != nil {
		return fmt.Errorf("set %s routes: %w", source, err)
	}
	m := make(map[RouteKey]Route, len(routes))
	for _, r := range routes {
		m[r.Key()] = r.normalized()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	old := o.sources[source]
	if len(m) == 0 {
		delete(o.sources, source)
	} else {
		o.sources[source] = m
	}
	o.refreshDesiredLocked(func(yield func(RouteKey) bool) {
		for k := range old {
			if _, kept := m[k]; !kept && !yield(k) {
				return
			}
		}
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	return nil
}

// Upsert adds or changes desired routes of source (by key). On a validation
// error nothing changes.
func (o *RouteOwner) Upsert(source string, routes ...Route) error {
	if !o.made() {
		return errNotMade("RouteOwner", "upsert routes")
	}
	if err := validateAll(routes); err != nil {
		return fmt.Errorf("upsert %s routes: %w", source, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.sources[source]
	if m == nil {
		m = make(map[RouteKey]Route, len(routes))
		o.sources[source] = m
	}
	keys := make([]RouteKey, len(routes))
	for i, r := range routes {
		keys[i] = r.Key()
		m[keys[i]] = r.normalized()
	}
	o.refreshDesiredLocked(slices.Values(keys))
	return nil
}

// Remove drops desired routes of source by key; unknown keys are ignored.
// Keys are normalised like Route.Key, so RouteKey{Dst: p} names the route
// to p in the main table with the default metric, IPv4 or IPv6.
func (o *RouteOwner) Remove(source string, keys ...RouteKey) {
	if !o.made() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.sources[source]
	norm := make([]RouteKey, len(keys))
	for i, k := range keys {
		norm[i] = Route{Table: k.Table, Dst: k.Dst, Metric: k.Metric}.Key()
		delete(m, norm[i])
	}
	if len(m) == 0 {
		delete(o.sources, source)
	}
	o.refreshDesiredLocked(slices.Values(norm))
}

// refreshDesiredLocked sets the tracker's desired route for each of keys
// to the union's: the route of the first source by name that has the key,
// or none.
func (o *RouteOwner) refreshDesiredLocked(keys iter.Seq[RouteKey]) {
	var names []string
	for k := range keys {
		if names == nil {
			names = slices.Sorted(maps.Keys(o.sources))
		}
		found := false
		for _, n := range names {
			if r, ok := o.sources[n][k]; ok {
				o.track.Desired().Set(k, r)
				found = true
				break
			}
		}
		if !found {
			o.track.Desired().Delete(k)
		}
	}
}

// Desired returns the union of all sources, sorted by key. When two sources
// want the same key, the source whose name sorts first wins.
func (o *RouteOwner) Desired() []Route {
	if !o.made() {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.desiredLocked()
}

func (o *RouteOwner) desiredLocked() []Route {
	if o.track.Desired().Len() == 0 {
		return nil
	}
	out := make([]Route, 0, o.track.Desired().Len())
	for _, r := range o.track.Desired().All() {
		out = append(out, r)
	}
	sortByKey(out)
	return out
}

// observed is the owner's view of the kernel.
type observed struct {
	links linkNames
	owned []Route
	raw   map[RouteKey]nl.Route
}

func (o *RouteOwner) observe() (observed, error) {
	ln, err := listLinkNames(o.h)
	if err != nil {
		return observed{}, err
	}
	filter := &nl.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: nl.RouteProtocol(o.proto)}
	krs, err := retryDump(func() ([]nl.Route, error) {
		return o.h.RouteListFiltered(nl.FAMILY_ALL, filter, nl.RT_FILTER_TABLE|nl.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return observed{}, fmt.Errorf("list routes with protocol %d: %w", o.proto, err)
	}
	obs := observed{links: ln, raw: make(map[RouteKey]nl.Route, len(krs))}
	for _, kr := range krs {
		r, ok := fromKernel(kr, ln)
		if !ok {
			continue
		}
		obs.owned = append(obs.owned, r)
		obs.raw[r.Key()] = kr
	}
	return obs, nil
}

// Plan computes, without writing, what Reconcile would change now.
func (o *RouteOwner) Plan(ctx context.Context) (Plan, error) {
	if !o.made() {
		return Plan{}, errNotMade("RouteOwner", "plan routes")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	obs, err := o.observe()
	if err != nil {
		return Plan{}, err
	}
	o.resyncLocked(obs)
	return planOf(o.track), nil
}

// resyncLocked loads the observed kernel routes into the tracker (its
// desired side follows Set, Upsert and Remove).
func (o *RouteOwner) resyncLocked(obs observed) {
	o.track.Dataplane().ReplaceAll(byKey(obs.owned))
}

// Reconcile makes the kernel match the desired routes: adds missing routes,
// replaces changed ones and deletes stale routes carrying the owner's
// protocol. Routes of other protocols are never touched; a desired route
// whose key a foreign route holds fails with ErrForeignRoute. It carries on
// past per-route failures and returns them joined, so one bad route does not
// block the others. Routes already right are not rewritten.
func (o *RouteOwner) Reconcile(ctx context.Context) (ReconcileResult, error) {
	if !o.made() {
		return ReconcileResult{}, errNotMade("RouteOwner", "reconcile routes")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reconcileLocked(ctx)
}

func (o *RouteOwner) reconcileLocked(ctx context.Context) (ReconcileResult, error) {
	obs, err := o.observe()
	if err != nil {
		o.synced = false
		return ReconcileResult{}, err
	}
	o.resyncLocked(obs)
	o.lastDump = time.Now()
	res, err := o.writePendingLocked(ctx, obs.links, obs.raw)
	o.synced = err == nil
	return res, err
}

// Apply writes the changes made by Set, Upsert and Remove since the last
// Reconcile or Apply without dumping the kernel's routes: the steady path
// of a producer that streams changes (learned BGP routes), one link dump
// and one batch of writes per call, nothing at all when nothing changed.
// It trusts what the owner last saw in the kernel, so it does a full
// Reconcile instead when the owner has not dumped the kernel yet, when a
// write failed since (the kernel may differ from what it thinks), and when
// the last dump is older than the resync interval (WithResyncInterval,
// default DefaultResyncInterval), which repairs drift (routes of the
// owner's protocol others added or deleted). Errors are as Reconcile's.
func (o *RouteOwner) Apply(ctx context.Context) (ReconcileResult, error) {
	if !o.made() {
		return ReconcileResult{}, errNotMade("RouteOwner", "apply routes")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.synced || time.Since(o.lastDump) >= o.resync {
		return o.reconcileLocked(ctx)
	}
	if o.track.InSync() {
		return ReconcileResult{}, nil
	}
	ln, err := listLinkNames(o.h)
	if err != nil {
		o.synced = false
		return ReconcileResult{}, err
	}
	res, err := o.writePendingLocked(ctx, ln, nil)
	if err != nil {
		o.synced = false
	}
	return res, err
}

// writePendingLocked writes the tracker's pending changes. raw holds the
// kernel's own form of owned routes from a dump, used for deletions; nil
// rebuilds them from the tracker's kernel side.
func (o *RouteOwner) writePendingLocked(ctx context.Context, links linkNames, raw map[RouteKey]nl.Route) (ReconcileResult, error) {
	var res ReconcileResult
	obs := observed{links: links, raw: raw}
	plan := planOf(o.track)
	ops := make([]RouteOp, 0, len(plan.Add)+len(plan.Replace)+len(plan.Delete))
	changes := make([]Route, 0, cap(ops))
	var errs []error
	queue := func(kind RouteOpKind, rs []Route) {
		for _, r := range rs {
			var kr *nl.Route
			if kr0, ok := obs.raw[r.Key()]; kind == RouteOpDelete && ok {
				kr = &kr0
			} else {
				var err error
				if kr, err = toKernel(r, o.proto, obs.links); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			ops = append(ops, RouteOp{Kind: kind, Route: kr})
			changes = append(changes, r)
		}
	}
	queue(RouteOpAdd, plan.Add)
	queue(RouteOpReplace, plan.Replace)
	queue(RouteOpDelete, plan.Delete)
	if err := ctx.Err(); err != nil {
		return res, errors.Join(append(errs, err)...)
	}
	results := o.apply(ctx, ops)
	debug := o.log.Enabled(ctx, slog.LevelDebug)
	opNames := [...]string{RouteOpAdd: "add", RouteOpReplace: "replace", RouteOpDelete: "delete"}
	for i, err := range results {
		op, r := ops[i], changes[i]
		if op.Kind == RouteOpDelete && errors.Is(err, unix.ESRCH) {
			err = nil // already gone
		}
		if err != nil {
			errs = append(errs, routeError(opNames[op.Kind], r, err))
			continue
		}
		if debug {
			o.log.Debug("route "+opNames[op.Kind], "route", r.String())
		}
		switch op.Kind {
		case RouteOpAdd:
			res.Added++
			o.track.UpdateApplied(r.Key())
		case RouteOpReplace:
			res.Replaced++
			o.track.UpdateApplied(r.Key())
		case RouteOpDelete:
			res.Deleted++
			o.track.DeletionApplied(r.Key())
		}
	}
	if res != (ReconcileResult{}) {
		o.log.Info("routes reconciled", "protocol", o.proto, "added", res.Added, "replaced", res.Replaced, "deleted", res.Deleted)
	}
	return res, errors.Join(errs...)
}

// apply writes ops through the handle's RouteBatcher if it has one, else
// one call per op, stopping (with ctx.Err for the rest) when ctx ends.
func (o *RouteOwner) apply(ctx context.Context, ops []RouteOp) []error {
	if b, ok := o.h.(RouteBatcher); ok {
		return b.RouteBatch(ops)
	}
	errs := make([]error, len(ops))
	for i, op := range ops {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		switch op.Kind {
		case RouteOpAdd:
			errs[i] = o.h.RouteAdd(op.Route)
		case RouteOpReplace:
			errs[i] = o.h.RouteReplace(op.Route)
		case RouteOpDelete:
			errs[i] = o.h.RouteDel(op.Route)
		}
	}
	return errs
}
