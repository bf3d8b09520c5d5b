package selector

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEvaluate(t *testing.T) {
	web := Map{"app": "web", "tier": "frontend", "projectcalico.org/namespace": "prod", "emoji": "ünï🐱", "q": `say "hi"`, "sq": "it's"}
	none := Map{}
	tests := []struct {
		sel      string
		web, nil bool // result on web's labels and on no labels at all
	}{
		{``, true, true},
		{`   `, true, true},
		{`all()`, true, true},
		{`!all()`, false, false},
		{`global()`, true, true},
		{`app == "web"`, true, false},
		{`app == 'web'`, true, false},
		{`app == "db"`, false, false},
		{`app != "db"`, true, true}, // != is true when the label is absent
		{`app != "web"`, false, true},
		{`!(app == "web")`, false, true},
		{`app in {"web", "db"}`, true, false},
		{`app in {}`, false, false},
		{`app not in {"web"}`, false, true},
		{`app not in {}`, true, true},
		{`has(app)`, true, false},
		{`!has(app)`, false, true},
		{`has( app )`, true, false},
		{`!!has(app)`, true, false},
		{`!!!has(app)`, false, true},
		{`app contains "e"`, true, false},
		{`app contains ""`, true, false},
		{`app contains"e"`, true, false},
		{`app starts with "we"`, true, false},
		{`app starts  with "eb"`, false, false},
		{`app ends with "eb"`, true, false},
		{`app ends	with "we"`, false, false},
		{`projectcalico.org/namespace == "prod"`, true, false},
		{`emoji == "ünï🐱"`, true, false},
		{`emoji contains "🐱"`, true, false},
		{`q == 'say "hi"'`, true, false},
		{`sq == "it's"`, true, false},
		{`app == "web" && tier == "frontend"`, true, false},
		{`app == "db" || tier == "frontend"`, true, false},
		{`app == "db" || tier == "backend" || !has(x)`, true, true},
		{`app == "db" && tier == "frontend" || has(emoji)`, true, false}, // && binds tighter
		{`app == "db" && (tier == "frontend" || has(emoji))`, false, false},
		{`!(app == "db" || tier == "x")`, true, true},
		{`((((app == "web"))))`, true, false},
		{"app == \"web\"\t&& has(tier)", true, false},
		{"app starts\nwith \"we\" && has(\r\ntier\n)", true, false}, // \s inside keywords, as in Calico
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			s, err := Parse(tt.sel)
			require.NoError(t, err)
			assert.Equal(t, tt.web, s.Evaluate(web), "on web labels")
			assert.Equal(t, tt.nil, s.Evaluate(none), "on no labels")
			// The canonical form must mean the same thing.
			c, err := Parse(s.String())
			require.NoError(t, err, "canonical %q", s.String())
			assert.Equal(t, tt.web, c.Evaluate(web))
			assert.Equal(t, tt.nil, c.Evaluate(none))
		})
	}
}

func TestZeroSelectorIsAll(t *testing.T) {
	var s Selector
	assert.True(t, s.Evaluate(Map{}))
	assert.Equal(t, "all()", s.String())
	assert.Equal(t, All().UniqueID(), s.UniqueID())
	assert.True(t, s.IsAll())
	assert.False(t, MustParse("!all()").IsAll())
}

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, `all()`},
		{`all()`, `all()`},
		{`all( )`, `all()`},
		{`global()`, `global()`},
		{`a=='b'`, `a == "b"`},
		{`a == 'x"y'`, `a == 'x"y'`},
		{`a == "it's"`, `a == "it's"`},
		{`a!="b"`, `a != "b"`},
		{`a in {'z','a',"m", "a"}`, `a in {"a", "m", "z"}`},
		{`a not in{ }`, `a not in {}`},
		{`a   not   in {"x"}`, `a not in {"x"}`},
		{`has(  k/x.y-z_1 )`, `has(k/x.y-z_1)`},
		{`! has(a)`, `!has(a)`},
		{`!!has(a)`, `has(a)`},
		{`!!!a == "b"`, `!a == "b"`},
		{`!(!(has(a)))`, `has(a)`},
		{`a contains "x"`, `a contains "x"`},
		{`a starts   with 'x'`, `a starts with "x"`},
		{`a ends with "x"`, `a ends with "x"`},
		{`a == "1" && b == "2"`, `(a == "1" && b == "2")`},
		{`(a == "1") && ((b == "2"))`, `(a == "1" && b == "2")`},
		{`(a == "1" && b == "2") && c == "3"`, `(a == "1" && b == "2" && c == "3")`},
		{`a == "1" && (b == "2" && c == "3")`, `(a == "1" && b == "2" && c == "3")`},
		{`a == "1" || b == "2" && c == "3"`, `(a == "1" || (b == "2" && c == "3"))`},
		{`!(a == "1" && b == "2") && c == "3"`, `(!(a == "1" && b == "2") && c == "3")`},
		{`!!(a == "1" && b == "2") && c == "3"`, `(a == "1" && b == "2" && c == "3")`},
		{`(a == "1" || b == "2") || (c == "3" || d == "4")`, `(a == "1" || b == "2" || c == "3" || d == "4")`},
		{`has == "x"`, `has == "x"`}, // labels may be called has/all/global
		{`all == "x" && global in {"y"}`, `(all == "x" && global in {"y"})`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := Parse(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, s.String())
			again, err := Parse(s.String())
			require.NoError(t, err)
			assert.Equal(t, tt.want, again.String(), "canonical form is a fixed point")
			assert.Equal(t, s.UniqueID(), again.UniqueID())
		})
	}
}

func TestEquivalentSpellingsShareID(t *testing.T) {
	groups := [][]string{
		{`a == "x" && b in {"1","2"}`, `(a=='x')&&(b in {'2', '1', "2"})`, "  a ==  \"x\"\t&&\t b in{\"1\",\"2\",} "},
		{``, `all()`, ` `},
		{`!has(a)`, `!!!has(a)`, `!(has(a))`, `! ( ( has( a ) ) )`},
	}
	for _, g := range groups {
		first := MustParse(g[0])
		for _, s := range g[1:] {
			other := MustParse(s)
			assert.Equal(t, first.String(), other.String(), s)
			assert.Equal(t, first.UniqueID(), other.UniqueID(), s)
			assert.True(t, first.Equal(other))
		}
	}
	assert.NotEqual(t, MustParse(`a == "x"`).UniqueID(), MustParse(`a == "y"`).UniqueID())
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`a == "x" & b == "y"`, `unexpected "&" at column 10, expected "&&"`},
		{`a == "x" | b == "y"`, `unexpected "|" at column 10, expected "||"`},
		{`a = "x"`, `unexpected "=" at column 3, expected "=="`},
		{`a == x`, `unexpected "x" at column 6, expected a quoted string`},
		{`a == "x`, `unterminated string at column 6`},
		{`a`, `unexpected end of input at column 2, expected an operator (==, !=, in, not in, contains, starts with, ends with)`},
		{`a foo "x"`, `unexpected "foo" at column 3, expected an operator (==, !=, in, not in, contains, starts with, ends with)`},
		{`a starts "x"`, `unexpected "\"" at column 10, expected "with" after "starts"`},
		{`a not "x"`, `unexpected "\"" at column 7, expected "in" after "not"`},
		{`a in "x"`, `unexpected "\"" at column 6, expected "{"`},
		{`a in {"x" "y"}`, `unexpected "\"" at column 11, expected "," or "}"`},
		{`a in {"x",,}`, `unexpected "," at column 11, expected a quoted string or "}"`},
		{`a in {,}`, `unexpected "," at column 7, expected a quoted string or "}"`},
		{"a == \"x\"\n&& b == \"y\"", `unexpected "\n" (only spaces and tabs may separate tokens) at column 9, expected "&&", "||" or end of input`},
		{`has (a)`, `unexpected "(" at column 5, expected an operator (==, !=, in, not in, contains, starts with, ends with)`},
		{`(a == "x"`, `unclosed "(" at column 1`},
		{`(a == "x" b`, `unexpected "b" at column 11, expected "&&", "||" or ")"`},
		{`a == "x")`, `unexpected ")" at column 9, expected "&&", "||" or end of input`},
		{`&& a == "x"`, `unexpected "&" at column 1, expected a label, "has(", "all()", "global()", "!" or "("`},
		{`a == "x" &&`, `unexpected end of input at column 12, expected a label, "has(", "all()", "global()", "!" or "("`},
		{`has(a`, `unexpected end of input at column 6, expected ")"`},
		{`has()`, `unexpected ")" at column 5, expected a label`},
		{`all(x)`, `unexpected "x" at column 5, expected ")"`},
		{`foo(x)`, `unexpected "foo(" at column 1, expected a label followed by an operator, "has(", "all()" or "global()"`},
		{`ünï == "x"`, `unexpected "ü" at column 1, expected a label, "has(", "all()", "global()", "!" or "("`},
		{`a == "ü" && ü`, `unexpected "ü" at column 13, expected a label, "has(", "all()", "global()", "!" or "("`},
		{`a == "x" b == "y"`, `unexpected "b" at column 10, expected "&&", "||" or end of input`},
		{`!`, `unexpected end of input at column 2, expected a label, "has(", "all()", "global()", "!" or "("`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := Parse(tt.in)
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
			assert.ErrorIs(t, err, ErrInvalid)
			var pe *ParseError
			require.True(t, errors.As(err, &pe))
			assert.Equal(t, tt.in, pe.Input)
		})
	}
}

func TestParseLimits(t *testing.T) {
	long := make([]byte, MaxKeyLength)
	for i := range long {
		long[i] = 'k'
	}
	_, err := Parse(string(long) + ` == "x"`)
	require.NoError(t, err)
	_, err = Parse(string(long) + `k == "x"`)
	require.EqualError(t, err, "label key longer than 512 characters at column 1")

	deep := ""
	for range maxDepth + 1 {
		deep += "("
	}
	_, err = Parse(deep + `a == "x"`)
	require.ErrorContains(t, err, "brackets nested deeper than 100")

	ok := ""
	for range maxDepth {
		ok += "("
	}
	closeAll := ""
	for range maxDepth {
		closeAll += ")"
	}
	s, err := Parse(ok + `a == "x"` + closeAll)
	require.NoError(t, err)
	assert.Equal(t, `a == "x"`, s.String())

	// Many "!" are collapsed without recursion.
	bangs := make([]byte, 100001)
	for i := range bangs {
		bangs[i] = '!'
	}
	s, err = Parse(string(bangs) + `has(a)`)
	require.NoError(t, err)
	assert.Equal(t, `!has(a)`, s.String())
}

func TestMustParsePanicsOnError(t *testing.T) {
	assert.Panics(t, func() { MustParse("a ==") })
	assert.NotPanics(t, func() { MustParse(`a == "b"`) })
}

func TestOverlay(t *testing.T) {
	pod := Map{"app": "web", "env": "pod-wins"}
	ns := Map{"env": "prod", "team": "a"}
	l := &Overlay{Top: pod, Bottom: ns}
	assert.True(t, MustParse(`app == "web" && team == "a" && env == "pod-wins"`).Evaluate(l))
	assert.False(t, MustParse(`env == "prod"`).Evaluate(l))
	assert.True(t, MustParse(`!has(x)`).Evaluate(&Overlay{}))
}

func TestTextMarshalling(t *testing.T) {
	var s Selector
	require.NoError(t, s.UnmarshalText([]byte(`b == 'x' && a in {"2","1"}`)))
	out, err := s.MarshalText()
	require.NoError(t, err)
	assert.Equal(t, `(b == "x" && a in {"1", "2"})`, string(out))
	require.ErrorIs(t, s.UnmarshalText([]byte(`b ==`)), ErrInvalid)
	_, err = Eq("a", `'"`).MarshalText()
	require.ErrorIs(t, err, ErrUnrepresentable)
}

func TestEvaluateDoesNotAllocate(t *testing.T) {
	s := MustParse(`(app == "web" || app in {"a","b","c","d","e","f","g","h","i","j"}) && !has(x) && tier starts with "f"`)
	m := Map{"app": "j", "tier": "front"}
	o := &Overlay{Top: m, Bottom: Map{"ns": "x"}}
	allocs := testing.AllocsPerRun(100, func() {
		if !s.Evaluate(m) || !s.Evaluate(o) {
			t.Fatal("expected a match")
		}
	})
	assert.Zero(t, allocs)
}

// Operator precedence makes groups the canonical form brackets: each bracket
// written in a || b && (...) is two levels there. Parse bounds those levels
// too, so the canonical form of whatever it accepts parses again.
func TestParseCanonicalDepthBounded(t *testing.T) {
	nested := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `a%d == "x" || b%d == "y" && (`, i, i)
		}
		b.WriteString(`z == "1"` + strings.Repeat(")", n))
		return b.String()
	}
	// 2n levels in canonical form: n = 50 gives 100, n = 51 gives 102.
	s, err := Parse(nested(50))
	require.NoError(t, err)
	again, err := Parse(s.String())
	require.NoError(t, err)
	assert.Equal(t, s.String(), again.String())

	_, err = Parse(nested(51))
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "brackets nested deeper than 100 in canonical form")

	// Exactly 100 levels, a0 || (a1 && (a2 || (...: the root || group and
	// 99 bracketed groups whose operators alternate, so nothing flattens.
	var b strings.Builder
	for i := range 99 {
		op := "||"
		if i%2 == 1 {
			op = "&&"
		}
		fmt.Fprintf(&b, `a%d == "x" %s (`, i, op)
	}
	b.WriteString(`y == "1" && z == "2"` + strings.Repeat(")", 99))
	s, err = Parse(b.String())
	require.NoError(t, err)
	_, err = Parse(s.String())
	require.NoError(t, err)
}
