package selector

import (
	"errors"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// This file pins Parse's acceptance to Calico's. The table holds each case
// found by comparing with Calico's own package (libcalico-go/lib/selector of
// the release-v3.28 line) and Calico's verdict on it. refParse restates
// Calico's rules in a different style from Parse (regular expressions over a
// token list, as Calico's tokenizer and parser of that line work), and the
// property test and FuzzCalicoSyntax compare the two on generated input.

var k512 = strings.Repeat("k", MaxKeyLength)

// calicoCases: input and whether Calico accepts it. "v3.30+" marks the cases
// that Calico's rewritten tokenizer (v3.30 onwards) rejects: it allows only
// spaces and tabs inside keywords too, and rejects keys over 512 characters
// instead of splitting them.
var calicoCases = []struct {
	in     string
	calico bool
}{
	// Between tokens only spaces and tabs.
	{"", true},
	{" ", true},
	{"\t", true},
	{" \t ", true},
	{"\n", false},
	{"\r\n", false},
	{"\r", false},
	{"\f", false},
	{"\v", false},
	{"\nenv != 'x'", false},
	{"env != 'x'\n", false},
	{"env != 'x' \t", true},
	{"all\n starts with 'a'", false},
	{"a ==\t'x'", true},
	{"a\t==\t'x'", true},
	{"a\n== 'x'", false},
	{"a ==\n'x'", false},
	{"!\nhas(a)", false},
	{"! \thas(a)", true},
	{"a == 'x' &&\nb == 'y'", false},
	{"a == 'x'\r\n|| b == 'y'", false},
	{"(\na == 'x')", false},
	{"(a == 'x'\n)", false},
	{"a in {\n'x'}", false},
	{"a in {'x',\n'y'}", false},
	{"a in\t{ 'x' ,\t'y' }", true},
	{"a not in\n{}", false},
	{"a starts with\n'x'", false},
	// Inside keywords, \s: space, tab, newline, form feed, carriage return.
	{"a not\nin {}", true},       // v3.30+: rejected
	{"a not\r\n\tin {}", true},   // v3.30+: rejected
	{"a starts\nwith 'x'", true}, // v3.30+: rejected
	{"a ends\fwith 'x'", true},   // v3.30+: rejected
	{"has(\nk)", true},           // v3.30+: rejected
	{"has( k\r\n)", true},        // v3.30+: rejected
	{"all(\n)", true},            // v3.30+: rejected
	{"global(\t\n)", true},       // v3.30+: rejected
	{"a not\vin {}", false},      // \v is not \s in Go's regexp
	{"has(\vk)", false},
	{"a notin {}", true}, // no space needed
	{"a startswith 'x'", true},
	{"a endswith'x'", true},
	{"all( x )", false},
	{"has()", false},
	{"has (k)", false}, // "(" must follow at once
	{"all ()", false},
	{"global ()", false},
	{"has == 'x'", true}, // keywords are labels otherwise
	{"all == 'x'", true},
	{"global in {}", true},
	{"has(has)", true},
	{"all()x", false},
	{"a in {}", true}, // sets
	{"a in { }", true},
	{"a in {'x',}", true}, // trailing comma
	{`app in {"web",}`, true},
	{"a in {'x' , }", true},
	{"a in {,}", false},
	{"a not in {,'x'}", false},
	{"a in {'x',,}", false},
	{"a in {'x' 'y'}", false},
	{"a in {'x'", false},
	{"a in 'x'", false},
	{"a in{'x'}", true},
	{"a notin{}", true},
	{"a = 'x'", false}, // operators
	{"a === 'x'", false},
	{"a ! = 'x'", false},
	{"a=='x'", true},
	{"a!='x'", true},
	{"a contains'x'", true},
	{"a containsx 'x'", false},
	{"a inx {}", false},
	{"a in-{}", false},
	{"a In {}", false},
	{"a Contains 'x'", false},
	{"a starts 'x'", false},
	{"a startswith", false},
	{`a == 'say "hi"'`, true}, // strings: no escapes
	{`a == "it's"`, true},
	{"a == \"x\ny\"", true}, // a newline inside a string is text
	{`a == "\"`, true},
	{"a == 'x", false},
	{"a == x", false},
	{`projectcalico.org/namespace == "x"`, true}, // keys
	{`- == "x"`, true},
	{`9 == 'x'`, true},
	{`ü == "x"`, false},
	{`a:b == "x"`, false},
	{`a@b == "x"`, false},
	{k512 + ` == "x"`, true},
	{k512 + `k == "x"`, false},
	{k512 + `in {"x"}`, true},     // the key is cut at 512 and "in" follows; v3.30+: rejected
	{k512 + `contains "x"`, true}, // v3.30+: rejected
	{k512 + `notin{}`, true},      // v3.30+: rejected
	{k512 + `x in {}`, false},
	{"has(" + k512 + ")", true},
	{"has(" + k512 + "k)", false},
	{"!!!has(a)", true}, // structure
	{"!", false},
	{"()", false},
	{"(has(a)", false},
	{"has(a))", false},
	{"has(a) has(b)", false},
	{"&& has(a)", false},
	{"has(a) &", false},
	{"has(a) | has(b)", false},
	{"a == 'x' && !b == 'y'", true},
}

func TestParseMatchesCalico(t *testing.T) {
	for _, tt := range calicoCases {
		name := tt.in
		if len(name) > 40 {
			name = name[:20] + "..." + name[len(name)-20:]
		}
		t.Run(name, func(t *testing.T) {
			_, refErr := refParse(tt.in)
			require.Equal(t, tt.calico, refErr == nil, "the reference disagrees with Calico: %v", refErr)
			s, err := Parse(tt.in)
			if tt.calico {
				require.NoError(t, err)
				assert.Equal(t, s.String(), MustParse(s.String()).String())
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalid)
			var pe *ParseError
			require.True(t, errors.As(err, &pe))
			assert.Positive(t, pe.Column)
			assert.Contains(t, err.Error(), "column")
		})
	}
}

// TestParseMatchesCalicoOnGeneratedInput compares Parse with refParse on
// expressions generated to stress whitespace, commas, quotes and odd
// characters: both accept or both reject, and when both accept they read the
// same keys, operators and values.
func TestParseMatchesCalicoOnGeneratedInput(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 4000
	}
	for _, mild := range []bool{false, true} {
		g := &syntaxGen{mild: mild, r: rand.New(rand.NewPCG(3, 5))}
		accepted := 0
		for range n {
			in := g.next()
			if compareWithReference(t, in) {
				accepted++
			}
		}
		// The generator must reach both sides of the boundary.
		assert.Greater(t, accepted, n/20, "mild=%v", mild)
		assert.Less(t, accepted, n-n/20, "mild=%v", mild)
	}
}

// FuzzCalicoSyntax compares Parse with refParse on arbitrary input.
func FuzzCalicoSyntax(f *testing.F) {
	for _, c := range calicoCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) { compareWithReference(t, in) })
}

// compareWithReference fails t unless Parse and refParse agree on in, and
// reports whether in is valid.
func compareWithReference(t *testing.T, in string) bool {
	t.Helper()
	s, err := Parse(in)
	want, refErr := refParse(in)
	if err != nil && strings.Contains(err.Error(), "nested deeper") {
		return false // tabby's one deliberate limit; Calico has none
	}
	if (err == nil) != (refErr == nil) {
		t.Fatalf("Parse(%q): error %v, but Calico's rules say %v", in, err, refErr)
	}
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) || pe.Column < 1 {
			t.Fatalf("Parse(%q): error %v is not a *ParseError with a column", in, err)
		}
		return false
	}
	// Calico's canonical form differs from tabby's only by tabby's
	// flattening and folding of "!!", which parsing it again applies.
	again, err := Parse(want)
	if err != nil {
		t.Fatalf("Calico's canonical form %q of %q does not parse: %v", want, in, err)
	}
	if again.String() != s.String() {
		t.Fatalf("Parse(%q) = %q; Calico's rules read %q", in, s.String(), want)
	}
	return true
}

// refToken is a token of the reference tokenizer.
type refToken struct{ kind, text string }

const refKey = `[a-zA-Z0-9_./-]{1,512}`

type refPattern struct {
	kind string
	re   *regexp.Regexp
}

// Where an operand may start, and right after a label.
var (
	refOperands = []refPattern{
		{"has", regexp.MustCompile(`^has\(\s*(` + refKey + `)\s*\)`)},
		{"all", regexp.MustCompile(`^all\(\s*\)`)},
		{"global", regexp.MustCompile(`^global\(\s*\)`)},
		{"label", regexp.MustCompile(`^(` + refKey + `)`)},
	}
	refOperators = []refPattern{
		{"contains", regexp.MustCompile(`^contains`)},
		{"starts with", regexp.MustCompile(`^starts\s*with`)},
		{"ends with", regexp.MustCompile(`^ends\s*with`)},
		{"not in", regexp.MustCompile(`^not\s*in\b`)},
		{"in", regexp.MustCompile(`^in\b`)},
	}
	refPunctuation = []string{"==", "!=", "&&", "||", "!", "(", ")", "{", "}", ","}
)

// refTokenize splits s into tokens by Calico's rules, ending with "eof".
func refTokenize(s string) ([]refToken, error) {
	var toks []refToken
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return append(toks, refToken{kind: "eof"}), nil
		}
		if q := s[0]; q == '"' || q == '\'' {
			end := strings.IndexByte(s[1:], q)
			if end < 0 {
				return nil, errors.New("unterminated string")
			}
			toks = append(toks, refToken{"string", s[1 : 1+end]})
			s = s[2+end:]
			continue
		}
		found := false
		for _, p := range refPunctuation {
			if strings.HasPrefix(s, p) {
				toks = append(toks, refToken{kind: p})
				s, found = s[len(p):], true
				break
			}
		}
		patterns := refOperands
		if len(toks) > 0 && toks[len(toks)-1].kind == "label" {
			patterns = refOperators
		}
		for _, p := range patterns {
			if found {
				break
			}
			if m := p.re.FindStringSubmatch(s); m != nil {
				toks = append(toks, refToken{p.kind, m[len(m)-1]})
				s, found = s[len(m[0]):], true
			}
		}
		if !found {
			return nil, errors.New("unexpected characters")
		}
	}
}

// refParse applies Calico's grammar to the tokens and returns Calico's
// canonical form: every group bracketed, sets sorted and de-duplicated.
func refParse(s string) (string, error) {
	toks, err := refTokenize(s)
	if err != nil {
		return "", err
	}
	p := &refParser{toks: toks}
	if p.peek() == "eof" {
		return "all()", nil
	}
	out, ok := p.or()
	if !ok || p.peek() != "eof" {
		return "", errors.New("syntax error")
	}
	return out, nil
}

type refParser struct{ toks []refToken }

func (p *refParser) peek() string { return p.toks[0].kind }

func (p *refParser) next() refToken {
	t := p.toks[0]
	if t.kind != "eof" {
		p.toks = p.toks[1:]
	}
	return t
}

func (p *refParser) or() (string, bool) { return p.list("||", p.and) }

func (p *refParser) and() (string, bool) { return p.list("&&", p.operation) }

func (p *refParser) list(sep string, item func() (string, bool)) (string, bool) {
	var parts []string
	for {
		s, ok := item()
		if !ok {
			return "", false
		}
		parts = append(parts, s)
		if p.peek() != sep {
			break
		}
		p.next()
	}
	if len(parts) == 1 {
		return parts[0], true
	}
	return "(" + strings.Join(parts, " "+sep+" ") + ")", true
}

func (p *refParser) operation() (string, bool) {
	neg := ""
	for p.peek() == "!" {
		p.next()
		if neg == "" {
			neg = "!"
		} else {
			neg = ""
		}
	}
	quote := func(v string) string {
		if strings.Contains(v, `"`) {
			return "'" + v + "'"
		}
		return `"` + v + `"`
	}
	var out string
	switch t := p.next(); t.kind {
	case "has":
		out = "has(" + t.text + ")"
	case "all", "global":
		out = t.kind + "()"
	case "(":
		inner, ok := p.or()
		if !ok || p.next().kind != ")" {
			return "", false
		}
		out = inner
	case "label":
		switch o := p.next(); o.kind {
		case "==", "!=", "contains", "starts with", "ends with":
			v := p.next()
			if v.kind != "string" {
				return "", false
			}
			out = t.text + " " + o.kind + " " + quote(v.text)
		case "in", "not in":
			if p.next().kind != "{" {
				return "", false
			}
			var vals []string
			for p.peek() == "string" {
				vals = append(vals, p.next().text)
				if p.peek() != "," {
					break
				}
				p.next()
			}
			if p.next().kind != "}" {
				return "", false
			}
			slices.Sort(vals)
			vals = slices.Compact(vals)
			for i, v := range vals {
				vals[i] = quote(v)
			}
			out = t.text + " " + o.kind + " {" + strings.Join(vals, ", ") + "}"
		default:
			return "", false
		}
	default:
		return "", false
	}
	return neg + out, true
}

// syntaxGen generates selector text that stresses the tokenizer: odd
// whitespace between tokens and inside keywords, commas, quotes, odd
// characters, long keys, keywords used as keys, and single-byte mutations.
// In mild mode odd choices are rare, so that most output is valid.
type syntaxGen struct {
	mild bool
	r    *rand.Rand
	b    strings.Builder
}

var (
	genSpaces = []string{"", "", " ", " ", " ", "  ", "\t", "\n", "\r", "\f", "\v", " \n ", "\r\n", "\t "}
	genKeys   = []string{"a", "b", "app", "env", "has", "all", "global", "in", "not", "contains", "starts", "ends",
		"with", "x.y/z-1_2", "projectcalico.org/namespace", "_", "-", ".", "/", "9"}
	genValueParts = []string{"", "x", "web", "a'b", `a"b`, "a\nb", ",", "}", "{", "&&", "||", "ü🐱", " ", "\t", "(",
		")", "!", "==", `\`, "\x00", "\xff"}
	genOdd = []string{" ", "\t", "\n", "\r", "\f", "\v", ",", "{", "}", "(", ")", "'", `"`, "!", "&", "|", "=", "ü",
		"\x00", "a", "-"}
)

func (g *syntaxGen) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

// odd is true one time in n, or in 20n in mild mode.
func (g *syntaxGen) odd(n int) bool {
	if g.mild {
		n *= 20
	}
	return g.r.IntN(n) == 0
}

// choose returns a valid spelling, or now and then an invalid one.
func (g *syntaxGen) choose(valid, invalid []string) string {
	if g.odd(4) {
		return g.pick(invalid)
	}
	return g.pick(valid)
}

func (g *syntaxGen) ws() {
	if g.odd(3) {
		g.b.WriteString(g.pick(genSpaces))
	} else if g.r.IntN(2) == 0 {
		g.b.WriteString(" ")
	}
}

func (g *syntaxGen) key() {
	if g.mild && g.r.IntN(20) != 0 {
		g.b.WriteString(g.pick(genKeys))
		return
	}
	switch g.r.IntN(40) {
	case 0:
		g.b.WriteString(strings.Repeat("k", MaxKeyLength-3+g.r.IntN(6)))
	case 1:
		g.b.WriteString(k512 + g.pick([]string{"in", "notin", "contains", "startswith", "x"}))
	case 2:
		g.b.WriteString(g.pick([]string{"", "ü", "a b", "a:b", "a@b", "a,b", "a*"}))
	default:
		g.b.WriteString(g.pick(genKeys))
	}
}

func (g *syntaxGen) value() {
	var v strings.Builder
	for n := g.r.IntN(3); n >= 0; n-- {
		v.WriteString(g.pick(genValueParts))
	}
	s, q := v.String(), g.pick([]string{`"`, `'`})
	switch {
	case g.odd(30):
		g.b.WriteString(q + s) // perhaps unterminated
		return
	case g.odd(40):
		g.b.WriteString(s) // unquoted
		return
	}
	if strings.Contains(s, q) {
		q = map[string]string{`"`: `'`, `'`: `"`}[q]
	}
	g.b.WriteString(q + s + q)
}

// keyword writes a two-word keyword with some whitespace, or none, between.
func (g *syntaxGen) keyword(first, second string) {
	g.b.WriteString(first)
	switch g.r.IntN(4) {
	case 0:
		g.b.WriteString(g.pick(genSpaces))
	case 1:
	default:
		g.b.WriteString(" ")
	}
	g.b.WriteString(second)
}

func (g *syntaxGen) set() {
	g.b.WriteString("{")
	g.ws()
	switch g.r.IntN(12) {
	case 0:
		if g.odd(1) {
			g.b.WriteString(",")
			g.ws()
		}
	case 1:
		g.b.WriteString("}")
		return
	}
	n := g.r.IntN(4)
	for i := range n {
		if i > 0 {
			g.ws()
			g.b.WriteString(g.choose([]string{","}, []string{",,", ""}))
			g.ws()
		}
		g.value()
	}
	if n > 0 && g.r.IntN(3) == 0 {
		g.ws()
		g.b.WriteString(",")
	}
	g.ws()
	if !g.odd(30) {
		g.b.WriteString("}")
	}
}

func (g *syntaxGen) primary(depth int) {
	switch g.r.IntN(14) {
	case 0:
		g.b.WriteString("has")
		if g.odd(8) {
			g.ws()
		}
		g.b.WriteString("(")
		g.ws()
		g.key()
		g.ws()
		g.b.WriteString(")")
	case 1:
		g.b.WriteString(g.choose([]string{"all", "global"}, []string{"All", "al"}))
		if g.odd(8) {
			g.ws()
		}
		g.b.WriteString("(")
		g.ws()
		if g.r.IntN(15) == 0 {
			g.key()
		}
		g.b.WriteString(")")
	case 2, 3:
		if depth > 3 {
			g.primary(depth)
			return
		}
		g.b.WriteString("(")
		g.ws()
		g.or(depth + 1)
		g.ws()
		if !g.odd(30) {
			g.b.WriteString(")")
		}
	default:
		g.key()
		if g.mild {
			g.b.WriteString(" ")
		} else {
			g.ws()
		}
		switch g.r.IntN(10) {
		case 0, 1, 2:
			g.b.WriteString(g.choose([]string{"==", "!="}, []string{"=", "! =", "=!", "==="}))
		case 3:
			g.b.WriteString(g.choose([]string{"contains"}, []string{"containsx", "Contains"}))
		case 4:
			g.keyword("starts", "with")
		case 5:
			g.keyword("ends", "with")
		case 6, 7:
			g.b.WriteString(g.choose([]string{"in"}, []string{"inx", "In"}))
			g.ws()
			g.set()
			return
		default:
			g.keyword("not", "in")
			g.ws()
			g.set()
			return
		}
		g.ws()
		g.value()
	}
}

func (g *syntaxGen) unary(depth int) {
	for n := g.r.IntN(6) - 3; n > 0; n-- {
		g.b.WriteString("!")
		g.ws()
	}
	g.primary(depth)
}

func (g *syntaxGen) list(depth int, sep string, item func(int)) {
	item(depth)
	for n := g.r.IntN(4) - 1; n > 0; n-- {
		g.ws()
		if g.odd(40) {
			g.b.WriteString(sep[:1])
		} else {
			g.b.WriteString(sep)
		}
		g.ws()
		item(depth)
	}
}

func (g *syntaxGen) and(depth int) { g.list(depth, "&&", g.unary) }

func (g *syntaxGen) or(depth int) { g.list(depth, "||", g.and) }

func (g *syntaxGen) next() string {
	g.b.Reset()
	if g.odd(50) {
		for n := g.r.IntN(3); n >= 0; n-- {
			g.b.WriteString(g.pick(genSpaces))
		}
		return g.b.String()
	}
	if g.odd(4) {
		g.b.WriteString(g.pick(genSpaces))
	}
	g.or(0)
	if g.odd(4) {
		g.b.WriteString(g.pick(genSpaces))
	}
	s := g.b.String()
	if g.odd(6) && len(s) > 0 { // mutate one byte
		i := g.r.IntN(len(s))
		switch g.r.IntN(3) {
		case 0:
			s = s[:i] + s[i+1:]
		case 1:
			s = s[:i] + g.pick(genOdd) + s[i:]
		default:
			s = s[:i] + g.pick(genOdd) + s[i+1:]
		}
	}
	return s
}
