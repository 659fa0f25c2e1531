package main

import (
	"bytes"
	"context"
	"testing"
)

// FuzzStartLines: the --from reader never panics, yields one start per
// non-blank line, in order, with its line number, and either a parsed
// request or the reason the line is not one.
func FuzzStartLines(f *testing.F) {
	for _, s := range []string{
		"{\"process_id\":\"p\",\"input\":{\"a\":1}}\n{\"definition\":\"x\"}\n",
		"\n\n  \n{\"process_id\":1}\nnot json\n{} {}\n{\"process_id\":\"p\",\"colour\":\"red\"}",
		"\r\n{\"process_id\":\"p\"}\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &startMany{def: "d"}
		out := make(chan startLine, 1000)
		done := make(chan error, 1)
		go func() { done <- s.lines(context.Background(), bytes.NewReader(in), out) }()
		want := 0
		for _, l := range bytes.Split(in, []byte("\n")) {
			if len(bytes.TrimSpace(l)) > 0 {
				want++
			}
		}
		got, last := 0, 0
		for l := range out {
			got++
			if l.n <= last {
				t.Fatalf("line %d after line %d", l.n, last)
			}
			last = l.n
			if l.err == nil && l.body.Definition == "" {
				t.Fatalf("line %d parsed without a definition (the default is d)", l.n)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%d starts from %d non-blank lines", got, want)
		}
	})
}
