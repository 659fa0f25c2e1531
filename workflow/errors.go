package workflow

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package wraps one of them, so
// callers can test with errors.Is.
var (
	// ErrInvalidDefinition is wrapped by every error that Load returns for a
	// definition that does not parse or does not validate.
	ErrInvalidDefinition = errors.New("invalid workflow definition")
	// ErrInvalidEvent is wrapped when an event is malformed (unknown type,
	// missing field, unsupported schema version, other process).
	ErrInvalidEvent = errors.New("invalid event")
	// ErrUnsupportedVersion is wrapped when an Event or a State carries a
	// schema version this code does not understand.
	ErrUnsupportedVersion = errors.New("unsupported schema version")
	// ErrDefinitionMismatch is returned when a state was produced by another
	// definition (name or version) than the one passed to Decide.
	ErrDefinitionMismatch = errors.New("state belongs to another definition")
	// ErrNilDefinition is returned by Decide when no definition is given.
	ErrNilDefinition = errors.New("nil definition")
)

// Position is a place in a definition file. Line and Col are 1-based.
type Position struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
}

func (p Position) String() string {
	file := p.File
	if file == "" {
		file = "<input>"
	}
	return fmt.Sprintf("%s:%d:%d", file, p.Line, p.Col)
}

// ValidationError is one problem found in a definition.
type ValidationError struct {
	Pos     Position
	Path    string // dotted path of the offending key, e.g. steps[2].retry
	Message string
	Hint    string // how to fix it; may be empty
}

// Error renders "file:line:col: message (hint)".
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	b.WriteString(e.Message)
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap makes every ValidationError match ErrInvalidDefinition.
func (e *ValidationError) Unwrap() error { return ErrInvalidDefinition }

// ValidationErrors is every problem found in one definition file, in file
// order. Load returns it as its error when the definition is invalid.
type ValidationErrors []*ValidationError

func (es ValidationErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual errors (and so ErrInvalidDefinition) to
// errors.Is and errors.As.
func (es ValidationErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// EventError reports a malformed event given to Decide.
type EventError struct {
	Index int    // index of the event in the batch
	Type  string // its type, as given
	Err   error
}

func (e *EventError) Error() string {
	return fmt.Sprintf("event %d (%q): %v", e.Index, e.Type, e.Err)
}

func (e *EventError) Unwrap() error { return e.Err }
