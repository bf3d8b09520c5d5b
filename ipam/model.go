package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tabbynet/tabby/selector"
)

// EncapMode is an IPIP or VXLAN mode of a pool.
type EncapMode string

const (
	EncapNever       EncapMode = "Never"
	EncapAlways      EncapMode = "Always"
	EncapCrossSubnet EncapMode = "CrossSubnet"
)

// Use is what an address is for; pools say which uses they allow.
type Use string

const (
	UseWorkload Use = "Workload"
	UseTunnel   Use = "Tunnel"
)

// Default block sizes (prefix lengths), as in Calico.
const (
	DefaultBlockSizeV4 = 26
	DefaultBlockSizeV6 = 122
)

// IPPool is a range that blocks are carved from.
type IPPool struct {
	Name string       `json:"name"`
	CIDR netip.Prefix `json:"cidr"`
	// BlockSize is the prefix length of the pool's blocks: 20-32 for IPv4
	// (default 26), 116-128 for IPv6 (default 122). Immutable.
	BlockSize int `json:"blockSize,omitempty"`
	// NodeSelector (selector syntax) picks the nodes that may claim blocks
	// from the pool; "" means all(). Explicitly requested pools (CNI config,
	// annotations) are used whatever the selector says.
	NodeSelector string    `json:"nodeSelector,omitempty"`
	Disabled     bool      `json:"disabled,omitempty"`
	NATOutgoing  bool      `json:"natOutgoing,omitempty"`
	IPIPMode     EncapMode `json:"ipipMode,omitempty"`
	VXLANMode    EncapMode `json:"vxlanMode,omitempty"`
	// AllowedUses defaults to Workload and Tunnel. Assign skips requested
	// pools that do not allow the use (ErrNoMatchingPool when none is
	// left, as Calico's ErrNoQualifiedPool); AssignIP of an address in
	// such a pool matches both ErrNoMatchingPool and ErrInvalid.
	AllowedUses []Use `json:"allowedUses,omitempty"`
	// Priority orders the pools Assign picks by itself (no pools
	// requested): higher first, then by name. Calico has no priority
	// (tabby's extension). It does not order explicitly requested pools
	// (AssignArgs.IPv4Pools, the cni.projectcalico.org/ipv4pools
	// annotation, the CNI config's ipv4_pools): those are tried in the
	// order listed, as in Calico.
	Priority int `json:"priority,omitempty"`
}

// IPAMConfig is the cluster-wide IPAM behaviour, Calico's
// IPAMConfiguration plus tabby's additions.
//
// The defaults are those of DefaultConfig (AutoAllocateBlocks true), which
// is also what Config returns while none is stored; the Go zero value
// IPAMConfig{} is NOT the default (its AutoAllocateBlocks is false, and
// Validate refuses it). SetConfig replaces the whole configuration, so
// change one setting by starting from Config (or DefaultConfig) and
// modifying it:
//
//	cfg, err := a.Config(ctx)
//	cfg.StrictAffinity = true
//	err = a.SetConfig(ctx, cfg)
type IPAMConfig struct {
	// StrictAffinity forbids borrowing addresses from other nodes' blocks.
	StrictAffinity bool `json:"strictAffinity"`
	// AutoAllocateBlocks lets nodes claim new blocks (true in
	// DefaultConfig; the Go zero value is false). It may be false only
	// with StrictAffinity, as in Calico.
	AutoAllocateBlocks bool `json:"autoAllocateBlocks"`
	// MaxBlocksPerHost caps the blocks one node may allocate from (0: the
	// default cap of 20, DefaultMaxBlocksPerHost, as in Calico; negative
	// is ErrInvalid). Only blocks whose pool the node may still use
	// count: an enabled pool that selects the node (or was requested) and
	// allows the use. A node at the cap whose blocks are full gets
	// ErrBlockLimit and does not borrow, with or without StrictAffinity,
	// as in libcalico-go's autoAssign. Lowering it below what a node
	// holds takes nothing away: the node keeps using its blocks and
	// claims no new one until it is under the cap.
	//
	// The cap is a check before a claim, not a limit the store enforces:
	// Assign counts the node's blocks as it lists them and claims when
	// the count is under the cap, without counting again once its block
	// is written, as libcalico-go's autoAssign does (numBlocksOwned is
	// counted before findOrClaimBlock and never re-read). So n Assigns
	// for one node that run at once (other processes, or goroutines
	// sharing an IPAM), each finding the node under the cap with its
	// blocks full, can each claim a block and leave the node up to n-1
	// blocks over it. The node keeps such a block and uses it; being over
	// the cap stops its later claims, as a lowered cap does. Calico keeps
	// CNI ADDs from doing this by serialising calico-ipam's AutoAssign
	// per node with a file lock (ipam_lock_file); tabby's cni plugin does
	// the same with etcd (cni.DefaultIPAMLockFile), and with bbolt the
	// database's file lock serialises the plugin processes. Another
	// program that needs the cap exact must serialise its Assigns for one
	// node the same way.
	//
	// A positive value is accepted without StrictAffinity, as Calico's
	// IPAMConfiguration resource accepts it (its validator only refuses a
	// negative value). libcalico-go's SetIPAMConfig (calicoctl ipam
	// configure) is stricter and refuses a positive value unless
	// StrictAffinity is on, since the cap, not strict affinity, is what
	// then stops borrowing; tabby does not, because the default cap of 20
	// has that effect without strict affinity in Calico too.
	MaxBlocksPerHost int `json:"maxBlocksPerHost,omitempty"`
	// EmptyBlockGracePeriod is how long an affine block must stay empty
	// before ReleaseEmptyBlocks frees it (default 15m; set
	// ReleaseEmptyBlocksAtOnce for zero).
	EmptyBlockGracePeriod time.Duration `json:"emptyBlockGracePeriod,omitempty"`
	// ReleaseEmptyBlocksAtOnce makes the grace period zero.
	ReleaseEmptyBlocksAtOnce bool `json:"releaseEmptyBlocksAtOnce,omitempty"`
	// ReleaseLastBlock allows releasing a node's last affine block too.
	ReleaseLastBlock bool `json:"releaseLastBlock,omitempty"`
	// BorrowWithinLabel, when set (e.g. "topology.kubernetes.io/zone"),
	// allows borrowing only from blocks affine to nodes that have the same
	// value for this label as the borrowing node.
	BorrowWithinLabel string `json:"borrowWithinLabel,omitempty"`
}

// DefaultMaxBlocksPerHost is the block cap used when none is configured.
const DefaultMaxBlocksPerHost = 20

// DefaultEmptyBlockGracePeriod is how long an empty block is kept.
const DefaultEmptyBlockGracePeriod = 15 * time.Minute

// DefaultConfig is the configuration in force when none is stored.
func DefaultConfig() IPAMConfig { return IPAMConfig{AutoAllocateBlocks: true} }

// Validate rejects contradictory settings with ErrInvalid. Like Calico's
// SetIPAMConfig (libcalico-go ipam), it refuses StrictAffinity and
// AutoAllocateBlocks both false; note that IPAMConfig{} is such a config
// (start from DefaultConfig). Like Calico's IPAMConfiguration validator
// it refuses a negative MaxBlocksPerHost, and it does not require
// StrictAffinity for a positive one (see MaxBlocksPerHost).
func (c IPAMConfig) Validate() error {
	if !c.StrictAffinity && !c.AutoAllocateBlocks {
		return fmt.Errorf("%w: strictAffinity and autoAllocateBlocks cannot both be false (as in Calico): "+
			"no node could claim a block, so addresses could only be borrowed from blocks that already exist; "+
			"start from DefaultConfig() or Config() rather than IPAMConfig{}", ErrInvalid)
	}
	if c.MaxBlocksPerHost < 0 {
		return fmt.Errorf("%w: maxBlocksPerHost %d is negative", ErrInvalid, c.MaxBlocksPerHost)
	}
	if c.EmptyBlockGracePeriod < 0 {
		return fmt.Errorf("%w: negative emptyBlockGracePeriod", ErrInvalid)
	}
	return nil
}

func (c IPAMConfig) blockLimit() int {
	if c.MaxBlocksPerHost > 0 {
		return c.MaxBlocksPerHost
	}
	return DefaultMaxBlocksPerHost
}

func (c IPAMConfig) emptyGrace() time.Duration {
	switch {
	case c.ReleaseEmptyBlocksAtOnce:
		return 0
	case c.EmptyBlockGracePeriod > 0:
		return c.EmptyBlockGracePeriod
	}
	return DefaultEmptyBlockGracePeriod
}

// IPReservation lists CIDRs that are never handed out.
type IPReservation struct {
	Name  string         `json:"name"`
	CIDRs []netip.Prefix `json:"cidrs"`
}

var (
	linkLocal4 = netip.MustParsePrefix("169.254.0.0/16")
	linkLocal6 = netip.MustParsePrefix("fe80::/10")
	// v4Mapped is the IPv4-mapped IPv6 range (RFC 4291 section 2.5.5.2).
	// Its addresses are not valid IPv6 pod addresses: AssignIP refuses
	// them and net.IP.To4 turns them into IPv4.
	v4Mapped = netip.MustParsePrefix("::ffff:0:0/96")
)

// WithDefaults returns p with Calico's defaults filled in, as CreatePool
// stores it: BlockSize 26 (IPv4) or 122 (IPv6) when 0, IPIPMode and
// VXLANMode Never when empty, AllowedUses Workload and Tunnel when empty,
// and NodeSelector in its canonical form ("" is all()). It does not
// validate: call Validate on the result.
func (p IPPool) WithDefaults() IPPool { return p.normalize() }

// Validate checks a pool with its defaults filled in (see WithDefaults)
// on its own, as CreatePool does before looking at the stored pools: a
// name, a plain masked CIDR outside the link-local ranges and (IPv6) the
// IPv4-mapped range, a block size in range and not larger than the pool, a
// valid node selector, known encapsulation modes (IPIP IPv4 only, not both)
// and known uses. A bad pool is a *PoolFieldError, which matches
// ErrInvalid.
func (p IPPool) Validate() error {
	if err := p.validate(); err != nil {
		return err
	}
	return p.validateNotMapped()
}

// Conflict reports whether pools p and q can not both exist, as CreatePool
// checks a new pool p against each stored pool q: the same name is
// ErrInvalid, overlapping CIDRs are ErrOverlap. Both errors are
// *PoolFieldError naming p and its field (name or cidr).
func (p IPPool) Conflict(q IPPool) error {
	if q.Name == p.Name {
		return &PoolFieldError{Pool: p.Name, Field: "name", Detail: "already exists", Err: ErrInvalid}
	}
	if q.CIDR.Overlaps(p.CIDR) {
		return &PoolFieldError{Pool: p.Name, Field: "cidr",
			Detail: fmt.Sprintf("%s overlaps pool %q (%s)", p.CIDR, q.Name, q.CIDR), Err: ErrOverlap}
	}
	return nil
}

// PoolFieldError is a pool that is invalid or conflicts with another one.
// Field is the JSON name of the IPPool field at fault (name, cidr,
// blockSize, nodeSelector, ipipMode, vxlanMode, allowedUses), which is also
// the field's name in a Calico IPPool's spec. errors.Is matches ErrInvalid
// (or, for an overlap, ErrOverlap) and Err, such as the *selector.ParseError
// of a bad nodeSelector.
type PoolFieldError struct {
	Pool   string // the pool's name
	Field  string
	Detail string // what is wrong, for people
	Err    error  // ErrInvalid, ErrOverlap, or a cause that also matches ErrInvalid
}

// Error reads `invalid: pool "p": blockSize: block size /19 outside
// 20-32`, or `pool "b": cidr: 10.0.0.0/17 overlaps pool "a" (10.0.0.0/16):
// pool overlaps an existing pool`.
func (e *PoolFieldError) Error() string {
	msg := e.Field
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	switch {
	case errors.Is(e.Err, ErrOverlap):
		return fmt.Sprintf("pool %q: %s: %v", e.Pool, msg, e.Err)
	case e.Err == ErrInvalid || e.Err == nil:
		return fmt.Sprintf("%v: pool %q: %s", ErrInvalid, e.Pool, msg)
	}
	return fmt.Sprintf("%v: pool %q: %s: %v", ErrInvalid, e.Pool, msg, e.Err)
}

// Unwrap returns ErrInvalid (unless Err is ErrOverlap) and Err.
func (e *PoolFieldError) Unwrap() []error {
	switch {
	case e.Err == nil:
		return []error{ErrInvalid}
	case e.Err == ErrInvalid || errors.Is(e.Err, ErrOverlap):
		return []error{e.Err}
	}
	return []error{ErrInvalid, e.Err}
}

// normalize fills in defaults; it does not validate.
func (p IPPool) normalize() IPPool {
	if p.BlockSize == 0 {
		p.BlockSize = DefaultBlockSizeV4
		if p.CIDR.Addr().Is6() {
			p.BlockSize = DefaultBlockSizeV6
		}
	}
	if p.IPIPMode == "" {
		p.IPIPMode = EncapNever
	}
	if p.VXLANMode == "" {
		p.VXLANMode = EncapNever
	}
	if len(p.AllowedUses) == 0 {
		p.AllowedUses = []Use{UseWorkload, UseTunnel}
	}
	if sel, err := selector.Parse(p.NodeSelector); err == nil {
		p.NodeSelector = sel.String()
	}
	return p
}

// validate checks a normalized pool on its own (not against other pools).
func (p IPPool) validate() error {
	bad := func(field, format string, args ...any) error {
		return &PoolFieldError{Pool: p.Name, Field: field, Detail: fmt.Sprintf(format, args...), Err: ErrInvalid}
	}
	if err := validateName(p.Name); err != nil {
		return bad("name", "%v", err)
	}
	if !p.CIDR.IsValid() {
		return bad("cidr", "no CIDR")
	}
	if p.CIDR.Addr().Is4In6() || p.CIDR.Addr().Zone() != "" {
		return bad("cidr", "CIDR %s must be plain IPv4 or IPv6", p.CIDR)
	}
	if p.CIDR != p.CIDR.Masked() {
		return bad("cidr", "CIDR %s has host bits set (did you mean %s?)", p.CIDR, p.CIDR.Masked())
	}
	if p.CIDR.Overlaps(linkLocal4) || p.CIDR.Overlaps(linkLocal6) {
		return bad("cidr", "CIDR %s overlaps the link-local range", p.CIDR)
	}
	lo, hi := 20, 32
	if p.CIDR.Addr().Is6() {
		lo, hi = 116, 128
	}
	if p.BlockSize < lo || p.BlockSize > hi {
		return bad("blockSize", "block size /%d outside %d-%d", p.BlockSize, lo, hi)
	}
	if p.BlockSize < p.CIDR.Bits() {
		return bad("blockSize", "block size /%d is larger than the pool %s", p.BlockSize, p.CIDR)
	}
	if _, err := selector.Parse(p.NodeSelector); err != nil {
		// Both sentinels hold: ErrInvalid, and the selector's own
		// (*selector.ParseError, selector.ErrInvalid).
		return &PoolFieldError{Pool: p.Name, Field: "nodeSelector", Err: err}
	}
	for _, f := range []struct {
		field string
		mode  EncapMode
	}{{"ipipMode", p.IPIPMode}, {"vxlanMode", p.VXLANMode}} {
		if f.mode != EncapNever && f.mode != EncapAlways && f.mode != EncapCrossSubnet {
			return bad(f.field, "unknown encapsulation mode %q", f.mode)
		}
	}
	if p.IPIPMode != EncapNever && p.VXLANMode != EncapNever {
		return bad("vxlanMode", "ipipMode and vxlanMode cannot both be enabled")
	}
	if p.IPIPMode != EncapNever && p.CIDR.Addr().Is6() {
		return bad("ipipMode", "IPIP is IPv4 only")
	}
	for _, u := range p.AllowedUses {
		if u != UseWorkload && u != UseTunnel {
			return bad("allowedUses", "unknown allowed use %q", u)
		}
	}
	return nil
}

// validateNotMapped refuses an IPv6 pool that overlaps the IPv4-mapped
// range ::ffff:0:0/96 (a mapped CIDR itself is refused by validate).
func (p IPPool) validateNotMapped() error {
	if p.CIDR.Addr().Is6() && p.CIDR.Overlaps(v4Mapped) {
		return &PoolFieldError{Pool: p.Name, Field: "cidr", Err: ErrInvalid,
			Detail: fmt.Sprintf("CIDR %s overlaps the IPv4-mapped range %s, whose addresses are not IPv6 pod addresses", p.CIDR, v4Mapped)}
	}
	return nil
}

func (p IPPool) allows(u Use) bool { return slices.Contains(p.AllowedUses, u) }

func validateName(n string) error {
	if n == "" {
		return fmt.Errorf("empty name")
	}
	if len(n) > 253 || strings.ContainsAny(n, "/\x00 \t\n") {
		return fmt.Errorf("name %q must be at most 253 characters without '/' or spaces", n)
	}
	return nil
}

// Attribute describes who holds an allocation.
type Attribute struct {
	Handle    string
	Node      string // the node the address was assigned for
	Namespace string
	Pod       string
	Use       Use
	Extra     map[string]string
	// FloatingIPs are recorded against the allocation (from the
	// cni.projectcalico.org/floatingIPs annotation) for the dataplane.
	FloatingIPs []netip.Addr
	Created     time.Time
}

func (a *Attribute) equal(b *Attribute) bool {
	return a.Handle == b.Handle && a.Node == b.Node && a.Namespace == b.Namespace && a.Pod == b.Pod &&
		a.Use == b.Use && a.Created.Equal(b.Created) && mapsEqual(a.Extra, b.Extra) && slices.Equal(a.FloatingIPs, b.FloatingIPs)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// allocBlock is an aligned range carved from a pool, usually affine to one node.
// Allocations[i] is the index into Attributes of the holder of ordinal i, or
// -1; Unallocated lists free ordinals in the order they are handed out
// (released ordinals go to the back, so they are reused last).
type allocBlock struct {
	CIDR        netip.Prefix
	Affinity    string // node name; "" for none
	Allocations []int32
	Unallocated []int32
	Attributes  []Attribute
	// EmptySince is when the block last became empty (zero while in use).
	EmptySince time.Time
}

func newBlock(cidr netip.Prefix, node string, now time.Time) *allocBlock {
	n := blockLen(cidr)
	b := &allocBlock{CIDR: cidr, Affinity: node, Allocations: make([]int32, n), Unallocated: make([]int32, n), EmptySince: now}
	for i := range n {
		b.Allocations[i] = -1
		b.Unallocated[i] = int32(i)
	}
	return b
}

// Used counts allocated ordinals.
func (b *allocBlock) Used() int { return len(b.Allocations) - len(b.Unallocated) }

// Size is the number of addresses in the block.
func (b *allocBlock) Size() int { return len(b.Allocations) }

// Addr returns the address at ordinal i.
func (b *allocBlock) Addr(i int) netip.Addr { return addrAt(b.CIDR, i) }

// Holder returns the attribute holding addr, if any.
func (b *allocBlock) Holder(addr netip.Addr) (*Attribute, bool) {
	if !b.CIDR.Contains(addr) {
		return nil, false
	}
	idx := b.Allocations[ordinal(b.CIDR, addr)]
	if idx < 0 || int(idx) >= len(b.Attributes) {
		return nil, false
	}
	return &b.Attributes[idx], true
}

// attrIndex returns the index of an attribute equal to a, adding it if needed.
func (b *allocBlock) attrIndex(a *Attribute) int32 {
	for i := range b.Attributes {
		if b.Attributes[i].equal(a) {
			return int32(i)
		}
	}
	b.Attributes = append(b.Attributes, *a)
	return int32(len(b.Attributes) - 1)
}

// release frees the ordinals for which drop returns true, compacts the
// attributes, and returns how many it freed per handle.
func (b *allocBlock) release(drop func(ord int, a *Attribute) bool, now time.Time) map[string]int {
	freed := map[string]int{}
	for i, idx := range b.Allocations {
		if idx < 0 || int(idx) >= len(b.Attributes) {
			continue
		}
		if a := &b.Attributes[idx]; drop(i, a) {
			freed[a.Handle]++
			b.Allocations[i] = -1
			b.Unallocated = append(b.Unallocated, int32(i))
		}
	}
	if len(freed) > 0 {
		b.compactAttributes()
		if b.Used() == 0 {
			b.EmptySince = now
		}
	}
	return freed
}

// compactAttributes drops attributes no ordinal refers to.
func (b *allocBlock) compactAttributes() {
	used := make([]int32, len(b.Attributes))
	for i := range used {
		used[i] = -1
	}
	var kept []Attribute
	for i, idx := range b.Allocations {
		if idx < 0 || int(idx) >= len(b.Attributes) {
			continue
		}
		if used[idx] < 0 {
			used[idx] = int32(len(kept))
			kept = append(kept, b.Attributes[idx])
		}
		b.Allocations[i] = used[idx]
	}
	b.Attributes = kept
}

// handleCounts counts allocations per handle.
func (b *allocBlock) handleCounts() map[string]int {
	m := map[string]int{}
	for _, idx := range b.Allocations {
		if idx >= 0 && int(idx) < len(b.Attributes) {
			m[b.Attributes[idx].Handle]++
		}
	}
	return m
}

// consistency returns a description of what is wrong with the block's
// bookkeeping, or "".
func (b *allocBlock) consistency() string {
	if len(b.Allocations) != blockLen(b.CIDR) {
		return fmt.Sprintf("%d ordinals for a block of %d", len(b.Allocations), blockLen(b.CIDR))
	}
	free := make([]bool, len(b.Allocations))
	for _, o := range b.Unallocated {
		if o < 0 || int(o) >= len(free) {
			return fmt.Sprintf("free ordinal %d out of range", o)
		}
		if free[o] {
			return fmt.Sprintf("ordinal %d listed free twice", o)
		}
		free[o] = true
	}
	for i, idx := range b.Allocations {
		switch {
		case idx >= 0 && int(idx) >= len(b.Attributes):
			return fmt.Sprintf("ordinal %d refers to missing attribute %d", i, idx)
		case idx >= 0 && free[i]:
			return fmt.Sprintf("ordinal %d is both allocated and free", i)
		case idx < 0 && !free[i]:
			return fmt.Sprintf("ordinal %d is neither allocated nor free", i)
		}
	}
	return ""
}

// repair rebuilds Unallocated from Allocations and drops dangling
// attribute references.
func (b *allocBlock) repair() {
	n := blockLen(b.CIDR)
	if len(b.Allocations) != n {
		b.Allocations = append(b.Allocations, make([]int32, max(0, n-len(b.Allocations)))...)[:n]
	}
	seen := make([]bool, n)
	var un []int32
	for _, o := range b.Unallocated {
		if o >= 0 && int(o) < n && !seen[o] && b.Allocations[o] < 0 {
			seen[o] = true
			un = append(un, o)
		}
	}
	for i, idx := range b.Allocations {
		if idx >= 0 && int(idx) >= len(b.Attributes) {
			b.Allocations[i] = -1
		}
		if b.Allocations[i] < 0 && !seen[i] {
			seen[i] = true
			un = append(un, int32(i))
		}
	}
	b.Unallocated = un
	b.compactAttributes()
}

// AffinityState is the life cycle of a block affinity (Calico's
// pending → confirmed → pendingDeletion).
type AffinityState string

const (
	AffinityPending         AffinityState = "pending"
	AffinityConfirmed       AffinityState = "confirmed"
	AffinityPendingDeletion AffinityState = "pendingDeletion"
)

// Affinity records that a node claimed a block.
type Affinity struct {
	Node    string        `json:"node"`
	CIDR    netip.Prefix  `json:"cidr"`
	State   AffinityState `json:"state"`
	Updated time.Time     `json:"updated"`
}

// handleRecord counts a handle's allocations per block (keyed by CIDR).
type handleRecord struct {
	Blocks  map[string]int `json:"blocks"`
	Updated time.Time      `json:"updated"`
}

// nodeRecord is what the store keeps about a node.
type nodeRecord struct {
	Labels map[string]string `json:"labels,omitempty"`
}
