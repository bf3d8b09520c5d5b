package policy_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
)

// TestLinearRules checks the rewrite BenchmarkConnRate's linear peer uses:
// one rule per member at the set rule's place, -s for src and -d for dst,
// nothing for an empty set, hash comments dropped, other lines unchanged;
// negated matches and unknown sets refused.
func TestLinearRules(t *testing.T) {
	members := map[string][]ipsets.Member{
		"tabby-s4-a": {ipsets.IP(netip.MustParseAddr("10.0.0.1")), ipsets.Net(netip.MustParsePrefix("10.1.0.0/16"))},
		"tabby-s4-e": nil,
	}
	in := "*filter\n:tabby-pi-x - [0:0]\n" +
		`-A tabby-pi-x -p tcp -m comment --comment "tabby:AAAA" -m set --match-set tabby-s4-a src -m multiport --dports 80 -j MARK --set-xmark 0x10000/0x10000` + "\n" +
		`-A tabby-pi-x -m comment --comment "tabby:BBBB" -m set --match-set tabby-s4-e dst -j DROP` + "\n" +
		`-A tabby-pi-x -m comment --comment "tabby:CCCC" -m set --match-set tabby-s4-a dst -j DROP` + "\n" +
		`-A tabby-pi-x -m comment --comment "tabby:DDDD" -m mark --mark 0x10000/0x10000 -j RETURN` + "\n" +
		"COMMIT\n"
	got, err := linearRules(in, members)
	require.NoError(t, err)
	require.Equal(t, "*filter\n:tabby-pi-x - [0:0]\n"+
		"-A tabby-pi-x -s 10.0.0.1/32 -p tcp -m multiport --dports 80 -j MARK --set-xmark 0x10000/0x10000\n"+
		"-A tabby-pi-x -s 10.1.0.0/16 -p tcp -m multiport --dports 80 -j MARK --set-xmark 0x10000/0x10000\n"+
		"-A tabby-pi-x -d 10.0.0.1/32 -j DROP\n"+
		"-A tabby-pi-x -d 10.1.0.0/16 -j DROP\n"+
		"-A tabby-pi-x -m mark --mark 0x10000/0x10000 -j RETURN\n"+
		"COMMIT\n", got)

	for name, line := range map[string]string{
		"negated":     "-A c -m set ! --match-set tabby-s4-a src -j DROP\n",
		"unknown set": "-A c -m set --match-set tabby-s4-z src -j DROP\n",
		"named port":  "-A c -m set --match-set tabby-s4-a dst,dst -j DROP\n",
	} {
		_, err := linearRules(line, members)
		require.Error(t, err, name)
	}
}
