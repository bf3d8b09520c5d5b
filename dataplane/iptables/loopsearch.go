package iptables

import "iter"

// loopSearch finds a loop of jumps and gotos below a chain, depth first,
// over next: the chains a chain jumps or goes to, nil for a chain that is
// missing or jumps nowhere the search follows (then nothing is
// allocated). The set-time check (loop.go) and the Fake's COMMIT check
// (fakeloop.go) share it, each with its own view of the rules.
type loopSearch struct {
	next  func(chain string) iter.Seq[string]
	state map[string]uint8 // 1 on the path, 2 done, 3 done with a loop below
	path  []string
	loop  []string // the first loop found, from and back to its first chain
}

// below reports whether a loop is reachable from chain, recording the
// first one found in s.loop.
func (s *loopSearch) below(chain string) bool {
	switch s.state[chain] {
	case 1:
		if s.loop == nil {
			i := len(s.path) - 1
			for s.path[i] != chain {
				i--
			}
			s.loop = append(append([]string(nil), s.path[i:]...), chain)
		}
		return true
	case 2:
		return false
	case 3:
		return true
	}
	targets := s.next(chain)
	if targets == nil {
		return false
	}
	if s.state == nil {
		s.state = map[string]uint8{}
	}
	s.state[chain] = 1
	s.path = append(s.path, chain)
	found := false
	for to := range targets {
		if s.below(to) {
			found = true
			break
		}
	}
	s.path = s.path[:len(s.path)-1]
	s.state[chain] = 2
	if found {
		s.state[chain] = 3
	}
	return found
}

// reaching returns the first of roots from which chain is reachable over
// next, "" when none is.
func reaching(chain string, roots []string, next func(chain string) iter.Seq[string]) string {
	seen := map[string]bool{}
	var reaches func(c string) bool
	reaches = func(c string) bool {
		if c == chain {
			return true
		}
		if seen[c] {
			return false
		}
		seen[c] = true
		targets := next(c)
		if targets == nil {
			return false
		}
		for to := range targets {
			if reaches(to) {
				return true
			}
		}
		return false
	}
	for _, r := range roots {
		if reaches(r) {
			return r
		}
	}
	return ""
}
