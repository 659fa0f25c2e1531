package pulsarbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/rest"

	"github.com/pulsaga/pulsaga/bus"
)

func TestWrap(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want error // nil: no bus sentinel
	}{
		{"send timeout", pulsar.ErrSendTimeout, bus.ErrUnavailable},
		{"queue full", pulsar.ErrSendQueueIsFull, bus.ErrUnavailable},
		{"too big", pulsar.ErrMessageTooLarge, bus.ErrTooLarge},
		{"producer closed", pulsar.ErrProducerClosed, bus.ErrClosed},
		{"transaction", errors.Join(pulsar.ErrTransaction, errors.New("not open")), bus.ErrTxFailed},
		{"connection closed", errors.New("connection closed"), bus.ErrUnavailable},
		{"consumer handler on a closed connection", errors.New("unable add consumer handler when con closed"), bus.ErrUnavailable},
		{"request timed out", errors.New("request timed out"), bus.ErrUnavailable},
		{"dial refused", fmt.Errorf("dial: %w", errors.New("connect: connection refused")), bus.ErrUnavailable},
		{"admin 503", rest.Error{Code: 503, Reason: "unavailable"}, bus.ErrUnavailable},
		{"admin 404", rest.Error{Code: 404, Reason: "not found"}, nil},
		{"topic terminated", pulsar.ErrTopicTerminated, nil},
		{"already a bus error", fmt.Errorf("x: %w", bus.ErrClosed), bus.ErrClosed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := wrap(tc.err, "send to %s", "persistent://t/n/topic")
			if !errors.Is(err, tc.err) {
				t.Fatalf("%v does not wrap the cause %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), "persistent://t/n/topic") {
				t.Fatalf("%q does not say what was done", err)
			}
			for _, s := range []error{bus.ErrUnavailable, bus.ErrTooLarge, bus.ErrClosed, bus.ErrTxFailed} {
				if got := errors.Is(err, s); got != (s == tc.want) {
					t.Fatalf("errors.Is(%v, %v) = %v", err, s, got)
				}
			}
			if bus.Retryable(err) != (tc.want == bus.ErrUnavailable || tc.want == bus.ErrTxFailed) {
				t.Fatalf("Retryable(%v) = %v", err, bus.Retryable(err))
			}
		})
	}
	if wrap(nil, "x") != nil {
		t.Fatal("wrap(nil) is not nil")
	}
	if err := wrap(context.DeadlineExceeded, "receive"); !errors.Is(err, context.DeadlineExceeded) || bus.Retryable(err) {
		t.Fatalf("a context error became %v", err)
	}
}
