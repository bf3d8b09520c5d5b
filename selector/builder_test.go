package selector

import (
	"strings"
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
