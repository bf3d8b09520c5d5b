// Package selector implements Calico's label-selector language: the
// expressions Calico policies, IP pools and BGP peers use to pick endpoints,
// nodes and peers by label.
//
//	app == "web" && env in {"prod", "staging"} && !has(quarantine)
//
// # Language
//
// The semantics are Calico's, operator by operator:
//
//   - k == "v": the label is present with value v.
//   - k != "v": the label is absent, or present with another value.
//   - k in {"a", "b"}: present with one of the values; {} matches nothing.
//   - k not in {"a", "b"}: absent, or present with none of the values.
//   - has(k), !has(k): present, absent.
//   - k contains "s", k starts with "s", k ends with "s": present and the
//     value contains, starts with or ends with s.
//   - all() matches everything, as does the empty selector; global() matches
//     everything too, and in a namespace selector picks non-namespaced
//     resources (the policy package gives it that meaning).
//   - !x negates one operation or one bracketed group; && binds tighter than
//     ||; brackets group.
//
// Strings are in single or double quotes and have no escapes: a string ends
// at the next quote of the kind that opened it, so a value cannot hold both
// kinds. Label keys are 1 to 512 characters from [a-zA-Z0-9_./-], which takes
// prefixed keys such as projectcalico.org/namespace. A set may be empty and
// may end with a comma: {}, {"a", "b",}.
//
// Parse accepts exactly what Calico's tokenizer and parser accept (those of
// libcalico-go's release-v3.28 line; README.md says how this was checked):
//
//   - Only spaces and tabs may stand between tokens, and the selector may be
//     empty or only spaces and tabs (all()). A newline, carriage return or
//     form feed between tokens is an error.
//   - Inside the keywords that Calico matches with regular expressions, any
//     \s may stand, newlines included, or none: "starts with", "ends with",
//     "not in" (so "startswith" and "notin" too), and inside the brackets of
//     has( k ), all( ) and global( ).
//   - has, all and global are keywords only when "(" follows at once;
//     otherwise they are label keys (has == "x"), so "has (k)" is an error.
//   - "in" and "not in" must end at a word boundary; "contains" need not.
//   - A key is read up to 512 characters, and as in Calico an operator may
//     follow a longer run directly: a 514-character run ending in "in" is a
//     512-character key and "in". Any other longer run is an error.
//
// The one difference is deliberate: brackets nest at most 100 deep, where
// Calico has no limit. The limit holds both for the brackets written and for
// the brackets of the canonical form, which brackets every && and || group,
// including those operator precedence implies (a || b && (...) is two levels
// per bracket written), so that the canonical form of every selector Parse
// accepts parses again. Calico v3.30 rewrote its tokenizer and no longer
// allows newlines inside keywords or splits long keys; those are the only
// differences found between the two lines.
//
// # Canonical form
//
// String returns the canonical form and UniqueID a hash of it, so that
// selectors written differently but meaning the same (whitespace, quote style,
// redundant brackets, set order and duplicates, repeated "!") share a cache
// key or an IP set. The form is Calico's: every && and || group is bracketed,
// sets are sorted and de-duplicated, values are double-quoted unless they hold
// a double quote, "!" has no space after it, and "" is all(). Beyond Calico,
// nested groups of the same operator are flattened, so (a && b) && c and
// a && (b && c) are one selector. Parsing the canonical form gives it back
// unchanged (FuzzParse checks this).
//
// # Beyond Calico
//
//   - A typed builder (Eq, In, Has, And, Or, Not, ...) so programs never build
//     selectors by concatenating strings; values with quotes are written
//     correctly, and what cannot be written is reported by Err (which wraps
//     ErrUnrepresentable): an invalid key, a value holding both kinds of
//     quote, or && and || groups nested deeper than the 100 levels Parse
//     accepts, with Parse's message. The builder is held to the same limit
//     as Parse, so every built selector whose Err is nil has a canonical
//     form that parses again, byte for byte; one with an error matches
//     nothing.
//   - LabelRestrictions (what a matching label set must have) for indexes, and
//     Satisfiable to warn about selectors that can never match.
//   - Kubernetes selectors: package selector/k8sselector converts
//     metav1.LabelSelector and labels.Selector with Kubernetes semantics (a nil
//     LabelSelector matches nothing, an empty one everything), rejecting what
//     Kubernetes rejects, and converts back wherever the expression is a
//     conjunction a LabelSelector can hold that matches something
//     (Requirements here gives those parts; ErrMatchesNothing marks selectors
//     that match nothing). It lives apart so that this package imports
//     nothing outside the standard library: a program that only parses and
//     evaluates selectors does not build Kubernetes' API machinery.
//   - Errors name the column and what was expected:
//     unexpected "&" at column 14, expected "&&".
//
// # Design
//
//  1. Parse once, evaluate often. The parser is a single pass over the input
//     string with no separate token slice; the tree is stored flat (all nodes
//     in one slice, children as index runs), so a parse makes a few
//     allocations however large the selector, and Evaluate walks contiguous
//     memory without allocating.
//  2. Labels is a one-method interface, so callers evaluate against their own
//     storage (a map, a Kubernetes object, an Overlay of pod labels over
//     namespace labels) without copying.
//  3. A Selector is an immutable value; the canonical string and UniqueID are
//     computed on first use and cached, so a selector that is only evaluated
//     never pays for them. Builders return new trees and never change an
//     operand, so cached strings cannot go stale. A result may extend its
//     largest operand's node arrays past their end, where no reader of the
//     operand looks (the first builder call to claim them, atomically; any
//     other copies), so building a tree one level at a time costs time
//     linear in its size (README.md, BenchmarkBuild).
//  4. Bracket nesting (written, and in the canonical form) is limited to 100
//     levels and keys to 512 characters, for Parse and the builder alike;
//     repeated "!" are folded by parity without recursion. No input panics.
//
// Selector values are safe for concurrent use.
//
// # Interned evaluation
//
// Where one label set meets many selectors (an index, a policy evaluator), an
// Interner gives label keys small integer IDs: Compile resolves a selector's
// keys once, LabelSet stores an item's labels (own over inherited layers) as
// sorted (ID, value) pairs, and Compiled.Evaluate then finds each label by a
// short integer scan instead of hashing its key. Compiled selectors and label
// sets are immutable and safe to share; the Interner is safe for concurrent
// use and only grows.
//
// A Compiled selector and the LabelSets it evaluates must come from the same
// Interner, since key IDs mean nothing across Interners. Compiled.Evaluate
// checks this (one pointer comparison) and returns false on a LabelSet from
// another Interner, so a mix-up matches nothing instead of matching the
// wrong items.
//
// # Performance
//
// Parse is 4-10x faster than Calico's and makes 2-5 allocations; Evaluate on
// a Map runs fewer instructions than Calico's evaluator and makes none.
// README.md has the figures and the commands.
package selector
