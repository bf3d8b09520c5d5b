package selector

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every error Parse returns, and by those of
// k8sselector.FromLabelSelector and k8sselector.FromK8sSelector, for
// errors.Is.
var ErrInvalid = errors.New("invalid selector")

// MaxKeyLength is the longest label key a selector may name, as in Calico.
const MaxKeyLength = 512

// maxDepth bounds bracket nesting so hostile input cannot exhaust the stack.
// It bounds both the brackets written in the input and the nesting of &&
// and || groups in the tree, which is the bracket nesting of the canonical
// form (every group is bracketed there, including the ones operator
// precedence implies), so that the canonical form of any selector Parse
// accepts parses again.
const maxDepth = 100

// canonicalTooDeep is why a tree is refused whose && and || groups nest
// deeper than maxDepth: Parse reports it with a column, the builder in
// Selector.Err.
func canonicalTooDeep() string {
	return fmt.Sprintf("brackets nested deeper than %d in canonical form (where every && and || group is bracketed)", maxDepth)
}

// ParseError says where a selector stops making sense and what would have.
type ParseError struct {
	Input    string // the selector as given
	Column   int    // 1-based column, counted in characters (runes)
	Found    string // what was there, quoted, or "end of input"
	Expected string // what the grammar allows at that point; may be empty
	Reason   string // used instead of Found/Expected when set
}

func (e *ParseError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("%s at column %d", e.Reason, e.Column)
	}
	if e.Expected == "" {
		return fmt.Sprintf("unexpected %s at column %d", e.Found, e.Column)
	}
	return fmt.Sprintf("unexpected %s at column %d, expected %s", e.Found, e.Column, e.Expected)
}

// Unwrap lets errors.Is(err, ErrInvalid) hold.
func (e *ParseError) Unwrap() error { return ErrInvalid }

// Parse reads a selector in Calico's syntax. The empty string (or only
// whitespace) is all(). A malformed selector returns a *ParseError naming the
// column (it wraps ErrInvalid) together with Nothing(), so a caller that
// ignores the error gets a selector that matches nothing, never the zero
// Selector (which is all()).
func Parse(s string) (Selector, error) {
	p := parser{in: s, prog: &program{}}
	// n operators join n+1 operations into at most n groups, so 2n+1 nodes
	// always suffice and the slice never grows.
	ops := strings.Count(s, "&&") + strings.Count(s, "||")
	p.prog.nodes = make([]node, 0, 1+2*ops)
	if ops > 0 {
		// Each node is some group's child at most once.
		p.prog.kids = make([]int32, 0, 1+2*ops)
		p.stack = make([]int32, 0, 1+ops)
	}
	p.skipSpace()
	if p.pos == len(p.in) {
		p.prog.nodes = append(p.prog.nodes, node{op: opAll})
		return Selector{p: p.prog}, nil
	}
	root, err := p.parseOr(0)
	if err != nil {
		return Nothing(), err
	}
	if p.pos != len(p.in) {
		return Nothing(), p.afterOperand(`"&&", "||" or end of input`)
	}
	p.prog.root = root
	return Selector{p: p.prog}, nil
}

// MustParse is Parse for selectors known to be valid, such as constants in
// tests; it panics on error.
func MustParse(s string) Selector {
	sel, err := Parse(s)
	if err != nil {
		panic(fmt.Sprintf("selector.MustParse(%q): %v", s, err))
	}
	return sel
}

type parser struct {
	in    string
	pos   int
	prog  *program
	stack []int32 // operands of the && and || lists being parsed
}

// Whitespace follows Calico's tokenizer exactly. Between tokens only spaces
// and tabs may stand. Inside the keywords that Calico matches with regular
// expressions ("starts with", "ends with", "not in", "has( k )", "all( )",
// "global( )") any run of \s may stand, which in Go's regexp syntax is space,
// tab, newline, form feed and carriage return (not vertical tab).
func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func isKeywordSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == '/' || c == '-'
}

// isWordChar is the class of the regexp \b that ends Calico's "in" and
// "not in": [0-9A-Za-z_].
func isWordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// skipSpace skips the blanks that may separate two tokens.
func (p *parser) skipSpace() {
	for p.pos < len(p.in) && isBlank(p.in[p.pos]) {
		p.pos++
	}
}

// skipKeywordSpace skips the whitespace allowed inside a keyword.
func (p *parser) skipKeywordSpace() {
	for p.pos < len(p.in) && isKeywordSpace(p.in[p.pos]) {
		p.pos++
	}
}

// eat consumes tok (after optional blanks) if it is next.
func (p *parser) eat(tok string) bool {
	p.skipSpace()
	if strings.HasPrefix(p.in[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

func (p *parser) errAt(pos int, found, expected string) error {
	return &ParseError{
		Input:    p.in,
		Column:   utf8.RuneCountInString(p.in[:pos]) + 1,
		Found:    found,
		Expected: expected,
	}
}

func (p *parser) reason(pos int, reason string) error {
	return &ParseError{Input: p.in, Column: utf8.RuneCountInString(p.in[:pos]) + 1, Reason: reason}
}

// unexpected reports what stands at the current position.
func (p *parser) unexpected(expected string) error {
	p.skipSpace()
	return p.errAt(p.pos, p.describe(), expected)
}

// afterOperand reports what stands where an operand has ended; a lone "&" or
// "|" is most likely half an operator.
func (p *parser) afterOperand(expected string) error {
	p.skipSpace()
	if p.pos < len(p.in) {
		switch p.in[p.pos] {
		case '&':
			expected = `"&&"`
		case '|':
			expected = `"||"`
		}
	}
	return p.unexpected(expected)
}

// describe quotes the token at the current position for an error message.
func (p *parser) describe() string {
	if p.pos >= len(p.in) {
		return "end of input"
	}
	rest := p.in[p.pos:]
	if isKeyChar(rest[0]) {
		end := 0
		for end < len(rest) && end < 40 && isKeyChar(rest[end]) {
			end++
		}
		return fmt.Sprintf("%q", rest[:end])
	}
	r, _ := utf8.DecodeRuneInString(rest)
	if r == '\n' || r == '\r' || r == '\f' || r == '\v' {
		// Calico's tokenizer separates tokens by spaces and tabs only.
		return fmt.Sprintf("%q (only spaces and tabs may separate tokens)", string(r))
	}
	return fmt.Sprintf("%q", string(r))
}

// list parses operands separated by sep and joins them into one node of kind
// o, splicing in operands that are themselves un-negated o groups, so that
// bracketing does not change the tree.
func (p *parser) list(depth int, o op) (int32, error) {
	sep := "&&"
	if o == opOr {
		sep = "||"
	}
	operand := func() (int32, error) {
		if o == opOr {
			return p.parseAnd(depth)
		}
		return p.parseUnary(depth)
	}
	first, err := operand()
	if err != nil || !p.eat(sep) {
		return first, err // one operand: no group
	}
	base := len(p.stack)
	defer func() { p.stack = p.stack[:base] }()
	push := func(i int32) {
		if n := &p.prog.nodes[i]; n.op == o && !n.neg {
			p.stack = append(p.stack, p.prog.kidsOf(n)...)
		} else {
			p.stack = append(p.stack, i)
		}
	}
	push(first)
	for {
		i, err := operand()
		if err != nil {
			return 0, err
		}
		push(i)
		if !p.eat(sep) {
			break
		}
	}
	ops := p.stack[base:]
	d := groupDepth(p.prog.nodes, ops)
	if d > maxDepth {
		return 0, p.reason(p.pos, canonicalTooDeep())
	}
	start := int32(len(p.prog.kids))
	p.prog.kids = append(p.prog.kids, ops...)
	p.prog.nodes = append(p.prog.nodes, node{op: o, first: start, n: int32(len(ops)), depth: uint8(d)})
	return int32(len(p.prog.nodes) - 1), nil
}

// groupDepth is the depth of a group whose children are kids: one more than
// its deepest child.
func groupDepth(nodes []node, kids []int32) int {
	d := 0
	for _, k := range kids {
		d = max(d, int(nodes[k].depth))
	}
	return d + 1
}

func (p *parser) parseOr(depth int) (int32, error) {
	return p.list(depth, opOr)
}

func (p *parser) parseAnd(depth int) (int32, error) {
	return p.list(depth, opAnd)
}

// parseUnary parses any number of "!" then one operation or bracketed group.
func (p *parser) parseUnary(depth int) (int32, error) {
	neg := false
	for {
		p.skipSpace()
		if p.pos < len(p.in) && p.in[p.pos] == '!' {
			neg = !neg
			p.pos++
			continue
		}
		break
	}
	i, err := p.parsePrimary(depth)
	if err != nil {
		return 0, err
	}
	if neg {
		p.prog.nodes[i].neg = !p.prog.nodes[i].neg
	}
	return i, nil
}

const expectOperand = `a label, "has(", "all()", "global()", "!" or "("`

func (p *parser) add(n node) (int32, error) {
	p.prog.nodes = append(p.prog.nodes, n)
	return int32(len(p.prog.nodes) - 1), nil
}

func (p *parser) parsePrimary(depth int) (int32, error) {
	p.skipSpace()
	if p.pos >= len(p.in) {
		return 0, p.unexpected(expectOperand)
	}
	if p.in[p.pos] == '(' {
		if depth >= maxDepth {
			return 0, p.reason(p.pos, fmt.Sprintf("brackets nested deeper than %d", maxDepth))
		}
		open := p.pos
		p.pos++
		i, err := p.parseOr(depth + 1)
		if err != nil {
			return 0, err
		}
		if !p.eat(")") {
			if p.pos >= len(p.in) {
				return 0, p.reason(open, `unclosed "("`)
			}
			return 0, p.afterOperand(`"&&", "||" or ")"`)
		}
		return i, nil
	}
	start := p.pos
	key, long := p.key()
	if key == "" {
		return 0, p.unexpected(expectOperand)
	}
	// has(k), all() and global() are keywords only when "(" follows at once,
	// as in Calico; otherwise has, all and global are ordinary labels.
	if !long && p.pos < len(p.in) && p.in[p.pos] == '(' {
		switch key {
		case "has":
			p.pos++
			p.skipKeywordSpace()
			k, long := p.key()
			if k == "" {
				return 0, p.unexpected("a label")
			}
			if long {
				return 0, p.reason(p.pos-MaxKeyLength, fmt.Sprintf("label key longer than %d characters", MaxKeyLength))
			}
			p.skipKeywordSpace()
			if !p.word(")") {
				return 0, p.unexpected(`")"`)
			}
			return p.add(node{op: opHas, key: k})
		case "all", "global":
			p.pos++
			p.skipKeywordSpace()
			if !p.word(")") {
				return 0, p.unexpected(`")"`)
			}
			if key == "all" {
				return p.add(node{op: opAll})
			}
			return p.add(node{op: opGlobal})
		}
		return 0, p.errAt(start, fmt.Sprintf("%q", key+"("), `a label followed by an operator, "has(", "all()" or "global()"`)
	}
	return p.parseComparison(start, key, long)
}

// key reads a label key at the current position: up to MaxKeyLength
// characters of [a-zA-Z0-9_./-]. Like Calico's tokenizer, which matches
// [a-zA-Z0-9_./-]{1,512}, it stops after MaxKeyLength characters even when
// more follow; long reports that they do.
func (p *parser) key() (key string, long bool) {
	start := p.pos
	for p.pos < len(p.in) && isKeyChar(p.in[p.pos]) {
		if p.pos-start == MaxKeyLength {
			return p.in[start:p.pos], true
		}
		p.pos++
	}
	return p.in[start:p.pos], false
}

// word consumes w if it is next, with nothing skipped before it.
func (p *parser) word(w string) bool {
	if strings.HasPrefix(p.in[p.pos:], w) {
		p.pos += len(w)
		return true
	}
	return false
}

// wordBoundary reports whether the current position ends a word in the
// sense of the regexp \b that follows Calico's "in" and "not in".
func (p *parser) wordBoundary() bool {
	return p.pos >= len(p.in) || !isWordChar(p.in[p.pos])
}

const expectOperator = `an operator (==, !=, in, not in, contains, starts with, ends with)`

// operator reads a comparison operator at the current position, trying them
// in the order Calico's tokenizer does: ==, !=, contains, starts with,
// ends with, not in, in. It consumes nothing when none matches.
func (p *parser) operator() (op, bool) {
	switch {
	case p.word("=="):
		return opEq, true
	case p.word("!="):
		return opNe, true
	case p.word("contains"):
		return opContains, true
	}
	save := p.pos
	for _, m := range [...]struct {
		first, second string
		o             op
		boundary      bool
	}{
		{"starts", "with", opStartsWith, false},
		{"ends", "with", opEndsWith, false},
		{"not", "in", opNotIn, true},
	} {
		if p.word(m.first) {
			p.skipKeywordSpace()
			if p.word(m.second) && (!m.boundary || p.wordBoundary()) {
				return m.o, true
			}
		}
		p.pos = save
	}
	if p.word("in") && p.wordBoundary() {
		return opIn, true
	}
	p.pos = save
	return 0, false
}

// parseComparison parses the operator and operand after the label key that
// starts at start. long says the key was cut at MaxKeyLength characters;
// Calico then reads the rest as the next token, so an operator may follow
// with no space.
func (p *parser) parseComparison(start int, key string, long bool) (int32, error) {
	p.skipSpace()
	o, ok := p.operator()
	if !ok {
		if long {
			return 0, p.reason(start, fmt.Sprintf("label key longer than %d characters", MaxKeyLength))
		}
		// Name the half-written operator when there is one.
		for _, m := range [...]struct{ first, want string }{
			{"starts", `"with" after "starts"`},
			{"ends", `"with" after "ends"`},
			{"not", `"in" after "not"`},
		} {
			if p.word(m.first) {
				p.skipKeywordSpace()
				return 0, p.unexpected(m.want)
			}
		}
		if strings.HasPrefix(p.in[p.pos:], "=") {
			return 0, p.errAt(p.pos, `"="`, `"=="`)
		}
		return 0, p.unexpected(expectOperator)
	}
	if o == opIn || o == opNotIn {
		return p.parseSet(key, o)
	}
	v, err := p.str()
	if err != nil {
		return 0, err
	}
	return p.add(node{op: o, key: key, val: v})
}

// str reads a single- or double-quoted string. There are no escapes: the
// string ends at the next quote of the kind that opened it.
func (p *parser) str() (string, error) {
	p.skipSpace()
	if p.pos >= len(p.in) || (p.in[p.pos] != '"' && p.in[p.pos] != '\'') {
		return "", p.unexpected("a quoted string")
	}
	q := p.in[p.pos]
	end := strings.IndexByte(p.in[p.pos+1:], q)
	if end < 0 {
		return "", p.reason(p.pos, "unterminated string")
	}
	s := p.in[p.pos+1 : p.pos+1+end]
	p.pos += end + 2
	return s, nil
}

// parseSet parses a set literal as Calico does: "{", then quoted strings
// each followed by an optional ",", then "}". So {} and a trailing comma,
// {"a",}, are allowed, while {,} and {"a",,} are not.
func (p *parser) parseSet(key string, o op) (int32, error) {
	if !p.eat("{") {
		return 0, p.unexpected(`"{"`)
	}
	var vals []string
	if end := strings.IndexByte(p.in[p.pos:], '}'); end > 0 {
		vals = make([]string, 0, 1+strings.Count(p.in[p.pos:p.pos+end], ","))
	}
	expected := `a quoted string or "}"`
	for {
		p.skipSpace()
		if p.pos >= len(p.in) || (p.in[p.pos] != '"' && p.in[p.pos] != '\'') {
			break
		}
		v, err := p.str()
		if err != nil {
			return 0, err
		}
		vals = append(vals, v)
		if !p.eat(",") {
			expected = `"," or "}"`
			break
		}
		expected = `a quoted string or "}"`
	}
	if !p.eat("}") {
		return 0, p.unexpected(expected)
	}
	return p.add(node{op: o, key: key, set: newValueSet(vals)})
}

// normaliseSet sorts and de-duplicates set in place.
func normaliseSet(set []string) []string {
	if len(set) < 2 {
		return set
	}
	if !slices.IsSorted(set) {
		slices.Sort(set)
	}
	return slices.Compact(set)
}
