package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Command is one program run: Name with Args, Stdin fed to it.
type Command struct {
	Name  string
	Args  []string
	Stdin []byte
}

func (c Command) String() string { return strings.Join(append([]string{c.Name}, c.Args...), " ") }

// ExitError is a command that ran and exited non-zero.
type ExitError struct {
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("exit status %d: %s", e.Code, strings.TrimSpace(e.Stderr))
}

// Execer runs commands. It returns the command's stdout; a command that
// exits non-zero returns an *ExitError (with its stderr), a command that
// cannot be started returns the start error (exec.ErrNotFound for a
// missing binary).
type Execer interface {
	Run(ctx context.Context, cmd Command) ([]byte, error)
}

// OSExecer runs commands with os/exec, inside the named network namespace
// (`ip netns exec NAME CMD`) when Netns is not empty, else in the caller's.
// Env holds extra environment variables ("KEY=value") added to the
// caller's for every command: for example XTABLES_LOCKFILE=/path, which
// iptables (1.8) reads to use another file than /run/xtables.lock as the
// xtables lock.
type OSExecer struct {
	Netns string
	Env   []string
}

var _ Execer = OSExecer{}

// Run implements Execer.
func (o OSExecer) Run(ctx context.Context, c Command) ([]byte, error) {
	name, args := c.Name, c.Args
	if o.Netns != "" {
		if _, err := exec.LookPath(c.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		name, args = "ip", append([]string{"netns", "exec", o.Netns, c.Name}, c.Args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	if len(o.Env) > 0 {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.Bytes(), &ExitError{Code: ee.ExitCode(), Stderr: stderr.String()}
	}
	return stdout.Bytes(), err
}

// Backend is the iptables implementation the rules are written with.
type Backend string

// Backends. BackendAuto detects which one holds rules (DetectBackend).
const (
	BackendAuto   Backend = ""
	BackendLegacy Backend = "legacy"
	BackendNFT    Backend = "nft"
)

func binary(f Family, b Backend, op string) string {
	base := "iptables"
	if f == IPv6 {
		base = "ip6tables"
	}
	return base + "-" + string(b) + "-" + op
}

// kubeHintChains are the chains kubelet (and kube-proxy) create in the
// backend they use, which kube-proxy's iptables-wrapper looks for first.
var kubeHintChains = []string{":KUBE-IPTABLES-HINT", ":KUBE-KUBELET-CANARY"}

// DetectBackend decides which iptables backend the node uses, the way
// kube-proxy's iptables-wrapper and Felix do: a backend whose dump holds
// kubelet's KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY chain wins (nft
// first); otherwise the one with more rules (`-A` lines over iptables-save
// and ip6tables-save) wins, and nft on a tie. A backend whose save binary
// cannot be run counts as absent; ErrNoBackend when both are.
func DetectBackend(ctx context.Context, ex Execer) (Backend, error) {
	type dump struct {
		rules int
		hint  bool
		ok    bool
	}
	read := func(b Backend) dump {
		var d dump
		for _, f := range []Family{IPv4, IPv6} {
			out, err := ex.Run(ctx, Command{Name: binary(f, b, "save")})
			if err != nil {
				continue
			}
			d.ok = true
			s := string(out)
			d.rules += strings.Count(s, "\n-A ")
			if strings.HasPrefix(s, "-A ") {
				d.rules++
			}
			for _, h := range kubeHintChains {
				if strings.Contains(s, h+" ") {
					d.hint = true
				}
			}
		}
		return d
	}
	nft, legacy := read(BackendNFT), read(BackendLegacy)
	switch {
	case !nft.ok && !legacy.ok:
		return "", ErrNoBackend
	case !legacy.ok:
		return BackendNFT, nil
	case !nft.ok:
		return BackendLegacy, nil
	case nft.hint:
		return BackendNFT, nil
	case legacy.hint:
		return BackendLegacy, nil
	case legacy.rules > nft.rules:
		return BackendLegacy, nil
	}
	return BackendNFT, nil
}
