package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateCommand(t *testing.T) {
	valid, _ := filepath.Glob("../../testdata/*.yaml")
	if len(valid) == 0 {
		t.Fatal("no testdata")
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int      // 0: success
		wantOut  []string // substrings of stdout
		wantErr  []string // substrings of stderr
	}{
		{
			name:    "all testdata definitions are valid",
			args:    valid,
			wantOut: []string{"trip-booking.yaml: ok (trip-booking v1, 4 steps)"},
		},
		{
			name:     "errors as file:line:col: message (hint), exit 1",
			args:     []string{"../../testdata/trip-booking.yaml", "../../testdata/invalid/unknown-keys.yaml"},
			wantCode: 1,
			wantOut:  []string{"trip-booking.yaml: ok"},
			wantErr: []string{
				"../../testdata/invalid/unknown-keys.yaml:3:1: unknown key \"on_failur\" in the workflow (did you mean on_failure?)",
				"../../testdata/invalid/unknown-keys.yaml:10:5: unknown key \"retyr\" in a step (did you mean retry?)",
			},
		},
		{
			name:     "missing file",
			args:     []string{"../../testdata/does-not-exist.yaml"},
			wantCode: 1,
			wantErr:  []string{"does-not-exist.yaml: read definition:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCommand()
			var out, errOut bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&errOut)
			root.SetArgs(append([]string{"validate"}, tt.args...))
			err := root.Execute()
			code := 0
			var ee exitError
			if errors.As(err, &ee) {
				code = ee.code
			} else if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d (stderr: %s)", code, tt.wantCode, errOut.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut.String())
				}
			}
		})
	}
}

func TestValidateNeedsAFile(t *testing.T) {
	root := newRootCommand()
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{"validate"})
	if err := root.Execute(); err == nil {
		t.Fatal("validate without files succeeded")
	}
}
