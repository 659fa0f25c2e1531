package chaos

import (
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
)

func TestDecodeHistory(t *testing.T) {
	enc := func(payload any) []byte {
		env, err := bus.NewEnvelope(engine.TypeHistory, "h", "p", time.Now(), payload)
		if err != nil {
			t.Fatal(err)
		}
		b, err := env.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	entry := engine.HistoryEntry{ProcessID: "p", Records: []engine.Record{{ProcessID: "p", Seq: 4, Kind: engine.RecordEvent}, {ProcessID: "p", Seq: 5, Kind: engine.RecordDecision}}}
	tests := []struct {
		name    string
		payload []byte
		seqs    []int64
		ok      bool
	}{
		{"one entry of records per message", enc(entry), []int64{4, 5}, true},
		{"not a record", enc(map[string]any{"x": 1}), nil, false},
		{"not an envelope", []byte("garbage"), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, ok := decodeHistory(tt.payload)
			if ok != tt.ok || len(recs) != len(tt.seqs) {
				t.Fatalf("decodeHistory = %v, %v; want %d records, %v", recs, ok, len(tt.seqs), tt.ok)
			}
			for i, r := range recs {
				if r.Seq != tt.seqs[i] {
					t.Errorf("record %d: seq %d, want %d", i, r.Seq, tt.seqs[i])
				}
			}
		})
	}
}

func TestTakeovers(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	snap := func(ms int, o0, o1 string) ownerSnapshot {
		return ownerSnapshot{at: at(ms), owners: map[int]string{0: o0, 1: o1}}
	}
	owners := []ownerSnapshot{
		snap(-250, "orch-a", "orch-a"), snap(250, "", "orch-a"), snap(500, "orch-b", ""),
		snap(750, "orch-b", ""), snap(3000, "orch-b", "orch-a"),
	}
	times := map[int][]time.Time{
		0: {at(-1000), at(1500), at(2000)}, // busy before the kill, next commit 1.5s after it
		1: {at(-9000), at(4000)},           // idle for 9s before the kill: not a takeover
	}
	fences := map[int][]time.Time{0: {at(-60000), at(1200)}}
	tests := []struct {
		name   string
		kills  []killEvent
		down   []interval
		want   []Takeover
		misses int
	}{
		{
			name:  "handover, fence and first commit of a busy partition",
			kills: []killEvent{{at: t0, name: "orch-a", kind: KindOrchestrator, owned: []int{0, 1}}},
			want: []Takeover{{Event: "kill", Name: "orch-a", Partition: 0, At: t0, After: 1500 * time.Millisecond,
				NewOwner: "orch-b", Handover: 500 * time.Millisecond, Fenced: 1200 * time.Millisecond}},
		},
		{
			name:  "a kill while the broker was away is left out",
			kills: []killEvent{{at: t0, name: "orch-a", kind: KindOrchestrator, owned: []int{0}}},
			down:  []interval{{at(100), at(1000)}},
		},
		{
			name:  "services are not owners",
			kills: []killEvent{{at: t0, name: "svc-a", kind: KindService, owned: []int{0}}},
		},
		{
			name:   "no commit after the kill is a miss",
			kills:  []killEvent{{at: at(2500), name: "orch-b", kind: KindOrchestrator, owned: []int{0}}},
			misses: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &run{owners: owners, brokerDown: tt.down}
			got, misses := r.takeovers(tt.kills, nil, times, fences)
			if len(misses) != tt.misses {
				t.Errorf("misses = %v, want %d", misses, tt.misses)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("takeovers = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("takeover %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestHandoverToTheRestartedOwner(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC)
	owners := []ownerSnapshot{
		{at: t0.Add(250 * time.Millisecond), owners: map[int]string{0: ""}},
		{at: t0.Add(2 * time.Second), owners: map[int]string{0: "orch-a"}},
	}
	got, after := handover(owners, "orch-a", 0, t0, t0.Add(3*time.Second))
	if got != "orch-a (restarted)" || after != 2*time.Second {
		t.Fatalf("handover = %q after %s, want the restarted orch-a after 2s", got, after)
	}
	if got, _ := handover(owners[1:], "orch-a", 0, t0, t0.Add(3*time.Second)); got != "" {
		t.Fatalf("handover = %q: the old owner never seen gone is no handover", got)
	}
}
