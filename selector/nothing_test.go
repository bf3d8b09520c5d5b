package selector

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestErrorsComeWithNothing checks that Parse and UnmarshalText pair an error
// with Nothing(), so a caller that ignores the error gets a selector matching
// nothing rather than the zero Selector (all()). k8sselector's test checks
// its conversions the same way.
func TestErrorsComeWithNothing(t *testing.T) {
	tests := []struct {
		name string
		call func() (Selector, error)
	}{
		{"Parse", func() (Selector, error) { return Parse(`a ==`) }},
		{"Parse trailing input", func() (Selector, error) { return Parse(`has(a) b`) }},
		{"UnmarshalText", func() (Selector, error) {
			s := All()
			err := s.UnmarshalText([]byte(`a ==`))
			return s, err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.call()
			require.ErrorIs(t, err, ErrInvalid)
			assert.Equal(t, `!all()`, s.String())
			for _, l := range []Map{{}, {"a": "x"}, {"a": "1", "b": "y"}} {
				assert.False(t, s.Evaluate(l), "%v", l)
			}
		})
	}
}
