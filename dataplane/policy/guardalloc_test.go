package policy_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
)

// TestMadeGuardAllocatesNothing: the check that a Compiler was made by New
// costs a Compiler New made nothing: ExplainDrop (called per logged drop)
// allocates only what parsing the prefix does, and SetInterface repeating
// the interface an endpoint already has allocates nothing. The guard used
// to build its error's operation name ("explain drop " + prefix) on every
// call.
func TestMadeGuardAllocatesNothing(t *testing.T) {
	iptFake := iptables.NewFake()
	ipt, err := iptables.New(iptables.Config{Family: iptables.IPv4, Backend: iptables.BackendNFT}, iptables.WithExecer(iptFake))
	require.NoError(t, err)
	c, err := dppolicy.New(dppolicy.Config{NFLOGGroup: 1}, ipt, ipsets.New(ipsets.NewFake()))
	require.NoError(t, err)
	twoPods(t, c)
	_, err = c.Apply(context.Background())
	require.NoError(t, err)
	m := regexp.MustCompile(`--nflog-prefix "?([^" ]+)`).FindStringSubmatch(iptFake.Dump())
	require.NotNil(t, m, "a drop prefix in the rules")
	prefix := m[1]
	_, err = c.ExplainDrop(prefix)
	require.NoError(t, err)

	parse := testing.AllocsPerRun(100, func() { p, _ := dppolicy.ParsePrefix(prefix); _ = p.String() })
	explain := testing.AllocsPerRun(100, func() { _, _ = c.ExplainDrop(prefix) })
	assert.Equal(t, parse, explain, "ExplainDrop allocates only what parsing %s does", prefix)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = c.SetInterface("shop/web", "tby1") }),
		"SetInterface with the interface the endpoint has")
}
