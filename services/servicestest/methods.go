package servicestest

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
)

// AssertMethods asserts that the exported methods of *T are exactly names
// (in any order), so that a test calling each method of T on a zero value
// and on a nil pointer (the backends' TestZeroValue) fails when a method
// is added without being called there.
func AssertMethods[T any](t *testing.T, names ...string) {
	t.Helper()
	typ := reflect.TypeFor[*T]()
	have := make([]string, typ.NumMethod())
	for i := range have {
		have[i] = typ.Method(i).Name
	}
	assert.ElementsMatch(t, names, have, "exported methods of %s", typ)
}
