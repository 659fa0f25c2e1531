package workflow

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckProcessID(t *testing.T) {
	tests := []struct {
		id   string
		want string // "" when valid
	}{
		{"trip-42", ""},
		{"order:2026:ABC_1.x@eu", ""},
		{"a", ""},
		{"7", ""},
		{strings.Repeat("a", MaxProcessIDLen), ""},
		{strings.Repeat("a", MaxProcessIDLen+1), "129 bytes, longer than 128"},
		{"", "empty"},
		{".", `"." at the start`},
		{"..", `"." at the start`},
		{"-rf", `"-" at the start`},
		{"q?x=1#frag", `has "?"`},
		{"a/b", `has "/"`},
		{"a b", `has " "`},
		{"a%2e", `has "%"`},
		{"a\x00b", "control character 0x00"},
		{"a\nb", "control character 0x0a"},
		{"a\x7f", "control character 0x7f"},
		{"café", "non-ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			err := CheckProcessID(tt.id)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("%q refused: %v", tt.id, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidProcessID) {
				t.Fatalf("%q: got %v, want an ErrInvalidProcessID containing %q", tt.id, err, tt.want)
			}
		})
	}
}

// A start event with an invalid id is malformed: Decide refuses it, so no
// process can exist under such an id.
func TestStartWithInvalidID(t *testing.T) {
	def, err := Load("t.yaml", []byte(retryDef))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"..", "q?x=1#frag", "a\x00b"} {
		_, err := Decide(def, nil, []Event{{Type: EventStart, ProcessID: id}}, t0)
		if !errors.Is(err, ErrInvalidProcessID) || !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("start of %q: %v", id, err)
		}
	}
}
