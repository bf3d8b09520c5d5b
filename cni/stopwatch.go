package cni

import (
	"log/slog"
	"time"
)

// stopwatch records how long each step of a verb took, for the debug log
// ("ADD timing"); see README.md, "Where an ADD's time goes".
type stopwatch struct {
	start, last time.Time
	laps        []slog.Attr
}

func newStopwatch() *stopwatch {
	now := time.Now()
	return &stopwatch{start: now, last: now}
}

// lap records the time since the previous lap under name.
func (s *stopwatch) lap(name string) {
	now := time.Now()
	s.laps = append(s.laps, slog.Duration(name, now.Sub(s.last)))
	s.last = now
}

// add records a duration measured elsewhere (another goroutine's step).
func (s *stopwatch) add(name string, d time.Duration) {
	s.laps = append(s.laps, slog.Duration(name, d))
}

// LogValue implements slog.LogValuer: the laps, then the total.
func (s *stopwatch) LogValue() slog.Value {
	return slog.GroupValue(append(s.laps, slog.Duration("total", s.last.Sub(s.start)))...)
}
