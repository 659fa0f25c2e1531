package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
)

const wait = 20 * time.Second // how long anything that must happen may take

func TestNewNeedsAService(t *testing.T) {
	_, err := worker.New(memory.New(memory.Options{}), worker.Options{}, testLogger(t))
	if !errors.Is(err, bus.ErrBadOptions) {
		t.Fatalf("want ErrBadOptions, got %v", err)
	}
}

// A handler's output reaches the command's reply topic, keyed by process,
// with the command's identifying fields echoed.
func TestResultEchoesTheCommand(t *testing.T) {
	item := 3
	withItem := command("svc", "c-item", "Book")
	withItem.Item = &item
	compensation := command("svc", "c-comp", "Cancel")
	compensation.Compensation = true
	compensation.Attempt = 2
	tests := []struct {
		name   string
		cmd    protocol.Command
		output any
		want   string // the output JSON
	}{
		{"object output", command("svc", "c-obj", "Book"), map[string]string{"booking_id": "B-1"}, `{"booking_id":"B-1"}`},
		{"nil output is null", command("svc", "c-nil", "Book"), nil, `null`},
		{"for_each item echoed", withItem, []int{1, 2}, `[1,2]`},
		{"compensation and attempt echoed", compensation, "done", `"done"`},
	}
	broker := memory.NewBroker()
	outputs := map[string]any{}
	for _, tc := range tests {
		outputs[tc.cmd.CommandID] = tc.output
	}
	h := func(ctx context.Context, job *worker.Job) (any, error) { return outputs[job.CommandID], nil }
	w := newWorker(t, broker, worker.Options{Service: "svc", Name: "w-1"}, map[string]worker.Handler{"Book": h, "Cancel": h})
	b := memory.New(memory.Options{Broker: broker})
	replies := subscribe(t, b, replyTopic)
	start(t, w)
	for _, tc := range tests {
		sendCommands(t, b, tc.cmd)
	}
	got := results(t, replies, len(tests), wait)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := got[tc.cmd.CommandID]
			if r == nil {
				t.Fatal("no result")
			}
			c := tc.cmd
			res := r.res
			if r.env.Type != protocol.TypeResult || r.env.ID != "result:"+c.CommandID || r.env.CausationID != c.CommandID || r.env.ProcessID != c.ProcessID {
				t.Errorf("envelope %+v does not answer %s", r.env, c.CommandID)
			}
			if r.key != c.ProcessID {
				t.Errorf("key %q, want the process id %q", r.key, c.ProcessID)
			}
			if res.ProcessID != c.ProcessID || res.Step != c.Step || res.Attempt != c.Attempt || res.Compensation != c.Compensation ||
				(res.Item == nil) != (c.Item == nil) || (c.Item != nil && *res.Item != *c.Item) {
				t.Errorf("result %+v does not echo command %+v", res, c)
			}
			if res.Status != protocol.StatusCompleted || res.Error != nil {
				t.Errorf("status %q error %v, want completed", res.Status, res.Error)
			}
			if string(res.Output) != tc.want {
				t.Errorf("output %s, want %s", res.Output, tc.want)
			}
			if res.Worker != "w-1" || res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) {
				t.Errorf("worker %q started %v finished %v", res.Worker, res.StartedAt, res.FinishedAt)
			}
			if err := res.Validate(); err != nil {
				t.Errorf("result is not valid: %v", err)
			}
		})
	}
}

// The handler's context carries the job and the command's deadline.
func TestHandlerContext(t *testing.T) {
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	withDeadline := command("svc", "c-deadline", "Do")
	withDeadline.Deadline = deadline
	withDeadline.Input = json.RawMessage(`{"seat":"12A"}`)
	tests := []struct {
		name string
		cmd  protocol.Command
	}{
		{"with a deadline", withDeadline},
		{"without a deadline", command("svc", "c-none", "Do")},
	}
	type seen struct {
		job         *worker.Job
		ok          bool
		deadline    time.Time
		hasDeadline bool
		seat        string
	}
	var mu sync.Mutex
	got := map[string]seen{}
	h := func(ctx context.Context, job *worker.Job) (any, error) {
		var in struct{ Seat string }
		if err := job.DecodeInput(&in); err != nil {
			return nil, err
		}
		j, ok := worker.JobFrom(ctx)
		d, has := ctx.Deadline()
		mu.Lock()
		got[job.CommandID] = seen{job: j, ok: ok, deadline: d, hasDeadline: has, seat: in.Seat}
		mu.Unlock()
		return nil, nil
	}
	broker := memory.NewBroker()
	w := newWorker(t, broker, worker.Options{Service: "svc"}, map[string]worker.Handler{"Do": h})
	b := memory.New(memory.Options{Broker: broker})
	replies := subscribe(t, b, replyTopic)
	start(t, w)
	for _, tc := range tests {
		sendCommands(t, b, tc.cmd)
	}
	res := results(t, replies, len(tests), wait)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := res[tc.cmd.CommandID]; r.res.Status != protocol.StatusCompleted {
				t.Fatalf("result %+v", r.res)
			}
			mu.Lock()
			s := got[tc.cmd.CommandID]
			mu.Unlock()
			if !s.ok || s.job == nil {
				t.Fatal("JobFrom found no job in the handler's context")
			}
			if s.job.CommandID != tc.cmd.CommandID || s.job.IdempotencyKey != tc.cmd.IdempotencyKey || s.job.ProcessID != tc.cmd.ProcessID || s.job.Delivery != 0 {
				t.Errorf("job %+v, want command %+v, first delivery", s.job, tc.cmd)
			}
			if s.hasDeadline != !tc.cmd.Deadline.IsZero() || (s.hasDeadline && !s.deadline.Equal(tc.cmd.Deadline)) {
				t.Errorf("context deadline %v (set %v), want %v", s.deadline, s.hasDeadline, tc.cmd.Deadline)
			}
			if tc.cmd.Input != nil && s.seat != "12A" {
				t.Errorf("DecodeInput gave seat %q", s.seat)
			}
		})
	}
	if _, ok := worker.JobFrom(context.Background()); ok {
		t.Error("JobFrom found a job in a context without one")
	}
}

type unmarshalable struct{ C chan int }

type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("marshal boom") }

func TestErrorString(t *testing.T) {
	cause := errors.New("flight full")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"with a cause", worker.NonRetryable("NoSeats", cause), "NoSeats: flight full"},
		{"without a cause", worker.Retryable("Busy", nil), "Busy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
	if !errors.Is(worker.NonRetryable("NoSeats", cause), cause) {
		t.Error("the cause is not unwrapped")
	}
}

// Errors and panics become failed results with the right type and
// retryable flag; the worker keeps running after a panic.
func TestErrorsBecomeFailedResults(t *testing.T) {
	tests := []struct {
		name      string
		handler   worker.Handler
		input     string
		deadline  time.Duration
		wantType  string
		retryable bool
		wantMsg   string
	}{
		{name: "non-retryable", wantType: "NoSeats", retryable: false, wantMsg: "flight full",
			handler: func(context.Context, *worker.Job) (any, error) {
				return nil, worker.NonRetryable("NoSeats", errors.New("flight full"))
			}},
		{name: "retryable with a type", wantType: "Busy", retryable: true, wantMsg: "try later",
			handler: func(context.Context, *worker.Job) (any, error) {
				return nil, worker.Retryable("Busy", errors.New("try later"))
			}},
		{name: "wrapped non-retryable", wantType: "Refused", retryable: false, wantMsg: "no",
			handler: func(context.Context, *worker.Job) (any, error) {
				return nil, fmt.Errorf("calling the airline: %w", worker.NonRetryable("Refused", errors.New("no")))
			}},
		{name: "typed error without a cause", wantType: "NoSeats", retryable: false, wantMsg: "NoSeats",
			handler: func(context.Context, *worker.Job) (any, error) { return nil, worker.NonRetryable("NoSeats", nil) }},
		{name: "retryable without a cause", wantType: "Busy", retryable: true, wantMsg: "Busy",
			handler: func(context.Context, *worker.Job) (any, error) { return nil, worker.Retryable("Busy", nil) }},
		{name: "typed nil error is a retryable Error", wantType: "Error", retryable: true, wantMsg: "nil *worker.Error",
			handler: func(context.Context, *worker.Job) (any, error) {
				var e *worker.Error
				return nil, e
			}},
		{name: "output whose MarshalJSON panics is a retryable Panic", wantType: "Panic", retryable: true, wantMsg: "marshal boom",
			handler: func(context.Context, *worker.Job) (any, error) { return panicky{}, nil }},
		{name: "plain error is retryable", wantType: "Error", retryable: true, wantMsg: "connection reset",
			handler: func(context.Context, *worker.Job) (any, error) { return nil, errors.New("connection reset") }},
		{name: "panic is a retryable Panic", wantType: "Panic", retryable: true, wantMsg: "boom",
			handler: func(context.Context, *worker.Job) (any, error) { panic("boom") }},
		{name: "deadline passed while running is a retryable Timeout", wantType: "Timeout", retryable: true, deadline: 100 * time.Millisecond,
			handler: func(ctx context.Context, _ *worker.Job) (any, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}},
		{name: "undecodable input is BadInput", wantType: "BadInput", retryable: false, input: `[1,2]`,
			handler: func(_ context.Context, job *worker.Job) (any, error) {
				var in struct{ Seat string }
				return nil, job.DecodeInput(&in)
			}},
		{name: "output that is not JSON is BadOutput", wantType: "BadOutput", retryable: false,
			handler: func(context.Context, *worker.Job) (any, error) { return unmarshalable{C: make(chan int)}, nil }},
	}
	broker := memory.NewBroker()
	handlers := map[string]worker.Handler{}
	for i, tc := range tests {
		handlers[fmt.Sprintf("Cmd%d", i)] = tc.handler
	}
	// Concurrency 1: a panic must not take the only runner down. The
	// worker's clock runs an hour behind, so that the command with a short
	// deadline is never dropped as expired on a slow machine: it runs, and
	// its context (real time) ends while it does.
	w := newWorker(t, broker, worker.Options{Service: "svc", Concurrency: 1, Clock: func() time.Time { return time.Now().Add(-time.Hour) }}, handlers)
	b := memory.New(memory.Options{Broker: broker})
	replies := subscribe(t, b, replyTopic)
	start(t, w)
	for i, tc := range tests {
		c := command("svc", fmt.Sprintf("c-%d", i), fmt.Sprintf("Cmd%d", i))
		if tc.input != "" {
			c.Input = json.RawMessage(tc.input)
		}
		if tc.deadline > 0 {
			c.Deadline = time.Now().Add(tc.deadline)
		}
		sendCommands(t, b, c)
	}
	got := results(t, replies, len(tests), wait)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := got[fmt.Sprintf("c-%d", i)].res
			if r.Status != protocol.StatusFailed || r.Error == nil {
				t.Fatalf("result %+v, want failed", r)
			}
			if r.Error.Type != tc.wantType || r.Error.Retryable != tc.retryable {
				t.Errorf("error %+v, want type %s retryable %v", r.Error, tc.wantType, tc.retryable)
			}
			if !strings.Contains(r.Error.Message, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", r.Error.Message, tc.wantMsg)
			}
			if len(r.Output) != 0 {
				t.Errorf("failed result has output %s", r.Output)
			}
			if err := r.Validate(); err != nil {
				t.Errorf("invalid result: %v", err)
			}
		})
	}
}

// A command whose deadline has passed is dropped without running: the
// engine has given up on that attempt.
func TestExpiredCommandIsDropped(t *testing.T) {
	broker := memory.NewBroker()
	var ran sync.Map
	h := func(_ context.Context, job *worker.Job) (any, error) {
		ran.Store(job.CommandID, true)
		return "ok", nil
	}
	w := newWorker(t, broker, worker.Options{Service: "svc", Concurrency: 1}, map[string]worker.Handler{"Do": h})
	b := memory.New(memory.Options{Broker: broker})
	replies := subscribe(t, b, replyTopic)
	expired := command("svc", "expired", "Do")
	expired.Deadline = time.Now().Add(-time.Second)
	live := command("svc", "live", "Do")
	live.Deadline = time.Now().Add(time.Hour)
	sendCommands(t, b, expired, live)
	start(t, w)
	r, err := nextResult(t, replies, wait)
	if err != nil {
		t.Fatal(err)
	}
	if r.res.CommandID != "live" || r.res.Status != protocol.StatusCompleted {
		t.Fatalf("first result %+v, want the live command's", r.res)
	}
	if _, ok := ran.Load("expired"); ok {
		t.Error("the expired command ran")
	}
	noMore(t, replies, "result", 300*time.Millisecond)
	// It was acknowledged, not left to come back.
	if _, ok := ran.Load("expired"); ok {
		t.Error("the expired command ran on redelivery")
	}
}

// An unknown command is answered with a failed, non-retryable
// UnknownCommand result and dead-lettered with the reason.
func TestUnknownCommand(t *testing.T) {
	broker := memory.NewBroker()
	w := newWorker(t, broker, worker.Options{Service: "flights"}, map[string]worker.Handler{
		"BookFlight": func(context.Context, *worker.Job) (any, error) { return nil, nil },
	})
	b := memory.New(memory.Options{Broker: broker})
	replies := subscribe(t, b, replyTopic)
	dlq := subscribe(t, b, "jobs.flights-workers-DLQ")
	start(t, w)
	c := command("flights", "c-1", "BookTrain")
	sendCommands(t, b, c)
	r, err := nextResult(t, replies, wait)
	if err != nil {
		t.Fatal(err)
	}
	if r.res.CommandID != "c-1" || r.res.Status != protocol.StatusFailed || r.res.Error == nil ||
		r.res.Error.Type != "UnknownCommand" || r.res.Error.Retryable {
		t.Fatalf("result %+v (error %+v), want failed non-retryable UnknownCommand", r.res, r.res.Error)
	}
	if r.res.Step != c.Step || r.res.Attempt != c.Attempt || r.key != c.ProcessID {
		t.Errorf("result %+v does not echo the command", r.res)
	}
	dl := nextDeadLetter(t, dlq, wait)
	if !strings.Contains(dl.reason, `no handler for command "BookTrain"`) || !strings.Contains(dl.payload, `"c-1"`) {
		t.Errorf("dead letter reason %q payload %s", dl.reason, dl.payload)
	}
	if !strings.HasSuffix(dl.origin, "/jobs.flights") {
		t.Errorf("dead letter origin %q", dl.origin)
	}
	noMore(t, replies, "result", 200*time.Millisecond)
}

// AnyCommand serves commands without a handler of their own.
func TestAnyCommand(t *testing.T) {
	broker := memory.NewBroker()
	w := newWorker(t, broker, worker.Options{Service: "svc"}, map[string]worker.Handler{
		"A":               func(context.Context, *worker.Job) (any, error) { return "a", nil },
		worker.AnyCommand: func(_ context.Context, j *worker.Job) (any, error) { return "any:" + j.Command.Command, nil },
	})
	b := memory.New(memory.Options{Broker: broker})
	replies := subscribe(t, b, replyTopic)
	start(t, w)
	sendCommands(t, b, command("svc", "c-a", "A"), command("svc", "c-b", "B"))
	got := results(t, replies, 2, wait)
	if string(got["c-a"].res.Output) != `"a"` || string(got["c-b"].res.Output) != `"any:B"` {
		t.Fatalf("outputs %s and %s", got["c-a"].res.Output, got["c-b"].res.Output)
	}
}

// Garbage and envelopes that are not valid commands are dead-lettered with
// the reason; the worker keeps going and serves the valid command after
// them.
func TestBadMessagesAreDeadLettered(t *testing.T) {
	noAttempt := command("svc", "bad-attempt", "Do")
	noAttempt.Attempt = 0
	noReply := command("svc", "bad-reply", "Do")
	noReply.ReplyTo = ""
	tests := []struct {
		name    string
		payload []byte
		reason  string
	}{
		{"not JSON", []byte("\x00\xffgarbage"), "not a JSON envelope"},
		{"empty", []byte{}, "empty payload"},
		{"JSON that is not an envelope", []byte(`[1,2,3]`), "not a JSON envelope"},
		{"unknown envelope version", []byte(`{"v":99,"type":"command","id":"x","payload":{}}`), "envelope version 99 is newer"},
		{"wrong message type", envelope(t, protocol.TypeResult, "r-1", map[string]string{"command_id": "x"}), `unexpected message type "result"`},
		{"command without payload", []byte(`{"v":1,"type":"command","id":"x"}`), "command envelope has no payload"},
		{"command payload of the wrong shape", []byte(`{"v":1,"type":"command","id":"x","payload":[1]}`), "command payload"},
		{"invalid command: attempt 0", envelope(t, protocol.TypeCommand, "bad-attempt", noAttempt), "invalid command: command bad-attempt has attempt 0"},
		{"invalid command: no reply_to", envelope(t, protocol.TypeCommand, "bad-reply", noReply), "no reply_to"},
	}
	broker := memory.NewBroker()
	var runs atomic.Int32
	w := newWorker(t, broker, worker.Options{Service: "svc", Concurrency: 1}, map[string]worker.Handler{
		"Do": func(context.Context, *worker.Job) (any, error) { runs.Add(1); return "ok", nil },
	})
	b := memory.New(memory.Options{Broker: broker})
	replies := subscribe(t, b, replyTopic)
	dlq := subscribe(t, b, "jobs.svc-workers-DLQ")
	start(t, w)
	for _, tc := range tests {
		send(t, b, protocol.JobTopic("svc"), tc.payload)
	}
	sendCommands(t, b, command("svc", "valid", "Do"))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dl := nextDeadLetter(t, dlq, wait)
			if dl.payload != string(tc.payload) {
				t.Errorf("dead letter %q, want %q (in order)", dl.payload, tc.payload)
			}
			if !strings.Contains(dl.reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", dl.reason, tc.reason)
			}
		})
	}
	r, err := nextResult(t, replies, wait)
	if err != nil {
		t.Fatalf("the valid command after the bad ones got no result: %v", err)
	}
	if r.res.CommandID != "valid" || r.res.Status != protocol.StatusCompleted {
		t.Fatalf("result %+v", r.res)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("handler ran %d times, want once (bad messages must not run)", n)
	}
	noMore(t, dlq, "dead letter", 200*time.Millisecond)
}

// Never more than Concurrency handlers run at once, and that many do.
func TestConcurrencyLimit(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("concurrency %d", n), func(t *testing.T) {
			broker := memory.NewBroker()
			var active, peak atomic.Int32
			release := make(chan struct{})
			h := func(ctx context.Context, _ *worker.Job) (any, error) {
				a := active.Add(1)
				for {
					p := peak.Load()
					if a <= p || peak.CompareAndSwap(p, a) {
						break
					}
				}
				defer active.Add(-1)
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil, nil
			}
			w := newWorker(t, broker, worker.Options{Service: "svc", Concurrency: n}, map[string]worker.Handler{"Do": h})
			b := memory.New(memory.Options{Broker: broker})
			replies := subscribe(t, b, replyTopic)
			jobs := 4 * n
			for i := range jobs {
				sendCommands(t, b, command("svc", fmt.Sprintf("c-%d", i), "Do"))
			}
			start(t, w)
			waitFor(t, fmt.Sprintf("%d handlers running", n), wait, func() bool { return active.Load() == int32(n) })
			// Give the worker every chance to start one too many.
			time.Sleep(200 * time.Millisecond)
			close(release)
			results(t, replies, jobs, wait)
			if p := peak.Load(); p != int32(n) {
				t.Fatalf("peak %d handlers at once, want %d", p, n)
			}
		})
	}
}

// Graceful shutdown: once Run's context ends, jobs that finish within
// ShutdownGrace publish their results; jobs still running then are
// released, taken by another instance on the same subscription, never
// lost and never reported failed. A handler that ignores its context does
// not hold Run past the grace either.
func TestGracefulShutdown(t *testing.T) {
	for _, bs := range []buses{memoryBuses(), pulsarBuses()} {
		t.Run(bs.name, func(t *testing.T) {
			t.Parallel()
			testGracefulShutdown(t, bs)
		})
	}
}

func testGracefulShutdown(t *testing.T, bs buses) {
	finish := make(chan struct{})    // lets the "Fast" jobs of A finish
	stuckDone := make(chan struct{}) // ends A's handler that ignores ctx, at the end of the test
	defer close(stuckDone)
	var startedA atomic.Int32
	var cancelledA atomic.Int32
	a := newWorkerOn(t, bs.conn(t), worker.Options{Service: "svc", Name: "A", Concurrency: 5, ShutdownGrace: 2 * time.Second, NackDelay: 50 * time.Millisecond},
		map[string]worker.Handler{
			"Fast": func(ctx context.Context, _ *worker.Job) (any, error) {
				startedA.Add(1)
				select {
				case <-finish:
					return "A", nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			},
			"Slow": func(ctx context.Context, _ *worker.Job) (any, error) {
				startedA.Add(1)
				<-ctx.Done()
				cancelledA.Add(1)
				return nil, ctx.Err()
			},
			"Stuck": func(context.Context, *worker.Job) (any, error) {
				startedA.Add(1)
				<-stuckDone // ignores its context
				return "A-late", nil
			},
		})
	var deliveriesB sync.Map // command id → Job.Delivery as B saw it
	bEverything := func(_ context.Context, j *worker.Job) (any, error) {
		deliveriesB.Store(j.CommandID, j.Delivery)
		return "B", nil
	}
	bw := newWorkerOn(t, bs.conn(t), worker.Options{Service: "svc", Name: "B", Concurrency: 5},
		map[string]worker.Handler{"Fast": bEverything, "Slow": bEverything, "Stuck": bEverything})

	b := bs.conn(t)
	replies := subscribe(t, b, replyTopic)
	ra := start(t, a)
	sendCommands(t, b, command("svc", "fast-1", "Fast"), command("svc", "fast-2", "Fast"),
		command("svc", "slow-1", "Slow"), command("svc", "slow-2", "Slow"), command("svc", "stuck", "Stuck"))
	waitFor(t, "A to hold all five jobs", wait, func() bool { return startedA.Load() == 5 })
	start(t, bw) // B waits on the same subscription; nothing is left for it yet

	ra.cancel()
	close(finish) // the fast jobs finish within the grace
	if err := ra.stop(t, wait); err != nil {
		t.Fatalf("Run: %v", err)
	}
	waitFor(t, "both slow handlers of A to see their context end", wait, func() bool { return cancelledA.Load() == 2 })
	got := results(t, replies, 5, wait)
	want := map[string]string{"fast-1": "A", "fast-2": "A", "slow-1": "B", "slow-2": "B", "stuck": "B"}
	for id, who := range want {
		r := got[id].res
		if r.Status != protocol.StatusCompleted {
			t.Errorf("%s: %+v (error %+v), want completed, never failed", id, r, r.Error)
			continue
		}
		if r.Worker != who || string(r.Output) != `"`+who+`"` {
			t.Errorf("%s: done by %s with output %s, want by %s", id, r.Worker, r.Output, who)
		}
		if who == "B" {
			// A had it before: B's delivery is a redelivery. Pulsar does
			// not count a redelivery caused by the consumer closing, and
			// a nack still pending in the client when it closes is lost
			// (see the report on pulsarbus), so only the embedded bus is
			// held to it.
			d, _ := deliveriesB.Load(id)
			switch {
			case bs.name == "memory" && (d == nil || d.(int) < 1):
				t.Errorf("%s: B saw Delivery %v, want at least 1 (A had it first)", id, d)
			case bs.name != "memory":
				t.Logf("%s: B saw Delivery %v", id, d)
			}
		}
	}
	noMore(t, replies, "result", 300*time.Millisecond)
}

// A result too large for the broker is not a reason to run the job again
// and again: an oversized output fails the attempt for good
// (OutputTooLarge), an oversized error message is cut; the handler runs
// once.
func TestOversizedResultPulsar(t *testing.T) {
	t.Parallel()
	bs := pulsarBuses()
	huge := strings.Repeat("x", 6<<20) // over the broker's 5 MB
	var runs sync.Map
	count := func(id string) {
		n, _ := runs.LoadOrStore(id, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
	}
	w := newWorkerOn(t, bs.conn(t), worker.Options{Service: "svc", NackDelay: 100 * time.Millisecond}, map[string]worker.Handler{
		"BigOutput": func(_ context.Context, j *worker.Job) (any, error) { count(j.CommandID); return huge, nil },
		"BigError": func(_ context.Context, j *worker.Job) (any, error) {
			count(j.CommandID)
			return nil, worker.NonRetryable("Refused", errors.New(huge))
		},
	})
	b := bs.conn(t)
	replies := subscribe(t, b, replyTopic)
	start(t, w)
	sendCommands(t, b, command("svc", "big-output", "BigOutput"), command("svc", "big-error", "BigError"))
	got := results(t, replies, 2, time.Minute)
	tests := []struct {
		id        string
		wantType  string
		retryable bool
	}{
		{"big-output", "OutputTooLarge", false},
		{"big-error", "Refused", false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			r := got[tc.id].res
			if r.Status != protocol.StatusFailed || r.Error == nil || r.Error.Type != tc.wantType || r.Error.Retryable != tc.retryable {
				t.Fatalf("result %+v (error %+v), want failed %s retryable %v", r, r.Error, tc.wantType, tc.retryable)
			}
			if len(r.Error.Message) > 64<<10 {
				t.Errorf("error message of %d bytes", len(r.Error.Message))
			}
			if n, _ := runs.Load(tc.id); n.(*atomic.Int32).Load() != 1 {
				t.Errorf("handler ran %d times, want once", n.(*atomic.Int32).Load())
			}
		})
	}
}
