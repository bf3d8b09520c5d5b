package cni

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tabbynet/tabby/dataplane/netlink"
	"github.com/tabbynet/tabby/ipam"
	"github.com/tabbynet/tabby/ipam/store"
)

// Plugin-specific CNI error codes (the spec reserves 100 and up for
// plugins).
const (
	// CodePoolExhausted: no free address in the pools considered (or the
	// node's block limit or strict affinity forbids taking one).
	CodePoolExhausted uint = 100
	// CodeAddressInUse: a requested address (ipAddrs, IP=) is allocated to
	// another handle, or reserved.
	CodeAddressInUse uint = 101
)

// ErrNetnsMissing: ADD or CHECK named a network namespace that does not
// exist (CNI code 3, container unknown: nothing was set up, so no DEL is
// needed).
var ErrNetnsMissing = errors.New("network namespace does not exist")

// ErrIncompatibleVersion: the configuration's cniVersion is not one the
// plugins speak (Supported), or is too old for the verb (CHECK needs
// 0.4.0, GC and STATUS 1.1.0): CNI code 1, as skel answers. ParseConfig's
// and ParseIPAMConfig's version errors wrap it and ErrInvalidConfig.
var ErrIncompatibleVersion = errors.New("incompatible CNI version")

// ErrRollbackIncomplete: a failed ADD could not undo all it did (the
// address release or the interface removal failed too); the error joins
// the ADD's failure and this one. Its code is the failure's, except that
// code 3 (container unknown), which tells the runtime no DEL is needed,
// becomes 999: what the rollback left needs the DEL that cleans it up.
var ErrRollbackIncomplete = errors.New("rollback of the failed ADD incomplete")

// Code returns the CNI error code for err:
//
//	1    ErrIncompatibleVersion
//	6    config that does not decode: not JSON, or a value of the wrong type (*json.SyntaxError, *json.UnmarshalTypeError)
//	7    ErrInvalidConfig, ipam.ErrInvalid, ErrUnknownPool, ErrNotInPool, ErrOverlap
//	4    ErrInvalidArgs
//	3    ErrNetnsMissing, netlink.ErrNetnsNotFound (999 joined with ErrRollbackIncomplete)
//	8    ErrOwnNetns (CNI_NETNS is the plugin's own namespace)
//	11   ErrDatastore, ErrAnnotationsUnavailable, ipam.ErrTooManyConflicts, ipam.ErrOutcomeUnknown, store.ErrConflict, store.ErrClosed, context deadline or cancellation (the work was not done; a retry may succeed)
//	100  ipam.ErrPoolExhausted, ErrBlockLimit, ErrStrictAffinity, ErrNoMatchingPool
//	101  ipam.ErrAddressInUse
//	999  anything else
//
// A *types.Error keeps its own code.
func Code(err error) uint {
	var te *types.Error
	var se *json.SyntaxError
	var ue *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		return te.Code
	case errors.As(err, &se), errors.As(err, &ue):
		return types.ErrDecodingFailure
	case errors.Is(err, ErrIncompatibleVersion):
		return types.ErrIncompatibleCNIVersion
	case errors.Is(err, ErrInvalidConfig), errors.Is(err, ipam.ErrInvalid), errors.Is(err, ipam.ErrUnknownPool),
		errors.Is(err, ipam.ErrNotInPool), errors.Is(err, ipam.ErrOverlap):
		return types.ErrInvalidNetworkConfig
	case errors.Is(err, ErrInvalidArgs):
		return types.ErrInvalidEnvironmentVariables
	case errors.Is(err, ErrNetnsMissing), errors.Is(err, netlink.ErrNetnsNotFound):
		if errors.Is(err, ErrRollbackIncomplete) {
			return types.ErrInternal
		}
		return types.ErrUnknownContainer
	case errors.Is(err, ErrOwnNetns):
		return types.ErrInvalidNetNS
	case errors.Is(err, ipam.ErrPoolExhausted), errors.Is(err, ipam.ErrBlockLimit),
		errors.Is(err, ipam.ErrStrictAffinity), errors.Is(err, ipam.ErrNoMatchingPool):
		return CodePoolExhausted
	case errors.Is(err, ipam.ErrAddressInUse):
		return CodeAddressInUse
	case errors.Is(err, ErrDatastore), errors.Is(err, ErrAnnotationsUnavailable), errors.Is(err, ipam.ErrTooManyConflicts), errors.Is(err, store.ErrClosed),
		errors.Is(err, store.ErrConflict), errors.Is(err, ipam.ErrOutcomeUnknown),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return types.ErrTryAgainLater
	}
	return types.ErrInternal
}

// AsCNIError turns err into the *types.Error a runtime reads (nil for nil).
func AsCNIError(err error) *types.Error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return types.NewError(Code(err), err.Error(), "")
}

func mkdirFor(path string) error {
	return os.MkdirAll(filepath.Dir(path), 0o700)
}

// errLimitedConnectivity is STATUS's code 51 (SPEC.md, STATUS): the
// plugin cannot serve ADD and existing containers may have limited
// connectivity; libcni's types has no name for it.
const errLimitedConnectivity uint = 51
