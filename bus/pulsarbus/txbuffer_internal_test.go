package pulsarbus

import (
	"errors"
	"fmt"
	"testing"
)

func TestStuckTxBufferError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"send in an ended transaction (the patched client's NotAllowed)",
			errors.New("server error: NotAllowedError: Transaction [(0,42)] has been ended"), true},
		{"the first snapshot race",
			fmt.Errorf("send: %w", errors.New("PersistenceError: Transaction Buffer take first snapshot failed, the current state is: Ready")), true},
		{"a send timeout (a stuck buffer whose broker drops the producer)",
			errors.New("bus: broker unavailable: message send timeout: TimeoutError"), true},
		{"fenced", errors.New("ProducerFenced: producer fenced"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stuckTxBufferError(tc.err); got != tc.want {
				t.Fatalf("stuckTxBufferError(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
