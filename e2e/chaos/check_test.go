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
