package cni

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/store"
	"github.com/tabbynet/tabby/ipam/store/bboltstore"
	"github.com/tabbynet/tabby/ipam/store/etcdstore"
)

// IPAM is what the plugins need of an address allocator: the seam between
// the CNI verbs and package ipam. NewIPAM adapts an *ipam.IPAM;
// OpenIPAM opens one from an IPAMConf.
type IPAM interface {
	// Assign assigns addresses under req.Handle: req.Addrs exactly when set
	// (all or nothing), otherwise Num4/Num6 chosen from the pools. Errors
	// match ipam's sentinels (ipam.ErrPoolExhausted, ipam.ErrUnknownPool,
	// ipam.ErrAddressInUse, ...).
	Assign(ctx context.Context, req AssignRequest) ([]netip.Addr, error)
	// IPsByHandle returns the addresses held by handle, sorted; none for an
	// unknown handle.
	IPsByHandle(ctx context.Context, handle string) ([]netip.Addr, error)
	// ReleaseByHandle frees the handle's addresses; nil when it holds none.
	ReleaseByHandle(ctx context.Context, handle string) error
	// GC releases allocations of node whose handle starts with prefix and
	// is not live, older than grace, and returns the freed addresses.
	GC(ctx context.Context, node, prefix string, live func(handle string) bool, grace time.Duration) ([]netip.Addr, error)
	// EnsurePools creates the pools that do not exist yet (by name) and
	// reserves their gateways (subnetReserved), also for pools that
	// exist; a pool that exists with another CIDR or block size is
	// ErrInvalidConfig.
	EnsurePools(ctx context.Context, pools []PoolConf) error
	// Ping reads from the datastore; an error means it is unreachable.
	Ping(ctx context.Context) error
	// PoolNames lists the IP pools in the datastore by name, sorted.
	PoolNames(ctx context.Context) ([]string, error)
	// Close releases the datastore.
	Close() error
}

// AssignRequest is one pod's allocation request.
type AssignRequest struct {
	Handle, Node, Namespace, Pod string
	Num4, Num6                   int
	IPv4Pools, IPv6Pools         []string
	Addrs, FloatingIPs           []netip.Addr
}

// NewIPAM adapts a over IPAM; Close closes s (may be nil).
func NewIPAM(a *ipam.IPAM, s store.Store) IPAM { return &ipamAdapter{a: a, s: s} }

// NewMemoryIPAM returns an IPAM on an in-memory store with the given pools:
// real ipam semantics, no files, for tests and examples.
func NewMemoryIPAM(ctx context.Context, pools ...PoolConf) (IPAM, error) {
	s, err := store.NewMemory()
	if err != nil {
		return nil, err
	}
	a, err := ipam.New(s)
	if err != nil {
		return nil, err
	}
	m := NewIPAM(a, s)
	if err := m.EnsurePools(ctx, pools); err != nil {
		return nil, err
	}
	return m, nil
}

// OpenIPAM opens the datastore an IPAMConf names: its bbolt file (created
// with its directory when missing) or its etcd endpoints. The bbolt lock
// and the etcd dial are bounded by timeout.
func OpenIPAM(conf *IPAMConf, log *slog.Logger, timeout time.Duration) (IPAM, error) {
	var s store.Store
	if len(conf.EtcdEndpoints) > 0 {
		// The client's own zap logger would write warnings to stderr, which
		// runtimes log as the plugin's; the errors below say what failed.
		c, err := clientv3.New(clientv3.Config{Endpoints: conf.EtcdEndpoints, DialTimeout: timeout,
			Logger: zap.NewNop()})
		if err != nil {
			return nil, fmt.Errorf("%w: etcd %v: %w", ErrDatastore, conf.EtcdEndpoints, err)
		}
		var opts []etcdstore.Option
		if conf.EtcdPrefix != "" {
			opts = append(opts, etcdstore.WithPrefix(conf.EtcdPrefix))
		}
		es, err := etcdstore.New(c, opts...)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%w: etcd %v: %w", ErrInvalidConfig, conf.EtcdEndpoints, err), c.Close())
		}
		s = &closeBoth{Store: es, c: c}
	} else {
		if err := mkdirFor(conf.DatastorePath); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDatastore, err)
		}
		b, err := bboltstore.Open(conf.DatastorePath, bboltstore.WithLockTimeout(timeout))
		if err != nil {
			return nil, fmt.Errorf("%w: bbolt %s: %w", ErrDatastore, conf.DatastorePath, err)
		}
		s = b
	}
	var opts []ipam.Option
	if log != nil {
		opts = append(opts, ipam.WithLogger(log))
	}
	a, err := ipam.New(s, opts...)
	if err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return NewIPAM(a, s), nil
}

// ErrDatastore: the IPAM datastore could not be opened or reached (CNI
// code 11 for ADD/DEL/CHECK/GC, 50 for STATUS).
var ErrDatastore = errors.New("IPAM datastore unavailable")

type closeBoth struct {
	store.Store
	c *clientv3.Client
}

func (c *closeBoth) Close() error { return errors.Join(c.Store.Close(), c.c.Close()) }

type ipamAdapter struct {
	a *ipam.IPAM
	s store.Store
}

func (m *ipamAdapter) Assign(ctx context.Context, r AssignRequest) ([]netip.Addr, error) {
	if len(r.Addrs) > 0 {
		got, err := m.a.AssignIP(ctx, ipam.AssignIPArgs{Addrs: r.Addrs, Handle: r.Handle, Node: r.Node,
			Namespace: r.Namespace, Pod: r.Pod, FloatingIPs: r.FloatingIPs})
		return addrsOf(got), err
	}
	args := ipam.AssignArgs{Handle: r.Handle, Node: r.Node, Num4: r.Num4, Num6: r.Num6,
		IPv4Pools: r.IPv4Pools, IPv6Pools: r.IPv6Pools, Namespace: r.Namespace, Pod: r.Pod, FloatingIPs: r.FloatingIPs}
	res, err := m.a.Assign(ctx, args)
	if errors.Is(err, ipam.ErrNoMatchingPool) {
		if pools, perr := m.a.Pools(ctx); perr == nil && len(pools) == 0 {
			err = fmt.Errorf("%w (the datastore has no IP pool: declare one under ipam.pools, which creates it when missing)", err)
		}
	}
	return addrsOf(res.All()), err
}

func addrsOf(ips []ipam.AssignedIP) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.Addr)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func (m *ipamAdapter) IPsByHandle(ctx context.Context, h string) ([]netip.Addr, error) {
	return m.a.IPsByHandle(ctx, h)
}

func (m *ipamAdapter) ReleaseByHandle(ctx context.Context, h string) error {
	_, err := m.a.ReleaseByHandle(ctx, h)
	return err
}

func (m *ipamAdapter) GC(ctx context.Context, node, prefix string, live func(string) bool, grace time.Duration) ([]netip.Addr, error) {
	rep, err := m.a.GC(ctx, ipam.GCOptions{CheckOptions: ipam.CheckOptions{LiveHandles: live, HandlePrefix: prefix, Node: node},
		GracePeriod: grace})
	return rep.Released, err
}

func (m *ipamAdapter) PoolNames(ctx context.Context) ([]string, error) {
	pools, err := m.a.Pools(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(pools))
	for _, p := range pools {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names, nil
}

func (m *ipamAdapter) EnsurePools(ctx context.Context, pools []PoolConf) error {
	if len(pools) == 0 {
		return nil
	}
	have, err := m.a.Pools(ctx)
	if err != nil {
		return fmt.Errorf("%w: list pools: %w", ErrDatastore, err)
	}
	var reservations []ipam.IPReservation
	for _, p := range pools {
		i := slices.IndexFunc(have, func(q ipam.IPPool) bool { return q.Name == p.Name })
		if i >= 0 {
			q := have[i]
			if q.CIDR.Masked() != p.CIDR.Masked() || (p.BlockSize != 0 && q.BlockSize != p.BlockSize) {
				return fmt.Errorf("%w: pool %q exists as %s (block size %d), the configuration declares %s (block size %d)",
					ErrInvalidConfig, p.Name, q.CIDR, q.BlockSize, p.CIDR, p.BlockSize)
			}
		}
		if p.Gateway.IsValid() {
			// Also for a pool that exists: it may have been made without
			// the gateway, or by an older tabby.
			if reservations == nil {
				if reservations, err = m.a.Reservations(ctx); err != nil {
					return fmt.Errorf("%w: list reservations: %w", ErrDatastore, err)
				}
			}
			r := ipam.IPReservation{Name: p.Name + "-gateway", CIDRs: subnetReserved(p.CIDR, p.Gateway)}
			if !slices.ContainsFunc(reservations, func(o ipam.IPReservation) bool {
				return o.Name == r.Name && slices.Equal(o.CIDRs, r.CIDRs)
			}) {
				if err := m.a.SetReservation(ctx, r); err != nil {
					return fmt.Errorf("pool %q: reserve gateway: %w", p.Name, err)
				}
			}
		}
		if i >= 0 {
			continue
		}
		_, err := m.a.CreatePool(ctx, ipam.IPPool{Name: p.Name, CIDR: p.CIDR, BlockSize: p.BlockSize})
		if err != nil && !alreadyExists(ctx, m.a, p.Name) {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	return nil
}

// subnetReserved is what a pool with a gateway keeps from its pods: the
// gateway, and as host-local does, the subnet's first address and, for
// IPv4, its last (broadcast), since such a pool's addresses are handed
// out with the pool's prefix length (a bridge or ptp subnet), not as /32
// or /128. /31, /32, /127 and /128 pools lose only the gateway.
func subnetReserved(cidr netip.Prefix, gw netip.Addr) []netip.Prefix {
	out := []netip.Prefix{netip.PrefixFrom(gw, gw.BitLen())}
	cidr = cidr.Masked()
	if cidr.Bits() > cidr.Addr().BitLen()-2 {
		return out
	}
	first := cidr.Addr()
	if first != gw {
		out = append(out, netip.PrefixFrom(first, first.BitLen()))
	}
	if first.Is4() {
		a := first.As4()
		binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])|(1<<(32-cidr.Bits())-1))
		if b := netip.AddrFrom4(a); b != gw {
			out = append(out, netip.PrefixFrom(b, 32))
		}
	}
	return out
}

// alreadyExists tells a lost creation race (another plugin created the
// pool meanwhile) from a real error.
func alreadyExists(ctx context.Context, a *ipam.IPAM, name string) bool {
	_, err := a.Pool(ctx, name)
	return err == nil
}

func (m *ipamAdapter) Ping(ctx context.Context) error {
	if _, err := m.a.Pools(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrDatastore, err)
	}
	return nil
}

func (m *ipamAdapter) Close() error {
	if m.s == nil {
		return nil
	}
	return m.s.Close()
}
