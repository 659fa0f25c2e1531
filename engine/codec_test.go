package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/workflow"
)

// fill sets every exported field reachable from v to a value that is not
// zero (pointers allocated, slices of two, maps of one), so that a codec
// that forgets a field — one added to a type after the codec was written —
// fails the round trips below. Fields tagged json:"-" are not the record's
// content but what a reader may keep beside it (Snapshot.StateZstd, the
// encoding of State): left zero.
func fill(t testing.TB, v reflect.Value, n *int, path string) {
	*n++
	switch v.Interface().(type) {
	case time.Time:
		v.Set(reflect.ValueOf(time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC).Add(time.Duration(*n) * 1234567 * time.Nanosecond)))
		return
	case json.RawMessage:
		v.Set(reflect.ValueOf(json.RawMessage(fmt.Sprintf(`{"f":%d}`, *n))))
		return
	case bus.MessageID:
		v.Set(reflect.ValueOf(bus.MessageID(fmt.Sprintf("id-%d", *n))))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n, path)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := 0; i < 2; i++ {
			fill(t, v.Index(i), n, fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k, n, path+".key")
		fill(t, e, n, path+".value")
		v.SetMapIndex(k, e)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if f := v.Type().Field(i); f.IsExported() && f.Tag.Get("json") != "-" {
				fill(t, v.Field(i), n, path+"."+v.Type().Field(i).Name)
			}
		}
	default:
		t.Fatalf("fill: %s has kind %s: teach fill about it", path, v.Kind())
	}
}

func filled[T any](t testing.TB) T {
	var v T
	n := 0
	fill(t, reflect.ValueOf(&v).Elem(), &n, reflect.TypeOf(v).Name())
	return v
}

// sameJSON compares two values by their JSON (times compare by instant).
func sameJSON(t *testing.T, what string, want, got any) {
	t.Helper()
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w, g) {
		t.Fatalf("%s: the round trip changed it\nwant %s\ngot  %s", what, w, g)
	}
}

func TestCodecRoundTrips(t *testing.T) {
	t.Run("every field of a history entry", func(t *testing.T) {
		e := filled[HistoryEntry](t)
		for i := range e.Records {
			e.Records[i].ProcessID = e.ProcessID
		}
		payload, err := encodeHistory(&e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeHistory(payload)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "history entry", e, got)
	})
	t.Run("the shortcuts of a history entry", func(t *testing.T) {
		at := time.Date(2026, 12, 3, 18, 0, 0, 1, time.UTC)
		item, no := 0, false
		e := HistoryEntry{ProcessID: "p1", Records: []Record{
			{ProcessID: "p1", Seq: 1, Kind: RecordEvent, At: at, EnvelopeID: "start:p1", Definition: "trip", Version: 1,
				Event: &workflow.Event{V: 1, Type: workflow.EventStart, ProcessID: "p1", Input: json.RawMessage(`{}`)}},
			{ProcessID: "p1", Seq: 2, Kind: RecordEvent, At: at, Event: &workflow.Event{V: 1, Type: workflow.EventResult, Item: &item,
				Error: &workflow.ErrorInfo{Type: "X", Retryable: &no}}},
			{ProcessID: "p1", Seq: 3, Kind: RecordDecision, At: at, Now: at, TaskID: "p1/2", Upto: 2, Status: workflow.StatusRunning},
			{ProcessID: "p1", Seq: 4, Kind: RecordDecision, At: at, Now: at.Add(-time.Second), TaskID: "other", Upto: 3,
				Wake: []time.Time{time.Unix(0, 0), time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC)}},
		}}
		payload, err := encodeHistory(&e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeHistory(payload)
		if err != nil {
			t.Fatal(err)
		}
		// Times beyond int64 nanoseconds are written as the bound; the
		// epoch is one nanosecond after it (0 is the zero time).
		e.Records[3].Wake = []time.Time{time.Unix(0, 1), maxNanoTime}
		sameJSON(t, "history entry", e, got)
	})
	t.Run("every field of a snapshot", func(t *testing.T) {
		s := filled[Snapshot](t)
		payload, err := encodeSnapshot(&s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeSnapshot(payload)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "snapshot", s, got)
		small := len(payload)
		s.State.Input = json.RawMessage(`"` + strings.Repeat("x", 4*stateZstdAbove) + `"`)
		payload, err = encodeSnapshot(&s)
		if err != nil {
			t.Fatal(err)
		}
		if len(payload) > small+stateZstdAbove/2 {
			t.Errorf("a large state is not compressed: %d bytes (%d with a small one)", len(payload), small)
		}
		got, err = DecodeSnapshot(payload)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "snapshot with a large state", s, got)
	})
	t.Run("every field of a checkpoint", func(t *testing.T) {
		c := filled[Checkpoint](t)
		payload, err := encodeCheckpoint(&c)
		if err != nil {
			t.Fatal(err)
		}
		s, got, err := decodeSnapshotsMessage(payload)
		if err != nil || s != nil {
			t.Fatal(s, err)
		}
		sameJSON(t, "checkpoint", c, got)
	})
	t.Run("every field of a status row", func(t *testing.T) {
		r := filled[StatusRecord](t)
		payload, err := encodeStatus(&r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeStatus(payload)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "status row", r, got)
	})
}

// TestCodecReadsJSONRecords: records written by the engine before the
// protobuf format (JSON envelopes) are still read.
func TestCodecReadsJSONRecords(t *testing.T) {
	at := time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)
	e := filled[HistoryEntry](t)
	for i := range e.Records {
		e.Records[i].ProcessID = e.ProcessID
	}
	s, c, r := filled[Snapshot](t), filled[Checkpoint](t), filled[StatusRecord](t)
	enc := func(typ string, v any) []byte {
		b, err := encode(typ, "id", "p", at, v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	gotE, err := DecodeHistory(enc(TypeHistory, e))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "JSON history entry", e, gotE)
	gotS, err := DecodeSnapshot(enc(TypeSnapshot, s))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "JSON snapshot", s, gotS)
	_, gotC, err := decodeSnapshotsMessage(enc(TypeCheckpoint, c))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "JSON checkpoint", c, gotC)
	gotR, err := DecodeStatus(enc(TypeStatus, r))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "JSON status row", r, gotR)
}

func TestCodecRefusesOtherRecords(t *testing.T) {
	row := filled[StatusRecord](t)
	status, err := encodeStatus(&row)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := encodeHistory(&HistoryEntry{ProcessID: "p"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    func() error
	}{
		{"a status row on the history topic", func() error { _, err := DecodeHistory(status); return err }},
		{"a history entry on the status topic", func() error { _, err := DecodeStatus(hist); return err }},
		{"a history entry on the snapshots topic", func() error { _, _, err := decodeSnapshotsMessage(hist); return err }},
		{"an unknown format", func() error { _, err := DecodeHistory([]byte{9, 'h'}); return err }},
		{"a truncated record", func() error { _, err := DecodeStatus(status[:len(status)/2]); return err }},
		{"a corrupt compressed state", func() error {
			s := filled[Snapshot](t)
			s.State.Input = json.RawMessage(`"` + strings.Repeat("x", 4*stateZstdAbove) + `"`)
			b, err := encodeSnapshot(&s)
			if err != nil {
				return nil
			}
			b[len(b)/2] ^= 0xff
			_, err = DecodeSnapshot(b)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.f(); !errors.Is(err, bus.ErrUndecodable) {
				t.Fatalf("err = %v, want bus.ErrUndecodable", err)
			}
		})
	}
}

// The decoders take what any client may have written on the engine's
// topics: whatever the bytes, an error or a record, never a panic; and a
// record decoded from protobuf encodes to a record that decodes the same.
func FuzzDecodeHistory(f *testing.F) {
	e := filled[HistoryEntry](f)
	for i := range e.Records {
		e.Records[i].ProcessID = e.ProcessID
	}
	b, _ := encodeHistory(&e)
	f.Add(b)
	j, _ := encode(TypeHistory, "id", "p", time.Now(), e)
	f.Add(j)
	f.Add([]byte{recordFormat, recHistory, 0x12, 0x02, 0x08, 0x01})
	f.Fuzz(func(t *testing.T, payload []byte) {
		e, err := DecodeHistory(payload)
		if err != nil {
			if !errors.Is(err, bus.ErrUndecodable) && !errors.Is(err, bus.ErrUnknownVersion) {
				t.Fatalf("error not wrapping bus.ErrUndecodable: %v", err)
			}
			return
		}
		if isJSONRecord(payload) {
			return
		}
		again, err := encodeHistory(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := DecodeHistory(again)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "re-encoded history entry", e, e2)
	})
}

func FuzzDecodeStatus(f *testing.F) {
	r := filled[StatusRecord](f)
	b, _ := encodeStatus(&r)
	f.Add(b)
	j, _ := encode(TypeStatus, "id", "p", time.Now(), r)
	f.Add(j)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, err := DecodeStatus(payload)
		if err != nil {
			if !errors.Is(err, bus.ErrUndecodable) && !errors.Is(err, bus.ErrUnknownVersion) {
				t.Fatalf("error not wrapping bus.ErrUndecodable: %v", err)
			}
			return
		}
		if r == nil || isJSONRecord(payload) {
			return
		}
		again, err := encodeStatus(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := DecodeStatus(again)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "re-encoded status row", r, r2)
	})
}

func FuzzDecodeSnapshots(f *testing.F) {
	s := filled[Snapshot](f)
	b, _ := encodeSnapshot(&s)
	f.Add(b)
	s.State.Input = json.RawMessage(`"` + strings.Repeat("x", 4*stateZstdAbove) + `"`)
	b, _ = encodeSnapshot(&s)
	f.Add(b)
	c := filled[Checkpoint](f)
	b, _ = encodeCheckpoint(&c)
	f.Add(b)
	j, _ := encode(TypeSnapshot, "id", "p", time.Now(), s)
	f.Add(j)
	f.Fuzz(func(t *testing.T, payload []byte) {
		s, c, err := decodeSnapshotsMessage(payload)
		if err != nil {
			if !errors.Is(err, bus.ErrUndecodable) && !errors.Is(err, bus.ErrUnknownVersion) {
				t.Fatalf("error not wrapping bus.ErrUndecodable: %v", err)
			}
			return
		}
		if (s == nil) == (c == nil) {
			t.Fatalf("snapshot %v, checkpoint %v: want exactly one", s, c)
		}
		if s == nil || isJSONRecord(payload) {
			return
		}
		again, err := encodeSnapshot(s)
		if err != nil {
			return // a state that decodes but does not encode (e.g. a NaN-free float overflow) stays readable
		}
		s2, err := DecodeSnapshot(again)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "re-encoded snapshot", s, s2)
	})
}

func TestRelativeIDs(t *testing.T) {
	for _, tc := range []struct{ name, pid, s string }{
		{"command id", "trip-1", "trip-1/flight/1"},
		{"envelope id", "trip-1", "result:trip-1/flight/1"},
		{"no process id", "trip-1", "timer:other/x"},
		{"empty", "trip-1", ""},
		{"empty process id", "", "a/b"},
		{"a NUL inside", "p", "p\x00q"},
		{"starts with \\x01", "p", "\x01p"},
		{"starts with NUL", "p", "\x00x"},
		{"twice", "p", "p/p/p"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unrel(tc.pid, rel(tc.pid, tc.s)); got != tc.s {
				t.Fatalf("unrel(rel(%q)) = %q", tc.s, got)
			}
		})
	}
	if r := rel("trip-000123", "trip-000123/flight/1"); len(r) != len("/flight/1")+2 {
		t.Errorf("rel = %q: the process id is not left out", r)
	}
}
