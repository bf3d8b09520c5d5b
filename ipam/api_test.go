package ipam

import (
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tabbynet/tabby/selector"
)

// TestSelectorErrorsKeepTheirType: a bad nodeSelector matches ipam's
// ErrInvalid and the selector package's *ParseError and ErrInvalid, on
// create and on update.
func TestSelectorErrorsKeepTheirType(t *testing.T) {
	e := newEnv(t)
	for _, op := range []func(IPPool) (IPPool, error){
		func(p IPPool) (IPPool, error) { return e.ipam.CreatePool(e.ctx, p) },
		func(p IPPool) (IPPool, error) { return e.ipam.UpdatePool(e.ctx, p) },
	} {
		_, err := op(IPPool{Name: "p", CIDR: pfx("10.0.0.0/16"), NodeSelector: "a =="})
		require.ErrorIs(t, err, ErrInvalid)
		require.ErrorIs(t, err, selector.ErrInvalid)
		var pe *selector.ParseError
		require.ErrorAs(t, err, &pe)
		assert.Contains(t, err.Error(), `pool "p": nodeSelector`)
	}
	// A bad selector already in the store (written by something else).
	_, err := e.s.Create(e.ctx, keyPools, []byte(`[{"name":"p","cidr":"10.0.0.0/16","blockSize":26,"nodeSelector":"a =="}]`))
	require.NoError(t, err)
	_, err = e.assign4("h", "n")
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorIs(t, err, selector.ErrInvalid)
	var pe *selector.ParseError
	require.ErrorAs(t, err, &pe)
}

func TestNewRejectsBadOptions(t *testing.T) {
	s := newMemory(t)
	for name, o := range map[string]Option{
		"nil logger":   WithLogger(nil),
		"nil clock":    WithClock(nil),
		"zero retries": WithMaxRetries(0),
		"nil option":   nil,
	} {
		a, err := New(s, o)
		require.ErrorIs(t, err, ErrInvalid, name)
		assert.Nil(t, a)
	}
	_, err := New(nil)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = New(s, WithLogger(slog.Default()), WithClock(time.Now), WithMaxRetries(1))
	require.NoError(t, err)
}

// TestListings: Allocations and Handles list what Check sees, at one
// revision.
func TestListings(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, e *env) {
		e.pool("p", "10.0.0.0/24", 28)
		own := e.mustAssign4("k8s-pod-network.a", "n")
		borrowed, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{own.Addr.Next()}, Handle: "k8s-pod-network.b", Node: "m", Pod: "web"})
		require.NoError(t, err)

		seq, rev, err := e.ipam.Allocations(e.ctx)
		require.NoError(t, err)
		assert.Positive(t, rev)
		var got []Allocation
		for al, err := range seq {
			require.NoError(t, err)
			got = append(got, al)
		}
		require.Len(t, got, 2)
		assert.Equal(t, own.Addr, got[0].Addr)
		assert.Equal(t, "p", got[0].Pool)
		assert.Equal(t, "n", got[0].Affinity)
		assert.False(t, got[0].Borrowed)
		assert.Equal(t, borrowed[0].Addr, got[1].Addr)
		assert.True(t, got[1].Borrowed)
		assert.Equal(t, "web", got[1].Attribute.Pod)
		for range seq { // stopping early is fine
			break
		}

		hseq, hrev, err := e.ipam.Handles(e.ctx)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, hrev, rev)
		var handles []HandleInfo
		for h, err := range hseq {
			require.NoError(t, err)
			handles = append(handles, h)
		}
		require.Len(t, handles, 2)
		assert.Equal(t, "k8s-pod-network.a", handles[0].Handle)
		assert.Equal(t, map[netip.Prefix]int{own.Block: 1}, handles[0].Blocks)

		r := e.checkClean()
		assert.Equal(t, hrev, r.Revision, "nothing written since")
	})
}

// TestListingsReportCorruption: a corrupt block or handle record ends the
// sequence with an error rather than a panic.
func TestListingsReportCorruption(t *testing.T) {
	e := newEnv(t)
	e.pool("p", "10.0.0.0/24", 28)
	_, err := e.s.Create(e.ctx, keyBlocks+"10.0.0.0-28", []byte{0xff})
	require.NoError(t, err)
	_, err = e.s.Create(e.ctx, handleKey("h"), []byte{0xff})
	require.NoError(t, err)
	seq, _, err := e.ipam.Allocations(e.ctx)
	require.NoError(t, err)
	var errs []error
	for _, err := range seq {
		errs = append(errs, err)
	}
	require.Len(t, errs, 1)
	require.Error(t, errs[0])
	hseq, _, err := e.ipam.Handles(e.ctx)
	require.NoError(t, err)
	errs = nil
	for _, err := range hseq {
		errs = append(errs, err)
	}
	require.Len(t, errs, 1)
	require.True(t, errors.Is(errs[0], errCorruptHandle))
}
