package workflow

import (
	"encoding/json"
	"time"
)

// MaxBufferedSignals bounds the signals a process keeps for wait steps it
// has not reached yet; a signal beyond it is ignored (signal_buffer_full).
const MaxBufferedSignals = 64

// IgnoreSignalBufferFull: a signal arrived for a wait step not reached yet
// while MaxBufferedSignals were already kept.
const IgnoreSignalBufferFull IgnoreReason = "signal_buffer_full"

// BufferedSignal is a signal kept for a wait step that has not started
// yet; the first wait for its name (and step, when it names one) takes it.
type BufferedSignal struct {
	Signal string          `json:"signal"`
	StepID string          `json:"step_id,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	Actor  string          `json:"actor,omitempty"`
	At     time.Time       `json:"at"`
}

// bufferSignal keeps a signal that no step waits for now, when a wait step
// for it can still start; otherwise the signal is ignored with the reason.
func (d *decider) bufferSignal(i int, ev *Event) {
	s := d.s
	future := false
	for k, step := range d.def.Steps {
		if step.Kind != KindWait || step.Wait.Signal != ev.Signal || (ev.StepID != "" && ev.StepID != step.ID) {
			continue
		}
		if s.Steps[k].Status == StepPending {
			future = true
			break
		}
	}
	if !future {
		d.ignore(i, ev, IgnoreNoWaitingStep, "no step waits for signal %q, nor will one", ev.Signal)
		return
	}
	if len(s.Signals) >= MaxBufferedSignals {
		d.ignore(i, ev, IgnoreSignalBufferFull, "signal %q not kept: %d signals are already waiting for their steps", ev.Signal, MaxBufferedSignals)
		return
	}
	data := ev.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	s.Signals = append(s.Signals, BufferedSignal{Signal: ev.Signal, StepID: ev.StepID, Data: data, Actor: ev.Actor, At: d.now})
}

// takeBufferedSignal hands the oldest signal kept for wait step k to it.
func (d *decider) takeBufferedSignal(k int) (json.RawMessage, bool) {
	step := d.def.Steps[k]
	s := d.s
	for j, b := range s.Signals {
		if b.Signal != step.Wait.Signal || (b.StepID != "" && b.StepID != step.ID) {
			continue
		}
		s.Signals = append(s.Signals[:j:j], s.Signals[j+1:]...)
		if len(s.Signals) == 0 {
			s.Signals = nil
		}
		return b.Data, true
	}
	return nil, false
}
