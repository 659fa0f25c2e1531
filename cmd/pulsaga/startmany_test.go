package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulsaga/pulsaga/workflow"
)

// TestStartFrom streams starts from a file through the admin API: good
// lines start, bad lines are reported with their numbers, the others go on.
func TestStartFrom(t *testing.T) {
	url, stack := apiServer(t)
	op := []string{"--server", url, "--token", cliOp}
	if _, _, err := runCLI(append(op, "register", "../../admin/testdata/repair.yaml")...); err != nil {
		t.Fatal(err)
	}
	const n = 40
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, `{"process_id":"car-%04d","input":{"ticket":"T-%d"}}`+"\n", i, i)
		switch i {
		case 10:
			in.WriteString("\n")                                                 // blank: skipped
			in.WriteString(`{"process_id":"bad-1","input":{"ticket":1}}` + "\n") // line 13: against the schema
		case 20:
			in.WriteString(`not json` + "\n") // line 24
		case 30:
			in.WriteString(`{"process_id":"bad-3","definition":"nope"}` + "\n") // line 35: unknown definition
		}
	}
	file := filepath.Join(t.TempDir(), "starts.ndjson")
	if err := os.WriteFile(file, []byte(in.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runCLI(append(op, "start", "repair", "--from", file)...)
	if err == nil || !strings.Contains(err.Error(), "3 of 43 start requests failed") {
		t.Fatalf("start --from: %v\n%s", err, errOut)
	}
	for _, want := range []string{"line 13 (bad-1): ", "does not match the input schema", "line 24: not a start request", "line 35 (bad-3): ", "unknown definition", "43 start requests: 40 accepted, 3 failed"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	ids := strings.Fields(out)
	if len(ids) != n || ids[0] != "car-0000" || ids[n-1] != fmt.Sprintf("car-%04d", n-1) {
		t.Fatalf("stdout has %d ids (first %q), want %d in input order", len(ids), ids[0], n)
	}
	waitFor(t, stack, "car-0000", workflow.StatusPaused)
	waitFor(t, stack, fmt.Sprintf("car-%04d", n-1), workflow.StatusPaused)

	// Again, as JSON lines: every one exists already.
	out, _, err = runCLI(append(op, "start", "repair", "--from", file, "-o", "json")...)
	if err == nil {
		t.Fatal("the bad lines did not fail the second run")
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	lines, existing := 0, 0
	for sc.Scan() {
		var o startOutcome
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("-o json line %q: %v", sc.Text(), err)
		}
		lines++
		if o.Accepted && o.Created != nil && !*o.Created {
			existing++
		}
	}
	if lines != n+3 || existing != n {
		t.Fatalf("%d JSON lines, %d of existing processes; want %d and %d", lines, existing, n+3, n)
	}
	if _, _, err := runCLI(append(op, "start", "repair", "--from", file, "--id", "x")...); err == nil || !strings.Contains(err.Error(), "drop --id") {
		t.Fatalf("--from with --id: %v", err)
	}
}

// TestStartManyBatches: full batches leave at once, a partial one after
// startLinger when the input pauses (a slow producer on stdin), the rest at
// the end.
func TestStartManyBatches(t *testing.T) {
	pr, pw := io.Pipe()
	var out, errOut strings.Builder
	s := &startMany{def: "d", out: &out, errOut: &errOut}
	var sizes []int
	paused := make(chan struct{})
	go func() {
		for i := range 40 {
			fmt.Fprintf(pw, `{"process_id":"p-%d"}`+"\n", i)
			if i == 36 {
				<-paused
			}
		}
		pw.Close()
	}()
	err := s.run(context.Background(), pr, 16, func(_ context.Context, batch []startLine) error {
		sizes = append(sizes, len(batch))
		if len(sizes) == 3 {
			close(paused) // the partial batch left while the input paused
		}
		for _, l := range batch {
			if l.body.Definition != "d" {
				t.Errorf("line %d: definition %q, want the argument's", l.n, l.body.Definition)
			}
			s.report(startOutcome{Line: l.n, ProcessID: l.body.ProcessID, Accepted: true})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sizes) != "[16 16 5 3]" {
		t.Fatalf("batches of %v, want [16 16 5 3]", sizes)
	}
	if !strings.Contains(errOut.String(), "40 start requests: 40 accepted, 0 failed") {
		t.Fatalf("summary: %s", errOut.String())
	}
}
