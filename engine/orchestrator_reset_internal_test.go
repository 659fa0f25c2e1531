package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
)

// TestInputsOfAFailedBatchKeepTheirOrder: the inputs of a failed batch come
// back from the broker after inputs received since; their partition waits
// for them and then serves every input in its first arrival order.
func TestInputsOfAFailedBatchKeepTheirOrder(t *testing.T) {
	msg := func(p int, id string) *bus.Message {
		return &bus.Message{Partition: p, ID: bus.MessageID(id), Key: "pid-" + id}
	}
	type step struct {
		arrive []string // ids received, on partition 0 unless "p:id"
		take   int      // then take a batch of up to take inputs (0: none)
		fail   bool     // the batch taken is failed: its inputs are to come back
		after  time.Duration
		want   string // the ids taken, in order ("-": none)
		stuck  bool   // the subscription must start over (errInputsNotBack)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"no failure: arrival order", []step{
			{arrive: []string{"a", "b", "c"}, take: 10, want: "a b c"},
		}},
		{"back after later inputs: first arrival order", []step{
			{arrive: []string{"a", "b", "c"}, take: 2, fail: true, want: "a b"},
			{arrive: []string{"d", "a"}, take: 10, want: "-"}, // b is still to come back: the partition waits
			{arrive: []string{"b", "e"}, take: 10, want: "a b c d e"},
		}},
		{"other partitions go on meanwhile", []step{
			{arrive: []string{"a", "1:x"}, take: 2, fail: true, want: "a x"},
			{arrive: []string{"1:x", "b", "1:y"}, take: 10, want: "x y"},
			{arrive: []string{"a"}, take: 10, want: "a b"},
		}},
		{"an input that does not come back within TxTimeout: start over", []step{
			{arrive: []string{"a", "b"}, take: 2, fail: true, want: "a b"},
			{arrive: []string{"c", "b"}, take: 10, want: "-"},
			{after: 2 * time.Second, take: 10, want: "-", stuck: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &Orchestrator{log: zerolog.Nop(), parts: newPartitions(), busy: map[string]int{}, slots: newSlots(1)}
			o.opts.TxTimeout = time.Second
			o.own = newOwnership(nil, time.Second, 2)
			o.parts.loaded[0], o.parts.loaded[1] = true, true
			for i, s := range tt.steps {
				for _, a := range s.arrive {
					p, id := 0, a
					if before, after, ok := strings.Cut(a, ":"); ok {
						p, id = int(before[0]-'0'), after
					}
					o.park(msg(p, id))
				}
				if s.after > 0 {
					for p := range o.parts.rewindSince {
						o.parts.rewindSince[p] = o.parts.rewindSince[p].Add(-s.after)
					}
					o.reconcile(t.Context(), nil, nil)
				}
				if got := errors.Is(o.parts.stuck, errInputsNotBack); got != s.stuck {
					t.Fatalf("step %d: starts over %v (%v), want %v", i, got, o.parts.stuck, s.stuck)
				}
				var got []string
				taken := o.takeBatch(s.take)
				for _, m := range taken {
					got = append(got, string(m.ID))
				}
				if g := strings.Join(got, " "); g != s.want && !(s.want == "-" && g == "") {
					t.Fatalf("step %d: took %q, want %q", i, g, s.want)
				}
				for _, m := range taken {
					n := o.parts.seq[m]
					delete(o.parts.seq, m)
					if s.fail {
						o.expectBack(m, n)
					}
				}
			}
			if len(o.parts.seq) != 0 && !tt.steps[len(tt.steps)-1].stuck {
				t.Errorf("arrival numbers kept for %d inputs no longer held: %v", len(o.parts.seq), fmt.Sprint(o.parts.seq))
			}
		})
	}
}
