// Package workflow is the saga language of pulsaga and its decider.
//
// Load (or LoadFile) parses a YAML definition with positions, validates it
// (graph, references, durations, expressions, compensations, input JSON
// Schema) and compiles its expressions once. An invalid definition yields a
// ValidationErrors holding every problem of the file as
// "file:line:col: message (hint)"; it wraps ErrInvalidDefinition.
//
// Decide is the decider: a pure, deterministic function with no I/O and no
// clock of its own.
//
//	d, err := workflow.Decide(def, state, events, now)
//
// It folds a batch of events (start, result, timer, signal and the admin
// actions retry, skip, cancel, terminate) into a copy of the state and says
// what happens next: the commands to send (with stable ids, idempotency
// keys and not-before times for delayed retries), the timers to set and to
// cancel, the events it ignored and why, and the process status. State and
// Event are JSON-serialisable with schema versions, for snapshots and event
// streams. The language is documented in docs/language.md.
package workflow
