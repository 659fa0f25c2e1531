package pulsarbus

import (
	"fmt"
	"sync"

	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/rs/zerolog"
)

// zlog adapts a zerolog.Logger to pulsar-client-go's log.Logger. The
// client's Info lines (connections, producers and consumers coming and
// going) are logged at Debug; its warnings and errors keep their level.
//
// The client logs on every message at Debug and builds sub-loggers with
// fields on hot paths: fields are kept as pairs and only encoded, and
// messages only formatted, when a line is actually written.
//
// Once its gate is shut (Bus.Close, after the client's Close returned) it
// writes nothing more: the client leaves goroutines behind its Close (a
// connection being dialled, a reconnection under way) whose lines would
// otherwise reach a logger its owner has let go of — a test's, which
// panics when written to after its test ended.
type zlog struct {
	l      zerolog.Logger
	gate   *logGate
	fields []any // key, value, key, value...
}

var _ plog.Logger = zlog{}

func newClientLogger(l zerolog.Logger, gate *logGate) plog.Logger {
	return zlog{l: l.With().Str("lib", "pulsar-client-go").Logger(), gate: gate}
}

// logGate lets the client's lines through until it is shut; a line being
// written when it is shut finishes first, so none is written after shut
// returns.
type logGate struct {
	mu   sync.RWMutex
	shut bool
}

func (g *logGate) close() {
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
}

// pass writes one line unless the gate is shut; close waits for it.
func (g *logGate) pass(write func()) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if !g.shut {
		write()
	}
}

// with returns the fields plus more, never sharing the backing array.
func (z zlog) with(more ...any) zlog {
	f := make([]any, 0, len(z.fields)+len(more))
	f = append(append(f, z.fields...), more...)
	return zlog{l: z.l, gate: z.gate, fields: f}
}

func pairs(fields plog.Fields) []any {
	out := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		out = append(out, k, v)
	}
	return out
}

func (z zlog) SubLogger(fields plog.Fields) plog.Logger    { return z.with(pairs(fields)...) }
func (z zlog) WithFields(fields plog.Fields) plog.Entry    { return z.with(pairs(fields)...) }
func (z zlog) WithField(name string, value any) plog.Entry { return z.with(name, value) }
func (z zlog) WithError(err error) plog.Entry              { return z.with(zerolog.ErrorFieldName, err) }

func (z zlog) Debug(args ...any) { z.print(z.l.Debug(), args) }
func (z zlog) Info(args ...any)  { z.print(z.l.Debug(), args) }
func (z zlog) Warn(args ...any)  { z.print(z.l.Warn(), args) }
func (z zlog) Error(args ...any) { z.print(z.l.Error(), args) }

func (z zlog) Debugf(format string, args ...any) { z.printf(z.l.Debug(), format, args) }
func (z zlog) Infof(format string, args ...any)  { z.printf(z.l.Debug(), format, args) }
func (z zlog) Warnf(format string, args ...any)  { z.printf(z.l.Warn(), format, args) }
func (z zlog) Errorf(format string, args ...any) { z.printf(z.l.Error(), format, args) }

// A disabled zerolog event is nil: nothing is formatted for it.
func (z zlog) print(ev *zerolog.Event, args []any) {
	if ev != nil {
		z.gate.pass(func() { ev.Fields(z.fields).Msg(fmt.Sprint(args...)) })
	}
}

func (z zlog) printf(ev *zerolog.Event, format string, args []any) {
	if ev != nil {
		z.gate.pass(func() { ev.Fields(z.fields).Msgf(format, args...) })
	}
}
