package policy_test

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	dppolicy "github.com/tabbynet/tabby/dataplane/policy"
	"github.com/tabbynet/tabby/policy"
)

type fakeNode struct {
	c       *dppolicy.Compiler
	ipt     *iptables.IPTables
	iptFake *iptables.Fake
	setFake *ipsets.Fake
	w       *world
}

func newFakeNode(t testing.TB, cfg dppolicy.Config, seed uint64, pods int) *fakeNode {
	t.Helper()
	n := &fakeNode{iptFake: iptables.NewFake(), setFake: ipsets.NewFake()}
	var err error
	n.ipt, err = iptables.New(iptables.Config{Family: iptables.IPv4, Backend: iptables.BackendNFT}, iptables.WithExecer(n.iptFake))
	require.NoError(t, err)
	n.c, err = dppolicy.New(cfg, n.ipt, ipsets.New(n.setFake))
	require.NoError(t, err)
	var addrs []netip.Addr
	for i := range pods {
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + i)}))
	}
	n.w = newWorld(rand.New(rand.NewPCG(seed, 1)), addrs)
	for i, ep := range n.w.endpoints {
		require.NoError(t, n.c.SetInterface(ep.Key(), "tby"+string(rune('a'+i))))
	}
	return n
}

func (n *fakeNode) apply(t testing.TB) *dppolicy.Plan {
	t.Helper()
	p, err := n.c.Apply(context.Background())
	require.NoError(t, err)
	return p
}

// members returns the "add" lines of the ipsets dump (maxelem depends on
// history, members must not).
func (n *fakeNode) members() string {
	var b strings.Builder
	for _, l := range strings.Split(n.setFake.Dump(), "\n") {
		if strings.HasPrefix(l, "add ") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func chainNames(p *dppolicy.Plan) []string {
	var out []string
	for _, c := range p.Chains {
		out = append(out, c.Name)
	}
	return out
}

func basePolicy() policy.Resources {
	np := &policy.NetworkPolicy{}
	np.Name, np.Namespace = "db", "ns0"
	np.Spec.Selector = "all()"
	np.Spec.Ingress = []policy.Rule{{Action: policy.Allow, Protocol: ptrTo(policy.ProtoTCP),
		Source:      policy.EntityRule{Selector: "app == 'web'", NamespaceSelector: "all()"},
		Destination: policy.EntityRule{Ports: []policy.Port{policy.NamedPort("http")}}}}
	return policy.Resources{NetworkPolicies: []*policy.NetworkPolicy{np}}
}

func TestLabelChangeUpdatesSetMembersOnly(t *testing.T) {
	n := newFakeNode(t, dppolicy.Config{}, 1, 4)
	res := basePolicy()
	res.Namespaces, res.Endpoints = n.w.namespaces, n.w.endpoints
	n.w.endpoints[1].Labels["app"] = "db"
	require.NoError(t, n.c.Replace(res))
	n.apply(t)
	before := len(n.iptFake.Commands())

	ep := n.w.endpoints[1].DeepCopy()
	ep.Labels["app"] = "web"
	require.NoError(t, n.c.UpdateEndpoint(ep))
	p := n.c.Plan()
	assert.Empty(t, p.Chains, "a label change rewrites no chain")
	require.Len(t, p.Sets, 1)
	assert.Equal(t, []ipsets.Member{ipsets.Net(netip.MustParsePrefix("10.0.0.2/32"))}, p.Sets[0].Added)
	assert.Equal(t, before, len(n.iptFake.Commands()), "Plan touches nothing")
	p = n.apply(t)
	assert.Empty(t, p.Chains)
	assert.Contains(t, n.members(), "10.0.0.2\n")
	assert.Equal(t, before, len(n.iptFake.Commands()), "no restore ran")
}

func TestAddEndpointWritesOnlyItsChains(t *testing.T) {
	n := newFakeNode(t, dppolicy.Config{}, 2, 4)
	res := basePolicy()
	res.Namespaces, res.Endpoints = n.w.namespaces, n.w.endpoints[:3]
	require.NoError(t, n.c.Replace(res))
	n.apply(t)
	require.NoError(t, n.c.UpdateEndpoint(n.w.endpoints[3]))
	p := n.apply(t)
	assert.ElementsMatch(t, []string{dppolicy.ChainFromDispatch, dppolicy.ChainToDispatch, "tabby-fw-tbyd", "tabby-tw-tbyd"}, chainNames(p))
	for _, s := range p.Sets {
		assert.False(t, s.Created || s.Deleted, "only members change: %+v", s)
	}
	n.c.DeleteEndpoint(n.w.endpoints[3].Key())
	p = n.apply(t)
	assert.ElementsMatch(t, []string{dppolicy.ChainFromDispatch, dppolicy.ChainToDispatch, "tabby-fw-tbyd", "tabby-tw-tbyd"}, chainNames(p))
	assert.NotContains(t, n.iptFake.Dump(), "tbyd")
}

func TestInvalidPolicyNeverReachesTheKernel(t *testing.T) {
	n := newFakeNode(t, dppolicy.Config{}, 3, 2)
	res := basePolicy()
	res.Endpoints = n.w.endpoints
	require.NoError(t, n.c.Replace(res))
	n.apply(t)
	dump := n.iptFake.Dump()
	bad := basePolicy()
	bad.Endpoints = n.w.endpoints
	bad.NetworkPolicies[0].Spec.Ingress[0].Source.Selector = "app = 'web'"
	require.ErrorIs(t, n.c.Replace(bad), policy.ErrInvalid)
	bad.NetworkPolicies[0].Spec.Ingress[0].Source.Selector = "all()"
	bad.NetworkPolicies[0].Spec.Tier = "nope"
	require.ErrorIs(t, n.c.Replace(bad), policy.ErrUnknownTier)
	require.ErrorIs(t, n.c.Replace(policy.Resources{Endpoints: []*policy.Endpoint{nil}}), dppolicy.ErrNil)
	require.ErrorIs(t, n.c.UpdatePolicy(nil), dppolicy.ErrNil)
	err := n.c.UpdatePolicy(&policy.ResolvedPolicy{})
	require.ErrorIs(t, err, policy.ErrInvalid)
	assert.ErrorContains(t, err, "policy without a name")
	err = n.c.UpdatePolicy(&policy.ResolvedPolicy{Key: "ns0/x", Name: "x", Namespace: "ns0", Tier: "nope"})
	require.ErrorIs(t, err, policy.ErrUnknownTier)
	assert.ErrorContains(t, err, `policy ns0/x: tier "nope"`)
	assert.True(t, n.c.Plan().Empty())
	n.apply(t)
	assert.Equal(t, dump, n.iptFake.Dump())
	require.ErrorIs(t, n.c.SetInterface("ns0/p0", "bad name"), dppolicy.ErrInvalidInterface)
	// A workload's interface must carry the prefix the dispatch chains match.
	require.ErrorIs(t, n.c.SetInterface("ns0/p0", "eth5"), dppolicy.ErrInvalidInterface)
	assert.True(t, n.c.Plan().Empty(), "a refused interface changes nothing")
}

func TestHTTPRulesReportedAsNeedingL7(t *testing.T) {
	n := newFakeNode(t, dppolicy.Config{}, 4, 2)
	np := &policy.NetworkPolicy{}
	np.Name, np.Namespace = "api", "ns0"
	np.Spec.Selector = "all()"
	np.Spec.Ingress = []policy.Rule{
		{Action: policy.Allow, Protocol: ptrTo(policy.ProtoTCP), HTTP: &policy.HTTPMatch{Methods: []string{"GET"}}},
		{Action: policy.Allow, Protocol: ptrTo(policy.ProtoUDP)},
	}
	require.NoError(t, n.c.Replace(policy.Resources{Endpoints: n.w.endpoints, NetworkPolicies: []*policy.NetworkPolicy{np}}))
	n.apply(t)
	assert.Equal(t, []dppolicy.RuleRef{{Policy: "ns0/api", Direction: policy.Ingress, Rule: 0}}, n.c.NeedsL7())
	assert.NotContains(t, n.iptFake.Dump(), "rule 0 Allow", "the HTTP rule never matches at L3/L4")
	assert.Contains(t, n.iptFake.Dump(), "rule 1 Allow")
}

// TestIncrementalEqualsFresh feeds random policy sets one after another to
// one compiler and checks that after each its chains and set members equal
// those of a fresh compiler given only that set.
func TestIncrementalEqualsFresh(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	inc := newFakeNode(t, dppolicy.Config{NFLOGGroup: 1}, seed, 8)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range 60 {
		res := randomResources(r, inc.w)
		if _, err := policy.NewPolicySet(res); err != nil {
			continue
		}
		require.NoError(t, inc.c.Replace(res))
		inc.apply(t)
		fresh := newFakeNode(t, dppolicy.Config{NFLOGGroup: 1}, seed, 8)
		require.NoError(t, fresh.c.Replace(res))
		fresh.apply(t)
		require.Equal(t, fresh.ipt.Render(), inc.ipt.Render(), "set %d", i)
		require.Equal(t, fresh.members(), inc.members(), "set %d", i)
		assert.True(t, inc.c.Plan().Empty())
	}
}

func TestIPv6FamilyRendersOnlyIPv6(t *testing.T) {
	iptFake, setFake := iptables.NewFake(), ipsets.NewFake()
	ipt, err := iptables.New(iptables.Config{Family: iptables.IPv6, Backend: iptables.BackendNFT}, iptables.WithExecer(iptFake))
	require.NoError(t, err)
	_, err = dppolicy.New(dppolicy.Config{}, ipt, ipsets.New(setFake))
	require.ErrorIs(t, err, dppolicy.ErrInvalidConfig, "an IPv4 compiler on IPv6 iptables")
	c, err := dppolicy.New(dppolicy.Config{Family: iptables.IPv6}, ipt, ipsets.New(setFake))
	require.NoError(t, err)
	ep := &policy.Endpoint{Name: "a", Namespace: "ns", Labels: map[string]string{"app": "a"},
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}}
	np := &policy.NetworkPolicy{}
	np.Name, np.Namespace = "p", "ns"
	np.Spec.Selector = "all()"
	np.Spec.Ingress = []policy.Rule{
		{Action: policy.Allow, Protocol: ptrTo(policy.ProtoICMPv6), ICMP: &policy.ICMPFields{Type: ptrTo(128)}},
		{Action: policy.Allow, Protocol: ptrTo(policy.ProtoICMP)},
		{Action: policy.Allow, Source: policy.EntityRule{Nets: []string{"10.0.0.0/8"}}},
		{Action: policy.Deny, Source: policy.EntityRule{Selector: "app == 'a'"}},
	}
	require.NoError(t, c.Replace(policy.Resources{Endpoints: []*policy.Endpoint{ep}, NetworkPolicies: []*policy.NetworkPolicy{np}}))
	require.NoError(t, c.SetInterface("ns/a", "tbya"))
	_, err = c.Apply(context.Background())
	require.NoError(t, err)
	dump := iptFake.Dump()
	assert.Contains(t, dump, "-p ipv6-icmp")
	assert.Contains(t, dump, "--icmpv6-type 128")
	assert.NotContains(t, dump, "rule 1 Allow", "ICMPv4 has no place in ip6tables")
	assert.NotContains(t, dump, "rule 2 Allow", "IPv4 nets never match IPv6")
	assert.Contains(t, setFake.Dump(), "add tabby-s6-")
	assert.Contains(t, setFake.Dump(), "fd00::1")
	assert.NotContains(t, setFake.Dump(), "10.0.0.1")
}

// TestProtocolAndICMPMatches checks how a rule's protocol, notProtocol,
// icmp and notICMP render: every match the rule has is in the iptables
// rule, and a rule that can never match renders nothing.
func TestProtocolAndICMPMatches(t *testing.T) {
	icmp := func(typ, code int) *policy.ICMPFields {
		f := &policy.ICMPFields{}
		if typ >= 0 {
			f.Type = ptrTo(typ)
		}
		if code >= 0 {
			f.Code = ptrTo(code)
		}
		return f
	}
	tests := []struct {
		name   string
		family iptables.Family
		rule   policy.Rule
		want   []string // in the rule's line; nil when the rule renders nothing
	}{
		{"notICMP type", iptables.IPv4, policy.Rule{Protocol: ptrTo(policy.ProtoICMP), NotICMP: icmp(8, -1)},
			[]string{"-p icmp", "-m icmp ! --icmp-type 8 -j"}},
		{"notICMP type and code", iptables.IPv4, policy.Rule{Protocol: ptrTo(policy.ProtoICMP), NotICMP: icmp(3, 1)},
			[]string{"-p icmp", "-m icmp ! --icmp-type 3/1 -j"}},
		{"icmp and notICMP", iptables.IPv4, policy.Rule{Protocol: ptrTo(policy.ProtoICMP), ICMP: icmp(3, -1), NotICMP: icmp(3, 4)},
			[]string{"-p icmp", "-m icmp --icmp-type 3 -m icmp ! --icmp-type 3/4 -j"}},
		{"notICMPv6", iptables.IPv6, policy.Rule{Protocol: ptrTo(policy.ProtoICMPv6), NotICMP: icmp(128, -1)},
			[]string{"-p ipv6-icmp", "-m icmp6 ! --icmpv6-type 128 -j"}},
		{"empty icmp is the protocol", iptables.IPv4, policy.Rule{Protocol: ptrTo(policy.ProtoICMP), ICMP: icmp(-1, -1)},
			[]string{"-p icmp -m comment", "Allow\" -j"}},
		{"empty notICMP excludes every ICMP packet", iptables.IPv4, policy.Rule{Protocol: ptrTo(policy.ProtoICMP), NotICMP: icmp(-1, -1)}, nil},
		{"notProtocol", iptables.IPv4, policy.Rule{NotProtocol: ptrTo(policy.ProtoTCP)}, []string{"! -p tcp "}},
		{"notProtocol ICMP in IPv6", iptables.IPv6, policy.Rule{NotProtocol: ptrTo(policy.ProtoICMP)}, []string{"! -p 1 "}},
		{"notProtocol ICMPv6 in IPv4", iptables.IPv4, policy.Rule{NotProtocol: ptrTo(policy.ProtoICMPv6)}, []string{"! -p 58 "}},
		{"protocol and another notProtocol", iptables.IPv4,
			policy.Rule{Protocol: ptrTo(policy.ProtoUDP), NotProtocol: ptrTo(policy.ProtoTCP)}, []string{"-p udp -m comment"}},
		{"protocol and the same notProtocol", iptables.IPv4,
			policy.Rule{Protocol: ptrTo(policy.ProtoUDP), NotProtocol: ptrTo(policy.ProtoUDP)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iptFake := iptables.NewFake()
			ipt, err := iptables.New(iptables.Config{Family: tt.family, Backend: iptables.BackendNFT}, iptables.WithExecer(iptFake))
			require.NoError(t, err)
			c, err := dppolicy.New(dppolicy.Config{Family: tt.family}, ipt, ipsets.New(ipsets.NewFake()))
			require.NoError(t, err)
			np := &policy.NetworkPolicy{}
			np.Name, np.Namespace = "p", "ns"
			np.Spec.Selector = "all()"
			tt.rule.Action = policy.Allow
			np.Spec.Ingress = []policy.Rule{tt.rule}
			require.NoError(t, c.Replace(policy.Resources{NetworkPolicies: []*policy.NetworkPolicy{np}}))
			_, err = c.Apply(context.Background())
			require.NoError(t, err)
			var lines []string
			for _, l := range strings.Split(iptFake.Dump(), "\n") {
				if strings.Contains(l, "rule 0 Allow") {
					lines = append(lines, l)
				}
			}
			if tt.want == nil {
				assert.Empty(t, lines)
				return
			}
			require.Len(t, lines, 1)
			for _, w := range tt.want {
				assert.Contains(t, lines[0], w)
			}
		})
	}
}

// TestUnrenderablePolicyRefusedUpFront checks that a policy whose rules
// iptables would refuse is refused by UpdatePolicy, naming the policy and
// rule, and changes nothing: later Applies keep working.
func TestUnrenderablePolicyRefusedUpFront(t *testing.T) {
	n := newFakeNode(t, dppolicy.Config{}, 5, 2)
	res := basePolicy()
	res.Namespaces, res.Endpoints = n.w.namespaces, n.w.endpoints
	require.NoError(t, n.c.Replace(res))
	n.apply(t)
	dump, sets := n.iptFake.Dump(), n.setFake.Dump()

	good, err := res.NetworkPolicies[0].Resolve()
	require.NoError(t, err)
	tests := []struct {
		name string
		edit func(*policy.ResolvedRule)
		want string
	}{
		{"notICMP without protocol", func(r *policy.ResolvedRule) {
			r.Protocol = nil
			r.Dst.Ports = nil
			r.NotICMP = &policy.ICMPMatch{Type: 8, Code: -1}
		}, "icmp type match needs"},
		{"icmp on TCP", func(r *policy.ResolvedRule) {
			r.ICMP = &policy.ICMPMatch{Type: 8, Code: -1}
		}, "icmp type match needs"},
		{"ports without a port protocol", func(r *policy.ResolvedRule) {
			r.Protocol = nil
			r.Dst.Ports = []policy.Port{policy.SinglePort(80)}
		}, "port match needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := *good
			bad.IngressRules = []policy.ResolvedRule{good.IngressRules[0]}
			tt.edit(&bad.IngressRules[0])
			err := n.c.UpdatePolicy(&bad)
			require.ErrorIs(t, err, iptables.ErrInvalidRule)
			assert.ErrorContains(t, err, "policy ns0/db: ingress rule 0: ")
			assert.ErrorContains(t, err, tt.want)
			assert.True(t, n.c.Plan().Empty(), "a refused policy changes nothing")
			n.apply(t)
			assert.Equal(t, dump, n.iptFake.Dump())
			assert.Equal(t, sets, n.setFake.Dump())
		})
	}
}

// TestProtocolWithNotProtocolApplies is the trial's case: protocol and
// notProtocol in one rule are accepted (as Calico's API accepts them) and
// render to one -p, so Apply keeps working.
func TestProtocolWithNotProtocolApplies(t *testing.T) {
	for _, notProto := range []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP} {
		n := newFakeNode(t, dppolicy.Config{}, 6, 2)
		np := &policy.NetworkPolicy{}
		np.Name, np.Namespace = "p", "ns0"
		np.Spec.Selector = "all()"
		np.Spec.Ingress = []policy.Rule{{Action: policy.Allow, Protocol: ptrTo(policy.ProtoUDP), NotProtocol: ptrTo(notProto),
			Source: policy.EntityRule{Nets: []string{"10.1.0.0/16", "10.2.0.0/16"}}}}
		require.NoError(t, n.c.Replace(policy.Resources{Namespaces: n.w.namespaces, Endpoints: n.w.endpoints,
			NetworkPolicies: []*policy.NetworkPolicy{np}}), "notProtocol %s", notProto)
		n.apply(t)
		require.NoError(t, n.c.UpdateEndpoint(n.w.endpoints[0]))
		n.apply(t)
	}
}

func TestPlanErr(t *testing.T) {
	n := newFakeNode(t, dppolicy.Config{}, 7, 2)
	res := basePolicy()
	res.Namespaces, res.Endpoints = n.w.namespaces, n.w.endpoints
	require.NoError(t, n.c.Replace(res))
	good := n.c.Plan()
	require.NotEmpty(t, good.Chains)

	bad := &dppolicy.Plan{Chains: []dppolicy.ChainChange{
		{Name: "tabby-pi-x", Rules: []iptables.Rule{{Match: iptables.Match().NotICMPType(8, -1), Action: iptables.Accept{}}}},
		{Name: "tabby-gone", Deleted: true},
	}}
	tests := []struct {
		name string
		plan *dppolicy.Plan
		want string // "" for no error
	}{
		{"compiled plan", good, ""},
		{"empty plan", &dppolicy.Plan{}, ""},
		{"unrenderable chain", bad, "chain tabby-pi-x: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.plan.Err()
			if tt.want == "" {
				require.NoError(t, err)
				assert.NotContains(t, tt.plan.String(), "invalid iptables rule")
				return
			}
			require.ErrorIs(t, err, iptables.ErrInvalidRule)
			assert.ErrorContains(t, err, tt.want)
			assert.Contains(t, tt.plan.String(), "icmp type match needs", "String shows the error in place of the rules")
		})
	}
}

// TestSourceNamedPorts checks how named ports in a rule's source render:
// an ip,port set of the endpoints the source's positive selection selects
// (all without one; a notSelector does not narrow it) with a port of that
// name and the rule's protocol, matched src,src (negated for notPorts), as
// Felix renders SrcNamedPortIpSetIds; numeric ports and named ports are
// alternatives (one rule each, numeric lists split at the multiport limit)
// and notPorts are all AND-ed, as for the destination.
func TestSourceNamedPorts(t *testing.T) {
	eps := []*policy.Endpoint{
		{Name: "web", Namespace: "ns", Labels: map[string]string{"app": "web"},
			Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")},
			Ports: []policy.EndpointPort{{Name: "cli", Protocol: policy.ProtoTCP, Port: 40000},
				{Name: "http", Protocol: policy.ProtoTCP, Port: 80}}},
		{Name: "db", Namespace: "ns", Labels: map[string]string{"app": "db"},
			Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")},
			Ports: []policy.EndpointPort{{Name: "cli", Protocol: policy.ProtoTCP, Port: 40001},
				{Name: "dns", Protocol: policy.ProtoUDP, Port: 53}, {Name: "http", Protocol: policy.ProtoTCP, Port: 8080}}},
	}
	ports := func(n int, named ...string) []policy.Port {
		var ps []policy.Port
		for i := range n {
			ps = append(ps, policy.SinglePort(uint16(1000+i)))
		}
		for _, name := range named {
			ps = append(ps, policy.NamedPort(name))
		}
		return ps
	}
	both := []string{"10.0.0.1,tcp:40000", "10.0.0.2,tcp:40001"}
	tests := []struct {
		name  string
		rule  policy.Rule
		lines int                 // rendered iptables rules
		want  []string            // in every line
		sets  map[string][]string // match ("src,src", "! dst,dst") -> members of the set it names
	}{
		{name: "selector", rule: policy.Rule{Source: policy.EntityRule{Selector: "app == 'web'", Ports: ports(0, "cli")}},
			lines: 1, sets: map[string][]string{"src,src": {"10.0.0.1,tcp:40000"}}},
		{name: "no selector: every endpoint", rule: policy.Rule{Source: policy.EntityRule{Ports: ports(0, "cli")}},
			lines: 1, sets: map[string][]string{"src,src": both}},
		{name: "notSelector does not narrow the set", rule: policy.Rule{Source: policy.EntityRule{NotSelector: "app == 'web'", Ports: ports(0, "cli")}},
			lines: 1, want: []string{"-m set ! --match-set tabby-s4-"}, sets: map[string][]string{"src,src": both}},
		{name: "notPorts", rule: policy.Rule{Source: policy.EntityRule{NotPorts: ports(0, "cli")}},
			lines: 1, sets: map[string][]string{"! src,src": both}},
		{name: "the rule's protocol", rule: policy.Rule{Protocol: ptrTo(policy.ProtoUDP), Source: policy.EntityRule{Ports: ports(0, "dns")}},
			lines: 1, want: []string{"-p udp"}, sets: map[string][]string{"src,src": {"10.0.0.2,udp:53"}}},
		{name: "no endpoint has the name for the rule's protocol", rule: policy.Rule{Protocol: ptrTo(policy.ProtoUDP), Source: policy.EntityRule{Ports: ports(0, "cli")}},
			lines: 1, sets: map[string][]string{"src,src": nil}},
		{name: "numeric ports past the multiport limit and a named port are alternatives",
			rule:  policy.Rule{Source: policy.EntityRule{Ports: ports(16, "cli")}},
			lines: 3, sets: map[string][]string{"src,src": both}},
		{name: "notPorts past the multiport limit are all AND-ed",
			rule:  policy.Rule{Source: policy.EntityRule{NotPorts: ports(16, "cli")}},
			lines: 1, want: []string{"-m multiport ! --sports 1000,", "-m tcp ! --sport 1015 ", "! --match-set"},
			sets: map[string][]string{"! src,src": both}},
		{name: "both sides", rule: policy.Rule{Source: policy.EntityRule{Selector: "app == 'db'", Ports: ports(0, "cli")},
			Destination: policy.EntityRule{Ports: ports(0, "http")}},
			lines: 1, sets: map[string][]string{"src,src": {"10.0.0.2,tcp:40001"}, "dst,dst": {"10.0.0.1,tcp:80", "10.0.0.2,tcp:8080"}}},
		{name: "one set serves both sides", rule: policy.Rule{Source: policy.EntityRule{Ports: ports(0, "http")},
			Destination: policy.EntityRule{NotPorts: ports(0, "http")}},
			lines: 1, sets: map[string][]string{"src,src": {"10.0.0.1,tcp:80", "10.0.0.2,tcp:8080"}, "! dst,dst": {"10.0.0.1,tcp:80", "10.0.0.2,tcp:8080"}}},
	}
	setRE := regexp.MustCompile(`(! )?--match-set (tabby-p4-\S+) (src,src|dst,dst)`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iptFake, setFake := iptables.NewFake(), ipsets.NewFake()
			ipt, err := iptables.New(iptables.Config{Family: iptables.IPv4, Backend: iptables.BackendNFT}, iptables.WithExecer(iptFake))
			require.NoError(t, err)
			c, err := dppolicy.New(dppolicy.Config{}, ipt, ipsets.New(setFake))
			require.NoError(t, err)
			np := &policy.NetworkPolicy{}
			np.Name, np.Namespace = "p", "ns"
			np.Spec.Selector = "all()"
			tt.rule.Action = policy.Allow
			if tt.rule.Protocol == nil {
				tt.rule.Protocol = ptrTo(policy.ProtoTCP)
			}
			np.Spec.Ingress = []policy.Rule{tt.rule}
			require.NoError(t, c.Replace(policy.Resources{Endpoints: eps, NetworkPolicies: []*policy.NetworkPolicy{np}}))
			_, err = c.Apply(context.Background())
			require.NoError(t, err)
			members := map[string][]string{}
			for _, l := range strings.Split(setFake.Dump(), "\n") {
				if f := strings.Fields(l); len(f) == 3 && f[0] == "add" {
					members[f[1]] = append(members[f[1]], f[2])
				}
			}
			var lines []string
			for _, l := range strings.Split(iptFake.Dump(), "\n") {
				if strings.Contains(l, "rule 0 Allow") {
					lines = append(lines, l)
				}
			}
			require.Len(t, lines, tt.lines, "%s", strings.Join(lines, "\n"))
			for _, l := range lines {
				for _, w := range tt.want {
					assert.Contains(t, l, w)
				}
			}
			got := map[string][]string{}
			for _, l := range lines {
				for _, m := range setRE.FindAllStringSubmatch(l, -1) {
					k := m[1] + m[3]
					require.NotContains(t, got, k, "one named-port set a side: %s", l)
					assert.ElementsMatch(t, tt.sets[k], members[m[2]], "%s set %s", k, m[2])
					got[k] = members[m[2]]
				}
			}
			assert.Len(t, got, len(tt.sets), "%s", strings.Join(lines, "\n"))
		})
	}
}
