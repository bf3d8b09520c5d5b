package bgp

import (
	"context"
	"log/slog"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogAdapter feeds GoBGP's logger interface into an injected *slog.Logger.
// Panic and Fatal are logged at error level: library code never exits.
type slogAdapter struct {
	l     *slog.Logger
	level *slog.LevelVar
}

func (a slogAdapter) log(lvl slog.Level, msg string, f gobgplog.Fields) {
	if !a.l.Enabled(context.Background(), lvl) || lvl < a.level.Level() {
		return
	}
	args := make([]any, 0, 2*len(f))
	for k, v := range f {
		args = append(args, k, v)
	}
	a.l.Log(context.Background(), lvl, msg, args...)
}

func (a slogAdapter) Panic(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Fatal(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Error(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Warn(msg string, f gobgplog.Fields)  { a.log(slog.LevelWarn, msg, f) }
func (a slogAdapter) Info(msg string, f gobgplog.Fields)  { a.log(slog.LevelInfo, msg, f) }
func (a slogAdapter) Debug(msg string, f gobgplog.Fields) { a.log(slog.LevelDebug, msg, f) }

func (a slogAdapter) SetLevel(l gobgplog.LogLevel) {
	switch {
	case l >= gobgplog.DebugLevel:
		a.level.Set(slog.LevelDebug)
	case l >= gobgplog.InfoLevel:
		a.level.Set(slog.LevelInfo)
	case l >= gobgplog.WarnLevel:
		a.level.Set(slog.LevelWarn)
	default:
		a.level.Set(slog.LevelError)
	}
}

func (a slogAdapter) GetLevel() gobgplog.LogLevel {
	switch l := a.level.Level(); {
	case l <= slog.LevelDebug:
		return gobgplog.DebugLevel
	case l <= slog.LevelInfo:
		return gobgplog.InfoLevel
	case l <= slog.LevelWarn:
		return gobgplog.WarnLevel
	}
	return gobgplog.ErrorLevel
}
