// Package embedetcd runs a single-member etcd server inside the calling
// process, for programs that want to try the etcd store (package
// etcdstore) without deploying etcd, and for tests and benchmarks (package
// etcdtest wraps it). It is not a production etcd: one member, no TLS,
// loopback only.
//
// # Design
//
//   - It is go.etcd.io/etcd/server/v3/embed with the settings a throwaway
//     member needs: client and peer URLs on 127.0.0.1 with ports the
//     kernel picks (so several can run at once), etcd's own logging off
//     unless WithLogger, and the data in a temporary directory that Close
//     removes, unless WithDir keeps it.
//   - Start returns only once the server serves requests; an option given
//     a bad value makes it fail (ErrInvalidOption) rather than be ignored.
package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// ErrInvalidOption: an option was given a bad value.
var ErrInvalidOption = errors.New("invalid embedded etcd option")

// Server is a running embedded etcd.
type Server struct {
	e        *embed.Etcd
	dir      string
	ownDir   bool
	endpoint string
}

type config struct {
	dir   string
	name  string
	ready time.Duration
	log   *zap.Logger
}

// Option configures Start; a bad value makes Start fail (ErrInvalidOption).
type Option func(*config) error

// WithDir keeps the data in dir (created if needed, kept on Close). By
// default the data lives in a new temporary directory removed by Close.
func WithDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return fmt.Errorf("%w: WithDir(\"\")", ErrInvalidOption)
		}
		c.dir = dir
		return nil
	}
}

// WithName sets the member name (default "tabby").
func WithName(name string) Option {
	return func(c *config) error {
		if name == "" {
			return fmt.Errorf("%w: WithName(\"\")", ErrInvalidOption)
		}
		c.name = name
		return nil
	}
}

// WithReadyTimeout bounds the wait for the server to serve (default 60s).
func WithReadyTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithReadyTimeout(%v): must be positive", ErrInvalidOption, d)
		}
		c.ready = d
		return nil
	}
}

// WithLogger sets etcd's zap logger (default: none).
func WithLogger(l *zap.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: WithLogger(nil)", ErrInvalidOption)
		}
		c.log = l
		return nil
	}
}

// Start runs etcd on free loopback ports (127.0.0.1, port chosen by the
// kernel) and returns once it serves requests, or ctx ends, or the ready
// timeout passes.
func Start(ctx context.Context, opts ...Option) (*Server, error) {
	c := config{name: "tabby", ready: 60 * time.Second, log: zap.NewNop()}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	s := &Server{dir: c.dir}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "embedetcd-")
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	cfg := embed.NewConfig()
	cfg.Name = c.name
	cfg.Dir = s.dir
	lo := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{lo}, []url.URL{lo}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{lo}, []url.URL{lo}
	cfg.InitialCluster = cfg.Name + "=" + lo.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(c.log)
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		s.removeDir()
		return nil, fmt.Errorf("embedded etcd in %s: %w", s.dir, err)
	}
	s.e = e
	t := time.NewTimer(c.ready)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		_ = s.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-t.C:
		_ = s.Close()
		return nil, fmt.Errorf("embedded etcd: not ready after %v", c.ready)
	case <-ctx.Done():
		_ = s.Close()
		return nil, ctx.Err()
	}
	s.endpoint = "http://" + e.Clients[0].Addr().String()
	return s, nil
}

// Endpoint is the client URL, e.g. "http://127.0.0.1:40123".
func (s *Server) Endpoint() string { return s.endpoint }

// Dir is the data directory.
func (s *Server) Dir() string { return s.dir }

// Client returns a new client of the server; the caller closes it.
func (s *Server) Client() (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.endpoint}, DialTimeout: 10 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("embedded etcd client: %w", err)
	}
	return c, nil
}

// Close stops the server and removes the data directory unless it was
// given with WithDir.
func (s *Server) Close() error {
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
	return s.removeDir()
}

func (s *Server) removeDir() error {
	if !s.ownDir {
		return nil
	}
	s.ownDir = false
	return os.RemoveAll(s.dir)
}
