package pulsarbus_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

// The benchmarks measure a keyed relay, the engine's basic move: a message
// is sent to an input topic, a relay consumes it and sends a result to an
// output topic (acknowledging the input; with transactions, the result and
// the acknowledgement in one transaction), and a receiver consumes the
// result. Latency is from the input send to the result's receipt.
//
// .../Raw uses plain pulsar-client-go (no pulsaga code: the baseline);
// .../Bus does the same through bus.Bus (pulsarbus). Their ratio is the
// bus's overhead. Modes:
//
//	OneAtATime         one message in flight, no transaction
//	OneAtATimeTx       one message in flight, one transaction per message
//	Pipelined          up to benchWindow messages in flight, producer batching
//	PipelinedTx        the same, one transaction per message
//	PipelinedTxBatch   the same, one transaction per batch of up to 100 messages

const (
	benchKeys    = 16
	benchPayload = 100
	benchWindow  = 500
	benchTxBatch = 100
)

type benchMode struct {
	name     string
	inFlight int
	txBatch  int // 0: no transactions
}

var benchModes = []benchMode{
	{"OneAtATime", 1, 0},
	{"OneAtATimeTx", 1, 1},
	{"Pipelined", benchWindow, 0},
	{"PipelinedTx", benchWindow, 1},
	{"PipelinedTxBatch", benchWindow, benchTxBatch},
}

// relay is what one implementation (raw client or bus) provides.
type relay interface {
	// send sends to the input topic; done is called once.
	send(ctx context.Context, key string, payload []byte, done func(error))
	// take receives up to max input messages, waiting for the first and
	// at most linger for the others.
	take(ctx context.Context, max int, linger time.Duration) ([]any, error)
	// forward sends a result for every message and acknowledges them, in one
	// transaction when tx, and waits until it is done.
	forward(ctx context.Context, msgs []any, tx bool) error
	// result receives and acknowledges one result and returns its payload.
	result(ctx context.Context) ([]byte, error)
	close()
}

func runRelayBench(b *testing.B, open func(b *testing.B) relay, m benchMode) {
	r := open(b)
	defer r.close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	window := make(chan struct{}, m.inFlight)
	errs := make(chan error, 3)
	lat := make([]time.Duration, 0, b.N)
	var relayed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // sender
		defer wg.Done()
		for i := 0; i < b.N; i++ {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			p := make([]byte, benchPayload)
			binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
			r.send(ctx, fmt.Sprintf("proc-%d", i%benchKeys), p, func(err error) {
				if err != nil {
					errs <- fmt.Errorf("send: %w", err)
				}
			})
		}
	}()
	go func() { // relay
		defer wg.Done()
		batch := max(m.txBatch, 1)
		if m.txBatch == 0 {
			batch = benchTxBatch
		}
		for relayed.Load() < int64(b.N) {
			msgs, err := r.take(ctx, min(batch, b.N-int(relayed.Load())), 2*time.Millisecond)
			if err != nil {
				if ctx.Err() == nil {
					errs <- fmt.Errorf("relay receive: %w", err)
				}
				return
			}
			if m.txBatch > 1 || m.txBatch == 0 {
				if err := r.forward(ctx, msgs, m.txBatch > 0); err != nil {
					errs <- fmt.Errorf("relay: %w", err)
					return
				}
			} else {
				for _, msg := range msgs {
					if err := r.forward(ctx, []any{msg}, true); err != nil {
						errs <- fmt.Errorf("relay: %w", err)
						return
					}
				}
			}
			relayed.Add(int64(len(msgs)))
		}
	}()
	for len(lat) < b.N {
		p, err := r.result(ctx)
		if err != nil {
			b.Fatalf("receive result %d of %d: %v", len(lat)+1, b.N, err)
		}
		lat = append(lat, time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(p)))))
		<-window
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
	}
	el := time.Since(start)
	b.StopTimer()
	cancel()
	wg.Wait()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkRelay runs every mode on plain pulsar-client-go (Raw: the
// raw-Pulsar baseline) and through bus.Bus (Bus), one after the other so that
// both see the same machine load.
func BenchmarkRelay(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name+"/Raw", func(b *testing.B) { runRelayBench(b, openRaw, m) })
		b.Run(m.name+"/Bus", func(b *testing.B) { runRelayBench(b, openBus, m) })
	}
}

// --- plain pulsar-client-go ---

type rawRelay struct {
	client       pulsar.Client
	in, out      pulsar.Producer
	relayC, resC pulsar.Consumer
}

func openRaw(b *testing.B) relay {
	svc, _ := pulsartest.URLs(b)
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: svc, EnableTransaction: true, OperationTimeout: 30 * time.Second,
		Logger: plog.DefaultNopLogger()})
	if err != nil {
		b.Fatal(err)
	}
	in, out := "persistent://public/default/"+unique("bench-raw-in"), "persistent://public/default/"+unique("bench-raw-out")
	r := &rawRelay{client: client}
	po := func(topic string) pulsar.Producer {
		p, err := client.CreateProducer(pulsar.ProducerOptions{Topic: topic, BatchingMaxPublishDelay: time.Millisecond,
			BatcherBuilderType: pulsar.KeyBasedBatchBuilder})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	co := func(topic string) pulsar.Consumer {
		c, err := client.Subscribe(pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "bench", Type: pulsar.Failover})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	r.relayC, r.resC = co(in), co(out)
	r.in, r.out = po(in), po(out)
	return r
}

func (r *rawRelay) send(ctx context.Context, key string, payload []byte, done func(error)) {
	r.in.SendAsync(ctx, &pulsar.ProducerMessage{Key: key, Payload: payload}, func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) { done(err) })
}

func (r *rawRelay) take(ctx context.Context, n int, linger time.Duration) ([]any, error) {
	m, err := r.relayC.Receive(ctx)
	if err != nil {
		return nil, err
	}
	msgs := []any{m}
	deadline := time.NewTimer(linger)
	defer deadline.Stop()
	for len(msgs) < n {
		select {
		case cm := <-r.relayC.Chan():
			msgs = append(msgs, cm.Message)
		case <-deadline.C:
			return msgs, nil
		}
	}
	return msgs, nil
}

func (r *rawRelay) forward(ctx context.Context, msgs []any, tx bool) error {
	var txn pulsar.Transaction
	if tx {
		var err error
		if txn, err = r.client.NewTransaction(time.Minute); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	var sendErr atomic.Value
	for _, x := range msgs {
		m := x.(pulsar.Message)
		wg.Add(1)
		r.out.SendAsync(ctx, &pulsar.ProducerMessage{Key: m.Key(), Payload: m.Payload(), Transaction: txn},
			func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
				if err != nil {
					sendErr.Store(err)
				}
				wg.Done()
			})
		var err error
		if tx {
			err = r.relayC.AckWithTxn(m, txn)
		} else {
			err = r.relayC.Ack(m)
		}
		if err != nil {
			return err
		}
	}
	if err := r.out.FlushWithCtx(ctx); err != nil {
		return err
	}
	wg.Wait()
	if err, _ := sendErr.Load().(error); err != nil {
		return err
	}
	if tx {
		return txn.Commit(ctx)
	}
	return nil
}

func (r *rawRelay) result(ctx context.Context) ([]byte, error) {
	m, err := r.resC.Receive(ctx)
	if err != nil {
		return nil, err
	}
	return m.Payload(), r.resC.Ack(m)
}

func (r *rawRelay) close() {
	r.in.Close()
	r.out.Close()
	r.relayC.Close()
	r.resC.Close()
	r.client.Close()
}

// --- through bus.Bus ---

type busRelay struct {
	b            bus.Bus
	in, out      bus.Producer
	relayC, resC bus.Consumer
	// pending receives of the relay consumer (take uses one goroutine so
	// that lingering never loses a message).
	msgs chan *bus.Message
	stop context.CancelFunc
	wg   sync.WaitGroup
}

func openBus(b *testing.B) relay {
	bb := newBus(b)
	ctx := context.Background()
	in, out := unique("bench-bus-in"), unique("bench-bus-out")
	r := &busRelay{b: bb, msgs: make(chan *bus.Message, benchWindow)}
	var err error
	sub := func(topic string) bus.Consumer {
		c, err := bb.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "bench", Type: bus.Failover})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	r.relayC, r.resC = sub(in), sub(out)
	if r.in, err = bb.Producer(ctx, bus.ProducerOptions{Topic: in}); err != nil {
		b.Fatal(err)
	}
	if r.out, err = bb.Producer(ctx, bus.ProducerOptions{Topic: out}); err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(r.msgs)
		for {
			m, err := r.relayC.Receive(rctx)
			if err != nil {
				return
			}
			r.msgs <- m
		}
	}()
	return r
}

func (r *busRelay) send(ctx context.Context, key string, payload []byte, done func(error)) {
	r.in.SendAsync(ctx, &bus.OutMessage{Key: key, Payload: payload}, func(_ bus.MessageID, err error) { done(err) })
}

func (r *busRelay) take(ctx context.Context, n int, linger time.Duration) ([]any, error) {
	var msgs []any
	select {
	case m, ok := <-r.msgs:
		if !ok {
			return nil, bus.ErrClosed
		}
		msgs = append(msgs, m)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	deadline := time.NewTimer(linger)
	defer deadline.Stop()
	for len(msgs) < n {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				return msgs, nil
			}
			msgs = append(msgs, m)
		case <-deadline.C:
			return msgs, nil
		}
	}
	return msgs, nil
}

func (r *busRelay) forward(ctx context.Context, msgs []any, withTx bool) error {
	var tx bus.Tx
	if withTx {
		var err error
		if tx, err = r.b.BeginTx(ctx, time.Minute); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	var sendErr atomic.Value
	for _, x := range msgs {
		m := x.(*bus.Message)
		wg.Add(1)
		r.out.SendAsync(ctx, &bus.OutMessage{Key: m.Key, Payload: m.Payload, Tx: tx}, func(_ bus.MessageID, err error) {
			if err != nil {
				sendErr.Store(err)
			}
			wg.Done()
		})
		var err error
		if withTx {
			err = r.relayC.AckTx(ctx, m, tx)
		} else {
			err = r.relayC.Ack(ctx, m)
		}
		if err != nil {
			return err
		}
	}
	if err := r.out.Flush(ctx); err != nil {
		return err
	}
	wg.Wait()
	if err, _ := sendErr.Load().(error); err != nil {
		return err
	}
	if withTx {
		return tx.Commit(ctx)
	}
	return nil
}

func (r *busRelay) result(ctx context.Context) ([]byte, error) {
	m, err := r.resC.Receive(ctx)
	if err != nil {
		return nil, err
	}
	return m.Payload, r.resC.Ack(ctx, m)
}

func (r *busRelay) close() {
	r.stop()
	r.wg.Wait()
	_ = r.b.Close()
}
