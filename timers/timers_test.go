package timers_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/internal/testlog"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
)

const wait = 30 * time.Second // how long anything that must happen may take

// testLogger logs to t while the test runs and to stderr after it ended.
func testLogger(t testing.TB) zerolog.Logger { return testlog.New(t, zerolog.WarnLevel) }

// pulsarBus connects to the test broker in a namespace of the test's own.
func pulsarBus(t *testing.T) bus.Bus {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Pulsar broker; run without -short (make test)")
	}
	return pulsartest.Bus(t, pulsartest.Namespace("timers"), testLogger(t))
}

func TestMessage(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	valid := protocol.Timer{TimerID: "t1", ProcessID: "p1", Kind: "sleep", Step: "s", FireAt: now.Add(time.Minute), Target: "events"}
	with := func(f func(*protocol.Timer)) protocol.Timer { c := valid; f(&c); return c }
	tests := []struct {
		name      string
		timer     protocol.Timer
		maxHop    time.Duration
		wantErr   bool
		deliverAt time.Time
		envID     string
	}{
		{name: "due within the hop is delivered at its time", timer: valid, maxHop: time.Hour, deliverAt: now.Add(time.Minute), envID: "timer:t1:0"},
		{name: "longer than the hop is delivered at the hop", timer: valid, maxHop: 10 * time.Second, deliverAt: now.Add(10 * time.Second), envID: "timer:t1:0"},
		{name: "no hop given means DefaultMaxHop", timer: with(func(x *protocol.Timer) { x.FireAt = now.Add(48 * time.Hour) }), deliverAt: now.Add(timers.DefaultMaxHop), envID: "timer:t1:0"},
		{name: "overdue is delivered at once (its time)", timer: with(func(x *protocol.Timer) { x.FireAt = now.Add(-time.Second) }), maxHop: time.Hour, deliverAt: now.Add(-time.Second), envID: "timer:t1:0"},
		{name: "hops make the envelope id", timer: with(func(x *protocol.Timer) { x.Hops = 3 }), maxHop: time.Hour, deliverAt: now.Add(time.Minute), envID: "timer:t1:3"},
		{name: "no timer id", timer: with(func(x *protocol.Timer) { x.TimerID = "" }), wantErr: true},
		{name: "no process id", timer: with(func(x *protocol.Timer) { x.ProcessID = "" }), wantErr: true},
		{name: "no target", timer: with(func(x *protocol.Timer) { x.Target = "" }), wantErr: true},
		{name: "no fire time", timer: with(func(x *protocol.Timer) { x.FireAt = time.Time{} }), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := timers.Message(tc.timer, now, tc.maxHop)
			if tc.wantErr {
				if !errors.Is(err, bus.ErrBadOptions) {
					t.Fatalf("want ErrBadOptions, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !m.DeliverAt.Equal(tc.deliverAt) {
				t.Errorf("DeliverAt %v, want %v", m.DeliverAt, tc.deliverAt)
			}
			if m.Key != tc.timer.ProcessID {
				t.Errorf("key %q, want the process id", m.Key)
			}
			env, err := bus.DecodeEnvelope(m.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if env.Type != protocol.TypeTimer || env.ID != tc.envID || env.ProcessID != tc.timer.ProcessID {
				t.Errorf("envelope %+v", env)
			}
			var back protocol.Timer
			if err := env.DecodePayload(&back); err != nil {
				t.Fatal(err)
			}
			if back != tc.timer {
				t.Errorf("payload %+v, want %+v", back, tc.timer)
			}
		})
	}
}

// fired is a timer.fired event as the target topic got it.
type fired struct {
	env        *bus.Envelope
	key        string
	ev         protocol.TimerFired
	receivedAt time.Time
}

// relay starts a relay on b until the test ends.
func relay(t *testing.T, b bus.Bus, opts timers.RelayOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- timers.NewRelay(b, opts, testLogger(t)).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay: %v", err)
			}
		case <-time.After(wait):
			t.Error("relay did not stop")
		}
	})
}

// subscribe opens an exclusive consumer on a topic from its start.
func subscribe(t *testing.T, b bus.Bus, topic string) bus.Consumer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// sendRaw puts payloads on a topic, each delayed until its time if set.
func sendRaw(t *testing.T, b bus.Bus, topic string, msgs ...*bus.OutMessage) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, m := range msgs {
		if _, err := p.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// arm sends timers to the timers topic as the engine does.
func arm(t *testing.T, b bus.Bus, maxHop time.Duration, ts ...protocol.Timer) {
	t.Helper()
	var msgs []*bus.OutMessage
	for _, tm := range ts {
		m, err := timers.Message(tm, time.Now(), maxHop)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	sendRaw(t, b, protocol.TimersTopic, msgs...)
}

// nextFired waits for the next fired timer on c.
func nextFired(t *testing.T, c bus.Consumer, within time.Duration) (*fired, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	m, err := c.Receive(ctx)
	if err != nil {
		return nil, err
	}
	f := &fired{receivedAt: time.Now(), key: m.Key}
	if err := c.Ack(ctx, m); err != nil {
		t.Fatal(err)
	}
	if f.env, err = bus.DecodeEnvelope(m.Payload); err != nil {
		t.Fatalf("fired timer is not an envelope: %v", err)
	}
	if err := f.env.DecodePayload(&f.ev); err != nil {
		t.Fatal(err)
	}
	return f, nil
}

// checkFired checks a fired timer answers tm and did not fire early.
func checkFired(t *testing.T, f *fired, tm protocol.Timer) {
	t.Helper()
	if f.env.Type != protocol.TypeTimerFired || f.env.ID != "fired:"+tm.TimerID || f.env.ProcessID != tm.ProcessID || f.key != tm.ProcessID {
		t.Errorf("fired envelope %+v key %q does not answer timer %s", f.env, f.key, tm.TimerID)
	}
	if !strings.HasPrefix(f.env.CausationID, "timer:"+tm.TimerID+":") {
		t.Errorf("causation %q is not the timer message", f.env.CausationID)
	}
	if f.ev.TimerID != tm.TimerID || f.ev.Kind != tm.Kind || f.ev.Step != tm.Step || !f.ev.FireAt.Equal(tm.FireAt) || f.ev.Target != tm.Target {
		t.Errorf("fired %+v does not carry timer %+v", f.ev.Timer, tm)
	}
	if f.ev.FiredAt.Before(tm.FireAt) || f.receivedAt.Before(tm.FireAt) {
		t.Errorf("timer %s fired early: due %v, relayed at %v, received at %v", tm.TimerID, tm.FireAt, f.ev.FiredAt, f.receivedAt)
	}
}

// observed records what the relay's Observe hook saw.
type observed struct {
	mu   sync.Mutex
	late map[string][]time.Duration
}

func (o *observed) observe(kind string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.late == nil {
		o.late = map[string][]time.Duration{}
	}
	o.late[kind] = append(o.late[kind], d)
}

func (o *observed) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, l := range o.late {
		n += len(l)
	}
	return n
}

// warmUp waits until a relay on b relays a timer due now to target's
// topic: the relay is subscribed and its producers are open, so what is
// measured next is timers, not start-up.
func warmUp(t *testing.T, b bus.Bus, target bus.Consumer) {
	t.Helper()
	tm := protocol.Timer{TimerID: "warm-up", ProcessID: "p-warm", Kind: "warm-up", FireAt: time.Now(), Target: "fired"}
	arm(t, b, 0, tm)
	f, err := nextFired(t, target, wait)
	if err != nil {
		t.Fatalf("warm-up timer: %v", err)
	}
	checkFired(t, f, tm)
}

// fireMany arms n timers due 0.3–1.5 s from now and checks each fires
// once, on its target, never early. It returns their lateness as the
// target's consumer saw it, sorted.
func fireMany(t *testing.T, b bus.Bus, n int) []time.Duration {
	target := subscribe(t, b, "fired")
	var obs observed
	relay(t, b, timers.RelayOptions{Name: "relay-1", Observe: obs.observe})
	warmUp(t, b, target)
	base := time.Now()
	want := map[string]protocol.Timer{}
	var ts []protocol.Timer
	for i := range n {
		delay := 300*time.Millisecond + time.Duration(i)*(1200*time.Millisecond)/time.Duration(max(n-1, 1))
		tm := protocol.Timer{
			TimerID: fmt.Sprintf("t-%d", i), ProcessID: fmt.Sprintf("p-%d", i%7), Kind: []string{"sleep", "attempt_timeout"}[i%2],
			Step: "s", FireAt: base.Add(delay), Target: "fired",
		}
		want[tm.TimerID] = tm
		ts = append(ts, tm)
	}
	arm(t, b, 0, ts...)
	var late []time.Duration
	deadline := time.Now().Add(wait)
	for len(want) > 0 {
		f, err := nextFired(t, target, time.Until(deadline))
		if err != nil {
			t.Fatalf("%d timers never fired: %v", len(want), err)
		}
		tm, ok := want[f.ev.TimerID]
		if !ok {
			t.Fatalf("timer %s fired twice or was never armed", f.ev.TimerID)
		}
		delete(want, f.ev.TimerID)
		checkFired(t, f, tm)
		late = append(late, f.receivedAt.Sub(tm.FireAt))
	}
	waitFor(t, "Observe to see every timer", func() bool { return obs.count() == n+1 }) // and the warm-up
	obs.mu.Lock()
	for kind, ls := range obs.late {
		for _, l := range ls {
			if l < 0 {
				t.Errorf("Observe(%s) got a negative lateness %v", kind, l)
			}
		}
	}
	if len(obs.late["sleep"]) != (n+1)/2 || len(obs.late["attempt_timeout"]) != n/2 {
		t.Errorf("Observe saw %d sleep and %d attempt_timeout timers", len(obs.late["sleep"]), len(obs.late["attempt_timeout"]))
	}
	obs.mu.Unlock()
	slices.Sort(late)
	return late
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func TestTimersFireMemory(t *testing.T) {
	t.Parallel()
	late := fireMany(t, memory.New(memory.Options{}), 12)
	t.Logf("memory bus, %d timers: lateness p50 %v, p99 %v", len(late), percentile(late, 0.5), percentile(late, 0.99))
}

func TestTimersFirePulsar(t *testing.T) {
	t.Parallel()
	late := fireMany(t, pulsarBus(t), 40)
	t.Logf("Pulsar, %d timers due in 0.3-1.5s: lateness (due → received on the target) p50 %v, p99 %v, max %v",
		len(late), percentile(late, 0.5), percentile(late, 0.99), late[len(late)-1])
}

// A timer longer than MaxHop is re-armed hop by hop and fires once, at its
// time, not before.
func TestLongTimerHops(t *testing.T) {
	t.Parallel()
	for _, tc := range buses {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const maxHop = 300 * time.Millisecond
			b := tc.newBus(t)
			target := subscribe(t, b, "fired")
			relay(t, b, timers.RelayOptions{Name: "relay-1", MaxHop: maxHop})
			warmUp(t, b, target)
			tm := protocol.Timer{TimerID: "long", ProcessID: "p-1", Kind: "sleep", FireAt: time.Now().Add(time.Second), Target: "fired"}
			arm(t, b, maxHop, tm)
			f, err := nextFired(t, target, wait)
			if err != nil {
				t.Fatal(err)
			}
			checkFired(t, f, tm)
			t.Logf("%s: fired %v after its time, after %d hops", tc.name, f.receivedAt.Sub(tm.FireAt), f.ev.Hops)
			if f, err := nextFired(t, target, 700*time.Millisecond); err == nil {
				t.Fatalf("fired again: %+v", f.ev)
			}
			// Every hop on the timers topic asked the broker for MaxHop at
			// most, never past the timer's time, and the relay re-armed it
			// (the first hop, 300ms, came before the timer was due unless
			// the broker delivered it over 700ms late).
			hops := timerMessages(t, b, tm.TimerID)
			for i, h := range hops {
				if h.DeliverAt.IsZero() || h.DeliverAt.After(h.sentAt.Add(maxHop)) || h.DeliverAt.After(tm.FireAt) {
					t.Errorf("hop %d sent at %v asked for %v: more than %v ahead or past the timer's %v", i, h.sentAt, h.DeliverAt, maxHop, tm.FireAt)
				}
			}
			if len(hops) != f.ev.Hops+1 || len(hops) < 2 {
				t.Errorf("%d messages on the timers topic for a timer fired after %d hops; want hops+1 and at least 2", len(hops), f.ev.Hops)
			}
		})
	}
}

// hop is one message of a timer on the timers topic.
type hop struct {
	*bus.Message
	sentAt time.Time
}

// timerMessages reads every message of one timer on the timers topic.
func timerMessages(t *testing.T, b bus.Bus, timerID string) []hop {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	r, err := b.Reader(ctx, bus.ReaderOptions{Topic: protocol.TimersTopic})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []hop
	for {
		more, err := r.HasNext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			return out
		}
		m, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		env, err := bus.DecodeEnvelope(m.Payload)
		if err != nil {
			continue
		}
		var tm protocol.Timer
		if env.Type == protocol.TypeTimer && env.DecodePayload(&tm) == nil && tm.TimerID == timerID {
			out = append(out, hop{Message: m, sentAt: env.Time})
		}
	}
}

// Garbage, wrong types and incomplete timers on the timers topic are
// dead-lettered with the reason; the relay keeps going and fires the valid
// timers sent around them.
func TestBadTimersAreDeadLettered(t *testing.T) {
	t.Parallel()
	for _, tc := range buses {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := tc.newBus(t)
			testBadTimers(t, b)
		})
	}
}

func timerEnvelope(t *testing.T, typ string, payload any) []byte {
	t.Helper()
	env, err := bus.NewEnvelope(typ, "bad-"+typ, "p-1", time.Now(), payload)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testBadTimers(t *testing.T, b bus.Bus) {
	due := time.Now().Add(200 * time.Millisecond)
	full := protocol.Timer{TimerID: "x", ProcessID: "p-1", Kind: "sleep", FireAt: due, Target: "fired"}
	noTarget, noFireAt := full, full
	noTarget.Target = ""
	noFireAt.FireAt = time.Time{}
	bad := []struct {
		name    string
		payload []byte
		reason  string
	}{
		{"not JSON", []byte("garbage\x00"), "not a JSON envelope"},
		{"empty", []byte(" "), "empty payload"},
		{"unknown envelope version", []byte(`{"v":2,"type":"timer","id":"x","payload":{}}`), "envelope version 2 is newer"},
		{"wrong type", timerEnvelope(t, protocol.TypeCommand, map[string]string{"command_id": "c"}), `unexpected message type "command" on the timers topic`},
		{"no payload", []byte(`{"v":1,"type":"timer","id":"x"}`), "timer envelope has no payload"},
		{"payload of the wrong shape", []byte(`{"v":1,"type":"timer","id":"x","payload":"soon"}`), "timer payload"},
		{"fire_at not a time", []byte(`{"v":1,"type":"timer","id":"x","payload":{"timer_id":"x","process_id":"p","target":"fired","fire_at":"tomorrow"}}`), "timer payload"},
		{"no target", timerEnvelope(t, protocol.TypeTimer, noTarget), "timer needs timer_id, process_id, target and fire_at"},
		{"no fire time", timerEnvelope(t, protocol.TypeTimer, noFireAt), "timer needs timer_id, process_id, target and fire_at"},
	}
	target := subscribe(t, b, "fired")
	dlq := subscribe(t, b, protocol.TimersTopic+"-timer-relay-DLQ")
	relay(t, b, timers.RelayOptions{Name: "relay-1"})
	before := protocol.Timer{TimerID: "before", ProcessID: "p-1", Kind: "sleep", FireAt: due, Target: "fired"}
	after := protocol.Timer{TimerID: "after", ProcessID: "p-2", Kind: "sleep", FireAt: due, Target: "fired"}
	arm(t, b, 0, before)
	var msgs []*bus.OutMessage
	for _, x := range bad {
		msgs = append(msgs, &bus.OutMessage{Key: "p-1", Payload: x.payload})
	}
	sendRaw(t, b, protocol.TimersTopic, msgs...)
	arm(t, b, 0, after)

	got := map[string]string{} // payload → reason
	deadline := time.Now().Add(wait)
	for len(got) < len(bad) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		m, err := dlq.Receive(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%d of %d bad timers dead-lettered: %v", len(got), len(bad), err)
		}
		if err := dlq.Ack(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		got[string(m.Payload)] = m.Properties[bus.PropDLQReason]
	}
	for _, x := range bad {
		t.Run(x.name, func(t *testing.T) {
			reason, ok := got[string(x.payload)]
			if !ok {
				t.Fatalf("not dead-lettered")
			}
			if !strings.Contains(reason, x.reason) {
				t.Errorf("reason %q does not contain %q", reason, x.reason)
			}
		})
	}
	want := map[string]protocol.Timer{"before": before, "after": after}
	for len(want) > 0 {
		f, err := nextFired(t, target, wait)
		if err != nil {
			t.Fatalf("valid timers %v never fired: %v", want, err)
		}
		tm, ok := want[f.ev.TimerID]
		if !ok {
			t.Fatalf("unexpected fired timer %+v", f.ev)
		}
		delete(want, tm.TimerID)
		checkFired(t, f, tm)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if m, err := dlq.Receive(ctx); err == nil {
		t.Errorf("unexpected dead letter %q (%s)", m.Payload, m.Properties[bus.PropDLQReason])
	}
}

// busCase is a bus the relay is tested on.
type busCase struct {
	name   string
	newBus func(t *testing.T) bus.Bus
}

var buses = []busCase{
	{"memory", func(*testing.T) bus.Bus { return memory.New(memory.Options{}) }},
	{"pulsar", pulsarBus},
}

// A burst of timers due at the same instant, with long timers whose hop
// lands in the same instant mixed in, is relayed in batches by parallel
// loops: every timer fires exactly once, on its target, keyed by its
// process, never early, and every hop is re-armed.
func TestBurstRelayedOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range buses {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const (
				n      = 200
				long   = 10
				maxHop = 1500 * time.Millisecond
			)
			b := tc.newBus(t)
			target := subscribe(t, b, "fired")
			var obs observed
			relay(t, b, timers.RelayOptions{Name: "relay-1", MaxHop: maxHop, BatchSize: 32, Loops: 2, Observe: obs.observe})
			warmUp(t, b, target)
			due := time.Now().Add(maxHop) // where the long timers' first hop lands too
			want := map[string]protocol.Timer{}
			var ts []protocol.Timer
			for i := range n + long {
				tm := protocol.Timer{TimerID: fmt.Sprintf("t-%d", i), ProcessID: fmt.Sprintf("p-%d", i%13), Kind: "sleep", FireAt: due, Target: "fired"}
				if i >= n {
					tm.TimerID, tm.Kind, tm.FireAt = fmt.Sprintf("long-%d", i), "deadline", due.Add(time.Second)
				}
				want[tm.TimerID] = tm
				ts = append(ts, tm)
			}
			arm(t, b, maxHop, ts...)
			hops := map[int]int{}
			deadline := time.Now().Add(wait)
			for len(want) > 0 {
				f, err := nextFired(t, target, time.Until(deadline))
				if err != nil {
					t.Fatalf("%d of %d timers never fired: %v", len(want), n+long, err)
				}
				tm, ok := want[f.ev.TimerID]
				if !ok {
					t.Fatalf("timer %s fired twice or was never armed", f.ev.TimerID)
				}
				delete(want, tm.TimerID)
				checkFired(t, f, tm)
				if strings.HasPrefix(tm.TimerID, "long-") {
					hops[f.ev.Hops]++
				}
			}
			// A long timer's first delivery comes with the burst, before its
			// time, and is re-armed (unless arming them or relaying the burst took
			// over a second: it is not asserted).
			t.Logf("long timers by hops before firing: %v", hops)
			if f, err := nextFired(t, target, 500*time.Millisecond); err == nil {
				t.Fatalf("timer %s fired again", f.ev.TimerID)
			}
			waitFor(t, "Observe to see every timer", func() bool { return obs.count() == n+long+1 })
		})
	}
}

// A timer whose send to its target fails is nacked on its own and relayed
// when it comes back, after the nack delay; the rest of its batch is relayed
// once. A timer relayed but not acknowledged comes back and is relayed again
// as the same event (same envelope id), which is what makes it harmless.
func TestFailuresRedeliverOnlyTheirTimer(t *testing.T) {
	t.Parallel()
	for _, tc := range buses {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fb := &failingBus{Bus: tc.newBus(t), target: "fired",
				sendFailures: map[string]int{"send-fails-1": 1, "send-fails-2": 2},
				ackFailures:  map[string]int{"ack-fails": 1},
				sends:        map[string][]time.Time{},
			}
			target := subscribe(t, fb, "fired")
			relay(t, fb, timers.RelayOptions{Name: "relay-1"})
			warmUp(t, fb, target)
			due := time.Now().Add(time.Second)
			want := map[string]protocol.Timer{}
			var ts []protocol.Timer
			for i := range 20 {
				tm := protocol.Timer{TimerID: fmt.Sprintf("t-%d", i), ProcessID: fmt.Sprintf("p-%d", i), Kind: "sleep", FireAt: due, Target: "fired"}
				switch i {
				case 5:
					tm.TimerID = "send-fails-1"
				case 10:
					tm.TimerID = "send-fails-2"
				case 15:
					tm.TimerID = "ack-fails"
				}
				want[tm.TimerID] = tm
				ts = append(ts, tm)
			}
			arm(t, fb, 0, ts...)
			seen := map[string][]*fired{}
			deadline := time.Now().Add(wait)
			for got := 0; got < len(ts)+1; got++ { // ack-fails comes twice
				f, err := nextFired(t, target, time.Until(deadline))
				if err != nil {
					t.Fatalf("%d of %d fired events: %v (so far: %v)", got, len(ts)+1, err, slices.Sorted(maps.Keys(seen)))
				}
				tm, ok := want[f.ev.TimerID]
				if !ok {
					t.Fatalf("unexpected fired timer %+v", f.ev)
				}
				checkFired(t, f, tm)
				seen[tm.TimerID] = append(seen[tm.TimerID], f)
			}
			if f, err := nextFired(t, target, 700*time.Millisecond); err == nil {
				t.Fatalf("timer %s fired again", f.ev.TimerID)
			}
			for id := range want {
				fs := seen[id]
				wantEvents := 1
				if id == "ack-fails" {
					wantEvents = 2
				}
				if len(fs) != wantEvents {
					t.Errorf("timer %s: %d fired events on the target, want %d", id, len(fs), wantEvents)
					continue
				}
				if fs[0].env.ID != fs[len(fs)-1].env.ID {
					t.Errorf("timer %s relayed again under another envelope id: %s, then %s", id, fs[0].env.ID, fs[len(fs)-1].env.ID)
				}
			}
			fb.mu.Lock()
			defer fb.mu.Unlock()
			for id := range want {
				attempts := fb.sends[id]
				wantSends := 1 + map[string]int{"send-fails-1": 1, "send-fails-2": 2, "ack-fails": 1}[id]
				if len(attempts) != wantSends {
					t.Errorf("timer %s: %d sends to the target, want %d", id, len(attempts), wantSends)
					continue
				}
				for i := 1; i < len(attempts); i++ {
					// The subscription's nack delay (1s) is a minimum.
					if gap := attempts[i].Sub(attempts[i-1]); gap < 900*time.Millisecond {
						t.Errorf("timer %s: send %d came %v after the failed one, before the nack delay", id, i+1, gap)
					}
				}
			}
		})
	}
}

// errInjected is the failure failingBus makes up.
var errInjected = fmt.Errorf("%w: injected by the test", bus.ErrUnavailable)

// failingBus fails the first sends to target of the fired events of the
// timers in sendFailures, and the first acknowledgements on the timers
// topic of the timers in ackFailures, as many times as the maps say.
type failingBus struct {
	bus.Bus
	target string

	mu           sync.Mutex
	sendFailures map[string]int
	ackFailures  map[string]int
	sends        map[string][]time.Time // timer id → when each send to target was tried
}

func (f *failingBus) Producer(ctx context.Context, opts bus.ProducerOptions) (bus.Producer, error) {
	p, err := f.Bus.Producer(ctx, opts)
	if err != nil || opts.Topic != f.target {
		return p, err
	}
	return &failingProducer{Producer: p, f: f}, nil
}

func (f *failingBus) Subscribe(ctx context.Context, opts bus.SubscribeOptions) (bus.Consumer, error) {
	c, err := f.Bus.Subscribe(ctx, opts)
	if err != nil || opts.Topic != protocol.TimersTopic {
		return c, err
	}
	return &failingConsumer{Consumer: c, f: f}, nil
}

// fail counts down the failures left for a payload's timer.
func (f *failingBus) fail(payload []byte, left map[string]int, record bool) error {
	env, err := bus.DecodeEnvelope(payload)
	if err != nil {
		return nil
	}
	var tm protocol.Timer // a timer, or the timer of a timer.fired event
	if err := env.DecodePayload(&tm); err != nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if record {
		f.sends[tm.TimerID] = append(f.sends[tm.TimerID], time.Now())
	}
	if left[tm.TimerID] > 0 {
		left[tm.TimerID]--
		return errInjected
	}
	return nil
}

type failingProducer struct {
	bus.Producer
	f *failingBus
}

func (p *failingProducer) Send(ctx context.Context, msg *bus.OutMessage) (bus.MessageID, error) {
	if err := p.f.fail(msg.Payload, p.f.sendFailures, true); err != nil {
		return nil, err
	}
	return p.Producer.Send(ctx, msg)
}

func (p *failingProducer) SendAsync(ctx context.Context, msg *bus.OutMessage, done func(bus.MessageID, error)) {
	if err := p.f.fail(msg.Payload, p.f.sendFailures, true); err != nil {
		done(nil, err)
		return
	}
	p.Producer.SendAsync(ctx, msg, done)
}

type failingConsumer struct {
	bus.Consumer
	f *failingBus
}

func (c *failingConsumer) Ack(ctx context.Context, msg *bus.Message) error {
	if err := c.f.fail(msg.Payload, c.f.ackFailures, false); err != nil {
		return err
	}
	return c.Consumer.Ack(ctx, msg)
}
