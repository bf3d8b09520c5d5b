package index

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLabelList(t *testing.T) {
	for _, n := range []int{0, 1, linearMax, linearMax + 1, 40} {
		t.Run(fmt.Sprint(n, " labels"), func(t *testing.T) {
			m := map[string]string{}
			for i := range n {
				m[fmt.Sprintf("k%02d", n-i)] = fmt.Sprint("v", i) // inserted out of order
			}
			l := labelList(nil).setFrom(m)
			assert.Len(t, l, n)
			assert.True(t, l.equal(m))
			for k, v := range m {
				got, ok := l.get(k)
				assert.True(t, ok, k)
				assert.Equal(t, v, got, k)
			}
			for _, k := range []string{"", "k", "k00", "k99", "k01x", "z"} {
				if _, in := m[k]; !in {
					_, ok := l.get(k)
					assert.False(t, ok, k)
				}
			}
			if n > 0 {
				other := map[string]string{}
				for k, v := range m {
					other[k] = v
				}
				other["k01"] += "x"
				assert.False(t, l.equal(other), "a changed value")
				other["extra"] = ""
				assert.False(t, l.equal(other), "an added label")
			}

			// Relabelling with no more labels reuses the storage.
			allocs := testing.AllocsPerRun(10, func() { l = l.setFrom(m) })
			assert.Zero(t, allocs)
			assert.True(t, l.equal(m))
		})
	}
}
