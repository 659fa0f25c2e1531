package jsonfast_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/pulsaga/pulsaga/internal/jsonfast"
)

// envelope has the shapes the engine decodes: ints, strings, times, a raw
// payload, nested structs, maps and slices of them.
type envelope struct {
	V       int             `json:"v"`
	Type    string          `json:"type"`
	Time    time.Time       `json:"time"`
	Payload json.RawMessage `json:"payload,omitempty"`
	Steps   map[string]step `json:"steps,omitempty"`
	List    []step          `json:"list,omitempty"`
	Any     any             `json:"any,omitempty"`
	Ptr     *step           `json:"ptr,omitempty"`
	F       float64         `json:"f,omitempty"`
	U       uint8           `json:"u,omitempty"`
}

type step struct {
	ID     string          `json:"id"`
	Output json.RawMessage `json:"output,omitempty"`
	N      int64           `json:"n,omitempty"`
	OK     bool            `json:"ok,omitempty"`
}

var seeds = []string{
	`{"v":1,"type":"result","time":"2026-12-04T22:00:00.123456789Z","payload":{"a":[1,2.5,"x",null,true,{}]}}`,
	`{"v":1,"payload":"\u00e9\ud83d\ude00","steps":{"pay":{"id":"p","output":{"id":"x"},"n":3,"ok":true}}}`,
	`{"v":1,"list":[{"id":"a"},{"id":"b","output":[]}],"any":{"k":[1e21,1e-7,-0,123456789012345678]}}`,
	`{"v":1} x`, `{"v":1}{"v":2}`, `{"v":1,"payload":{"a":}}`, `{"v":1,"payload":"\x"}`, `{"V":1,"TYPE":"x"}`,
	`{"v":1.5}`, `{"v":1e400}`, `{"u":300}`, `{"time":"yesterday"}`, `{"ptr":null,"any":null}`, `{"payload":01}`,
	`{"payload":[1,]}`, `{"payload":"a` + "\x01" + `"}`, `{"type":"` + "\xff\xfe" + `"}`, `{"payload":"\ud800"}`,
	`{"v":1,"steps":{"a":{"id":1}}}`, `{"f":"1"}`, `{"any":{"b":1,"a":2,"<":"&>"}}`, ` {"v":1} `, `[]`, `null`, ``,
}

// FuzzUnmarshalAgrees: whatever the fast path accepts, encoding/json accepts and
// decodes to the same value (what it refuses, jsonfast hands to
// encoding/json).
func FuzzUnmarshalAgrees(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast envelope
		if err := jsonv1.Unmarshal(data, &fast); err != nil {
			return
		}
		var std envelope
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("the fast path accepted what encoding/json refuses (%v): %q", err, data)
		}
		if !reflect.DeepEqual(norm(t, fast), norm(t, std)) {
			t.Fatalf("decoded differently: %q\nfast %+v\nstd   %+v", data, fast, std)
		}
	})
}

// norm compares through encoding/json (equal instants in other locations,
// raw messages that are the same bytes).
func norm(t *testing.T, e envelope) string {
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUnmarshalFallsBackToEncodingJSON(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // the decoded type field, or the error
	}{
		{"valid", `{"v":1,"type":"a"}`, "a"},
		{"invalid UTF-8 decoded as encoding/json does", `{"v":1,"type":"a` + "\xff" + `"}`, "a\ufffd"},
		{"trailing data: encoding/json's error", `{"v":1} x`, "invalid character 'x' after top-level value"},
		{"bad number: encoding/json's error", `{"v":1.5}`, "json: cannot unmarshal number 1.5 into Go struct field envelope.v of type int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e envelope
			err := jsonfast.Unmarshal([]byte(tt.in), &e)
			got := e.Type
			if err != nil {
				got = err.Error()
				var se *json.SyntaxError
				var ue *json.UnmarshalTypeError
				if !errors.As(err, &se) && !errors.As(err, &ue) {
					t.Errorf("error %T is not encoding/json's", err)
				}
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
