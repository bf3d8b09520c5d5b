package selector

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks that no input panics, that the canonical form of anything
// that parses parses again to the same canonical form (a fixed point), and
// that the canonical form evaluates the same as the original.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		``, `all()`, `!all()`, `global()`, `a == "b"`, `a != 'b'`, `a in {"x", 'y'}`, `a not in {}`,
		`has(a)`, `!has(a)`, `a contains "x"`, `a starts with "x"`, `a ends  with "x"`,
		`(a == "1" || b == "2") && !(c in {"3"})`, `!!(has(a) && has(b)) && has(c)`,
		`projectcalico.org/namespace == 'it"s'`, `a == "ü🐱"`, `((((has(x))))))`, `a & b`, `a == "x`,
		`a in {"x",}`, `a in {,}`, "a not\nin {}", "has(\r\nk )", "a startswith'x'", "\n", "a == 'x'\n", "has (k)",
		`has(a) && !has(a)`, `a == "b" && a in {"b"} && a != "b"`, `a == "x" && a == "y"`, `a not in {"b"} && has(a)`,
		// Precedence-implied groups deepen the canonical form: 51 brackets
		// here are 102 levels there.
		strings.Repeat(`a == "x" || b == "y" && (`, 51) + `z == "1"` + strings.Repeat(")", 51),
		strings.Repeat(`a == "x" || b == "y" && (`, 50) + `z == "1"` + strings.Repeat(")", 50),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			return
		}
		c := s.String()
		again, err := Parse(c)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", c, in, err)
		}
		if again.String() != c {
			t.Fatalf("canonical form is not a fixed point: %q -> %q -> %q", in, c, again.String())
		}
		if again.UniqueID() != s.UniqueID() {
			t.Fatalf("UniqueID differs for %q", in)
		}
		for _, l := range []Map{{}, {"a": "b"}, {"a": "x", "b": "2"}, {"c": "3", "has": "x"}} {
			if s.Evaluate(l) != again.Evaluate(l) {
				t.Fatalf("%q and its canonical form %q disagree on %v", in, c, l)
			}
		}
		_ = s.LabelRestrictions()
		satisfiable := s.Satisfiable()
		ml, reqs, err := s.Requirements()
		if err == nil && !satisfiable {
			t.Fatalf("%q matches nothing, yet converts to the requirements %v %v", in, ml, reqs)
		}
		if errors.Is(err, ErrMatchesNothing) {
			for _, l := range []Map{{}, {"a": "b"}, {"a": "x", "b": "2"}, {"c": "3", "has": "x"}} {
				if s.Evaluate(l) {
					t.Fatalf("Requirements says %q matches nothing, but it matches %v", in, l)
				}
			}
		}
	})
}
