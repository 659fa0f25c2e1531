package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pulsaga/pulsaga/internal/jsonfast"
)

// EnvelopeVersion is the envelope format this build writes. Readers accept
// every version up to it and dead-letter anything newer.
const EnvelopeVersion = 1

// Envelope wraps every message pulsaga puts on a topic. It is JSON, described
// by docs/schemas/envelope.schema.json, so that workers in any language can
// read and write it with a plain Pulsar client. The process id is also the
// message key, so one process's messages stay in order.
type Envelope struct {
	// V is the envelope format version (EnvelopeVersion).
	V int `json:"v"`
	// Type names the payload, e.g. "command", "step.completed".
	Type string `json:"type"`
	// ID is unique per message; duplicates share it.
	ID string `json:"id"`
	// ProcessID is the process the message is about (and its key).
	ProcessID string `json:"process_id,omitempty"`
	// CausationID is the ID of the message that caused this one.
	CausationID string `json:"causation_id,omitempty"`
	// Time is when the sender created the message.
	Time time.Time `json:"time"`
	// Traceparent is a W3C trace context header, carried through.
	Traceparent string `json:"traceparent,omitempty"`
	// Payload is the type-specific JSON body.
	Payload json.RawMessage `json:"payload,omitempty"`
}

// DecodeError says why a message could not be decoded. Its Reason is what
// goes on the dead-letter topic.
type DecodeError struct {
	Reason string
	Err    error
}

func (e *DecodeError) Error() string { return "bus: undecodable message: " + e.Reason }
func (e *DecodeError) Unwrap() error { return e.Err }

// Sentinels under DecodeError.
var (
	// ErrUndecodable: the bytes are not an envelope.
	ErrUndecodable = errors.New("undecodable envelope")
	// ErrUnknownVersion: the envelope is newer than this build understands.
	ErrUnknownVersion = errors.New("unknown envelope version")
)

// Encode marshals an envelope, filling V when it is zero.
func (e *Envelope) Encode() ([]byte, error) {
	if e.V == 0 {
		e.V = EnvelopeVersion
	}
	if e.Type == "" || e.ID == "" {
		return nil, fmt.Errorf("%w: envelope needs a type and an id", ErrBadOptions)
	}
	return json.Marshal(e)
}

// NewEnvelope builds an envelope with a JSON-marshalled payload.
func NewEnvelope(typ, id, processID string, at time.Time, payload any) (*Envelope, error) {
	var raw json.RawMessage
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("bus: marshal %s payload: %w", typ, err)
		}
		raw = b
	}
	return &Envelope{V: EnvelopeVersion, Type: typ, ID: id, ProcessID: processID, Time: at.UTC(), Payload: raw}, nil
}

// EncodeEnvelope encodes head with payload marshalled as its Payload: the
// bytes of NewEnvelope + Encode, with less work. The payload it has just
// marshalled is already compact JSON, so it is appended as it is instead
// of being scanned and compacted again (as encoding/json does with a
// json.RawMessage field: a tenth of the orchestrator's CPU in remote mode).
// Payload is the envelope's last field, so the order of the keys is
// unchanged. head's Payload is ignored, a zero V is EnvelopeVersion and
// Time is written in UTC, as NewEnvelope does.
func EncodeEnvelope(head Envelope, payload any) ([]byte, error) {
	head.Time, head.Payload = head.Time.UTC(), nil
	b, err := head.Encode()
	if err != nil || payload == nil {
		return b, err
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("bus: marshal %s payload: %w", head.Type, err)
	}
	if len(body) == 0 || len(b) == 0 || b[len(b)-1] != '}' {
		return nil, fmt.Errorf("bus: marshal %s envelope: unexpected encoding", head.Type)
	}
	out := make([]byte, 0, len(b)+len(payloadKey)+len(body))
	out = append(out, b[:len(b)-1]...)
	out = append(out, payloadKey...)
	out = append(out, body...)
	return append(out, '}'), nil
}

const payloadKey = `,"payload":`

// DecodeEnvelope parses and checks an envelope. Errors are *DecodeError
// wrapping ErrUndecodable or ErrUnknownVersion.
func DecodeEnvelope(b []byte) (*Envelope, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, &DecodeError{Reason: "empty payload", Err: ErrUndecodable}
	}
	var e Envelope
	if err := jsonfast.Unmarshal(b, &e); err != nil {
		return nil, &DecodeError{Reason: notEnvelope(b, err), Err: ErrUndecodable}
	}
	switch {
	case e.V <= 0:
		return nil, &DecodeError{Reason: "missing or invalid envelope version \"v\"", Err: ErrUndecodable}
	case e.V > EnvelopeVersion:
		return nil, &DecodeError{
			Reason: fmt.Sprintf("envelope version %d is newer than the %d this build understands", e.V, EnvelopeVersion),
			Err:    ErrUnknownVersion,
		}
	case e.Type == "":
		return nil, &DecodeError{Reason: "envelope has no \"type\"", Err: ErrUndecodable}
	case e.ID == "":
		return nil, &DecodeError{Reason: "envelope has no \"id\"", Err: ErrUndecodable}
	}
	// (the payload is valid JSON: Unmarshal checked the whole document)
	return &e, nil
}

// notEnvelope says why b, which json.Unmarshal refused with err, is not
// an envelope: not JSON, or a JSON envelope followed by more data.
func notEnvelope(b []byte, err error) string {
	dec := json.NewDecoder(bytes.NewReader(b))
	var e Envelope
	if derr := dec.Decode(&e); derr == nil && dec.More() {
		return "trailing data after the JSON envelope"
	}
	return "not a JSON envelope: " + err.Error()
}

// DecodePayload unmarshals the payload into v, as a *DecodeError on failure.
func (e *Envelope) DecodePayload(v any) error {
	if len(e.Payload) == 0 {
		return &DecodeError{Reason: fmt.Sprintf("%s envelope has no payload", e.Type), Err: ErrUndecodable}
	}
	if err := jsonfast.Unmarshal(e.Payload, v); err != nil {
		return &DecodeError{Reason: fmt.Sprintf("%s payload: %v", e.Type, err), Err: ErrUndecodable}
	}
	return nil
}
