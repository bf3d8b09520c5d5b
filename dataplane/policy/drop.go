package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	pol "github.com/tabbynet/tabby/policy"
)

// ErrBadPrefix: an NFLOG prefix that is not one tabby writes.
var ErrBadPrefix = errors.New("not a tabby drop prefix")

// ErrUnknownDrop: a well-formed prefix whose ID the compiler did not render
// (from another run, or for a policy since changed).
var ErrUnknownDrop = errors.New("unknown drop prefix")

// DropKind says which rule dropped a packet.
type DropKind uint8

// Drop kinds.
const (
	// KindRule: a Deny rule of a policy.
	KindRule DropKind = iota + 1
	// KindEndOfTier: the tier's default action (Deny) after no policy of
	// the tier allowed or passed the packet.
	KindEndOfTier
)

func (k DropKind) String() string {
	switch k {
	case KindRule:
		return "rule"
	case KindEndOfTier:
		return "end of tier"
	}
	return "unknown"
}

// DropCause explains a packet drop: for KindRule the policy and rule index
// (in its Direction's list); for KindEndOfTier the tier, the endpoint whose
// chain dropped it and the policies of the tier that applied to it (in
// order), Rule is -1.
type DropCause struct {
	Kind      DropKind
	Tier      string
	Policy    string
	Direction pol.Direction
	Rule      int
	Endpoint  string
	Policies  []string
}

// String is, e.g., "denied by tier default, policy yaobank/knp.default.database, end of tier (ingress of yaobank/db)".
func (d DropCause) String() string {
	switch d.Kind {
	case KindRule:
		return fmt.Sprintf("denied by tier %s, policy %s, %s rule %d", d.Tier, d.Policy, d.Direction, d.Rule)
	case KindEndOfTier:
		noun := "policy"
		if len(d.Policies) > 1 {
			noun = "policies"
		}
		return fmt.Sprintf("denied by tier %s, %s %s, end of tier (%s of %s)", d.Tier, noun, strings.Join(d.Policies, ", "), d.Direction, d.Endpoint)
	}
	return "unknown drop"
}

// Prefix is a decoded NFLOG prefix: "tby:" kind ('R' rule, 'T' end of
// tier) ':' direction ('i' ingress, 'e' egress) ':' rule index ('-' for end
// of tier) ':' 16 hex digits identifying tier and policy (or endpoint) —
// at most 63 bytes, what NFLOG carries.
type Prefix struct {
	Kind      DropKind
	Direction pol.Direction
	Rule      int
	ID        string
}

func (p Prefix) String() string {
	k, d, r := "R", "i", strconv.Itoa(p.Rule)
	if p.Kind == KindEndOfTier {
		k, r = "T", "-"
	}
	if p.Direction == pol.Egress {
		d = "e"
	}
	return "tby:" + k + ":" + d + ":" + r + ":" + p.ID
}

// ParsePrefix decodes an NFLOG prefix written by the compiler; errors wrap
// ErrBadPrefix.
func ParsePrefix(s string) (Prefix, error) {
	bad := func(why string) (Prefix, error) { return Prefix{}, fmt.Errorf("%w: %q: %s", ErrBadPrefix, s, why) }
	parts := strings.Split(s, ":")
	if len(parts) != 5 || parts[0] != "tby" {
		return bad("want tby:K:D:R:ID")
	}
	var p Prefix
	switch parts[1] {
	case "R":
		p.Kind = KindRule
	case "T":
		p.Kind = KindEndOfTier
	default:
		return bad("kind")
	}
	switch parts[2] {
	case "i":
		p.Direction = pol.Ingress
	case "e":
		p.Direction = pol.Egress
	default:
		return bad("direction")
	}
	if p.Kind == KindEndOfTier {
		if parts[3] != "-" {
			return bad("rule of an end of tier")
		}
		p.Rule = -1
	} else {
		n, err := strconv.Atoi(parts[3])
		if err != nil || n < 0 || n > 1<<20 || strconv.Itoa(n) != parts[3] {
			return bad("rule index")
		}
		p.Rule = n
	}
	if len(parts[4]) != 16 || strings.Trim(parts[4], "0123456789abcdef") != "" {
		return bad("id")
	}
	p.ID = parts[4]
	return p, nil
}

// dropPrefix records cause and returns its prefix.
func (c *Compiler) dropPrefix(cause DropCause) string {
	var id string
	if cause.Kind == KindRule {
		id = hash16("R", cause.Tier, cause.Policy)
	} else {
		id = hash16("T", cause.Tier, cause.Endpoint)
	}
	p := Prefix{Kind: cause.Kind, Direction: cause.Direction, Rule: cause.Rule, ID: id}
	c.dropCause[p.String()] = cause
	return p.String()
}

// ExplainDrop maps an NFLOG prefix read from the drop group back to the
// tier, policy and rule that dropped the packet. ErrBadPrefix for a prefix
// tabby does not write, ErrUnknownDrop for one this compiler did not render.
func (c *Compiler) ExplainDrop(prefix string) (DropCause, error) {
	if err := c.checkOf("explain drop", prefix); err != nil {
		return DropCause{}, err
	}
	p, err := ParsePrefix(prefix)
	if err != nil {
		return DropCause{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.dropCause[p.String()]
	if !ok {
		return DropCause{}, fmt.Errorf("%w: %s", ErrUnknownDrop, prefix)
	}
	return d, nil
}
