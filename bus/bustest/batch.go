package bustest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

var batchTests = []test{
	{"TxTwoRounds", testBatchTxTwoRounds},
	{"TxFailure", testBatchTxFailure},
	{"ForwardNoTx", testBatchForward},
	{"PipelineOrder", testPipelineOrder},
	{"PipelineAbortsAfterFailure", testPipelineAborts},
}

// inputs sends n messages to a new topic and receives them on a Failover
// subscription: the inputs a batch acknowledges.
func (s *suite) inputs(t *testing.T, b bus.Bus, n int) (bus.Consumer, bus.SubscribeOptions, []*bus.Message) {
	t.Helper()
	in := unique("batch-in")
	o := bus.SubscribeOptions{Topic: in, Subscription: unique("sub"), Type: bus.Failover, ConsumerName: "relay", NackDelay: s.o.NackDelay}
	c := s.subscribe(t, b, o)
	p := s.producer(t, b, in)
	for i := range n {
		send(t, p, &bus.OutMessage{Key: fmt.Sprintf("in-%d", i), Payload: payload("in", i)})
	}
	msgs := make([]*bus.Message, n)
	for i := range n {
		msgs[i] = s.receive(t, c, fmt.Sprintf("input %d", i))
	}
	return c, o, msgs
}

// testBatchTxTwoRounds is the orchestrator's commit: a first round of sends
// to a partitioned topic whose ids go into a second round, the inputs
// acknowledged, all in one transaction; nothing is visible before Commit,
// everything once after, and the inputs are not delivered again.
func testBatchTxTwoRounds(t *testing.T, s *suite) {
	const keys, each = 6, 3
	b := s.bus(t)
	c, o, ins := s.inputs(t, b, 4)
	first, second := unique("batch-first"), unique("batch-second")
	s.ensure(t, b, bus.TopicSpec{Name: first, Partitions: s.o.Partitions})
	firstC := s.subscribe(t, b, bus.SubscribeOptions{Topic: first, Subscription: unique("out"), Type: bus.Exclusive})
	secondC := s.subscribe(t, b, bus.SubscribeOptions{Topic: second, Subscription: unique("out"), Type: bus.Exclusive})
	p1, p2 := s.producer(t, b, first), s.producer(t, b, second)
	tx, err := b.BeginTx(s.ctx(t), time.Minute)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	batch := bus.NewBatch(bus.BatchOptions{Tx: tx})
	ids := map[string][]bus.MessageID{}
	var mu sync.Mutex
	for i := range each {
		for k := range keys {
			key := fmt.Sprintf("proc-%d", k)
			batch.Send(p1, &bus.OutMessage{Key: key, Payload: payload(key, i)}, func(id bus.MessageID) {
				mu.Lock()
				ids[key] = append(ids[key], id)
				mu.Unlock()
			})
		}
	}
	for _, m := range ins {
		batch.Ack(c, m)
	}
	if err := batch.Wait(s.ctx(t)); err != nil {
		t.Fatalf("first round: %v", err)
	}
	for k := range keys {
		key := fmt.Sprintf("proc-%d", k)
		if len(ids[key]) != each {
			t.Fatalf("%s: %d ids after Wait, want %d", key, len(ids[key]), each)
		}
		batch.Send(p2, &bus.OutMessage{Key: key, Payload: []byte(fmt.Sprintf("%s:%d", key, len(ids[key])))}, nil)
	}
	s.none(t, firstC, "the first round before Commit")
	if err := batch.Commit(s.ctx(t)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	last := map[string]string{}
	for n := range keys * each {
		m := s.receive(t, firstC, fmt.Sprintf("first-round message %d", n))
		ack(t, firstC, m)
		if prev := last[m.Key]; prev >= string(m.Payload) {
			t.Fatalf("key %s: %q after %q", m.Key, m.Payload, prev)
		}
		last[m.Key] = string(m.Payload)
	}
	for range keys {
		m := s.receive(t, secondC, "a second-round message")
		ack(t, secondC, m)
		if !strings.HasSuffix(string(m.Payload), fmt.Sprintf(":%d", each)) {
			t.Fatalf("second round carries %q", m.Payload)
		}
	}
	s.none(t, firstC, "after the committed batch")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	s.none(t, s.subscribe(t, b, o), "inputs acknowledged by the committed batch")
}

// testBatchTxFailure: a send that fails (too large) fails the batch:
// nothing of it is visible and its inputs come again.
func testBatchTxFailure(t *testing.T, s *suite) {
	b := s.bus(t)
	c, _, ins := s.inputs(t, b, 2)
	out := unique("batch-fail")
	outC := s.subscribe(t, b, bus.SubscribeOptions{Topic: out, Subscription: unique("out"), Type: bus.Exclusive})
	p := s.producer(t, b, out)
	tx, err := b.BeginTx(s.ctx(t), time.Minute)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	batch := bus.NewBatch(bus.BatchOptions{Tx: tx})
	batch.Send(p, &bus.OutMessage{Key: "a", Payload: []byte("fine")}, nil)
	batch.Send(p, &bus.OutMessage{Key: "b", Payload: make([]byte, bus.MaxPayloadBytes+1)}, nil)
	for _, m := range ins {
		batch.Ack(c, m)
	}
	err = batch.Commit(s.ctx(t))
	if !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("Commit: got %v, want an error wrapping bus.ErrTooLarge", err)
	}
	s.none(t, outC, "sends of a failed batch")
	got := map[string]bool{}
	for range ins {
		m := s.receive(t, c, "an input of the failed batch, again")
		got[string(m.Payload)] = true
		ack(t, c, m)
	}
	for _, m := range ins {
		if !got[string(m.Payload)] {
			t.Fatalf("input %q did not come again (got %v)", m.Payload, got)
		}
	}
}

// testBatchForward is the relays' way: without a transaction each input is
// acknowledged once its own message is sent, and the one whose send fails
// is nacked and comes again.
func testBatchForward(t *testing.T, s *suite) {
	b := s.bus(t)
	c, _, ins := s.inputs(t, b, 5)
	out := unique("batch-fwd")
	outC := s.subscribe(t, b, bus.SubscribeOptions{Topic: out, Subscription: unique("out"), Type: bus.Exclusive})
	p := s.producer(t, b, out)
	batch := bus.NewBatch(bus.BatchOptions{})
	for i, m := range ins {
		msg := &bus.OutMessage{Key: m.Key, Payload: m.Payload}
		if i == 2 {
			msg.Payload = make([]byte, bus.MaxPayloadBytes+1)
		}
		batch.Forward(p, msg, c, m, nil)
	}
	if err := batch.Commit(s.ctx(t)); !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("Commit: got %v, want the oversized send's error", err)
	}
	for range len(ins) - 1 {
		m := s.receive(t, outC, "a forwarded message")
		ack(t, outC, m)
		if string(m.Payload) == string(ins[2].Payload) {
			t.Fatal("the failed forward arrived")
		}
	}
	again := s.receive(t, c, "the input whose forward failed")
	if string(again.Payload) != string(ins[2].Payload) {
		t.Fatalf("came again: %q, want %q (the others were acknowledged)", again.Payload, ins[2].Payload)
	}
	ack(t, c, again)
	s.none(t, c, "inputs whose forward succeeded")
}

// testPipelineOrder runs batches through a Pipeline: each sends the next
// number of a few keys and acknowledges its input; commits and callbacks
// come in order, and every key's numbers arrive in order.
func testPipelineOrder(t *testing.T, s *suite) {
	const batches, keys = 12, 4
	b := s.bus(t)
	c, o, ins := s.inputs(t, b, batches)
	out := unique("pipe-out")
	s.ensure(t, b, bus.TopicSpec{Name: out, Partitions: s.o.Partitions})
	outC := s.subscribe(t, b, bus.SubscribeOptions{Topic: out, Subscription: unique("out"), Type: bus.Exclusive})
	p := s.producer(t, b, out)
	pipe := bus.NewPipeline(b, bus.PipelineOptions{Depth: 3, TxTimeout: time.Minute})
	var mu sync.Mutex
	var order []int
	errs := make(chan error, batches)
	for i := range batches {
		batch, err := pipe.Begin(s.ctx(t))
		if err != nil {
			t.Fatalf("begin %d: %v", i, err)
		}
		for k := range keys {
			key := fmt.Sprintf("k%d", k)
			batch.Send(p, &bus.OutMessage{Key: key, Payload: payload(key, i)}, nil)
		}
		batch.Ack(c, ins[i])
		pipe.Commit(s.ctx(t), batch, func(err error) {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if err != nil {
				errs <- fmt.Errorf("batch %d: %w", i, err)
			}
		})
	}
	if err := pipe.Wait(s.ctx(t)); err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, n := range order {
		if i != n {
			t.Fatalf("callbacks in order %v", order)
		}
	}
	last := map[string]string{}
	for n := range batches * keys {
		m := s.receive(t, outC, fmt.Sprintf("message %d", n))
		ack(t, outC, m)
		if prev := last[m.Key]; prev >= string(m.Payload) {
			t.Fatalf("key %s: %q after %q", m.Key, m.Payload, prev)
		}
		last[m.Key] = string(m.Payload)
	}
	s.none(t, outC, "after every batch")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	s.none(t, s.subscribe(t, b, o), "inputs acknowledged by committed batches")
}

// gate is a producer whose sends wait until it opens.
type gate struct {
	bus.Producer
	open chan struct{}
}

func (g *gate) SendAsync(ctx context.Context, msg *bus.OutMessage, done func(bus.MessageID, error)) {
	<-g.open
	g.Producer.SendAsync(ctx, msg, done)
}

// testPipelineAborts: when batch 2 fails, batches 3 and 4, begun before the
// failure was reported, are aborted with ErrAborted (nothing of them is
// visible and their inputs come again); batch 5, begun after, commits.
func testPipelineAborts(t *testing.T, s *suite) {
	b := s.bus(t)
	c, _, ins := s.inputs(t, b, 5)
	out := unique("pipe-abort")
	outC := s.subscribe(t, b, bus.SubscribeOptions{Topic: out, Subscription: unique("out"), Type: bus.Exclusive})
	p := s.producer(t, b, out)
	g := &gate{Producer: p, open: make(chan struct{})}
	pipe := bus.NewPipeline(b, bus.PipelineOptions{Depth: 4, TxTimeout: time.Minute})
	results := make([]chan error, 5)
	run := func(i int, prod bus.Producer, msg *bus.OutMessage) {
		batch, err := pipe.Begin(s.ctx(t))
		if err != nil {
			t.Fatalf("begin %d: %v", i, err)
		}
		batch.Send(prod, msg, nil)
		batch.Ack(c, ins[i])
		results[i] = make(chan error, 1)
		pipe.Commit(s.ctx(t), batch, func(err error) { results[i] <- err })
	}
	run(0, g, &bus.OutMessage{Key: "k", Payload: []byte("batch 1")})
	run(1, p, &bus.OutMessage{Key: "k", Payload: make([]byte, bus.MaxPayloadBytes+1)})
	run(2, p, &bus.OutMessage{Key: "k", Payload: []byte("batch 3")})
	run(3, p, &bus.OutMessage{Key: "k", Payload: []byte("batch 4")})
	close(g.open)
	wait := func(i int) error {
		select {
		case err := <-results[i]:
			return err
		case <-time.After(s.o.Wait):
			t.Fatalf("batch %d not decided within %s", i+1, s.o.Wait)
			return nil
		}
	}
	if err := wait(0); err != nil {
		t.Fatalf("batch 1: %v", err)
	}
	if err := wait(1); !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("batch 2: got %v, want its send's ErrTooLarge", err)
	}
	for i := 2; i < 4; i++ {
		if err := wait(i); !errors.Is(err, bus.ErrAborted) || !errors.Is(err, bus.ErrTxFailed) || !errors.Is(err, bus.ErrTooLarge) {
			t.Fatalf("batch %d: got %v, want ErrAborted wrapping ErrTxFailed and batch 2's cause", i+1, err)
		}
	}
	run(4, p, &bus.OutMessage{Key: "k", Payload: []byte("batch 5")})
	if err := wait(4); err != nil {
		t.Fatalf("batch 5, begun after the failure: %v", err)
	}
	for _, want := range []string{"batch 1", "batch 5"} {
		m := s.receive(t, outC, want)
		ack(t, outC, m)
		if string(m.Payload) != want {
			t.Fatalf("got %q, want %q", m.Payload, want)
		}
	}
	s.none(t, outC, "sends of failed and aborted batches")
	got := map[string]bool{}
	for range 3 {
		m := s.receive(t, c, "an input of a batch that did not commit")
		got[string(m.Payload)] = true
		ack(t, c, m)
	}
	for _, i := range []int{1, 2, 3} {
		if !got[string(ins[i].Payload)] {
			t.Fatalf("input of batch %d did not come again (got %v)", i+1, got)
		}
	}
	s.none(t, c, "inputs of committed batches")
}
