// Package trigger starts processes from messages that any producer, in any
// language, publishes on a Pulsar topic. A definition declares its triggers
// (docs/language.md#triggers): the topic, an expression for the process id
// and one for the input, and optionally a condition. The Manager runs in
// every orchestrator binary and keeps one Shared subscription per trigger
// of the latest registered version of each definition; a message becomes a
// start request on the engine's events topic, keyed by the process id it
// names. The id comes from the message, so a message delivered twice (or
// published twice) starts one process: the engine ignores a start of an id
// that exists. A message that cannot be used — its expressions fail, the id
// is empty, the input does not match the definition's input schema — goes
// to the subscription's dead-letter topic with the reason.
package trigger

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/workflow"
)

// MaxProcessIDLen bounds a process id built from a message.
const MaxProcessIDLen = 256

// ErrUnusable: the message cannot start a process (the error says why).
var ErrUnusable = errors.New("message cannot start a process")

// Start is what a message asks for.
type Start struct {
	ProcessID string
	Input     json.RawMessage
}

// Env is the value of `message` in trigger expressions.
func Env(m *bus.Message) map[string]any {
	var data any
	if len(m.Payload) > 0 && json.Unmarshal(m.Payload, &data) != nil {
		data = nil
	}
	payload := string(m.Payload)
	if !utf8.Valid(m.Payload) {
		payload = base64.StdEncoding.EncodeToString(m.Payload)
	}
	props := make(map[string]any, len(m.Properties))
	for k, v := range m.Properties {
		props[k] = v
	}
	msg := map[string]any{
		"data": data, "payload": payload, "key": m.Key, "properties": props, "topic": m.Topic,
		"id": base64.RawURLEncoding.EncodeToString(m.ID),
	}
	if !m.PublishTime.IsZero() {
		msg["publish_time"] = m.PublishTime.UTC().Format(time.RFC3339Nano)
	}
	return map[string]any{workflow.TriggerEnvName: msg}
}

// Evaluate says what a message does under a trigger of def: ok false means
// the trigger's when is false (ignore the message); an error wrapping
// ErrUnusable means the message must be dead-lettered with that reason.
func Evaluate(def *workflow.Definition, tr *workflow.Trigger, m *bus.Message) (Start, bool, error) {
	env := Env(m)
	if tr.When != nil {
		v, err := tr.When.Eval(env)
		if err != nil {
			return Start{}, false, fmt.Errorf("%w: when: %v", ErrUnusable, err)
		}
		b, isBool := v.(bool)
		if !isBool {
			return Start{}, false, fmt.Errorf("%w: when must be true or false, got %T", ErrUnusable, v)
		}
		if !b {
			return Start{}, false, nil
		}
	}
	pid, err := tr.ProcessID.EvalString(env)
	switch {
	case err != nil:
		return Start{}, false, fmt.Errorf("%w: process_id: %v", ErrUnusable, err)
	case pid == "":
		return Start{}, false, fmt.Errorf("%w: process_id is empty", ErrUnusable)
	case len(pid) > MaxProcessIDLen:
		return Start{}, false, fmt.Errorf("%w: process_id is %d bytes long, more than %d", ErrUnusable, len(pid), MaxProcessIDLen)
	case !utf8.ValidString(pid):
		return Start{}, false, fmt.Errorf("%w: process_id is not valid UTF-8", ErrUnusable)
	}
	var input json.RawMessage
	if tr.Input != nil {
		v, err := tr.Input.Eval(env)
		if err == nil {
			input, err = json.Marshal(v)
		}
		if err != nil {
			return Start{}, false, fmt.Errorf("%w: input: %v", ErrUnusable, err)
		}
	} else {
		input, _ = json.Marshal(env[workflow.TriggerEnvName].(map[string]any)["data"])
	}
	if err := def.ValidateInput(input); err != nil {
		return Start{}, false, fmt.Errorf("%w: %v", ErrUnusable, err)
	}
	return Start{ProcessID: pid, Input: input}, true, nil
}
