package bus

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
)

// FormatMessageID is the text form of a message id used in properties,
// such as PropDLQOriginID: standard base64 of its bytes.
func FormatMessageID(id MessageID) string {
	return base64.StdEncoding.EncodeToString(id)
}

// ParseMessageID reverses FormatMessageID.
func ParseMessageID(s string) (MessageID, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%w: %q is not a message id", ErrBadOptions, s)
	}
	return b, nil
}

// DecodeOrDeadLetter decodes the envelope of m. When m cannot be decoded
// (a *DecodeError) it is moved to the dead-letter topic of c with the
// reason, and the returned error wraps the decode error, so the caller can
// count it and go on with the next message. If dead-lettering fails too, m
// is nacked (it will come back, nothing is lost) and that error is returned.
func DecodeOrDeadLetter(ctx context.Context, c Consumer, m *Message) (*Envelope, error) {
	env, err := DecodeEnvelope(m.Payload)
	if err == nil {
		return env, nil
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		return nil, err
	}
	if dlErr := c.DeadLetter(ctx, m, de.Reason); dlErr != nil {
		c.Nack(m, de)
		return nil, fmt.Errorf("bus: dead-letter undecodable message from %s: %w (nacked: %v)", m.Topic, dlErr, de)
	}
	return nil, fmt.Errorf("bus: dead-lettered message from %s: %w", m.Topic, de)
}
