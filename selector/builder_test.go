package selector

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuilder(t *testing.T) {
	tests := []struct {
		name string
		sel  Selector
		want string
	}{
		{"eq and has", Eq("app", "web").And(Has("env")), `(app == "web" && has(env))`},
		{"value with double quote", Eq("a", `say "hi"`), `a == 'say "hi"'`},
		{"value with single quote", Eq("a", "it's"), `a == "it's"`},
		{"in sorts", In("a", "z", "b", "b"), `a in {"b", "z"}`},
		{"not in", NotIn("a"), `a not in {}`},
		{"or of ands", Or(And(Eq("a", "1"), Eq("b", "2")), Ne("c", "3")), `((a == "1" && b == "2") || c != "3")`},
		{"and flattens", And(And(Has("a"), Has("b")), Has("c")), `(has(a) && has(b) && has(c))`},
		{"not", Not(Has("a")), `!has(a)`},
		{"not not", Has("a").Not().Not(), `has(a)`},
		{"not group", Not(Or(Has("a"), Has("b"))), `!(has(a) || has(b))`},
		{"strings", And(Contains("a", "x"), StartsWith("b", "y"), EndsWith("c", "z")), `(a contains "x" && b starts with "y" && c ends with "z")`},
		{"empty and", And(), `all()`},
		{"empty or", Or(), `!all()`},
		{"single", And(Has("a")), `has(a)`},
		{"global", Global(), `global()`},
		{"zero value operand", And(Selector{}, Has("a")), `(all() && has(a))`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.sel.Err())
			assert.Equal(t, tt.want, tt.sel.String())
			parsed, err := Parse(tt.sel.String())
			require.NoError(t, err)
			assert.Equal(t, tt.want, parsed.String())
		})
	}
}

func TestBuilderDoesNotShareState(t *testing.T) {
	a := Has("a")
	b := a.Not()
	c := And(a, b)
	assert.Equal(t, "has(a)", a.String())
	assert.Equal(t, "!has(a)", b.String())
	assert.Equal(t, "(has(a) && !has(a))", c.String())
	vals := []string{"z", "a"}
	in := In("k", vals...)
	assert.Equal(t, []string{"z", "a"}, vals, "In must not reorder the caller's slice")
	assert.Equal(t, `k in {"a", "z"}`, in.String())
}

func TestBuilderRejectsUnrepresentable(t *testing.T) {
	for name, s := range map[string]Selector{
		"both quotes":        Eq("a", `'"`),
		"both quotes in set": In("a", "ok", `'"`),
		"empty key":          Has(""),
		"bad key char":       Eq("a b", "x"),
		"propagates":         And(Has("ok"), Eq("a=b", "x")),
		"through not":        Not(Eq("a=b", "x")),
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, s.Err(), ErrUnrepresentable)
			assert.False(t, s.Evaluate(Map{"a": `'"`, "ok": ""}), "an invalid selector matches nothing")
			assert.False(t, s.Satisfiable())
		})
	}
}

func TestValidateKeyNamesTheCharacter(t *testing.T) {
	tests := []struct{ key, want string }{
		{"a", ""},
		{"example.com/a_b-c.9", ""},
		{strings.Repeat("k", MaxKeyLength), ""},
		{"", "empty label key"},
		{strings.Repeat("k", MaxKeyLength+1), "label key longer than 512 characters"},
		{"aé", `label key "aé" has 'é' at column 2`},
		{"éa b", `has 'é' at column 1`},
		{"ü🐱x y", `has 'ü' at column 1`},
		{"ab🐱", `has '🐱' at column 3`},
		{"a b", `has ' ' at column 2`},
		{"a=b", `has '=' at column 2`},
		{"a\nb", `has '\n' at column 2`},
		{"a\xffb", `has '\xff' at column 2`},
		{"é\xff", `has 'é' at column 1`},
		{"a\uFFFD", `has '�' at column 2`},
		{strings.Repeat("é", MaxKeyLength), `has 'é' at column 1`},
		{strings.Repeat("k", 300) + "é", `has 'é' at column 301`},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			err := ValidateKey(tt.key)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrUnrepresentable)
			assert.Contains(t, err.Error(), tt.want)
			// The builder reports the same.
			require.ErrorIs(t, Has(tt.key).Err(), ErrUnrepresentable)
			assert.Contains(t, Eq(tt.key, "v").Err().Error(), tt.want)
		})
	}
}

// A builder result may extend an operand's arrays in place (program.extend):
// operands used again, by later calls or by several goroutines at once, must
// give the same selectors as fresh ones, and must not change.
func TestBuilderSharedOperands(t *testing.T) {
	shapes := map[string]func() Selector{
		"or root":  func() Selector { return alternating(6) },
		"and root": func() Selector { return alternating(7) },
		"negated":  func() Selector { return negated(4) },
		"leaf":     func() Selector { return Eq("a", "1") },
		"parsed":   func() Selector { return MustParse(`(a == "1" || has(b)) && c != "2"`) },
	}
	uses := []struct {
		name string
		use  func(x, y Selector) Selector
	}{
		{"and", func(x, y Selector) Selector { return And(x, Has("p")) }},
		{"and after", func(x, y Selector) Selector { return And(Has("p"), x) }},
		{"or", func(x, y Selector) Selector { return Or(x, Has("q"), y) }},
		{"self", func(x, y Selector) Selector { return And(x, x) }},
		{"not", func(x, y Selector) Selector { return Not(x) }},
		{"not and", func(x, y Selector) Selector { return Not(And(x, y)) }},
		{"method and", func(x, y Selector) Selector { return x.And(y, Has("r")) }},
	}
	labels := []Map{{}, {"a": "1", "b": "2"}, {"a": "1", "c": "2", "z": "", "a0": "x", "p": ""}, {"b": "2", "q": "", "r": ""}}
	for name, shape := range shapes {
		t.Run(name, func(t *testing.T) {
			x, y := shape(), Has("y")
			want := x.String()
			wantKeys := x.Keys()
			var got []Selector
			for _, u := range uses {
				got = append(got, u.use(x, y)) // every use after the first copies
			}
			for i, u := range uses {
				ref := u.use(shape(), Has("y")) // fresh operands
				require.Equal(t, ref.String(), got[i].String(), u.name)
				require.Equal(t, ref.Err(), got[i].Err(), u.name)
				for _, m := range labels {
					require.Equal(t, ref.Evaluate(m), got[i].Evaluate(m), "%s on %v", u.name, m)
				}
			}
			require.Equal(t, want, shape().String())
			require.Equal(t, want, x.String(), "the shared operand did not change")
			require.Equal(t, wantKeys, x.Keys())
		})
	}
}

func TestBuilderConcurrentExtension(t *testing.T) {
	base := alternating(20)
	want := make([]string, 16)
	for i := range want {
		want[i] = And(alternating(20), Eq("k", fmt.Sprint(i))).String()
	}
	got := make([]Selector, len(want))
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i] = And(base, Eq("k", fmt.Sprint(i))) })
	}
	wg.Wait()
	for i := range got {
		assert.Equal(t, want[i], got[i].String())
	}
	assert.Equal(t, alternating(20).String(), base.String())
}

// Building n levels one at a time allocates O(n) bytes, not O(n^2): ten
// times the levels allocate about ten times the bytes (measured 8.4; 101
// when each call copied its operands). Allocated bytes, not timings.
func TestBuilderLinearInDepth(t *testing.T) {
	bytes := func(levels int) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := alternating(levels)
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(s)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := bytes(100), bytes(1000)
	ratio := float64(large) / float64(small)
	t.Logf("100 levels: %d B, 1000 levels: %d B, ratio %.1f", small, large, ratio)
	assert.Less(t, ratio, 20.0, "quadratic in depth")
}
