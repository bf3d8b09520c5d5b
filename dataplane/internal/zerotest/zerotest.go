// Package zerotest checks that a type made by a New constructor refuses to
// work when it was not: every exported method of a nil pointer and of a
// zero value (new(T)) must return an error wrapping the package's sentinel,
// or, for the methods a package documents as working on such values, just
// not panic.
package zerotest

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	ctxType = reflect.TypeFor[context.Context]()
	errType = reflect.TypeFor[error]()
)

// Methods calls every exported method of *T on a nil *T and on new(T)
// with zero arguments (context.Background() for a context, no variadic
// arguments). A method in exempt must not panic; any other must not panic
// and must return, as its last result, an error wrapping sentinel whose
// text says what to make the value with ("make it with New").
func Methods[T any](t *testing.T, sentinel error, exempt ...string) {
	t.Helper()
	typ := reflect.TypeFor[*T]()
	for i := range typ.NumMethod() {
		m := typ.Method(i)
		t.Run(m.Name, func(t *testing.T) {
			for _, recv := range []*T{nil, new(T)} {
				in := []reflect.Value{reflect.ValueOf(recv)}
				for j := 1; j < m.Type.NumIn(); j++ {
					p := m.Type.In(j)
					switch {
					case m.Type.IsVariadic() && j == m.Type.NumIn()-1:
					case p == ctxType:
						in = append(in, reflect.ValueOf(context.Background()))
					default:
						in = append(in, reflect.Zero(p))
					}
				}
				var out []reflect.Value
				require.NotPanics(t, func() { out = m.Func.Call(in) }, "receiver %#v", recv)
				if slices.Contains(exempt, m.Name) {
					continue
				}
				require.NotEmpty(t, out, "%s returns nothing: exempt it if it works on a zero value", m.Name)
				last := out[len(out)-1]
				require.True(t, last.Type() == errType, "%s returns no error: exempt it if it works on a zero value", m.Name)
				err, _ := last.Interface().(error)
				require.ErrorIs(t, err, sentinel, "receiver %#v", recv)
				assert.Contains(t, err.Error(), "make it with ")
			}
		})
	}
}
