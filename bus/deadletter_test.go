package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// fakeConsumer records what DecodeOrDeadLetter does with a message.
type fakeConsumer struct {
	bus.Consumer // methods not used by the code under test panic
	dlErr        error
	deadLetters  []string
	nacks        []error
}

func (c *fakeConsumer) DeadLetter(_ context.Context, _ *bus.Message, reason string) error {
	if c.dlErr != nil {
		return c.dlErr
	}
	c.deadLetters = append(c.deadLetters, reason)
	return nil
}

func (c *fakeConsumer) Nack(_ *bus.Message, cause error) { c.nacks = append(c.nacks, cause) }

func TestDecodeOrDeadLetter(t *testing.T) {
	good, err := bus.NewEnvelope("command", "c-1", "p-1", time.Now(), map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	goodBytes, err := good.Encode()
	if err != nil {
		t.Fatal(err)
	}
	unavailable := fmt.Errorf("dlq producer: %w", bus.ErrUnavailable)
	cases := []struct {
		name       string
		payload    string
		dlErr      error
		wantErr    []error // errors.Is targets; nil: decodes
		wantDL     string  // part of the dead-letter reason, "" for none
		wantNacked bool
	}{
		{name: "valid", payload: string(goodBytes)},
		{name: "garbage", payload: "{{{", wantErr: []error{bus.ErrUndecodable}, wantDL: "not a JSON envelope"},
		{name: "empty", payload: "", wantErr: []error{bus.ErrUndecodable}, wantDL: "empty payload"},
		{name: "newer version", payload: `{"v":7,"type":"x","id":"1"}`, wantErr: []error{bus.ErrUnknownVersion}, wantDL: "version 7"},
		{name: "dead letter fails", payload: "{{{", dlErr: unavailable, wantErr: []error{unavailable}, wantNacked: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeConsumer{dlErr: tc.dlErr}
			m := &bus.Message{Topic: "persistent://public/pulsaga/events", Payload: []byte(tc.payload)}
			env, err := bus.DecodeOrDeadLetter(context.Background(), c, m)
			if tc.wantErr == nil {
				if err != nil || env == nil || env.ID != "c-1" {
					t.Fatalf("got %v, %v; want the envelope", env, err)
				}
				if len(c.deadLetters)+len(c.nacks) > 0 {
					t.Fatalf("a valid message was dead-lettered %v or nacked %v", c.deadLetters, c.nacks)
				}
				return
			}
			if env != nil {
				t.Fatalf("got an envelope with error %v", err)
			}
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Fatalf("error %v does not wrap %v", err, want)
				}
			}
			if tc.dlErr != nil && !bus.Retryable(err) {
				t.Fatalf("error %v of a failed dead letter should stay retryable", err)
			}
			var de *bus.DecodeError
			if tc.dlErr == nil && !errors.As(err, &de) {
				t.Fatalf("error %v is not a *bus.DecodeError", err)
			}
			if tc.wantDL != "" {
				if len(c.deadLetters) != 1 || !strings.Contains(c.deadLetters[0], tc.wantDL) {
					t.Fatalf("dead letters %q, want one with %q", c.deadLetters, tc.wantDL)
				}
			}
			if tc.wantNacked != (len(c.nacks) == 1) {
				t.Fatalf("nacks %v, want nacked = %v", c.nacks, tc.wantNacked)
			}
			if tc.wantNacked && !errors.Is(c.nacks[0], bus.ErrUndecodable) {
				t.Fatalf("nack cause %v, want the decode error", c.nacks[0])
			}
		})
	}
}

func TestMessageIDText(t *testing.T) {
	for _, id := range []bus.MessageID{{0}, {1, 2, 3, 255}, []byte("\x08\x01\x10\x02")} {
		s := bus.FormatMessageID(id)
		back, err := bus.ParseMessageID(s)
		if err != nil || string(back) != string(id) {
			t.Fatalf("%x -> %q -> %x, %v", []byte(id), s, []byte(back), err)
		}
	}
	for _, bad := range []string{"", "%%%", "a b"} {
		if _, err := bus.ParseMessageID(bad); !errors.Is(err, bus.ErrBadOptions) {
			t.Fatalf("ParseMessageID(%q): got %v, want bus.ErrBadOptions", bad, err)
		}
	}
}
