package iptables_test

import (
	"context"
	"os"
	"testing"

	ipt "github.com/tabbynet/tabby/dataplane/iptables"
	sipt "github.com/tabbynet/tabby/services/iptables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

func TestZZDump(t *testing.T) {
	out := os.Getenv("ZZ_DUMP")
	if out == "" {
		t.Skip()
	}
	fake := ipt.NewFake()
	table, _ := sipt.NewIPTables(ipt.IPv4, ipt.BackendLegacy, ipt.WithExecer(fake))
	p, _ := sipt.New(table, st.LoadTracker(10000, 10), sipt.Config{Family: ipt.IPv4})
	if err := p.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range fake.Commands() {
		if len(c.Stdin) > 0 {
			os.WriteFile(out, c.Stdin, 0o644)
		}
	}
}
