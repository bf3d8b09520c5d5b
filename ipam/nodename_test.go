package ipam

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNodeQueriesRefuseBadNode: the node agent's per-node listings take
// a node name; an empty one must not list every node's blocks (the agent
// would advertise and blackhole them all).
func TestNodeQueriesRefuseBadNode(t *testing.T) {
	for _, node := range []string{"", "a/b", "a b"} {
		t.Run(node, func(t *testing.T) {
			e := newEnv(t)
			e.pool("p", "10.0.0.0/24", 28)
			e.mustAssign4("h1", "n1")
			e.mustAssign4("h2", "n2")
			blocks, _, err := e.ipam.AffineBlocks(e.ctx, node)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Empty(t, blocks)
			addrs, _, err := e.ipam.BorrowedAddrs(e.ctx, node)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Empty(t, addrs)
			_, err = e.ipam.ReleaseEmptyBlocks(e.ctx, node+"x/")
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
}
