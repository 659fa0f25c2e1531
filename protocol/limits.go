package protocol

import "github.com/pulsaga/pulsaga/workflow"

// The limits and rules a worker or a client in any language must follow
// (docs/language.md#limits, docs/protocol.md). They are the workflow
// package's: this package re-exports them for workers and clients.
const (
	// MaxPayloadBytes bounds a start input, a command's input, a result's
	// output, a signal's data, a skip's output.
	MaxPayloadBytes = workflow.MaxPayloadBytes
	// MaxProcessIDLen is the longest process id, in bytes.
	MaxProcessIDLen = workflow.MaxProcessIDLen
	// ProcessIDRule says in words what CheckProcessID accepts.
	ProcessIDRule = workflow.ProcessIDRule
	// ErrTypeLimitExceeded is the error type of a result whose output was
	// too large, and of steps and processes failed by a limit.
	ErrTypeLimitExceeded = workflow.ErrTypeLimitExceeded
)

// CheckProcessID enforces the rule of process ids (errors wrap
// workflow.ErrInvalidProcessID).
func CheckProcessID(id string) error { return workflow.CheckProcessID(id) }
