package natoutgoing

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/tabbynet/tabby/dataplane/ipsets"
	"github.com/tabbynet/tabby/dataplane/iptables"
	"github.com/tabbynet/tabby/ipam"
)

// Names of what this package owns. The chain lives in the nat table; the
// sets are per family (ipsets cannot mix families).
const (
	// ChainNATOutgoing is Felix's cali-nat-outgoing.
	ChainNATOutgoing = "tabby-nat-outgoing"
	// HookChain is the kernel chain of the nat table the jump is placed in.
	HookChain = "POSTROUTING"

	// SetAllPools4 and SetAllPools6 hold the CIDR of every pool of the
	// family, disabled ones included (Felix's all-ipam-pools).
	SetAllPools4 = "tabby-v4-all-ipam-pools"
	SetAllPools6 = "tabby-v6-all-ipam-pools"
	// SetMasqPools4 and SetMasqPools6 hold the CIDR of every pool of the
	// family with natOutgoing (Felix's masq-ipam-pools).
	SetMasqPools4 = "tabby-v4-masq-ipam-pools"
	SetMasqPools6 = "tabby-v6-masq-ipam-pools"
)

var (
	// ErrInvalidConfig: a Config with an unknown family or an OutInterface
	// that is not an interface name, or an Applier that New did not make
	// (nil or a zero value).
	ErrInvalidConfig = errors.New("invalid natoutgoing config")
	// ErrInvalidPool: a pool whose CIDR is unset, /0 or IPv4-mapped IPv6
	// (a hash:net set
	// cannot hold a /0, and a /0 pool would leave nothing "outside").
	ErrInvalidPool = errors.New("invalid IP pool for NAT outgoing")
)

// Config shapes the rendered rules for one IP family.
type Config struct {
	// Family is iptables.IPv4 (default) or iptables.IPv6; pools of the
	// other family are ignored.
	Family iptables.Family
	// RandomFully adds `--random-fully` to MASQUERADE (fully randomised
	// source ports), as Felix does when the kernel supports it.
	RandomFully bool
	// OutInterface, when set, masquerades only packets leaving through
	// this interface ("eth0", or a prefix "eth+"), like Felix's
	// iptablesNATOutgoingInterfaceFilter.
	OutInterface string
}

// Set is one desired ipset with its members.
type Set struct {
	Spec    ipsets.SetSpec
	Members []ipsets.Member
}

// Desired is the rendered state for one family: the two sets (all pools
// first, then NAT pools), the owned nat chain and the rules to place at the
// top of nat POSTROUTING.
type Desired struct {
	Sets  []Set
	Chain iptables.Chain
	Hook  []iptables.Rule
}

// SetNames returns the names of the all-pools and NAT-pools sets of family f
// (SetAllPools4, SetMasqPools4 for IPv4; the v6 names otherwise).
func SetNames(f iptables.Family) (all, masq string) {
	if f == iptables.IPv6 {
		return SetAllPools6, SetMasqPools6
	}
	return SetAllPools4, SetMasqPools4
}

// HookRule is the jump from nat POSTROUTING into ChainNATOutgoing. Callers
// that compose POSTROUTING themselves (WithoutHook) place it there.
func HookRule() iptables.Rule {
	return iptables.Rule{Action: iptables.Jump{Chain: ChainNATOutgoing}}
}

func (c Config) withDefaults() (Config, error) {
	if c.Family == 0 {
		c.Family = iptables.IPv4
	}
	if c.Family != iptables.IPv4 && c.Family != iptables.IPv6 {
		return c, fmt.Errorf("%w: family %d", ErrInvalidConfig, c.Family)
	}
	if c.OutInterface != "" && !iptables.ValidInterfaceName(c.OutInterface) {
		return c, fmt.Errorf("%w: OutInterface %q is not an interface name (1-15 printable bytes without space, '/', ':', quotes or backslash; a trailing + matches a prefix)",
			ErrInvalidConfig, c.OutInterface)
	}
	return c, nil
}

// Render turns pools into the desired sets, chain and hook for cfg.Family,
// following Calico Felix (felix/rules/nat.go, masq_mgr.go):
//
//   - every pool of the family, disabled or not, is in the all-pools set,
//     so traffic to any pool is never NATed (a disabled pool covering a
//     range is how Calico users exclude destinations from NAT);
//   - every pool of the family with NATOutgoing, disabled or not (its
//     existing pods keep their egress), is in the NAT-pools set;
//   - the chain holds one rule, `-m set --match-set NAT-POOLS src -m set !
//     --match-set ALL-POOLS dst -j MASQUERADE`, when at least one NAT pool
//     of the family exists, and is empty otherwise;
//   - the hook always jumps from nat POSTROUTING to the chain.
//
// Members are the pools' CIDRs, masked; duplicates collapse. Pools of the
// other family are skipped. A pool with no CIDR, a /0 or an IPv4-mapped
// IPv6 CIDR returns an error wrapping ErrInvalidPool naming it; a bad
// Config (family, OutInterface) ErrInvalidConfig.
// Render is pure: it reads nothing but its arguments.
func Render(cfg Config, pools []ipam.IPPool) (Desired, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Desired{}, err
	}
	allName, masqName := SetNames(cfg.Family)
	fam := ipsets.Family(cfg.Family)
	var all, masq []ipsets.Member
	inAll, inMasq := map[netip.Prefix]bool{}, map[netip.Prefix]bool{}
	for _, p := range pools {
		if !p.CIDR.IsValid() || p.CIDR.Bits() == 0 {
			return Desired{}, fmt.Errorf("pool %q (%s): %w", p.Name, p.CIDR, ErrInvalidPool)
		}
		if p.CIDR.Addr().Is4In6() {
			return Desired{}, fmt.Errorf("pool %q (%s): IPv4-mapped, write it as IPv4: %w", p.Name, p.CIDR, ErrInvalidPool)
		}
		if p.CIDR.Addr().Is6() != (cfg.Family == iptables.IPv6) {
			continue
		}
		c := p.CIDR.Masked()
		m := ipsets.Net(c)
		if !inAll[c] {
			inAll[c] = true
			all = append(all, m)
		}
		if p.NATOutgoing && !inMasq[c] {
			inMasq[c] = true
			masq = append(masq, m)
		}
	}
	d := Desired{
		Sets: []Set{
			{Spec: ipsets.SetSpec{Name: allName, Type: ipsets.HashNet, Family: fam}, Members: all},
			{Spec: ipsets.SetSpec{Name: masqName, Type: ipsets.HashNet, Family: fam}, Members: masq},
		},
		Chain: iptables.Chain{Name: ChainNATOutgoing},
		Hook:  []iptables.Rule{HookRule()},
	}
	if len(masq) > 0 {
		match := iptables.Match().SourceIPSet(masqName).NotDestIPSet(allName)
		if cfg.OutInterface != "" {
			match = match.OutInterface(cfg.OutInterface)
		}
		d.Chain.Rules = []iptables.Rule{{Match: match, Action: iptables.Masquerade{RandomFully: cfg.RandomFully}}}
	}
	return d, nil
}
