package policy_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"sigs.k8s.io/yaml"
)

type fakes struct {
	c    *dppolicy.Compiler
	ipt  *iptables.Fake
	sets *ipsets.Fake
}

func newFakes(t testing.TB, cfg dppolicy.Config) fakes {
	t.Helper()
	f := fakes{ipt: iptables.NewFake(), sets: ipsets.NewFake()}
	ipt, err := iptables.New(iptables.Config{Family: iptables.IPv4, Backend: iptables.BackendNFT}, iptables.WithExecer(f.ipt))
	require.NoError(t, err)
	f.c, err = dppolicy.New(cfg, ipt, ipsets.New(f.sets))
	require.NoError(t, err)
	return f
}

var _ = yaml.Marshal
