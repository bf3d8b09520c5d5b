package policy

import (
	"fmt"
	"strings"
	"sync"

	"github.com/tabbynet/tabby/selector"
)

// Resolver resolves many policies at once, as NetworkPolicy.Resolve and
// GlobalNetworkPolicy.Resolve do, sharing the work on the selectors they
// have in common: each distinct selector string is parsed and checked
// once, and each distinct combination of scope, service-account match and
// selector (the selectors behind EndpointSelector and MatchSelector) is
// built once. The more selectors the policies share, the more it saves:
// BenchmarkResolve compares it with Resolve (figures in the README).
//
// The results equal those of Resolve; the resolved policies share the
// cached selector.Selector values, which are immutable. A Resolver only
// grows, by the distinct selectors it has seen: use one per batch (a
// snapshot, a full sync) and drop it. The zero value is ready to use, a
// nil *Resolver resolves without a cache (as Resolve does), and a Resolver
// is safe for concurrent use.
type Resolver struct {
	parsed   sync.Map // parseKey → selector.Selector, the valid ones only
	combined sync.Map // combineKey → selector.Selector, the valid ones only
}

type parseKey struct {
	s           string
	allowGlobal bool
}

type combineKey struct {
	scope       Scope
	ns, nsSel   string
	saNames     string // joined with NUL
	saSel, sel  string
	hasSA, same bool // hasSA: saSel != nil; same: canonical(sel) alone (a notSelector)
}

// ResolveNetworkPolicy is p.Resolve with the Resolver's cache.
func (r *Resolver) ResolveNetworkPolicy(p *NetworkPolicy) (*ResolvedPolicy, error) {
	if p == nil {
		return nil, fmt.Errorf("%s: nil policy: %w", KindNetworkPolicy, ErrInvalid)
	}
	var e errs
	checkMeta(p.TypeMeta, &p.ObjectMeta, KindNetworkPolicy, true, &e)
	rp := resolvePolicy(p.fields(), r, &e)
	if err := e.result(KindNetworkPolicy, metaName(&p.ObjectMeta)); err != nil {
		return nil, err
	}
	return rp, nil
}

// ResolveGlobalNetworkPolicy is p.Resolve with the Resolver's cache.
func (r *Resolver) ResolveGlobalNetworkPolicy(p *GlobalNetworkPolicy) (*ResolvedPolicy, error) {
	if p == nil {
		return nil, fmt.Errorf("%s: nil policy: %w", KindGlobalNetworkPolicy, ErrInvalid)
	}
	var e errs
	checkMeta(p.TypeMeta, &p.ObjectMeta, KindGlobalNetworkPolicy, false, &e)
	rp := resolvePolicy(p.fields(), r, &e)
	if err := e.result(KindGlobalNetworkPolicy, p.Name); err != nil {
		return nil, err
	}
	return rp, nil
}

// parseSel is the package's parseSel through the cache (r may be nil).
func (r *Resolver) parseSel(s string, p path, allowGlobal bool, e *errs) selector.Selector {
	if r == nil {
		return parseSel(s, p, allowGlobal, e)
	}
	k := parseKey{s, allowGlobal}
	if v, ok := r.parsed.Load(k); ok {
		return v.(selector.Selector)
	}
	n := len(e.list)
	sel := parseSel(s, p, allowGlobal, e)
	if len(e.list) == n {
		r.parsed.Store(k, sel)
	}
	return sel
}

// combine is the package's combine through the cache (r may be nil).
func (r *Resolver) combine(scope Scope, ns string, nsSel selector.Selector, saNames []string, saSel *selector.Selector, sel selector.Selector) (selector.Selector, error) {
	if r == nil {
		return combine(scope, ns, nsSel, saNames, saSel, sel)
	}
	k := combineKey{scope: scope, ns: ns, sel: sel.String()}
	if scope == ScopeNamespaceSelector {
		k.nsSel = nsSel.String()
	}
	if len(saNames) > 0 {
		k.saNames = strings.Join(saNames, "\x00")
	}
	if saSel != nil {
		k.hasSA, k.saSel = true, saSel.String()
	}
	if v, ok := r.combined.Load(k); ok {
		return v.(selector.Selector), nil
	}
	out, err := combine(scope, ns, nsSel, saNames, saSel, sel)
	if err == nil {
		r.combined.Store(k, out)
	}
	return out, err
}

// canonical is the package's canonical of one selector through the cache
// (r may be nil).
func (r *Resolver) canonical(sel selector.Selector) selector.Selector {
	if r == nil {
		return canonical(sel)
	}
	k := combineKey{sel: sel.String(), same: true}
	if v, ok := r.combined.Load(k); ok {
		return v.(selector.Selector)
	}
	out := canonical(sel)
	r.combined.Store(k, out)
	return out
}
