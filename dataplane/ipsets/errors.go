package ipsets

import (
	"errors"
	"syscall"

	nlnl "github.com/vishvananda/netlink/nl"
)

// Sentinel errors, for errors.Is.
var (
	// ErrInvalidMember: a member does not fit its set's type or family.
	ErrInvalidMember = errors.New("invalid ipset member")
	// ErrInvalidType: a set type other than the five supported ones
	// (HashIP, HashNet, HashIPPort, HashNetPort, HashIPPortIP), or a
	// family other than IPv4 and IPv6 (SetMembers, ParseMember).
	ErrInvalidType = errors.New("unsupported ipset type")
	// ErrInvalidName: SetMembers was given a set name that
	//   - does not start with the owner's prefix (so also the empty name),
	//   - is just the prefix, with nothing after it,
	//   - is longer than MaxNameLen (31) bytes, or
	//   - has a byte other than printable ASCII ('!' to '}'): a control
	//     byte (NUL, newline, tab, DEL, ...), a non-ASCII byte (any UTF-8
	//     beyond ASCII), a space, '~' (reserved for temporary sets, see
	//     TempName), a quote ('"' or '\'') or a backslash.
	// The error names the offending byte and its offset.
	ErrInvalidName = errors.New("invalid ipset name")
	// ErrInvalidConfig: New was given an option it cannot work with (a
	// prefix WithPrefix does not accept, such as "", which would own every
	// set of the namespace; a nil Handle), or an IPSets that New did not
	// make (nil or a zero value). IPSets.Err, SetMembers, AddMembers,
	// RemoveMembers and the Apply methods return it.
	ErrInvalidConfig = errors.New("invalid ipsets config")
	// ErrNotFound: a set that is not in the desired state.
	ErrNotFound = errors.New("ipset not found")
	// ErrInUse: the kernel refused to destroy a set that a rule still
	// references (IPSET_ERR_BUSY, "Set cannot be destroyed: it is in use by a kernel component").
	ErrInUse = errors.New("ipset in use")
	// ErrClosed: a KernelHandle was used after Close, or one NewHandle did
	// not make (its zero value) was used. (A closed
	// vishvananda/netlink Handle would instead act on the calling thread's
	// namespace, so KernelHandle answers this.)
	ErrClosed = errors.New("ipset handle closed")
)

// Kernel error values, as vishvananda/netlink returns them: ipset-specific
// codes as nl.IPSetError, the rest as syscall.Errno.
const (
	errExist         = nlnl.IPSetError(nlnl.IPSET_ERR_EXIST)
	errBusy          = nlnl.IPSetError(nlnl.IPSET_ERR_BUSY)
	errSetname2      = nlnl.IPSetError(nlnl.IPSET_ERR_EXIST_SETNAME2)
	errTypeMismatch  = nlnl.IPSetError(nlnl.IPSET_ERR_TYPE_MISMATCH)
	errInvalidCIDR   = nlnl.IPSetError(nlnl.IPSET_ERR_INVALID_CIDR)
	errFindType      = nlnl.IPSetError(nlnl.IPSET_ERR_FIND_TYPE)
	errInvalidFamily = nlnl.IPSetError(nlnl.IPSET_ERR_INVALID_FAMILY)
	errProtocol      = nlnl.IPSetError(nlnl.IPSET_ERR_PROTOCOL)
	// errHashFull is IPSET_ERR_HASH_FULL (= IPSET_ERR_TYPE_SPECIFIC),
	// which the netlink package does not name.
	errHashFull = nlnl.IPSetError(nlnl.IPSET_ERR_TYPE_SPECIFIC)
)

// IsNotFound reports whether err is the kernel's "no such set" (ENOENT).
func IsNotFound(err error) bool { return errors.Is(err, syscall.ENOENT) }

// IsExist reports whether err is the kernel's "entry already added / not
// added" (IPSET_ERR_EXIST), returned for a duplicate add and for the delete
// of an absent entry, or EEXIST, returned for the create of a taken name.
func IsExist(err error) bool { return errors.Is(err, errExist) || errors.Is(err, syscall.EEXIST) }

// IsInUse reports whether err is the kernel's IPSET_ERR_BUSY or wraps ErrInUse.
func IsInUse(err error) bool { return errors.Is(err, errBusy) || errors.Is(err, ErrInUse) }

// IsHashFull reports whether err is the kernel's IPSET_ERR_HASH_FULL
// (the set holds maxelem entries).
func IsHashFull(err error) bool { return errors.Is(err, errHashFull) }
