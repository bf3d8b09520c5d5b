package iptables

import (
	"fmt"
	"strings"
)

// Save is a parsed iptables-save (or ip6tables-save) dump.
type Save struct {
	// Tables in dump order.
	Tables []*SavedTable
}

// Table returns the named table or nil.
func (s *Save) Table(name Table) *SavedTable {
	for _, t := range s.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// SavedTable is one `*table ... COMMIT` section.
type SavedTable struct {
	Name Table
	// Chains in declaration order.
	Chains []*SavedChain
	byName map[string]*SavedChain
}

// Chain returns the named chain or nil.
func (t *SavedTable) Chain(name string) *SavedChain { return t.byName[name] }

// SavedChain is one chain with its rules in order.
type SavedChain struct {
	Name string
	// Policy is ACCEPT or DROP for a kernel chain, "-" for a user chain.
	Policy string
	Rules  []SavedRule
}

// SavedRule is one `-A CHAIN ...` line.
type SavedRule struct {
	// Spec is the rule after "-A CHAIN ", exactly as dumped.
	Spec string
	// Comments holds the values of every `--comment` in the rule, unquoted.
	Comments []string
}

// ParseSave parses iptables-save output. Comment lines ("# ...") and blank
// lines are skipped. Errors wrap ErrParse and name the line.
func ParseSave(text string) (*Save, error) {
	s := &Save{}
	var cur *SavedTable
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimRight(line, "\r")
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			if cur != nil {
				return nil, fmt.Errorf("%w: line %d: table %s not committed", ErrParse, n, cur.Name)
			}
			name := line[1:]
			if !validToken(name) {
				return nil, fmt.Errorf("%w: line %d: bad table name %q", ErrParse, n, name)
			}
			cur = &SavedTable{Name: Table(name), byName: map[string]*SavedChain{}}
			s.Tables = append(s.Tables, cur)
		case line == "COMMIT":
			if cur == nil {
				return nil, fmt.Errorf("%w: line %d: COMMIT outside a table", ErrParse, n)
			}
			cur = nil
		case cur == nil:
			return nil, fmt.Errorf("%w: line %d: %q outside a table", ErrParse, n, line)
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 || !validToken(f[0]) {
				return nil, fmt.Errorf("%w: line %d: bad chain declaration %q", ErrParse, n, line)
			}
			if cur.byName[f[0]] != nil {
				return nil, fmt.Errorf("%w: line %d: chain %s declared twice", ErrParse, n, f[0])
			}
			c := &SavedChain{Name: f[0], Policy: f[1]}
			cur.Chains = append(cur.Chains, c)
			cur.byName[c.Name] = c
		case strings.HasPrefix(line, "-A "):
			chain, spec, _ := strings.Cut(line[3:], " ")
			c := cur.byName[chain]
			if c == nil {
				return nil, fmt.Errorf("%w: line %d: rule for undeclared chain %q", ErrParse, n, chain)
			}
			r, err := parseRule(spec)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %v", ErrParse, n, err)
			}
			c.Rules = append(c.Rules, r)
		default:
			return nil, fmt.Errorf("%w: line %d: unexpected %q", ErrParse, n, line)
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%w: table %s not committed", ErrParse, cur.Name)
	}
	return s, nil
}

// parseRule splits a rule spec and collects its comments.
func parseRule(spec string) (SavedRule, error) {
	args, err := splitArgs(spec)
	if err != nil {
		return SavedRule{}, err
	}
	r := SavedRule{Spec: spec}
	for j := 0; j+1 < len(args); j++ {
		if args[j] == "--comment" {
			r.Comments = append(r.Comments, args[j+1])
		}
	}
	return r, nil
}

// splitArgs splits a rule spec into arguments as iptables-restore does:
// on spaces, with double-quoted strings (backslash escapes inside) as one
// argument. Arguments are substrings of s where they can be (no quotes,
// or one quoted string without backslashes), so most specs cost one
// allocation.
func splitArgs(s string) ([]string, error) {
	return appendArgs(make([]string, 0, strings.Count(s, " ")+1), s)
}

// appendArgs appends the arguments of s (as splitArgs) to dst.
func appendArgs(dst []string, s string) ([]string, error) {
	for i := 0; i < len(s); {
		if s[i] == ' ' {
			i++
			continue
		}
		end, plain, ok := argEnd(s, i)
		if !ok {
			return nil, fmt.Errorf("unterminated quote in %q", s)
		}
		dst = append(dst, unquoteArg(s[i:end], plain))
		i = end
	}
	return dst, nil
}

// argEnd returns the end of the argument of s starting at i (not a
// space), whether it has no backslash inside quotes, and false for an
// unterminated quote.
func argEnd(s string, i int) (end int, plain, ok bool) {
	quoted, esc := false, false
	plain = true
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case quoted && c == '\\':
			esc, plain = true, false
		case c == '"':
			quoted = !quoted
		case c == ' ' && !quoted:
			return i, plain, true
		}
	}
	return i, plain, !quoted && !esc
}

// skipArgs returns s after its first n arguments and the spaces after
// them: splitArgs of the result is splitArgs(s)[n:].
func skipArgs(s string, n int) string {
	i := 0
	for i < len(s) {
		switch {
		case s[i] == ' ':
			i++
		case n == 0:
			return s[i:]
		default:
			i, _, _ = argEnd(s, i)
			n--
		}
	}
	return ""
}

// unquoteArg removes the quotes and backslash escapes of one argument;
// plain means it has no backslash inside quotes.
func unquoteArg(a string, plain bool) string {
	q := strings.Count(a, `"`)
	switch {
	case q == 0:
		return a
	case plain && q == 2 && a[0] == '"' && a[len(a)-1] == '"':
		return a[1 : len(a)-1]
	}
	b := make([]byte, 0, len(a))
	quoted, esc := false, false
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case esc:
			b = append(b, c)
			esc = false
		case quoted && c == '\\':
			esc = true
		case c == '"':
			quoted = !quoted
		default:
			b = append(b, c)
		}
	}
	return string(b)
}
