package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The limits at validation: each error names its limit.
func TestLimitsAtValidation(t *testing.T) {
	longList := "[" + strings.TrimSuffix(strings.Repeat("1, ", MaxForEachItems+1), ", ") + "]"
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"too many steps", string(chain(MaxSteps + 1)), "steps is 10001, over the limit max_steps = 10000"},
		{"definition too large", "name: x\n#" + strings.Repeat("x", MaxDefinitionBytes) + "\nsteps: []\n", "over the limit max_definition_bytes = 4194304 bytes"},
		{"literal for_each list too long", "name: x\nsteps:\n  - {id: a, service: s, command: A, for_each: " + longList + "}\n", "the for_each list is 1001, over the limit max_for_each_items = 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("x.yaml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidDefinition) {
				t.Errorf("%v does not wrap ErrInvalidDefinition", err)
			}
		})
	}
	if _, err := Load("x.yaml", chain(MaxSteps)); err != nil {
		t.Errorf("exactly max_steps steps: %v", err)
	}
}

const fanDef = `name: fan
steps:
  - id: each
    service: s
    command: Do
    for_each: "${{ map(1..input.n, #) }}"
    input: {item: "${{ item }}", pad: "${{ input.pad }}"}
`

// Issue #10's probe: a for_each over 10,000 items with a 600-byte input per
// item. The step fails with an error naming the limit; nothing is sent
// (the decision that could not be sent was dead-lettered and re-issued for
// ever).
func TestForEachOverLimitFails(t *testing.T) {
	h := newHarness(t, fanDef)
	d := h.start(fmt.Sprintf(`{"n": 10000, "pad": %q}`, strings.Repeat("p", 600)))
	eq(t, "status", d.Status, StatusFailed)
	eq(t, "nothing sent", len(d.Commands), 0)
	f := h.st.Failure
	if f == nil || f.Error.Type != ErrTypeLimitExceeded || !strings.Contains(f.Error.Message, "max_for_each_items = 1000") {
		t.Fatalf("failure %+v, want LimitExceeded naming max_for_each_items", f)
	}
}

// A fan-out whose commands do not fit one decision is sent over several:
// each decision stays within max_decision_bytes, and every item is sent
// exactly once.
func TestDecisionBytesSpreadOverDecisions(t *testing.T) {
	h := newHarness(t, fanDef)
	d := h.start(fmt.Sprintf(`{"n": %d, "pad": %q}`, MaxForEachItems, strings.Repeat("p", 2000)))
	sent := map[string]bool{}
	decisions := 0
	for len(d.Commands) > 0 {
		decisions++
		size := 0
		var evs []Event
		for _, c := range d.Commands {
			size += CommandSize(&c)
			if sent[c.ID] {
				t.Fatalf("%s sent twice", c.ID)
			}
			sent[c.ID] = true
			evs = append(evs, okEv(c.ID, `1`))
		}
		if size > MaxDecisionBytes {
			t.Fatalf("decision %d: %d bytes of commands, over %d", decisions, size, MaxDecisionBytes)
		}
		if b, _ := json.Marshal(d.Commands); len(b) > MaxDecisionBytes {
			t.Fatalf("decision %d: commands encode to %d bytes, over %d (CommandSize underestimates)", decisions, len(b), MaxDecisionBytes)
		}
		d = h.do(at(time.Duration(decisions)*time.Second), evs...)
	}
	t.Logf("%d items sent over %d decisions", len(sent), decisions)
	eq(t, "every item sent", len(sent), MaxForEachItems)
	eq(t, "completed", d.Status, StatusCompleted)
	if decisions < 2 {
		t.Errorf("%d decisions: the fan-out should not fit one", decisions)
	}
}

const oneStep = `name: one
on_failure: fail
steps:
  - {id: a, service: s, command: A, input: "${{ input.data }}"}
  - {id: w, wait: {signal: go}}
`

func TestPayloadLimits(t *testing.T) {
	big := `"` + strings.Repeat("x", MaxPayloadBytes) + `"`
	t.Run("start input", func(t *testing.T) {
		h := newHarness(t, oneStep)
		d := h.start(`{"data": ` + big + `}`)
		eq(t, "status", d.Status, StatusFailed)
		eq(t, "nothing sent", len(d.Commands), 0)
		if f := h.st.Failure; f == nil || f.Error.Type != ErrTypeLimitExceeded || !strings.Contains(f.Error.Message, "the start input is") {
			t.Fatalf("failure %+v", f)
		}
		if len(h.st.Input) > 10 {
			t.Errorf("the oversized input is kept in the state (%d bytes)", len(h.st.Input))
		}
	})
	t.Run("result output", func(t *testing.T) {
		h := newHarness(t, oneStep)
		h.start(`{"data": 1}`)
		d := h.do(at(time.Second), okEv("p/a/1", big))
		eq(t, "status", d.Status, StatusFailed)
		run := h.st.StepByID("a").Runs[0]
		if run.Error == nil || run.Error.Type != ErrTypeLimitExceeded || run.Error.IsRetryable() || !strings.Contains(run.Error.Message, "max_payload_bytes") {
			t.Fatalf("run error %+v, want a non-retryable LimitExceeded", run.Error)
		}
		if len(run.Output) != 0 {
			t.Error("the oversized output is kept")
		}
	})
	t.Run("command input", func(t *testing.T) {
		h := newHarness(t, oneStep)
		// the input is small, the command's evaluated input is not
		def := strings.Replace(oneStep, `"${{ input.data }}"`, `"${{ repeat(input.data, 300000) }}"`, 1)
		h = newHarness(t, def)
		d := h.start(`{"data": "x"}`)
		eq(t, "status", d.Status, StatusFailed)
		eq(t, "nothing sent", len(d.Commands), 0)
		if f := h.st.Failure; f == nil || f.Error.Type != ErrTypeLimitExceeded || !strings.Contains(f.Error.Message, "the input of command p/a/1") {
			t.Fatalf("failure %+v", f)
		}
	})
	t.Run("signal data", func(t *testing.T) {
		h := newHarness(t, oneStep)
		h.start(`{"data": 1}`)
		d := h.do(at(time.Second), okEv("p/a/1", `1`))
		d = h.do(at(2*time.Second), Event{Type: EventSignal, Signal: "go", Data: json.RawMessage(big)})
		if len(d.Ignored) != 1 || d.Ignored[0].Reason != IgnoreLimitExceeded {
			t.Fatalf("ignored %+v, want the signal ignored as limit_exceeded", d.Ignored)
		}
		eq(t, "still waiting", h.stepStatus("w"), StepWaiting)
	})
	t.Run("error message cut", func(t *testing.T) {
		h := newHarness(t, oneStep)
		h.start(`{"data": 1}`)
		f := false
		h.do(at(time.Second), Event{Type: EventResult, CommandID: "p/a/1", Error: &ErrorInfo{Type: "Boom", Message: strings.Repeat("é", MaxErrorMessageBytes), Retryable: &f}})
		msg := h.st.StepByID("a").Error.Message
		if len(msg) > MaxErrorMessageBytes || !strings.HasSuffix(msg, "(cut)") || !json.Valid([]byte(fmt.Sprintf("%q", msg))) {
			t.Errorf("message of %d bytes not cut: ...%q", len(msg), msg[len(msg)-20:])
		}
	})
}

// A process whose state outgrows max_state_bytes fails at once with that
// error; the data leaves the state so that the failed state can be stored.
func TestStateLimit(t *testing.T) {
	const def = `name: big
on_failure: compensate
steps:
  - id: each
    service: s
    command: Do
    for_each: "${{ input.items }}"
    compensate: {command: Undo}
  - {id: after, service: s, command: After, needs: [each]}
`
	h := newHarness(t, def)
	d := h.start(`{"items": [1,2,3,4,5,6,7,8,9,10,11,12]}`)
	out := `"` + strings.Repeat("o", MaxPayloadBytes-100) + `"`
	var evs []Event
	for _, c := range d.Commands {
		evs = append(evs, okEv(c.ID, out))
	}
	d = h.do(at(time.Second), evs...)
	eq(t, "status", d.Status, StatusFailed)
	eq(t, "no command", len(d.Commands), 0)
	f := h.st.Failure
	if f == nil || f.Error.Type != ErrTypeLimitExceeded || !strings.Contains(f.Error.Message, "over the limit max_state_bytes") {
		t.Fatalf("failure %+v", f)
	}
	if b, _ := json.Marshal(h.st); len(b) > MaxStateBytes {
		t.Errorf("the failed state still takes %d bytes", len(b))
	}
	// below the limit nothing happens
	h = newHarness(t, def)
	d = h.start(`{"items": [1,2,3]}`)
	evs = nil
	for _, c := range d.Commands {
		evs = append(evs, okEv(c.ID, out))
	}
	d = h.do(at(time.Second), evs...)
	eq(t, "under the limit", d.Status, StatusRunning)
}

// StateSize is an estimate: it must not be far below the encoded size (the
// limit would let through states that do not fit), nor far above it.
func TestStateSizeEstimate(t *testing.T) {
	lo, hi := 100.0, 0.0
	defer func() { t.Logf("estimate / encoded size: x%.2f to x%.2f", lo, hi) }()
	for _, f := range []string{"trip-booking", "order-fulfilment", "loan-approval"} {
		def, err := LoadFile("../testdata/" + f + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		for seed := int64(1); seed <= 20; seed++ {
			for _, st := range randomRun(t, def, seed) {
				b, _ := json.Marshal(st)
				est := StateSize(st)
				r := float64(est) / float64(len(b))
				lo, hi = min(lo, r), max(hi, r)
				if r < 0.9 || r > 3 {
					t.Fatalf("%s seed %d: estimate %d for %d bytes (x%.2f)", f, seed, est, len(b), r)
				}
			}
		}
	}
}

// randomRun drives a process with random results (fixed seed) and returns
// its state after each decision.
func randomRun(t *testing.T, def *Definition, seed int64) []*State {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	d, err := Decide(def, nil, []Event{{Type: EventStart, ProcessID: fmt.Sprintf("p-%d", seed), Input: json.RawMessage(simInputs[def.Name])}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	states := []*State{d.State}
	out := map[string]bool{}
	for _, c := range d.Commands {
		out[c.ID] = true
	}
	for i := 1; i < 40 && len(out) > 0; i++ {
		var evs []Event
		for id := range out {
			switch r.IntN(4) {
			case 0:
				continue
			case 1:
				evs = append(evs, errEv(id, "Oops", r.IntN(2) == 0))
			default:
				evs = append(evs, okEv(id, simOutput))
			}
			delete(out, id)
		}
		d, err = Decide(def, d.State, evs, at(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range d.Commands {
			out[c.ID] = true
		}
		states = append(states, d.State)
	}
	return states
}
