package netlink

import (
	"io"
	"log/slog"
)

// Option configures a RouteOwner, Workloads or VXLAN.
type Option func(*options)

type options struct {
	log        *slog.Logger
	protocol   int
	hostPrefix string
}

func buildOptions(opts []Option) options {
	o := options{
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		protocol:   ProtocolRoutes,
		hostPrefix: DefaultHostPrefix,
	}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithProtocol sets the route protocol number a RouteOwner marks and owns
// its routes with (default ProtocolRoutes). Two owners in one namespace must
// use different numbers, or they delete each other's routes.
func WithProtocol(p int) Option {
	return func(o *options) {
		if p > 0 && p < 256 {
			o.protocol = p
		}
	}
}

// WithHostPrefix sets the prefix of host-side workload interface names
// (default DefaultHostPrefix, "tby"); 1 to 7 bytes.
func WithHostPrefix(p string) Option {
	return func(o *options) {
		if p != "" && len(p) <= 7 {
			o.hostPrefix = p
		}
	}
}
