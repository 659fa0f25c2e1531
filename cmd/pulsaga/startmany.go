package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
	"github.com/spf13/cobra"
)

// startMany streams start requests from a file or stdin, one JSON object
// per line ({"process_id", "definition", "version", "input"}; blank lines
// are skipped), and sends them in batches of up to admin.MaxBatchStarts: a
// batch leaves when it is full or when no line came for startLinger, so a
// slow producer on stdin is not held back. Each start's outcome is printed
// as it is known: the process id (table) or one JSON object per line
// (-o json); a line that cannot be used is reported with its number and
// the others go on. It fails when any start failed.
type startMany struct {
	def    string // default definition (the DEFINITION argument)
	ver    int    // default version
	json   bool
	out    io.Writer
	errOut io.Writer

	started, existed, failed int
}

// startLinger is how long a partial batch waits for more lines.
const startLinger = 50 * time.Millisecond

// startLine is one line of the input.
type startLine struct {
	n    int
	body admin.StartBody
	err  error
}

// startOutcome is one start's outcome, as printed with -o json.
type startOutcome struct {
	Line      int    `json:"line"`
	ProcessID string `json:"process_id,omitempty"`
	Accepted  bool   `json:"accepted"`
	Created   *bool  `json:"created,omitempty"`
	Error     string `json:"error,omitempty"`
}

func openInput(from string) (io.ReadCloser, error) {
	if from == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	f, err := os.Open(from)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	return f, nil
}

// lines reads r and sends each non-blank line, parsed, to out.
func (s *startMany) lines(ctx context.Context, r io.Reader, out chan<- startLine) error {
	defer close(out)
	br := bufio.NewReaderSize(r, 1<<20)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			l := startLine{n: n}
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if derr := dec.Decode(&l.body); derr != nil {
				l.err = fmt.Errorf("not a start request (want {\"process_id\": ..., \"definition\": ..., \"input\": ...}): %v", derr)
			} else if dec.More() {
				l.err = errors.New("more than one JSON value on the line")
			}
			if l.body.Definition == "" {
				l.body.Definition = s.def
			}
			if l.body.Version == 0 {
				l.body.Version = s.ver
			}
			select {
			case out <- l:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("--from: read line %d: %w", n, err)
		}
	}
}

// run reads, batches and sends; send sends one batch and reports each
// start's outcome.
func (s *startMany) run(ctx context.Context, r io.Reader, max int, send func(ctx context.Context, batch []startLine) error) error {
	in := make(chan startLine, max)
	readErr := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { readErr <- s.lines(rctx, r, in) }()
	var batch []startLine
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := send(ctx, batch)
		batch = batch[:0]
		return err
	}
	linger := time.NewTimer(time.Hour)
	defer linger.Stop()
	for {
		select {
		case l, ok := <-in:
			if !ok {
				if err := flush(); err != nil {
					return err
				}
				if err := <-readErr; err != nil {
					return err
				}
				return s.summary()
			}
			if l.err != nil {
				s.report(startOutcome{Line: l.n, ProcessID: l.body.ProcessID, Error: l.err.Error()})
				continue
			}
			if len(batch) == 0 {
				linger.Reset(startLinger)
			}
			batch = append(batch, l)
			if len(batch) >= max {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-linger.C:
			if err := flush(); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *startMany) report(o startOutcome) {
	switch {
	case !o.Accepted:
		s.failed++
	case o.Created != nil && !*o.Created:
		s.existed++
	default:
		s.started++
	}
	if s.json {
		b, _ := json.Marshal(o)
		fmt.Fprintf(s.out, "%s\n", b)
		return
	}
	if !o.Accepted {
		id := ""
		if o.ProcessID != "" {
			id = " (" + o.ProcessID + ")"
		}
		fmt.Fprintf(s.errOut, "line %d%s: %s\n", o.Line, id, o.Error)
		return
	}
	if o.Created != nil && !*o.Created {
		fmt.Fprintf(s.out, "%s (exists already)\n", o.ProcessID)
		return
	}
	fmt.Fprintln(s.out, o.ProcessID)
}

func (s *startMany) summary() error {
	total := s.started + s.existed + s.failed
	fmt.Fprintf(s.errOut, "%d start requests: %d accepted", total, s.started+s.existed)
	if s.existed > 0 {
		fmt.Fprintf(s.errOut, " (%d of existing processes)", s.existed)
	}
	fmt.Fprintf(s.errOut, ", %d failed\n", s.failed)
	if s.failed > 0 {
		return fmt.Errorf("%d of %d start requests failed (see above)", s.failed, total)
	}
	return nil
}

// direct sends a batch straight to Pulsar with the engine's client, after
// the checks a server makes: the process id, the input's size, the
// definition registered; a start of an existing id is accepted without
// being sent when it asks for the same process (its input), refused
// otherwise.
func (s *startMany) direct(d *direct) func(ctx context.Context, batch []startLine) error {
	return func(ctx context.Context, batch []startLine) error {
		if err := d.status.Refresh(ctx); err != nil {
			return fmt.Errorf("read the status table: %w", err)
		}
		outs := make([]startOutcome, len(batch))
		var reqs []protocol.StartRequest
		var slots []int // index in outs of each request
		for i, l := range batch {
			id := l.body.ProcessID
			if id == "" {
				id = generatedID(l.body.Definition)
			}
			outs[i] = startOutcome{Line: l.n, ProcessID: id}
			err := checkID(id)
			if err == nil {
				err = workflow.CheckPayload("the input", l.body.Input)
			}
			var def *workflow.Definition
			if err == nil {
				def, err = d.reg.Get(ctx, l.body.Definition, l.body.Version)
			}
			if err == nil {
				if row, exists := d.status.Get(id); exists {
					if err = admin.ExistingStart(ctx, row, def, l.body.Input, d.read); err == nil {
						created := false
						outs[i].Accepted, outs[i].Created = true, &created
						continue
					}
				}
			}
			if err != nil {
				outs[i].Error = err.Error()
				continue
			}
			reqs = append(reqs, protocol.StartRequest{ProcessID: id, Definition: def.Name, Version: def.Version, Input: l.body.Input, Actor: actor()})
			slots = append(slots, i)
		}
		if len(reqs) > 0 {
			err := d.client.StartMany(ctx, reqs)
			var se *engine.StartErrors
			if err != nil && !errors.As(err, &se) {
				return err
			}
			for k, i := range slots {
				if se != nil && se.Errs[k] != nil {
					outs[i].Error = se.Errs[k].Error()
					continue
				}
				outs[i].Accepted = true
			}
		}
		for _, o := range outs {
			s.report(o)
		}
		return nil
	}
}

// viaAPI sends a batch through the admin API.
func (s *startMany) viaAPI(cmd *cobra.Command, c *admin.Client) func(ctx context.Context, batch []startLine) error {
	return func(ctx context.Context, batch []startLine) error {
		bodies := make([]admin.StartBody, len(batch))
		for i, l := range batch {
			bodies[i] = l.body
		}
		res, err := c.StartBatch(ctx, bodies, admin.NewKey())
		if err != nil {
			return explain(cmd, err)
		}
		for i, l := range batch {
			r := res.Results[i]
			o := startOutcome{Line: l.n, ProcessID: r.ProcessID, Accepted: r.Accepted, Created: r.Created}
			if r.Error != nil {
				o.Error = r.Error.Message
			}
			s.report(o)
		}
		return nil
	}
}

func generatedID(def string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return def + "-" + hex.EncodeToString(b[:])
}
