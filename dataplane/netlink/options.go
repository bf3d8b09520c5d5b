package netlink

import (
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Each constructor takes the options it reads, so that passing one it
// would ignore is a compile error:
//
//   - NewRouteOwner: RouteOwnerOption (WithProtocol, WithResyncInterval, WithLogger)
//   - NewWorkloads:  WorkloadsOption (WithHostPrefix, WithLogger)
//   - NewVXLAN:      VXLANOption (WithLogger)
//
// Option is what every constructor accepts (WithLogger).
type (
	// RouteOwnerOption configures NewRouteOwner.
	RouteOwnerOption interface{ applyRouteOwner(*options) error }
	// WorkloadsOption configures NewWorkloads.
	WorkloadsOption interface{ applyWorkloads(*options) error }
	// VXLANOption configures NewVXLAN.
	VXLANOption interface{ applyVXLAN(*options) error }
	// Option configures any constructor of this package.
	Option interface {
		RouteOwnerOption
		WorkloadsOption
		VXLANOption
	}
)

type options struct {
	log        *slog.Logger
	protocol   int
	hostPrefix string
	resync     time.Duration
}

func defaultOptions() options {
	return options{
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		protocol:   ProtocolRoutes,
		hostPrefix: DefaultHostPrefix,
		resync:     DefaultResyncInterval,
	}
}

// sharedOption applies to every constructor.
type sharedOption func(*options) error

func (f sharedOption) applyRouteOwner(o *options) error { return f(o) }
func (f sharedOption) applyWorkloads(o *options) error  { return f(o) }
func (f sharedOption) applyVXLAN(o *options) error      { return f(o) }

type routeOwnerOption func(*options) error

func (f routeOwnerOption) applyRouteOwner(o *options) error { return f(o) }

type workloadsOption func(*options) error

func (f workloadsOption) applyWorkloads(o *options) error { return f(o) }

// build applies opts in order with apply and returns the first error.
func build[T any](opts []T, apply func(T, *options) error) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if any(opt) == nil {
			continue
		}
		if err := apply(opt, &o); err != nil {
			return options{}, err
		}
	}
	return o, nil
}

func routeOwnerOptions(opts []RouteOwnerOption) (options, error) {
	return build(opts, RouteOwnerOption.applyRouteOwner)
}

func vxlanOptions(opts []VXLANOption) (options, error) {
	return build(opts, VXLANOption.applyVXLAN)
}

// workloadsOptions is what NewWorkloads(hostNetns, opts ...WorkloadsOption)
// reads its options with.
func workloadsOptions(opts []WorkloadsOption) (options, error) {
	return build(opts, WorkloadsOption.applyWorkloads)
}

// WithLogger sets the logger of any constructor (default, and when l is
// nil: discard).
func WithLogger(l *slog.Logger) Option {
	return sharedOption(func(o *options) error {
		if l != nil {
			o.log = l
		}
		return nil
	})
}

// WithProtocol sets the route protocol number a RouteOwner marks and owns
// its routes with (default ProtocolRoutes). Two owners in one namespace must
// use different numbers, or they delete each other's routes. 0-4 are the
// kernel's (unspec, redirect, kernel, boot, static), ProtocolWorkload marks
// the workload host routes, and the field is one byte: NewRouteOwner fails
// with ErrInvalidOption for those and for values above 255.
func WithProtocol(p int) RouteOwnerOption {
	return routeOwnerOption(func(o *options) error {
		switch {
		case p < 5 || p > 255:
			return fmt.Errorf("%w: WithProtocol(%d): want 5..255 (0-4 are the kernel's)", ErrInvalidOption, p)
		case p == ProtocolWorkload:
			return fmt.Errorf("%w: WithProtocol(%d): %d marks workload host routes (ProtocolWorkload)", ErrInvalidOption, p, p)
		}
		o.protocol = p
		return nil
	})
}

// DefaultResyncInterval is how long RouteOwner.Apply trusts its view of
// the kernel before it dumps the kernel's routes again (a full Reconcile).
const DefaultResyncInterval = time.Minute

// WithResyncInterval sets how long RouteOwner.Apply writes only pending
// changes before it does a full Reconcile again to repair drift (default
// DefaultResyncInterval). NewRouteOwner fails with ErrInvalidOption for a
// duration that is not positive.
func WithResyncInterval(d time.Duration) RouteOwnerOption {
	return routeOwnerOption(func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithResyncInterval(%s): want a positive duration", ErrInvalidOption, d)
		}
		o.resync = d
		return nil
	})
}

// WithHostPrefix sets the prefix of host-side workload interface names
// (default DefaultHostPrefix, "tby"): 1 to 7 bytes that an interface name
// may hold (no '/', ':' or whitespace). NewWorkloads fails with
// ErrInvalidOption otherwise.
func WithHostPrefix(p string) WorkloadsOption {
	return workloadsOption(func(o *options) error {
		if len(p) < 1 || len(p) > 7 {
			return fmt.Errorf("%w: WithHostPrefix(%q): want 1 to 7 bytes, have %d", ErrInvalidOption, p, len(p))
		}
		if err := ValidateIfName(p); err != nil {
			return fmt.Errorf("%w: WithHostPrefix(%q): %w", ErrInvalidOption, p, err)
		}
		o.hostPrefix = p
		return nil
	})
}
