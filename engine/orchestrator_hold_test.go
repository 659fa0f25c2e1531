package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

// Remote mode: a batch that issues decision tasks holds their processes
// for the answers (OrchestratorOptions.AnswerWait), so a decision answered
// in time is recorded in one history entry with the events it decides —
// one entry per decision, as inline. Without the wait, the events and the
// decision are two entries. The processes complete the same either way,
// with the same records.
func TestHeldBatchRecordsEventsWithTheirDecision(t *testing.T) {
	cases := []struct {
		name       string
		answerWait time.Duration
		// entries per decision record in the process's history
		perDecision int
	}{
		// (generous: on the memory bus an answer comes in milliseconds,
		// and a late one would only make the entries two)
		{name: "held for the answers", answerWait: 10 * time.Second, perDecision: 1},
		{name: "no wait", answerWait: -1, perDecision: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b := memory.New(memory.Options{})
			t.Cleanup(func() { _ = b.Close() }) // (after startStack's cleanup stops the stack)
			topics := protocol.DefaultTopics()
			s := startStack(ctx, t, b, engineCfg{topics: topics, decider: engine.DeciderRemote, answerWait: tc.answerWait},
				map[string]map[string]worker.Handler{"payments": {
					"Authorize": func(context.Context, *worker.Job) (any, error) { return map[string]string{"auth_id": "a"}, nil },
					"Capture":   func(context.Context, *worker.Job) (any, error) { return map[string]string{"charge_id": "c"}, nil },
				}}, "charge-card.yaml")
			const n = 5
			for i := range n {
				if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: fmt.Sprintf("card-%d", i), Definition: "charge-card",
					Input: json.RawMessage(`{"customer":"c","amount":10}`)}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range n {
				pid := fmt.Sprintf("card-%d", i)
				row := waitTerminal(ctx, t, s, pid)
				if row.Status != workflow.StatusCompleted {
					t.Fatalf("%s: %+v", pid, row)
				}
				view, err := engine.ReadProcess(ctx, b, topics, s.Registry, row)
				if err != nil {
					t.Fatal(err)
				}
				decisions, events := 0, 0
				for _, r := range view.Records {
					switch r.Kind {
					case engine.RecordDecision:
						decisions++
					case engine.RecordEvent:
						events++
					default:
						t.Fatalf("%s: a %s record: %+v", pid, r.Kind, r)
					}
				}
				// start, authorize's and capture's results, each decided
				if decisions != 3 || events != 3 {
					t.Fatalf("%s: %d decisions and %d events, want 3 and 3: %+v", pid, decisions, events, view.Records)
				}
				if got := len(row.HistoryIDs); got != tc.perDecision*decisions {
					t.Fatalf("%s: %d history entries for %d decisions, want %d", pid, got, decisions, tc.perDecision*decisions)
				}
			}
		})
	}
}
