package policy

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors, for errors.Is.
var (
	// ErrInvalid is wrapped by every validation error.
	ErrInvalid = errors.New("invalid")
	// ErrDecode is wrapped by errors from Decode for input that is not a
	// well-formed resource document.
	ErrDecode = errors.New("cannot decode")
	// ErrUnknownTier: a policy names a tier the set does not hold.
	ErrUnknownTier = errors.New("unknown tier")
	// ErrDuplicate: two resources of one kind share a name.
	ErrDuplicate = errors.New("duplicate resource")
	// ErrUnknownEndpoint: a flow or query names an endpoint the set does not hold.
	ErrUnknownEndpoint = errors.New("unknown endpoint")
	// ErrUnknownPolicy: a query names a policy the set does not hold.
	ErrUnknownPolicy = errors.New("unknown policy")
	// ErrNoAddress: a flow end has no usable IP address.
	ErrNoAddress = errors.New("no address")
)

// FieldError is one problem with one field, named by its path from the
// resource root, such as spec.ingress[2].source.selector.
type FieldError struct {
	Field  string
	Detail string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

// ValidationError lists every problem found in one resource. It wraps
// ErrInvalid.
type ValidationError struct {
	Kind   string // resource kind, e.g. NetworkPolicy
	Name   string // namespace/name or name
	Fields []*FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind)
	if e.Name != "" {
		b.WriteString(" ")
		b.WriteString(e.Name)
	}
	b.WriteString(" is invalid: ")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is(err, ErrInvalid) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// path builds field paths without allocating until an error is reported.
type path struct {
	parent *path
	name   string
	index  int // -1 when this element is a field, not an index
}

func root(name string) *path { return &path{name: name, index: -1} }

func (p *path) field(name string) *path { return &path{parent: p, name: name, index: -1} }

func (p *path) at(i int) *path { return &path{parent: p, index: i} }

func (p *path) String() string {
	if p == nil {
		return ""
	}
	var parts []*path
	for q := p; q != nil; q = q.parent {
		parts = append(parts, q)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		q := parts[i]
		if q.index >= 0 {
			b.WriteString("[")
			b.WriteString(strconv.Itoa(q.index))
			b.WriteString("]")
			continue
		}
		if b.Len() > 0 {
			b.WriteString(".")
		}
		b.WriteString(q.name)
	}
	return b.String()
}

// errs collects field errors.
type errs struct{ list []*FieldError }

func (e *errs) add(p *path, detail string) {
	e.list = append(e.list, &FieldError{Field: p.String(), Detail: detail})
}

func (e *errs) result(kind, name string) error {
	if len(e.list) == 0 {
		return nil
	}
	return &ValidationError{Kind: kind, Name: name, Fields: e.list}
}
