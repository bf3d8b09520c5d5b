package netlink

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// Sentinel errors. Every error returned by this package wraps one of these
// (or a kernel errno) with the object acted on, so callers test with errors.Is.
var (
	// ErrInvalidPrefix: a prefix is not valid, not masked, or of the wrong family.
	ErrInvalidPrefix = errors.New("invalid prefix")
	// ErrInvalidRoute: a route description is inconsistent (for example a
	// blackhole with next hops, or a next hop of the wrong family).
	ErrInvalidRoute = errors.New("invalid route")
	// ErrInvalidName: an interface name is empty, longer than 15 bytes or has
	// characters the kernel refuses ('/', ':', whitespace).
	ErrInvalidName = errors.New("invalid interface name")
	// ErrInvalidSpec: a workload or overlay description is invalid, or a
	// RouteOwner, VXLAN or Workloads that its constructor did not make (nil
	// or a zero value).
	ErrInvalidSpec = errors.New("invalid spec")
	// ErrNetnsNotFound: a network namespace path does not exist (any more).
	ErrNetnsNotFound = errors.New("network namespace not found")
	// ErrLinkNotFound: a named link does not exist in the namespace.
	ErrLinkNotFound = errors.New("link not found")
	// ErrNextHopUnreachable: a gateway lies outside every connected network
	// of the namespace (the kernel answers ENETUNREACH). Use NextHop.OnLink
	// when the gateway is deliberately not in a connected subnet.
	ErrNextHopUnreachable = errors.New("next hop outside any connected network")
	// ErrForeignRoute: the kernel already has a route for the same key
	// (table, destination, metric) that another owner installed; it is left alone.
	ErrForeignRoute = errors.New("route owned by someone else")
	// ErrNameCollision: the host interface name derived from a workload ID is
	// already used by a different workload or by a link tabby does not own.
	ErrNameCollision = errors.New("interface name collision")
	// ErrNotSupported: the kernel lacks the feature (for example IPIP).
	ErrNotSupported = errors.New("not supported by this kernel")
	// ErrMismatch: CheckWorkload found the kernel state differs from the spec.
	ErrMismatch = errors.New("kernel state does not match")
	// ErrInvalidOption: a constructor option was given a value it cannot
	// use (WithProtocol outside 5..255 or equal to ProtocolWorkload,
	// WithHostPrefix empty, over 7 bytes or with characters an interface
	// name cannot hold). The constructor fails with an error wrapping it
	// that names the option and the value.
	ErrInvalidOption = errors.New("invalid option")
)

// IsNotFound reports whether err means that a link, route or namespace does
// not exist (one of the package sentinels or a kernel ENOENT/ESRCH/ENODEV).
func IsNotFound(err error) bool {
	return errors.Is(err, ErrLinkNotFound) || errors.Is(err, ErrNetnsNotFound) ||
		errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENODEV)
}

// routeError maps a kernel error for route r to a package error.
func routeError(op string, r Route, err error) error {
	switch {
	case errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("%s route %s: %w: %w", op, r, ErrNextHopUnreachable, err)
	case errors.Is(err, syscall.EEXIST) && op == "add":
		return fmt.Errorf("%s route %s: %w: %w", op, r, ErrForeignRoute, err)
	default:
		return fmt.Errorf("%s route %s: %w", op, r, err)
	}
}

func prefixError(p netip.Prefix, why string) error {
	return fmt.Errorf("%w %s: %s", ErrInvalidPrefix, p, why)
}
