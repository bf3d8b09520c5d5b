package iptables

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// conformanceInputs are restore --noflush transactions, some rejected by
// the kernel, run in order on the kernel and on the Fake.
var conformanceInputs = []string{
	"*filter\n:tabby-a - [0:0]\n:tabby-b - [0:0]\n-A tabby-a -m comment --comment \"tabby:x\" -j tabby-b\n-A tabby-b -j ACCEPT\n-I INPUT 1 -j tabby-a\nCOMMIT\n",
	// Rule for a missing chain.
	"*filter\n-A tabby-none -j ACCEPT\nCOMMIT\n",
	// Jump to a missing chain; the earlier line of the same table is not applied.
	"*filter\n-A tabby-b -j DROP\n-A tabby-a -j tabby-none\nCOMMIT\n",
	// Delete a chain with rules / referenced.
	"*filter\n-X tabby-a\nCOMMIT\n",
	"*filter\n:tabby-b - [0:0]\n-X tabby-b\nCOMMIT\n",
	// Delete a missing rule; delete by spec; insert past the end.
	"*filter\n-D INPUT -j DROP\nCOMMIT\n",
	"*filter\n-I INPUT 3 -j ACCEPT\nCOMMIT\n",
	"*filter\n-D INPUT -j tabby-a\n:tabby-a - [0:0]\n-X tabby-a\nCOMMIT\n",
	// Chain name too long; policy on a user chain; unknown table; no COMMIT.
	"*filter\n:tabby-" + strings.Repeat("x", 23) + " - [0:0]\nCOMMIT\n",
	"*filter\n:tabby-c ACCEPT [0:0]\nCOMMIT\n",
	"*bogus\nCOMMIT\n",
	"*filter\n:tabby-c - [0:0]\n",
	// Two tables, both applied.
	"*filter\n:tabby-c - [0:0]\n-A tabby-c -j RETURN\nCOMMIT\n*nat\n:tabby-n - [0:0]\n-A tabby-n -j MASQUERADE\n-A POSTROUTING -j tabby-n\nCOMMIT\n",
	// Jumping to a kernel chain is refused.
	"*filter\n-A tabby-c -j INPUT\nCOMMIT\n",
	// References: a goto counts; deleting one of two referencing rules
	// leaves the chain referenced; a failed section keeps its references;
	// flushing the referencing chain (redeclaring it) frees the target.
	"*filter\n:tabby-g - [0:0]\n:tabby-h - [0:0]\n-A tabby-h -g tabby-g\n-X tabby-g\nCOMMIT\n",
	"*filter\n:tabby-g - [0:0]\n:tabby-h - [0:0]\n-A tabby-h -j tabby-g\n-A tabby-h -g tabby-g\nCOMMIT\n",
	"*filter\n-D tabby-h -j tabby-g\n-X tabby-g\nCOMMIT\n",
	"*filter\n-D tabby-h 2\n-F tabby-h\n-A tabby-none -j ACCEPT\nCOMMIT\n",
	"*filter\n-X tabby-g\nCOMMIT\n",
	"*filter\n-D tabby-h 1\n-X tabby-g\nCOMMIT\n",
	"*filter\n:tabby-h - [0:0]\n-X tabby-g\n-X tabby-h\nCOMMIT\n",
	// REJECT types: unknown, every alias (dumped as its canonical name),
	// the default, tcp-reset without -p tcp (refused at commit: legacy
	// names the COMMIT line, nft the rule).
	"*filter\n:tabby-r - [0:0]\n-A tabby-r -j REJECT --reject-with bogus\nCOMMIT\n",
	"*filter\n:tabby-r - [0:0]\n-A tabby-r -j REJECT --reject-with icmp6-port-unreachable\nCOMMIT\n",
	"*filter\n:tabby-r - [0:0]\n-A tabby-r -j REJECT --reject-with net-unreach\n-A tabby-r -j REJECT --reject-with host-unreach\n" +
		"-A tabby-r -j REJECT --reject-with proto-unreach\n-A tabby-r -j REJECT --reject-with port-unreach\n" +
		"-A tabby-r -j REJECT --reject-with net-prohib\n-A tabby-r -j REJECT --reject-with host-prohib\n" +
		"-A tabby-r -j REJECT --reject-with admin-prohib\n-A tabby-r -p tcp -j REJECT --reject-with tcp-rst\n" +
		"-A tabby-r -j REJECT --reject-with icmp-host-prohibited\n-A tabby-r -j REJECT\nCOMMIT\n",
	"*filter\n-A tabby-r -j REJECT --reject-with tcp-reset\nCOMMIT\n",
	"*filter\n-A tabby-r ! -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n",
	// A NAT port needs -p tcp, udp, sctp or dccp (a negated one is
	// accepted); without a port none is needed.
	"*nat\n:tabby-d - [0:0]\n-A tabby-d -j DNAT --to-destination 10.0.0.1:80\nCOMMIT\n",
	"*nat\n:tabby-d - [0:0]\n-A tabby-d -p udplite -j DNAT --to-destination 10.0.0.1:80\nCOMMIT\n",
	"*nat\n:tabby-d - [0:0]\n-A tabby-d -p icmp -j DNAT --to-destination 10.0.0.1:80\nCOMMIT\n",
	"*nat\n:tabby-d - [0:0]\n-A tabby-d ! -p tcp -j DNAT --to-destination 10.0.0.1:80\n-A tabby-d -p udp -j DNAT --to-destination 10.0.0.1:80\n" +
		"-A tabby-d -j DNAT --to-destination 10.0.0.1\n-A tabby-d -p sctp -j SNAT --to-source 10.0.0.1:1000\nCOMMIT\n",
	// Table-restricted targets: NAT targets only in nat, REJECT only in
	// filter (refused at commit); MARK, LOG, NFLOG anywhere.
	"*filter\n:tabby-e - [0:0]\n-A tabby-e -j DNAT --to-destination 10.0.0.1\nCOMMIT\n",
	"*filter\n:tabby-e - [0:0]\n-A tabby-e -j MASQUERADE\nCOMMIT\n",
	"*filter\n:tabby-e - [0:0]\n-A tabby-e -p tcp -j REDIRECT --to-ports 8080\nCOMMIT\n",
	"*mangle\n:tabby-e - [0:0]\n-A tabby-e -j SNAT --to-source 10.0.0.1\nCOMMIT\n",
	"*nat\n:tabby-e - [0:0]\n-A tabby-e -j REJECT\nCOMMIT\n",
	"*raw\n:tabby-e - [0:0]\n-A tabby-e -j REJECT\nCOMMIT\n",
	"*raw\n:tabby-e - [0:0]\n-A tabby-e -j MARK --set-xmark 0x1/0x1\n-A tabby-e -j LOG --log-prefix x\n-A tabby-e -j NFLOG --nflog-prefix y --nflog-group 2\nCOMMIT\n",
	"*nat\n:tabby-e - [0:0]\n-A tabby-e -j MARK --set-xmark 0x1/0x1\n-A tabby-e -j LOG --log-prefix x\nCOMMIT\n",
	// NAT targets in nat's kernel chains: only in their hooks.
	"*nat\n-A POSTROUTING -j DNAT --to-destination 10.0.0.1\nCOMMIT\n",
	"*nat\n-A PREROUTING -j SNAT --to-source 10.0.0.1\nCOMMIT\n",
	"*nat\n-A OUTPUT -j MASQUERADE\nCOMMIT\n",
	"*nat\n-A INPUT -j SNAT --to-source 10.0.0.1\n-A OUTPUT -j DNAT --to-destination 10.0.0.1\n-A PREROUTING -p tcp -j REDIRECT --to-ports 8080\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n",
	// A commit-time error then a parse error: legacy names the later line.
	"*filter\n:tabby-f - [0:0]\n-A tabby-f -j DNAT --to-destination 10.0.0.1\n-A tabby-f -j tabby-none\nCOMMIT\n",
	// A builtin flag twice; a goto to a kernel chain.
	"*filter\n-A tabby-r -p tcp -p udp -j ACCEPT\nCOMMIT\n",
	"*filter\n-A tabby-r -s 10.0.0.1/32 ! -s 10.0.0.2/32 -j ACCEPT\nCOMMIT\n",
	"*filter\n-A tabby-r -i a -o b -i c -j ACCEPT\nCOMMIT\n",
	"*filter\n-A tabby-r -g FORWARD\nCOMMIT\n",
}

// reachInputs are nat transactions where a NAT target in a user chain is
// reached through jumps and gotos from kernel chains (addr is the NAT
// address of the family). Both kernels refuse a target reached from a
// hook it may not be used in, legacy at COMMIT, nft at the first rule
// after which the table is invalid (unless another rule failed); legacy
// does not look past a chain's first rule without matches whose verdict
// is ACCEPT, DROP or RETURN, nft does. They come last: some leave the
// two backends' dataplanes different.
func reachInputs(addr string) []string {
	dnat, snat := "-j DNAT --to-destination "+addr, "-j SNAT --to-source "+addr
	return []string{
		// Direct; through a jump and a goto, the hook first (nft names
		// the DNAT line); a chain reached from a good and a bad hook.
		"*nat\n:tabby-x1 - [0:0]\n-A tabby-x1 " + dnat + "\n-A POSTROUTING -j tabby-x1\nCOMMIT\n",
		"*nat\n:tabby-x1 - [0:0]\n:tabby-x2 - [0:0]\n-A POSTROUTING -j tabby-x1\n-A tabby-x1 -p tcp -j ACCEPT\n-A tabby-x1 -g tabby-x2\n" +
			"-A tabby-x2 -m comment --comment x -j RETURN\n-A tabby-x2 " + dnat + "\n-A tabby-x2 -j ACCEPT\nCOMMIT\n",
		"*nat\n:tabby-x1 - [0:0]\n-A PREROUTING -j tabby-x1\n-A POSTROUTING -j tabby-x1\n-A tabby-x1 " + dnat + "\nCOMMIT\n",
		// Good hooks: DNAT from PREROUTING and OUTPUT, SNAT from INPUT,
		// MASQUERADE from POSTROUTING; a NAT target reached from no hook.
		"*nat\n:tabby-x1 - [0:0]\n:tabby-x2 - [0:0]\n:tabby-x3 - [0:0]\n:tabby-x4 - [0:0]\n-A PREROUTING -j tabby-x1\n-A OUTPUT -j tabby-x1\n" +
			"-A tabby-x1 -j tabby-x2\n-A tabby-x2 " + dnat + "\n-A INPUT -g tabby-x3\n-A tabby-x3 " + snat + "\n-A tabby-x4 -j MASQUERADE\n" +
			"-A POSTROUTING -j tabby-x3\nCOMMIT\n",
		// A jump added to the existing table makes a NAT target reached
		// from a bad hook: MASQUERADE from INPUT; SNAT from PREROUTING.
		"*nat\n-A INPUT -j tabby-x4\nCOMMIT\n",
		"*nat\n-I tabby-x1 1 -j tabby-x3\nCOMMIT\n",
		// Transient: the bad jump is deleted again in the same section.
		"*nat\n-A INPUT -j tabby-x4\n-D INPUT -j tabby-x4\nCOMMIT\n",
		// Another error of the section: nft names it, not the reach.
		"*nat\n:tabby-x5 - [0:0]\n-A POSTROUTING -j tabby-x5\n-A tabby-x5 " + dnat + "\n-A tabby-x5 -j REJECT\nCOMMIT\n",
		// Behind a RETURN without matches: legacy accepts, nft refuses;
		// deleting the RETURN then is refused by legacy.
		"*nat\n:tabby-x5 - [0:0]\n-A POSTROUTING -j tabby-x5\n-A tabby-x5 -j RETURN\n-A tabby-x5 " + dnat + "\nCOMMIT\n",
		"*nat\n-D tabby-x5 -j RETURN\nCOMMIT\n",
		// Behind an ACCEPT without matches in the kernel chain.
		"*nat\n:tabby-x6 - [0:0]\n-A tabby-x6 " + snat + "\n-A OUTPUT -j ACCEPT\n-A OUTPUT -j tabby-x6\nCOMMIT\n",
	}
}

// conformanceInputs6 are the IPv6 transactions: the family's REJECT
// types and NAT address forms.
var conformanceInputs6 = []string{
	"*filter\n:tabby-r - [0:0]\n-A tabby-r -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n",
	"*filter\n:tabby-r - [0:0]\n-A tabby-r -j REJECT --reject-with no-route\n-A tabby-r -j REJECT --reject-with adm-prohibited\n" +
		"-A tabby-r -j REJECT --reject-with addr-unreach\n-A tabby-r -j REJECT --reject-with port-unreach\n" +
		"-A tabby-r -j REJECT --reject-with policy-fail\n-A tabby-r -j REJECT --reject-with reject-route\n" +
		"-A tabby-r -j REJECT --reject-with icmp6-policy-fail\n-A tabby-r -p tcp -j REJECT --reject-with tcp-reset\n" +
		"-A tabby-r -j REJECT --reject-with icmp6-adm-prohibited\n-A tabby-r -j REJECT\nCOMMIT\n",
	"*filter\n-A tabby-r -j REJECT --reject-with tcp-rst\nCOMMIT\n",
	"*filter\n-A tabby-r -j REJECT --reject-with tcp-reset\nCOMMIT\n",
	"*nat\n:tabby-d - [0:0]\n-A tabby-d -j DNAT --to-destination [fd00::1]:80\nCOMMIT\n",
	"*nat\n:tabby-d - [0:0]\n-A tabby-d -p ipv6-icmp -j DNAT --to-destination [fd00::1]:80\nCOMMIT\n",
	"*nat\n:tabby-d - [0:0]\n-A tabby-d -j DNAT --to-destination fd00::1\n-A tabby-d -p tcp -j DNAT --to-destination [fd00::1]:80\nCOMMIT\n",
	"*filter\n:tabby-e - [0:0]\n-A tabby-e -j SNAT --to-source fd00::1\nCOMMIT\n",
	"*nat\n-A POSTROUTING -j DNAT --to-destination fd00::1\nCOMMIT\n",
}

// loopInputs are jump loops between user chains (fakeloop.go): accepted
// while no kernel chain reaches them, refused (ELOOP) once one does, by
// the hook or by the rule closing the loop; legacy's walk stops at a rule
// without matches whose verdict is ACCEPT, DROP or RETURN, nft's does not.
var loopInputs = []string{
	"*filter\n:tabby-la - [0:0]\n:tabby-lb - [0:0]\n-A tabby-la -j tabby-lb\n-A tabby-lb -j tabby-la\nCOMMIT\n",
	"*filter\n-A FORWARD -p tcp -j tabby-la\nCOMMIT\n",
	"*filter\n:tabby-lc - [0:0]\n-A tabby-lc -g tabby-lc\nCOMMIT\n",
	"*filter\n-A INPUT -p tcp -j tabby-lc\n-A INPUT -j ACCEPT\nCOMMIT\n",
	"*filter\n:tabby-lg - [0:0]\n:tabby-lh - [0:0]\n-A FORWARD -j tabby-lg\n-A tabby-lg -j tabby-lh\n-A tabby-lh -p tcp -j tabby-lg\n-A tabby-lh -j DROP\nCOMMIT\n",
	"*filter\n:tabby-ld - [0:0]\n-A tabby-ld -j RETURN\n-A tabby-ld -p tcp -j tabby-ld\n-A OUTPUT -j tabby-ld\nCOMMIT\n",
	"*nat\n:tabby-le - [0:0]\n:tabby-lf - [0:0]\n-A tabby-le -p tcp -j tabby-lf\n-A tabby-lf -p udp -j tabby-le\n-A PREROUTING -j tabby-le\nCOMMIT\n",
	"*nat\n:tabby-le - [0:0]\n:tabby-lf - [0:0]\n-A tabby-le -p tcp -j tabby-lf\n-A tabby-lf -p udp -j tabby-le\nCOMMIT\n",
	"*nat\n-A OUTPUT -p udp -j tabby-lf\nCOMMIT\n",
	"*filter\n-A FORWARD -j tabby-lc\nCOMMIT\n",
	"*filter\n:tabby-lc - [0:0]\n-X tabby-la\n-X tabby-lb\nCOMMIT\n",
	"*filter\n-A FORWARD -j tabby-lc\nCOMMIT\n",
}

// normalSave reduces a save dump to sorted "table chain policy: rules" lines.
func normalSave(t *testing.T, text string) string {
	t.Helper()
	s, err := ParseSave(text)
	require.NoError(t, err)
	var out []string
	for _, tb := range s.Tables {
		for _, c := range tb.Chains {
			if len(c.Rules) == 0 && isBuiltin(tb.Name, c.Name) {
				continue
			}
			specs := make([]string, len(c.Rules))
			for i, r := range c.Rules {
				specs[i] = r.Spec
			}
			out = append(out, fmt.Sprintf("%s %s %s: %s", tb.Name, c.Name, c.Policy, strings.Join(specs, " | ")))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func TestFakeMatchesKernel(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		for _, f := range []Family{IPv4, IPv6} {
			t.Run(string(b)+"/"+f.String(), func(t *testing.T) {
				_, kex, _ := kernelIPTables(t, b, f)
				fake := NewFake()
				run := func(ex Execer, in string) error {
					_, err := ex.Run(ctx, Command{Name: binary(f, b, "restore"), Args: []string{"--noflush"}, Stdin: []byte(in)})
					return err
				}
				save := func(ex Execer) string {
					out, err := ex.Run(ctx, Command{Name: binary(f, b, "save")})
					require.NoError(t, err)
					return normalSave(t, string(out))
				}
				inputs := append(append(slices.Clone(conformanceInputs), reachInputs("10.0.0.1")...), loopInputs...)
				if f == IPv6 {
					inputs = append(append(slices.Clone(conformanceInputs6), reachInputs("fd00::1")...), loopInputs...)
				}
				for i, in := range inputs {
					kerr, ferr := run(kex, in), run(fake, in)
					assert.Equal(t, kerr == nil, ferr == nil, "input %d %q: kernel %v, fake %v", i, in, kerr, ferr)
					if kerr != nil && ferr != nil {
						kl, fl := lineRE.FindStringSubmatch(kerr.Error()), lineRE.FindStringSubmatch(ferr.Error())
						require.NotNil(t, kl, kerr.Error())
						require.NotNil(t, fl, ferr.Error())
						// nft names the missing jump target's COMMIT; the
						// fake, legacy's line.
						if b == BackendLegacy || !strings.Contains(ferr.Error(), "does not exist") && !strings.Contains(ferr.Error(), "Couldn't load target") {
							assert.Equal(t, kl[1], fl[1], "input %d %q: failing line: kernel %v, fake %v", i, in, kerr, ferr)
						}
					}
					assert.Equal(t, save(kex), save(fake), "after input %d", i)
				}
			})
		}
	}
}

// TestFakeFailedSectionChangesNothing: a section failing at its last line
// after creating, changing, flushing and deleting chains and references
// leaves the dump and the reference counts as they were.
func TestFakeFailedSectionChangesNothing(t *testing.T) {
	ctx := context.Background()
	fake := NewFake()
	run := func(in string) error {
		_, err := fake.Run(ctx, Command{Name: "iptables-legacy-restore", Args: []string{"--noflush"}, Stdin: []byte(in)})
		return err
	}
	require.NoError(t, run("*filter\n:tabby-a - [0:0]\n:tabby-b - [0:0]\n:tabby-c - [0:0]\n-A tabby-a -j tabby-b\n-A tabby-b -j tabby-c\n-A tabby-c -j ACCEPT\nCOMMIT\n"))
	before := fake.Dump()
	for _, body := range []string{
		":tabby-a - [0:0]\n-F tabby-b\n-X tabby-b\n",
		"-F tabby-b\n-F tabby-c\n-X tabby-c\n:tabby-d - [0:0]\n-A tabby-d -j tabby-a\n-I tabby-a 1 -j tabby-d\n",
		":tabby-c - [0:0]\n-D tabby-a -j tabby-b\n-F tabby-b\n-X tabby-b\n-A tabby-c -j ACCEPT\n",
	} {
		require.Error(t, run("*filter\n"+body+"-A tabby-none -j ACCEPT\nCOMMIT\n"))
		assert.Equal(t, before, fake.Dump(), "after failing %q", body)
		for _, c := range []string{"tabby-b", "tabby-c"} {
			require.Error(t, run("*filter\n-F "+c+"\n-X "+c+"\nCOMMIT\n"), "%s is still referenced", c)
		}
	}
	// The first body alone is accepted; then nothing references tabby-c.
	require.NoError(t, run("*filter\n:tabby-a - [0:0]\n-F tabby-b\n-X tabby-b\nCOMMIT\n"))
	require.NoError(t, run("*filter\n-F tabby-c\n-X tabby-c\nCOMMIT\n"))
}
