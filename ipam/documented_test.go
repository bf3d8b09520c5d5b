package ipam

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDocumentedBehaviour checks what the godoc of IPAMConfig, UpdatePool,
// AssignIP, AssignArgs and IPPool.AllowedUses promises.
func TestDocumentedBehaviour(t *testing.T) {
	tunnelOnly := func(p *IPPool) { p.AllowedUses = []Use{UseTunnel} }
	tests := []struct {
		name string
		run  func(t *testing.T, e *env)
	}{
		{"zero IPAMConfig is not the default", func(t *testing.T, e *env) {
			assert.True(t, DefaultConfig().AutoAllocateBlocks)
			err := e.ipam.SetConfig(e.ctx, IPAMConfig{})
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), "cannot both be false")
			assert.Contains(t, err.Error(), "DefaultConfig()")
			require.NoError(t, e.ipam.SetConfig(e.ctx, IPAMConfig{StrictAffinity: true}), "strict without auto-allocation is allowed")
		}},
		{"SetConfig replaces the whole config", func(t *testing.T, e *env) {
			e.config(IPAMConfig{AutoAllocateBlocks: true, MaxBlocksPerHost: 3})
			cfg, err := e.ipam.Config(e.ctx)
			require.NoError(t, err)
			cfg.StrictAffinity = true
			e.config(cfg)
			got, err := e.ipam.Config(e.ctx)
			require.NoError(t, err)
			assert.Equal(t, IPAMConfig{StrictAffinity: true, AutoAllocateBlocks: true, MaxBlocksPerHost: 3}, got)
		}},
		{"UpdatePool zero fields are defaults", func(t *testing.T, e *env) {
			e.pool("p", "10.0.0.0/16", 24, func(p *IPPool) { p.NodeSelector = "has(x)" })
			_, err := e.ipam.UpdatePool(e.ctx, IPPool{Name: "p", CIDR: pfx("10.0.0.0/16")})
			require.ErrorIs(t, err, ErrInvalid, "zero block size is the default /26, not /24")
			_, err = e.ipam.UpdatePool(e.ctx, IPPool{Name: "p", BlockSize: 24})
			require.ErrorIs(t, err, ErrInvalid, "empty CIDR")
			p, err := e.ipam.Pool(e.ctx, "p")
			require.NoError(t, err)
			p.NATOutgoing = true
			p, err = e.ipam.UpdatePool(e.ctx, p)
			require.NoError(t, err)
			assert.Equal(t, "has(x)", p.NodeSelector, "the recipe keeps the other fields")
		}},
		{"AssignIP in an unclaimed block beyond the limit borrows", func(t *testing.T, e *env) {
			e.pool("p", "10.0.0.0/24", 28)
			e.config(IPAMConfig{AutoAllocateBlocks: true, MaxBlocksPerHost: 1})
			e.mustAssign4("h0", "n")
			ips, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.200")}, Handle: "h1", Node: "n"})
			require.NoError(t, err)
			require.Len(t, ips, 1)
			assert.True(t, ips[0].Borrowed)
			assert.Empty(t, ips[0].BlockAffinity, "the block has no affinity")
		}},
		{"AssignIP in an unclaimed block beyond the limit, strict", func(t *testing.T, e *env) {
			e.pool("p", "10.0.0.0/24", 28)
			e.config(IPAMConfig{StrictAffinity: true, AutoAllocateBlocks: true, MaxBlocksPerHost: 1})
			e.mustAssign4("h0", "n")
			_, err := e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.0.0.200")}, Handle: "h1", Node: "n"})
			require.ErrorIs(t, err, ErrBlockLimit)
		}},
		{"requested pools are tried in the order listed, not by Priority", func(t *testing.T, e *env) {
			e.pool("b", "10.1.0.0/24", 28, func(p *IPPool) { p.Priority = 10 })
			e.pool("c", "10.2.0.0/24", 28)
			r, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num4: 1, IPv4Pools: []string{"c", "b"}})
			require.NoError(t, err)
			assert.Equal(t, "c", r.IPv4[0].Pool)
			r, err = e.ipam.Assign(e.ctx, AssignArgs{Handle: "h2", Node: "m", Num4: 1})
			require.NoError(t, err)
			assert.Equal(t, "b", r.IPv4[0].Pool, "Priority orders automatic assignment")
		}},
		{"tunnel-only pool for a workload", func(t *testing.T, e *env) {
			e.pool("t", "10.3.0.0/24", 28, tunnelOnly)
			_, err := e.ipam.Assign(e.ctx, AssignArgs{Handle: "h", Node: "n", Num4: 1, IPv4Pools: []string{"t"}})
			require.ErrorIs(t, err, ErrNoMatchingPool)
			assert.Contains(t, err.Error(), "none of the requested pools")
			_, err = e.ipam.AssignIP(e.ctx, AssignIPArgs{Addrs: []netip.Addr{addr("10.3.0.5")}, Handle: "h", Node: "n"})
			require.ErrorIs(t, err, ErrNoMatchingPool)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), "does not allow Workload")
			e.requireHolds("h", 0)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newEnv(t)) })
	}
}
