package pulsarbus

import (
	"fmt"

	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/rs/zerolog"
)

// zlog adapts a zerolog.Logger to pulsar-client-go's log.Logger. The
// client's Info lines (connections, producers and consumers coming and
// going) are logged at Debug; its warnings and errors keep their level.
type zlog struct {
	l      zerolog.Logger
	fields plog.Fields
}

var _ plog.Logger = zlog{}

func newClientLogger(l zerolog.Logger) plog.Logger {
	return zlog{l: l.With().Str("lib", "pulsar-client-go").Logger()}
}

func (z zlog) SubLogger(fields plog.Fields) plog.Logger {
	return zlog{l: z.with(fields)}
}

func (z zlog) with(fields plog.Fields) zerolog.Logger {
	if len(fields) == 0 || z.l.GetLevel() > zerolog.ErrorLevel {
		return z.l
	}
	return z.l.With().Fields(map[string]any(fields)).Logger()
}

func (z zlog) WithFields(fields plog.Fields) plog.Entry {
	return zentry{l: z.with(fields)}
}

func (z zlog) WithField(name string, value any) plog.Entry {
	return zentry(z).WithField(name, value)
}

func (z zlog) WithError(err error) plog.Entry {
	if z.l.GetLevel() > zerolog.ErrorLevel {
		return zentry(z)
	}
	return zentry{l: z.l.With().Err(err).Logger()}
}

func (z zlog) Debug(args ...any)                 { zentry(z).Debug(args...) }
func (z zlog) Info(args ...any)                  { zentry(z).Info(args...) }
func (z zlog) Warn(args ...any)                  { zentry(z).Warn(args...) }
func (z zlog) Error(args ...any)                 { zentry(z).Error(args...) }
func (z zlog) Debugf(format string, args ...any) { zentry(z).Debugf(format, args...) }
func (z zlog) Infof(format string, args ...any)  { zentry(z).Infof(format, args...) }
func (z zlog) Warnf(format string, args ...any)  { zentry(z).Warnf(format, args...) }
func (z zlog) Errorf(format string, args ...any) { zentry(z).Errorf(format, args...) }

type zentry struct {
	l      zerolog.Logger
	fields plog.Fields
}

func (e zentry) WithFields(fields plog.Fields) plog.Entry {
	return zentry{l: zlog(e).with(fields)}
}

func (e zentry) WithField(name string, value any) plog.Entry {
	if e.l.GetLevel() > zerolog.ErrorLevel {
		return e // nothing will be written: skip building a sub-logger
	}
	return zentry{l: e.l.With().Interface(name, value).Logger()}
}

// The client logs protocol commands at Debug on every message: nothing is
// formatted unless the level is enabled (a disabled zerolog event is nil).

func (e zentry) Debug(args ...any) { print(e.l.Debug(), args) }
func (e zentry) Info(args ...any)  { print(e.l.Debug(), args) }
func (e zentry) Warn(args ...any)  { print(e.l.Warn(), args) }
func (e zentry) Error(args ...any) { print(e.l.Error(), args) }

func (e zentry) Debugf(format string, args ...any) { e.l.Debug().Msgf(format, args...) }
func (e zentry) Infof(format string, args ...any)  { e.l.Debug().Msgf(format, args...) }
func (e zentry) Warnf(format string, args ...any)  { e.l.Warn().Msgf(format, args...) }
func (e zentry) Errorf(format string, args ...any) { e.l.Error().Msgf(format, args...) }

func print(ev *zerolog.Event, args []any) {
	if ev != nil {
		ev.Msg(fmt.Sprint(args...))
	}
}
