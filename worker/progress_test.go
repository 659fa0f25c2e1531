package worker_test

import (
	"context"
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

// reportsFor returns the progress reports seen on c for one command, in
// order, once its result has been read.
func reportsFor(c bus.Consumer, commandID string) []progress {
	var out []progress
	for _, r := range reportsOf(c) {
		if r.p.CommandID == commandID {
			out = append(out, r)
		}
	}
	return out
}

// Workers report `started` so that the engine counts an attempt's timeout
// from the start of work: at once by default, only for work still running
// after StartedAfter otherwise (the result proves the start of quicker
// work), and at once again for commands with a schedule timeout.
func TestStartedReports(t *testing.T) {
	withSchedule := command("svc", "sched", "Quick")
	withSchedule.ScheduleTimeoutMS = 60000
	tests := []struct {
		name         string
		startedAfter time.Duration
		cmd          protocol.Command
		wantStarted  bool
		wantAfter    time.Duration // the started report comes at least this long after the job began
	}{
		{"every start at once with a negative StartedAfter", -1, command("svc", "now", "Quick"), true, 0},
		{"quick work is not reported by default", 0, command("svc", "quick0", "Quick"), false, 0},
		{"quick work after StartedAfter: the result proves the start", time.Second, command("svc", "quick", "Quick"), false, 0},
		{"slow work is reported after StartedAfter", 150 * time.Millisecond, command("svc", "slow", "Slow"), true, 150 * time.Millisecond},
		{"a schedule timeout is reported at once", time.Hour, withSchedule, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			broker := memory.NewBroker()
			var began sync.Map
			h := func(d time.Duration) worker.Handler {
				return func(ctx context.Context, j *worker.Job) (any, error) {
					began.Store(j.CommandID, time.Now())
					time.Sleep(d)
					return "ok", nil
				}
			}
			w := newWorker(t, broker, worker.Options{Service: "svc", Name: "w-1", StartedAfter: tc.startedAfter},
				map[string]worker.Handler{"Quick": h(0), "Slow": h(500 * time.Millisecond)})
			b := memory.New(memory.Options{Broker: broker})
			replies := subscribe(t, b, replyTopic)
			start(t, w)
			sendCommands(t, b, tc.cmd)
			res := results(t, replies, 1, wait)[tc.cmd.CommandID]
			if res.res.Status != protocol.StatusCompleted {
				t.Fatalf("result %+v", res.res)
			}
			reports := reportsFor(replies, tc.cmd.CommandID)
			if !tc.wantStarted {
				if len(reports) != 0 {
					t.Fatalf("reports %+v, want none", reports)
				}
				return
			}
			if len(reports) != 1 || reports[0].typ != protocol.TypeStarted {
				t.Fatalf("reports %+v, want one started before the result", reports)
			}
			r := reports[0]
			c := tc.cmd
			if r.key != c.ProcessID || r.env.ProcessID != c.ProcessID || r.env.CausationID != c.CommandID ||
				!strings.HasPrefix(r.env.ID, "started:"+c.CommandID+"@w-1#") {
				t.Errorf("envelope %+v (key %q) does not report %s", r.env, r.key, c.CommandID)
			}
			if r.p.CommandID != c.CommandID || r.p.ProcessID != c.ProcessID || r.p.Step != c.Step || r.p.Attempt != c.Attempt || r.p.Worker != "w-1" {
				t.Errorf("started %+v does not echo the command", r.p)
			}
			if err := r.p.Validate(); err != nil {
				t.Error(err)
			}
			b0, _ := began.Load(c.CommandID)
			if lag := r.env.Time.Sub(b0.(time.Time)); lag < tc.wantAfter-20*time.Millisecond {
				t.Errorf("started %s after the job began, want at least %s", lag, tc.wantAfter)
			}
		})
	}
}

// A command delivered again (its last holder shut down or crashed) is
// reported started at once, whatever StartedAfter says: the engine then
// counts its timeout again, which is how a command that keeps killing its
// workers still times out.
func TestStartedAtOnceOnRedelivery(t *testing.T) {
	broker := memory.NewBroker()
	var held atomic.Int32
	a := newWorker(t, broker, worker.Options{Service: "svc", Name: "A", ShutdownGrace: 100 * time.Millisecond, NackDelay: 10 * time.Millisecond, StartedAfter: time.Hour},
		map[string]worker.Handler{"Do": func(ctx context.Context, _ *worker.Job) (any, error) {
			held.Add(1)
			<-ctx.Done()
			return nil, ctx.Err()
		}})
	bw := newWorker(t, broker, worker.Options{Service: "svc", Name: "B", StartedAfter: time.Hour},
		map[string]worker.Handler{"Do": func(context.Context, *worker.Job) (any, error) { return "B", nil }})
	b := memory.New(memory.Options{Broker: broker})
	replies := subscribe(t, b, replyTopic)
	ra := start(t, a)
	sendCommands(t, b, command("svc", "again", "Do"))
	waitFor(t, "A to hold the job", wait, func() bool { return held.Load() == 1 })
	start(t, bw)
	if err := ra.stop(t, wait); err != nil {
		t.Fatal(err)
	}
	res := results(t, replies, 1, wait)["again"]
	if res.res.Worker != "B" {
		t.Fatalf("result %+v, want B's", res.res)
	}
	reports := reportsFor(replies, "again")
	if len(reports) != 1 || reports[0].typ != protocol.TypeStarted || reports[0].p.Worker != "B" || reports[0].p.Delivery < 1 {
		t.Fatalf("reports %+v, want B's started with its delivery count", reports)
	}
}

// A running job with a heartbeat timeout heartbeats about three times per
// period, by itself by default, only after Heartbeat calls with
// ManualHeartbeat; never after its result.
func TestHeartbeats(t *testing.T) {
	tests := []struct {
		name     string
		manual   bool
		calls    int // Heartbeat calls, one at the start of the job
		min, max int // heartbeats expected in 700 ms at one per 100 ms
	}{
		{"automatic while the handler runs", false, 0, 4, 8},
		{"manual: only after the handler's calls", true, 1, 1, 1},
		{"manual: a handler that never calls sends none", true, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			broker := memory.NewBroker()
			w := newWorker(t, broker, worker.Options{Service: "svc", Name: "w", ManualHeartbeat: tc.manual, StartedAfter: time.Hour},
				map[string]worker.Handler{"Long": func(ctx context.Context, _ *worker.Job) (any, error) {
					for range tc.calls {
						worker.Heartbeat(ctx)
					}
					time.Sleep(700 * time.Millisecond)
					return "done", nil
				}})
			b := memory.New(memory.Options{Broker: broker})
			replies := subscribe(t, b, replyTopic)
			start(t, w)
			c := command("svc", "long", "Long")
			c.HeartbeatTimeoutMS = 300
			c.TimeoutMS = 10000
			sendCommands(t, b, c)
			results(t, replies, 1, wait)
			noMore(t, replies, "reply after the result", 400*time.Millisecond)
			reports := reportsFor(replies, "long")
			if len(reports) == 0 || reports[0].typ != protocol.TypeStarted {
				t.Fatalf("reports %+v: the first must be started (a heartbeat needs the start reported)", reports)
			}
			ids := map[string]bool{}
			beats := 0
			for _, r := range reports[1:] {
				if r.typ != protocol.TypeHeartbeat || r.p.CommandID != "long" || r.key != c.ProcessID {
					t.Errorf("report %+v, want a heartbeat of long", r)
				}
				if ids[r.env.ID] {
					t.Errorf("two heartbeats with id %s", r.env.ID)
				}
				ids[r.env.ID] = true
				beats++
			}
			if beats < tc.min || beats > tc.max {
				t.Errorf("%d heartbeats, want %d..%d", beats, tc.min, tc.max)
			}
		})
	}
	t.Run("Heartbeat outside a handler does nothing", func(t *testing.T) {
		worker.Heartbeat(context.Background())
	})
}

// The handler's deadline is the start-to-close timeout from the job's
// start, or the step's deadline when that is earlier.
func TestHandlerDeadlineCountsFromTheStart(t *testing.T) {
	timeout := command("svc", "t", "Do")
	timeout.TimeoutMS = 2000
	stepFirst := command("svc", "d", "Do")
	stepFirst.TimeoutMS = 60000
	stepFirst.Deadline = time.Now().Add(30 * time.Second)
	type seen struct{ began, deadline time.Time }
	var mu sync.Mutex
	got := map[string]seen{}
	broker := memory.NewBroker()
	w := newWorker(t, broker, worker.Options{Service: "svc"}, map[string]worker.Handler{"Do": func(ctx context.Context, j *worker.Job) (any, error) {
		d, _ := ctx.Deadline()
		mu.Lock()
		got[j.CommandID] = seen{time.Now(), d}
		mu.Unlock()
		return nil, nil
	}})
	b := memory.New(memory.Options{Broker: broker})
	replies := subscribe(t, b, replyTopic)
	start(t, w)
	sendCommands(t, b, timeout, stepFirst)
	results(t, replies, 2, wait)
	mu.Lock()
	defer mu.Unlock()
	if s := got["t"]; s.deadline.Sub(s.began) > 2*time.Second || s.deadline.Sub(s.began) < 1900*time.Millisecond {
		t.Errorf("timeout 2s: deadline %s after the handler began", s.deadline.Sub(s.began))
	}
	if s := got["d"]; !s.deadline.Equal(stepFirst.Deadline) {
		t.Errorf("deadline %s, want the step's %s", s.deadline, stepFirst.Deadline)
	}
}

// heldBus holds back the broker's confirmations of SendAsync (the messages
// themselves are sent) until release, and counts blocking sends.
type heldBus struct {
	bus.Bus
	mu    sync.Mutex
	hold  bool
	held  []func()
	sends atomic.Int32
}

func (h *heldBus) Producer(ctx context.Context, o bus.ProducerOptions) (bus.Producer, error) {
	p, err := h.Bus.Producer(ctx, o)
	if err != nil {
		return nil, err
	}
	return &heldProducer{Producer: p, h: h}, nil
}

func (h *heldBus) release() {
	h.mu.Lock()
	h.hold = false
	fs := h.held
	h.held = nil
	h.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

type heldProducer struct {
	bus.Producer
	h *heldBus
}

func (p *heldProducer) Send(ctx context.Context, m *bus.OutMessage) (bus.MessageID, error) {
	p.h.sends.Add(1)
	return p.Producer.Send(ctx, m)
}

func (p *heldProducer) SendAsync(ctx context.Context, m *bus.OutMessage, done func(bus.MessageID, error)) {
	p.Producer.SendAsync(ctx, m, func(id bus.MessageID, err error) {
		p.h.mu.Lock()
		if p.h.hold {
			p.h.held = append(p.h.held, func() { done(id, err) })
			p.h.mu.Unlock()
			return
		}
		p.h.mu.Unlock()
		done(id, err)
	})
}

// Results are pipelined: with one job at a time, a worker whose results the
// broker has not confirmed yet goes on with the next jobs; each command is
// acknowledged when its result is confirmed, and a stopping worker waits
// for the confirmations of the results it sent.
func TestResultsArePipelined(t *testing.T) {
	broker := memory.NewBroker()
	hb := &heldBus{Bus: memory.New(memory.Options{Broker: broker}), hold: true}
	t.Cleanup(func() { _ = hb.Close() })
	var ran atomic.Int32
	h := func(context.Context, *worker.Job) (any, error) { ran.Add(1); return "ok", nil }
	w := newWorkerOn(t, hb, worker.Options{Service: "svc", Concurrency: 1, ShutdownGrace: 10 * time.Second}, map[string]worker.Handler{"Do": h})
	b := memory.New(memory.Options{Broker: broker})
	replies := subscribe(t, b, replyTopic)
	r := start(t, w)
	const n = 5
	for i := range n {
		sendCommands(t, b, command("svc", "c-"+string(rune('a'+i)), "Do"))
	}
	results(t, replies, n, wait)
	waitFor(t, "every job to run while no result is confirmed", wait, func() bool { return ran.Load() == n })
	if s := hb.sends.Load(); s != 0 {
		t.Errorf("%d blocking sends, want every result sent without waiting", s)
	}

	// Stopping waits for the confirmations of the results sent.
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop(t, wait) }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while results were unconfirmed", err)
	case <-time.After(300 * time.Millisecond):
	}
	hb.release()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}

	// Every command was acknowledged: another worker gets none of them.
	var again atomic.Int32
	w2 := newWorker(t, broker, worker.Options{Service: "svc"}, map[string]worker.Handler{"Do": func(context.Context, *worker.Job) (any, error) {
		again.Add(1)
		return "again", nil
	}})
	start(t, w2)
	noMore(t, replies, "result of a command run again", 500*time.Millisecond)
	if again.Load() != 0 {
		t.Errorf("%d commands ran again: their results' confirmations did not acknowledge them", again.Load())
	}
}
