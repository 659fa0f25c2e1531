package workflow

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func TestBufferedSignals(t *testing.T) {
	def := `name: b
steps:
  - id: first
    service: s
    command: A
  - id: ask
    needs: [first]
    wait: {signal: answer}
  - id: ask_again
    needs: [ask]
    wait: {signal: answer, timeout: 1h}
  - id: never
    needs: [first]
    when: "${{ false }}"
    wait: {signal: nope}
`
	tests := []struct {
		name    string
		signals []Event
		ignored []IgnoreReason
		kept    int
	}{
		{"kept for a wait not reached", []Event{{Type: EventSignal, Signal: "answer"}}, nil, 1},
		{"two for two waits", []Event{{Type: EventSignal, Signal: "answer"}, {Type: EventSignal, Signal: "answer"}}, nil, 2},
		{"targeted at a step of another signal", []Event{{Type: EventSignal, Signal: "answer", StepID: "first"}}, []IgnoreReason{IgnoreNoWaitingStep}, 0},
		{"a name no step waits for", []Event{{Type: EventSignal, Signal: "other"}}, []IgnoreReason{IgnoreNoWaitingStep}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, def)
			h.start(`{}`)
			d := h.do(at(time.Second), tt.signals...)
			var got []IgnoreReason
			for _, ig := range d.Ignored {
				got = append(got, ig.Reason)
			}
			eq(t, "ignored", fmt.Sprint(got), fmt.Sprint(tt.ignored))
			eq(t, "kept", len(h.st.Signals), tt.kept)
		})
	}

	t.Run("bounded", func(t *testing.T) {
		h := newHarness(t, def)
		h.start(`{}`)
		var evs []Event
		for i := range MaxBufferedSignals + 2 {
			evs = append(evs, Event{Type: EventSignal, Signal: "answer", Data: json.RawMessage(fmt.Sprint(i))})
		}
		d := h.do(at(time.Second), evs...)
		eq(t, "kept", len(h.st.Signals), MaxBufferedSignals)
		eq(t, "refused", len(d.Ignored), 2)
		eq(t, "reason", d.Ignored[0].Reason, IgnoreSignalBufferFull)
		eq(t, "index", d.Ignored[0].Index, MaxBufferedSignals)
		// the waits take the oldest, in order
		h.do(at(2*time.Second), okEv("p/first/1", `{}`))
		eq(t, "ask took the first", string(h.st.StepByID("ask").Output), "0")
		eq(t, "ask_again took the second", string(h.st.StepByID("ask_again").Output), "1")
		eq(t, "completed", h.st.Status, StatusCompleted)
		eq(t, "the rest is dropped when the process ends", len(h.st.Signals), 0)
	})

	t.Run("the wait's timeout is not armed when a kept signal is taken", func(t *testing.T) {
		h := newHarness(t, def)
		h.start(`{}`)
		h.do(at(time.Second), Event{Type: EventSignal, Signal: "answer"}, Event{Type: EventSignal, Signal: "answer"})
		d := h.do(at(2*time.Second), okEv("p/first/1", `{}`))
		eq(t, "no timer", timerIDs(d), []string(nil))
	})

	t.Run("a signal while compensating is not kept", func(t *testing.T) {
		h := newHarness(t, def)
		h.start(`{}`)
		h.do(at(time.Second), Event{Type: EventCancel, Actor: "ops"})
		d := h.do(at(2*time.Second), Event{Type: EventSignal, Signal: "answer"})
		eq(t, "not applicable", d.Ignored[0].Reason, IgnoreNotApplicable)
		eq(t, "kept", len(h.st.Signals), 0)
	})
}
