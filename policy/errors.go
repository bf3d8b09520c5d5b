package policy

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors, for errors.Is.
var (
	// ErrInvalid is wrapped by every validation error: every
	// *ValidationError (from Validate, Resolve, FromK8s, Decode and
	// NewPolicySet) and every invalid Flow.
	ErrInvalid = errors.New("invalid")
	// ErrDecode is wrapped, besides ErrInvalid, by the problems Decode finds
	// in the form of its input: malformed YAML or JSON, a document that is
	// not a mapping, an unknown apiVersion or kind, an unknown field or a
	// value of the wrong type.
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
	// ErrNoProtocol: a Flow has no protocol (Protocol is zero).
	ErrNoProtocol = errors.New("no protocol")
)

// FieldError is one problem with one field of one resource.
type FieldError struct {
	// Document is the position of the YAML or JSON document in Decode's
	// input, counting from 1 as printed; 0 when the problem was not found
	// by Decode.
	Document int
	// Kind is the resource kind (NetworkPolicy, WorkloadEndpoint, Flow,
	// ...); empty when a decoded document has no known kind.
	Kind string
	// Name is "namespace/name" or "name"; empty when not known.
	Name string
	// Field is the path of the field from the root of the resource (from
	// the root of the document for Decode, so items[i]. precedes it in a
	// list), such as spec.ingress[2].source.selector; empty when the
	// problem is with the whole document.
	Field string
	// Detail says what is wrong.
	Detail string
	// Err is the underlying error when there is one: a *selector.ParseError
	// (which wraps selector.ErrInvalid) for a bad selector, ErrDecode,
	// ErrDuplicate, ErrUnknownTier, ErrNoProtocol; nil otherwise.
	Err error
}

// Error reads "document 2: NetworkPolicy ns1/p: spec.order: must not be
// negative, got -1", leaving out the parts that are not known.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Document > 0 {
		b.WriteString("document ")
		b.WriteString(strconv.Itoa(e.Document))
		b.WriteString(": ")
	}
	if e.Kind != "" {
		b.WriteString(e.Kind)
		if e.Name != "" {
			b.WriteString(" ")
			b.WriteString(e.Name)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Detail)
	return b.String()
}

// Unwrap returns the underlying error, so that errors.Is and errors.As see
// selector errors and sentinels through a FieldError.
func (e *FieldError) Unwrap() error { return e.Err }

// ValidationError lists every problem found at once: in one resource (from
// Validate, Resolve, FromK8s), in every document of an input (from Decode),
// or in one flow. It wraps ErrInvalid and every FieldError, so errors.Is
// and errors.As also find what the FieldErrors wrap (selector.ErrInvalid, a
// *selector.ParseError, ErrDecode, ...).
type ValidationError struct {
	Errors []*FieldError // in the order found; never empty
}

// Error prints one problem per line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, f := range e.Errors {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Unwrap returns ErrInvalid and every FieldError.
func (e *ValidationError) Unwrap() []error {
	out := make([]error, 0, len(e.Errors)+1)
	out = append(out, ErrInvalid)
	for _, f := range e.Errors {
		out = append(out, f)
	}
	return out
}

// path builds field paths without allocating until an error is reported:
// it is a value on the stack, its parent the caller's path (nothing keeps
// a path after the call that made it returns). The zero path is no path
// at all (a document's top level).
type path struct {
	parent *path
	name   string
	index  int // -1 when this element is a field, not an index
}

func root(name string) path { return path{name: name, index: -1} }

func (p path) isZero() bool { return p.parent == nil && p.name == "" && p.index == 0 }

func (p path) field(name string) path { return path{parent: &p, name: name, index: -1} }

func (p path) at(i int) path { return path{parent: &p, index: i} }

func (p path) String() string {
	if p.isZero() {
		return ""
	}
	var b strings.Builder
	p.write(&b)
	return b.String()
}

// write appends the path, root first.
func (p *path) write(b *strings.Builder) {
	if p.parent != nil {
		p.parent.write(b)
	}
	if p.index >= 0 {
		b.WriteString("[")
		b.WriteString(strconv.Itoa(p.index))
		b.WriteString("]")
		return
	}
	if b.Len() > 0 {
		b.WriteString(".")
	}
	b.WriteString(p.name)
}

// errs collects field errors.
type errs struct{ list []*FieldError }

func (e *errs) add(p path, detail string) {
	e.list = append(e.list, &FieldError{Field: p.String(), Detail: detail})
}

// addErr records err, keeping it for errors.Is and errors.As.
func (e *errs) addErr(p path, err error) {
	e.list = append(e.list, &FieldError{Field: p.String(), Detail: err.Error(), Err: err})
}

func (e *errs) result(kind, name string) error {
	if len(e.list) == 0 {
		return nil
	}
	for _, f := range e.list {
		f.Kind, f.Name = kind, name
	}
	return &ValidationError{Errors: e.list}
}

// resourceError is one problem of a resource, caused by err.
func resourceError(kind, name, field string, err error) error {
	return &ValidationError{Errors: []*FieldError{{Kind: kind, Name: name, Field: field, Detail: err.Error(), Err: err}}}
}

// joinValidation puts the problems of several errors into one
// *ValidationError; an error that is not a *ValidationError becomes one
// problem of its own.
func joinValidation(all []error) error {
	if len(all) == 0 {
		return nil
	}
	out := &ValidationError{}
	for _, err := range all {
		var ve *ValidationError
		if errors.As(err, &ve) {
			out.Errors = append(out.Errors, ve.Errors...)
			continue
		}
		out.Errors = append(out.Errors, &FieldError{Detail: err.Error(), Err: err})
	}
	return out
}
