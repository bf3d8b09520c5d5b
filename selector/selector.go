package selector

// Selector is a parsed, immutable selector expression. It is a small value that
// is safe to copy and to use from many goroutines at once.
//
// The zero Selector is all(): it matches everything.
type Selector struct {
	p *program
}

// Evaluate reports whether labels satisfy the selector. It does not allocate
// (for Map, *Overlay or any Labels whose Get does not). A nil labels (or a nil
// Map, *Overlay or *LabelSet) counts as a set with no labels.
func (s Selector) Evaluate(labels Labels) bool {
	if s.p == nil {
		return true
	}
	return s.p.evaluate(labels)
}

// String returns the canonical form: every && and || group bracketed, in and
// not in sets sorted and de-duplicated, values in double quotes unless they
// contain one (then single quotes), "!" written without a space, repeated "!"
// collapsed, and the empty selector written all(). Parsing it gives back an
// equal selector, so it can key a cache.
func (s Selector) String() string {
	if s.p == nil {
		return "all()"
	}
	return s.p.String()
}

// UniqueID returns a stable hash of the canonical form. Selectors that differ
// only in whitespace, bracketing, quote style or set order share one ID.
func (s Selector) UniqueID() string {
	if s.p == nil {
		return All().UniqueID()
	}
	return s.p.UniqueID()
}

// Err returns why a selector built with the typed builder cannot be written in
// the selector language, or nil. The error wraps ErrUnrepresentable and says
// which part is at fault: an invalid key (as ValidateKey reports it), a value
// holding both kinds of quote, or && and || groups nested deeper than the 100
// levels of brackets Parse accepts in the canonical form ("brackets nested
// deeper than 100 in canonical form ..."). Operands' errors propagate through
// And, Or and Not; the first one found is kept.
//
// A selector with an error matches nothing (Evaluate, Compiled.Evaluate),
// is not Satisfiable, and fails MarshalText and k8sselector.ToLabelSelector; String
// still writes its best rendering, for logs, but that text does not parse
// back to it. A selector whose Err is nil always has a String that Parse
// accepts and gives back byte for byte. Parse never returns one with an
// error.
func (s Selector) Err() error {
	if s.p == nil {
		return nil
	}
	return s.p.err
}

// Equal reports whether two selectors have the same canonical form.
func (s Selector) Equal(o Selector) bool { return s.String() == o.String() }

// IsAll reports whether the selector is all() (or the empty selector).
func (s Selector) IsAll() bool {
	if s.p == nil {
		return true
	}
	n := &s.p.nodes[s.p.root]
	return n.op == opAll && !n.neg
}

// MarshalText writes the canonical form, so a Selector can be a field of a
// JSON or YAML document.
func (s Selector) MarshalText() ([]byte, error) {
	if err := s.Err(); err != nil {
		return nil, err
	}
	return []byte(s.String()), nil
}

// UnmarshalText parses a selector. On error (a *ParseError wrapping
// ErrInvalid) it sets *s to Nothing(), as Parse returns, so a document whose
// selector does not parse cannot leave a match-everything zero value behind.
func (s *Selector) UnmarshalText(text []byte) error {
	sel, err := Parse(string(text))
	*s = sel
	return err
}
