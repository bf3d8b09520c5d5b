package nftables

import (
	"context"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"sigs.k8s.io/knftables"
)

// NewInNetns returns a knftables.Interface for table in family whose
// every call runs inside the network namespace at nsPath (for example
// /var/run/netns/node1): each call runs on a fresh OS thread that enters
// the namespace, so the `nft` processes knftables starts inherit it.
// The calling goroutine's namespace is never changed. An empty nsPath
// means the caller's namespace (as for NewNetlink): it returns
// knftables.New(family, table), whose `nft` processes run in the
// namespace of the thread that starts them.
func NewInNetns(family knftables.Family, table, nsPath string) (knftables.Interface, error) {
	if nsPath == "" {
		nft, err := knftables.New(family, table)
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		return nft, nil
	}
	var nft knftables.Interface
	n := &nsNFT{path: nsPath}
	err := n.do(func() error {
		var err error
		nft, err = knftables.New(family, table)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nftables in netns %s: %w", nsPath, err)
	}
	n.Interface = nft
	return n, nil
}

type nsNFT struct {
	knftables.Interface
	path string
}

// do runs f on a locked OS thread inside the namespace. The thread is
// never unlocked, so the Go runtime destroys it when the goroutine ends
// and no other goroutine ever runs in the namespace by accident.
func (n *nsNFT) do(f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromPath(n.path)
		if err != nil {
			done <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			done <- err
			return
		}
		done <- f()
	}()
	return <-done
}

func (n *nsNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	return n.do(func() error { return n.Interface.Run(ctx, tx) })
}

func (n *nsNFT) Check(ctx context.Context, tx *knftables.Transaction) error {
	return n.do(func() error { return n.Interface.Check(ctx, tx) })
}

func (n *nsNFT) ListAll(ctx context.Context) (out map[string][]string, err error) {
	err = n.do(func() error { out, err = n.Interface.ListAll(ctx); return err })
	return out, err
}

func (n *nsNFT) List(ctx context.Context, objectType string) (out []string, err error) {
	err = n.do(func() error { out, err = n.Interface.List(ctx, objectType); return err })
	return out, err
}

func (n *nsNFT) ListRules(ctx context.Context, chain string) (out []*knftables.Rule, err error) {
	err = n.do(func() error { out, err = n.Interface.ListRules(ctx, chain); return err })
	return out, err
}

func (n *nsNFT) ListElements(ctx context.Context, objectType, name string) (out []*knftables.Element, err error) {
	err = n.do(func() error { out, err = n.Interface.ListElements(ctx, objectType, name); return err })
	return out, err
}

func (n *nsNFT) ListCounters(ctx context.Context) (out []*knftables.Counter, err error) {
	err = n.do(func() error { out, err = n.Interface.ListCounters(ctx); return err })
	return out, err
}
