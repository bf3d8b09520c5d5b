package iptables

import (
	"errors"
	"fmt"
)

// Sentinel errors, for errors.Is.
var (
	// ErrInvalidRule: a rule, chain name or match that cannot be rendered
	// (wrong family, missing protocol for a port match, unsafe characters...).
	ErrInvalidRule = errors.New("invalid iptables rule")
	// ErrInvalidConfig: a Config New cannot use (unknown family or
	// backend, bad chain or hash prefixes, a chain prefix overlapping a
	// well-known program's, see Config.ChainPrefix), or an IPTables that
	// New did not make (a zero value or nil).
	ErrInvalidConfig = errors.New("invalid iptables config")
	// ErrUnknownTable: a table other than filter, nat, mangle and raw
	// given to SetChain, SetChains, ReplaceChains or SetHook. It wraps
	// ErrInvalidRule (errors.Is holds for both).
	ErrUnknownTable = fmt.Errorf("%w: unknown table", ErrInvalidRule)
	// ErrNotOwned: a valid chain name without the owner's prefix (or the
	// prefix alone), or a kernel chain given where an owned chain is
	// expected (and the reverse). A name that is no valid chain name at
	// all (empty, longer than MaxChainNameLen, a character other than
	// printable ASCII without quotes and backslashes, a leading '-' or
	// '!') is ErrInvalidRule instead.
	ErrNotOwned = errors.New("chain not owned by tabby")
	// ErrParse: iptables-save output that cannot be parsed.
	ErrParse = errors.New("cannot parse iptables-save output")
	// ErrRestore: iptables-restore rejected the transaction; the error is
	// a *RestoreError.
	ErrRestore = errors.New("iptables-restore failed")
	// ErrNoBackend: neither the legacy nor the nft binaries can be run.
	ErrNoBackend = errors.New("no iptables backend available")
)

// RestoreError reports a failed restore transaction: the table holding
// the failing line, and later ones, kept the rules they had (each table
// section commits atomically). Line is the 1-based line of the input that
// iptables-restore named (or, for nft's missing jump targets, the rule
// jumping there), 0 when it named none.
type RestoreError struct {
	Command string
	Line    int
	// Text is line Line of the input ("" when Line is 0).
	Text   string
	Stderr string
	Err    error
}

func (e *RestoreError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d failed: %q: %s", e.Command, e.Line, e.Text, e.Stderr)
	}
	return fmt.Sprintf("%s: %v: %s", e.Command, e.Err, e.Stderr)
}

// Unwrap returns ErrRestore and the exec error.
func (e *RestoreError) Unwrap() []error { return []error{ErrRestore, e.Err} }
