// Package index keeps the matches between many selectors and many labelled
// items up to date incrementally.
package index
