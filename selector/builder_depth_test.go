package selector

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The message Parse gives for a canonical form nested too deep, which the
// builder's error repeats.
const tooDeep = "brackets nested deeper than 100 in canonical form"

// alternating nests levels groups: And and Or alternate, so nothing
// flattens, and each level adds one bracket to the canonical form.
func alternating(levels int) Selector {
	x := Has("z")
	for i := range levels {
		leaf := Eq(fmt.Sprintf("a%d", i), "x")
		if i%2 == 0 {
			x = And(leaf, x)
		} else {
			x = Or(x, leaf)
		}
	}
	return x
}

// negated nests levels And groups, each negated, so the next And cannot
// splice it in: !(!(... && b == "2") && b == "2").
func negated(levels int) Selector {
	x := Eq("a", "1")
	for range levels {
		x = Not(And(x, Eq("b", "2")))
	}
	return x
}

// methods is alternating written with the method forms.
func methods(levels int) Selector {
	x := Has("z")
	for i := range levels {
		leaf := Eq(fmt.Sprintf("a%d", i), "x")
		if i%2 == 0 {
			x = leaf.And(x)
		} else {
			x = x.Or(leaf)
		}
	}
	return x
}

func rootDepth(s Selector) int { return int(s.p.nodes[s.p.root].depth) }

func TestBuilderDepthLimit(t *testing.T) {
	shapes := []struct {
		name  string
		build func(int) Selector
	}{
		{"alternating", alternating},
		{"negated", negated},
		{"methods", methods},
		{"not wrapping", func(n int) Selector { return Not(alternating(n)) }},
		{"double not", func(n int) Selector { return alternating(n).Not().Not() }},
		// An operand of the root's own operator is spliced in: no level.
		{"flattened into root", func(n int) Selector {
			x := alternating(n) // n odd: the root is an And
			return And(Has("p"), x, And(Has("q"), Has("r")))
		}},
	}
	for _, sh := range shapes {
		for _, levels := range []int{1, 99, 100, 101, 150, 300} {
			if sh.name == "flattened into root" && levels%2 == 0 {
				continue
			}
			t.Run(fmt.Sprintf("%s/%d", sh.name, levels), func(t *testing.T) {
				s := sh.build(levels)
				assert.Equal(t, min(levels, 255), rootDepth(s))
				text := s.String()
				assert.Equal(t, levels, maxBrackets(text), "canonical bracket nesting")
				parsed, perr := Parse(text)
				if levels <= maxDepth {
					require.NoError(t, s.Err())
					require.NoError(t, perr, "the canonical form of a builder tree at or under the limit parses")
					assert.Equal(t, text, parsed.String())
					m := Map{"a": "1", "b": "2", "z": "", "a0": "x"}
					assert.Equal(t, parsed.Evaluate(m), s.Evaluate(m))
					return
				}
				err := s.Err()
				require.ErrorIs(t, err, ErrUnrepresentable)
				require.ErrorContains(t, err, tooDeep)
				require.ErrorContains(t, perr, "brackets nested deeper than 100", "Parse refuses it too")
				assert.False(t, s.Evaluate(Map{"a": "1", "b": "2", "z": "", "a0": "x"}), "a selector with an error matches nothing")
				assert.False(t, s.Satisfiable())
				_, merr := s.MarshalText()
				require.ErrorIs(t, merr, ErrUnrepresentable)
			})
		}
	}
}

// maxBrackets is the bracket nesting of a canonical form whose values hold
// no brackets, not counting has( all( and global(.
func maxBrackets(s string) int {
	d, top := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			if strings.HasSuffix(s[:i], "has") || strings.HasSuffix(s[:i], "all") || strings.HasSuffix(s[:i], "global") {
				i = strings.IndexByte(s[i:], ')') + i
				continue
			}
			d++
			top = max(top, d)
		case ')':
			d--
		}
	}
	return top
}

// And(And(a, b), c) is And(a, b, c): flattening adds no depth, however often
// it is repeated, while a negated or other-operator operand adds one level.
func TestBuilderFlatteningAddsNoDepth(t *testing.T) {
	a, b, c := Has("a"), Has("b"), Has("c")
	tests := []struct {
		name  string
		sel   Selector
		depth int
		want  string
	}{
		{"and of and", And(And(a, b), c), 1, "(has(a) && has(b) && has(c))"},
		{"and of and, right", And(a, And(b, c)), 1, "(has(a) && has(b) && has(c))"},
		{"method chain", a.And(b).And(c), 1, "(has(a) && has(b) && has(c))"},
		{"or of or", Or(Or(a, b), Or(c, a)), 1, "(has(a) || has(b) || has(c) || has(a))"},
		{"and of or", And(Or(a, b), c), 2, "((has(a) || has(b)) && has(c))"},
		{"and of not and", And(Not(And(a, b)), c), 2, "(!(has(a) && has(b)) && has(c))"},
		{"not adds none", Not(And(a, b)), 1, "!(has(a) && has(b))"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.sel.Err())
			assert.Equal(t, tt.depth, rootDepth(tt.sel))
			assert.Equal(t, tt.want, tt.sel.String())
		})
	}

	// Three hundred levels of And into And stay one group.
	x := Has("a")
	for i := range 300 {
		x = And(x, Eq(fmt.Sprintf("k%d", i), "v"))
	}
	require.NoError(t, x.Err())
	assert.Equal(t, 1, rootDepth(x))

	// A tree at the limit takes any number of operands of its root's
	// operator, but one more level of the other is too deep.
	at := alternating(maxDepth) // 100 levels, root Or
	require.NoError(t, Or(at, a, Or(b, c)).Err())
	require.NoError(t, at.Or(a).Err())
	require.ErrorContains(t, And(at, a).Err(), tooDeep)
	require.ErrorContains(t, at.And(a).Err(), tooDeep)
	require.ErrorContains(t, Or(Not(at), a).Err(), tooDeep)
}

// An invalid key found first is the error kept; the depth error does not
// replace it, and it survives further nesting.
func TestBuilderDepthErrorOrder(t *testing.T) {
	deep := alternating(maxDepth + 1)
	bad := Has("a b")
	require.ErrorContains(t, Or(bad, deep).Err(), `label key "a b"`)
	require.ErrorContains(t, Or(deep, bad).Err(), tooDeep)
	require.ErrorContains(t, And(alternating(maxDepth), bad).Err(), `label key "a b"`)
	require.ErrorContains(t, And(Has("x"), deep).And(Has("y")).Err(), tooDeep)
}

// buildFromBytes runs data as a little stack program over the builder, so
// random or fuzzed bytes give random builder trees, many near the depth
// limit: each byte's low three bits pick an instruction, the rest an
// argument.
func buildFromBytes(data []byte) Selector {
	keys := []string{"a", "b", "example.com/c", "has", "all", "in", "not", "global", "contains", "x-y_z.1"}
	vals := []string{"x", "", `q"`, "it's", "a b", "\n", "ü"}
	var stack []Selector
	pop := func() Selector {
		if len(stack) == 0 {
			return Has("a")
		}
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		return s
	}
	for _, c := range data {
		arg := int(c >> 3)
		k, v := keys[arg%len(keys)], vals[arg%len(vals)]
		switch c & 7 {
		case 0:
			leaves := []Selector{Has(k), Eq(k, v), Ne(k, v), In(k, v, "x"), NotIn(k, v), Contains(k, v),
				StartsWith(k, v), EndsWith(k, v), All(), Global(), Nothing(), {}}
			stack = append(stack, leaves[arg%len(leaves)])
		case 1: // And or Or of the top one to four
			n := min(1+arg%4, len(stack))
			ops := append([]Selector(nil), stack[len(stack)-n:]...)
			stack = stack[:len(stack)-n]
			if arg&16 == 0 {
				stack = append(stack, And(ops...))
			} else {
				stack = append(stack, Or(ops...))
			}
		case 2:
			stack = append(stack, pop().Not())
		case 3:
			x, y := pop(), pop()
			if arg&1 == 0 {
				stack = append(stack, y.And(x))
			} else {
				stack = append(stack, y.Or(x, Has(k)))
			}
		case 6: // the top used twice: kept, and as an operand
			x := pop()
			stack = append(stack, x, And(x, Has(k)))
		case 4, 5: // 0 to 31 alternating levels over the top
			x := pop()
			for i := range arg {
				if (i+int(c))%2 == 0 {
					x = And(Eq(k, "v"), x)
				} else {
					x = Or(x, Has(k))
				}
			}
			stack = append(stack, x)
		case 7:
			stack = append(stack, Not(And(pop(), Eq(k, v))))
		}
	}
	return And(stack...)
}

// checkBuilt is the builder's promise: either Err reports why the selector
// cannot be written, or its String parses to the same canonical form and
// evaluates the same. A depth error is reported exactly when Parse refuses
// the canonical form for its nesting.
func checkBuilt(t *testing.T, s Selector) (verdict string) {
	t.Helper()
	text := s.String()
	parsed, perr := Parse(text)
	err := s.Err()
	if err != nil {
		if !strings.Contains(err.Error(), tooDeep) {
			return "unrepresentable" // a key or value; see TestBuilderRejectsUnrepresentable
		}
		if perr == nil || !strings.Contains(perr.Error(), "brackets nested deeper than 100") {
			t.Fatalf("builder reports %v, but Parse(%q) says %v", err, text, perr)
		}
		if s.Evaluate(Map{}) {
			t.Fatal("a selector with an error matched")
		}
		return "too deep"
	}
	if perr != nil {
		t.Fatalf("builder reports no error, but Parse(%q): %v", text, perr)
	}
	if parsed.String() != text {
		t.Fatalf("canonical form changed:\n%q\n%q", text, parsed.String())
	}
	for _, m := range []Map{{}, {"a": "x", "has": ""}, {"b": `q"`, "in": "ü", "example.com/c": "x"}} {
		if parsed.Evaluate(m) != s.Evaluate(m) {
			t.Fatalf("%q: built and parsed disagree on %v", text, m)
		}
	}
	return "round trip"
}

func TestBuilderRoundTripsOrReportsDepth(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	iters := 1000
	if testing.Short() {
		iters = 250
	}
	seen := map[string]int{}
	for range iters {
		data := make([]byte, 1+rng.IntN(40))
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		s := buildFromBytes(data)
		if rng.IntN(2) == 0 {
			// Bring half of them to within 5 levels of the limit: a
			// negated group is never spliced in, so each level adds one.
			for range maxDepth - 5 + rng.IntN(11) - rootDepth(s) {
				if rng.IntN(2) == 0 {
					s = Not(And(s, Has("b")))
				} else {
					s = Or(Has("a"), s.Not())
				}
			}
		}
		seen[checkBuilt(t, s)]++
		if d := rootDepth(s); d >= maxDepth-5 && d <= maxDepth+5 {
			seen["within 5 of the limit"]++
		}
	}
	t.Log(seen)
	// The generator must exercise both sides of the limit.
	assert.Greater(t, seen["too deep"], iters/10, "too few trees past the limit")
	assert.Greater(t, seen["round trip"], iters/10, "too few trees within it")
	assert.Greater(t, seen["within 5 of the limit"], iters/4, "too few trees near it")
}

func FuzzBuilder(f *testing.F) {
	for _, s := range []string{"", "\x00", "\x00\x00\x01", "\xfc\xfc\xfc\xfc", "\x00\xfc\xfc\xfc\xfd\xff", "\x08\x10\x09\x02\x03\x07"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 200 {
			return // deep enough: 200 bytes reach past the depth limit
		}
		checkBuilt(t, buildFromBytes(data))
	})
}
