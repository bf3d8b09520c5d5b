package nftables_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"sigs.k8s.io/knftables"

	snft "github.com/tabbynet/tabby/services/nftables"
)

type recorder struct {
	*knftables.Fake
	last string
}

func (r *recorder) Run(_ context.Context, tx *knftables.Transaction) error {
	r.last = tx.String()
	return nil
}

func TestZZDump(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	r := &recorder{Fake: knftables.NewFake(knftables.IPv4Family, snft.DefaultTable)}
	n, _ := strconv.Atoi(os.Getenv("ZZ"))
	tr := loadTracker(n, 10)
	p, _ := snft.New(r, tr, snft.Config{Family: knftables.IPv4Family})
	_ = p.Sync(context.Background())
	os.WriteFile("/tmp/svc10k.nft", []byte(r.last), 0o644)
}
