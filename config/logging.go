package config

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// NewLogger builds the zerolog logger the binaries share: JSON lines (or a
// console format for people) with a timestamp and the component's name. The
// logger is passed down through constructors; no package logs globally.
func NewLogger(l Log, w io.Writer, component string) zerolog.Logger {
	if w == nil {
		w = os.Stderr
	}
	level, err := zerolog.ParseLevel(l.Level)
	if err != nil || l.Level == "" {
		level = zerolog.InfoLevel
	}
	if l.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Str("component", component).Logger()
}
