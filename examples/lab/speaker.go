package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/bgp"
	"github.com/tabbynet/tabby/dataplane/netlink/nettest"
)

// speakerCommand is the hidden first argument that turns the lab binary
// into one node's BGP speaker. GoBGP opens its sockets from its own
// goroutines, so a speaker must live in a process whose network namespace
// is the node's: the lab starts itself once per node, inside the node's
// namespace, and drives the child over its stdin and stdout.
const speakerCommand = "__tabby-lab-bgp-speaker"

// speakerMsg is one request from the lab to a speaker child (one JSON
// value per line on the child's stdin).
type speakerMsg struct {
	// Op is "start" (Config, Topology, Blocks), "services" (ServiceCIDRs,
	// Services) or "status".
	Op       string         `json:"op"`
	Config   *bgp.Config    `json:"config,omitempty"`
	Topology *bgp.Topology  `json:"topology,omitempty"`
	Blocks   []netip.Prefix `json:"blocks,omitempty"`
	// ServiceCIDRs become the speaker's ServiceClusterIPs
	// (BGPConfiguration.serviceClusterIPs); Services are what
	// services.Announce returned for the node.
	ServiceCIDRs []netip.Prefix `json:"serviceCIDRs,omitempty"`
	Services     []netip.Prefix `json:"services,omitempty"`
}

// speakerReply answers one speakerMsg.
type speakerReply struct {
	Err        string           `json:"err,omitempty"`
	Peers      []bgp.PeerStatus `json:"peers,omitempty"`
	Advertised []netip.Prefix   `json:"advertised,omitempty"`
}

// servicesSource is the advertisement source the services announcements
// go to (the pod blocks are the speaker's default source).
const servicesSource = "services"

// warnLogger is the logger the lab gives the packages it runs: warnings
// and up, to stderr. Their routine Info records (a table rewritten, a
// session up) would land in the middle of the lab's narration, which says
// what happened itself.
func warnLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// speakerMain is the child: it serves requests until its stdin closes
// (the lab finished, or died), then exits. Logs (warnings and up) go to
// stderr, which the lab keeps and shows only when something fails.
func speakerMain(in io.Reader, out io.Writer) int {
	log := warnLogger()
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	ctx := context.Background()
	var s *bgp.Speaker
	var cfg bgp.Config
	for {
		var m speakerMsg
		if err := dec.Decode(&m); err != nil {
			if s != nil {
				s.Stop()
			}
			if errors.Is(err, io.EOF) {
				return 0
			}
			log.Error("lab speaker: bad request", "err", err)
			return 1
		}
		var r speakerReply
		err := func() error {
			switch {
			case m.Op == "start" && s == nil:
				if m.Config == nil || m.Topology == nil {
					return errors.New("start without config or topology")
				}
				var err error
				cfg = *m.Config
				if s, err = bgp.New(cfg, bgp.WithLogger(log)); err != nil {
					return err
				}
				if err := s.SetTopology(ctx, *m.Topology); err != nil {
					return err
				}
				var ads []bgp.Advertisement
				for _, b := range m.Blocks {
					ads = append(ads, bgp.Advertisement{Prefix: b})
				}
				if err := s.SetAdvertisements(ctx, ads); err != nil {
					return err
				}
				return s.Start(ctx)
			case s == nil:
				return fmt.Errorf("%s before start", m.Op)
			case m.Op == "services":
				cfg.ServiceClusterIPs = m.ServiceCIDRs
				if err := s.SetConfig(ctx, cfg); err != nil {
					return err
				}
				var ads []bgp.Advertisement
				for _, p := range m.Services {
					ads = append(ads, bgp.Advertisement{Prefix: p, Kind: bgp.KindServiceClusterIP})
				}
				return s.Source(servicesSource).Set(ctx, ads)
			case m.Op == "status":
				var err error
				r.Peers, err = s.Peers(ctx)
				r.Advertised = s.Advertised()
				return err
			}
			return fmt.Errorf("unknown request %q", m.Op)
		}()
		if err != nil {
			r.Err = err.Error()
		}
		if err := enc.Encode(r); err != nil {
			return 1
		}
	}
}

// spawner starts child processes from one OS thread that stays locked for
// the life of the lab, so their parent-death signal (SIGKILL) fires when
// the lab process dies, never when a Go runtime thread happens to exit.
type spawner struct{ reqs chan func() }

func newSpawner() *spawner {
	sp := &spawner{reqs: make(chan func())}
	go func() {
		runtime.LockOSThread() // never unlocked: this thread lives as long as the lab
		for f := range sp.reqs {
			f()
		}
	}()
	return sp
}

// start starts cmd in its own process group (Ctrl-C reaches only the lab,
// which stops its children in order) with SIGKILL as its parent-death
// signal (if the lab is killed, they go too).
func (sp *spawner) start(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	errc := make(chan error, 1)
	sp.reqs <- func() { errc <- cmd.Start() }
	return <-errc
}

// syncBuffer is a bytes.Buffer safe for a child's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// speakerProc is the lab's handle on one node's speaker child.
type speakerProc struct {
	node   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *json.Decoder
	stderr *syncBuffer
	exited chan struct{}

	mu sync.Mutex // one request at a time
}

// startSpeaker starts the lab binary as a speaker inside ns.
func startSpeaker(sp *spawner, node string, ns *nettest.Netns) (*speakerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("speaker for %s: find the lab binary: %w", node, err)
	}
	p := &speakerProc{node: node, stderr: &syncBuffer{}, exited: make(chan struct{})}
	// `ip netns exec` runs the binary inside the node's namespace.
	p.cmd = ns.Command(context.Background(), exe, speakerCommand)
	p.cmd.Stderr = p.stderr
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("speaker for %s: %w", node, err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("speaker for %s: %w", node, err)
	}
	p.out = json.NewDecoder(stdout)
	if err := sp.start(p.cmd); err != nil {
		return nil, fmt.Errorf("start the speaker for %s: %w", node, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

// call sends one request and waits (at most 10 s) for its reply.
func (p *speakerProc) call(m speakerMsg) (speakerReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	type result struct {
		r   speakerReply
		err error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		if res.err = json.NewEncoder(p.in).Encode(m); res.err == nil {
			res.err = p.out.Decode(&res.r)
		}
		done <- res
	}()
	select {
	case res := <-done:
		if res.err != nil {
			return speakerReply{}, fmt.Errorf("speaker on %s: %s: %w\n%s", p.node, m.Op, res.err, p.stderr)
		}
		if res.r.Err != "" {
			return res.r, fmt.Errorf("speaker on %s: %s: %s", p.node, m.Op, res.r.Err)
		}
		return res.r, nil
	case <-time.After(10 * time.Second):
		p.kill()
		return speakerReply{}, fmt.Errorf("speaker on %s: %s: no answer in 10s\n%s", p.node, m.Op, p.stderr)
	}
}

// close ends the child: its stdin closes, it stops BGP and exits; it is
// killed if it has not gone within 2 s. It returns once the process is gone.
func (p *speakerProc) close() {
	_ = p.in.Close()
	select {
	case <-p.exited:
	case <-time.After(2 * time.Second):
		p.kill()
	}
}

func (p *speakerProc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}
