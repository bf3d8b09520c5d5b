package iptables

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPolicyMatchesAndNFLOGRender(t *testing.T) {
	ipt, _ := fakeIPTables(t, IPv4)
	require.NoError(t, ipt.SetChain(Filter, Chain{Name: "tabby-pi-x", Rules: []Rule{
		{Match: Match().Protocol(ICMP).ICMPType(8, -1), Action: Accept{}},
		{Match: Match().Protocol(ICMP).NotICMPType(3, 1), Action: Accept{}},
		{Match: Match().Protocol(TCP).NotDestPortRanges(PortRange{80, 80}, PortRange{8000, 8080}).SourcePortRanges(PortRange{1, 1023}), Action: Drop{}},
		{Match: Match().Protocol(UDP).NotSourcePortRanges(PortRange{53, 53}).NotDestIPPortSet("tabby-p"), Action: NFLOG{Group: 7, Prefix: "D|x"}},
		{Match: Match().HairpinIPPortIPSet("tabby-hp"), Action: Jump{Chain: "tabby-pi-y"}},
		{Match: Match().Protocol(TCP).SourceIPPortSet("tabby-ps").NotSourceIPPortSet("tabby-pn"), Action: Accept{}},
	}}))
	out := ipt.Render()
	for _, want := range []string{
		"-m icmp --icmp-type 8 -j ACCEPT",
		"-m icmp ! --icmp-type 3/1 -j ACCEPT",
		"-m multiport ! --dports 80,8000:8080 -m tcp --sport 1:1023 -j DROP",
		`-m udp ! --sport 53 -m set ! --match-set tabby-p dst,dst -j NFLOG --nflog-prefix "D|x" --nflog-group 7`,
		"-m set --match-set tabby-hp dst,dst,src -j tabby-pi-y",
		"-m set --match-set tabby-ps src,src -m set ! --match-set tabby-pn src,src -j ACCEPT",
	} {
		assert.True(t, strings.Contains(out, want), "missing %q in\n%s", want, out)
	}
	for _, bad := range []Rule{
		{Match: Match().ICMPType(8, 0), Action: Accept{}},
		{Match: Match().Protocol(ICMP).ICMPType(256, 0), Action: Accept{}},
		{Action: NFLOG{Group: 1}},
		{Action: NFLOG{Group: 1, Prefix: strings.Repeat("x", 64)}},
	} {
		assert.ErrorIs(t, ipt.SetChain(Filter, Chain{Name: "tabby-bad", Rules: []Rule{bad}}), ErrInvalidRule)
	}
}
