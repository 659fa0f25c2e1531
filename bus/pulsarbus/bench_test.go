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
	warmRelay(b, r)
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

// warmRelay carries one message through the relay before the clock starts:
// on a broker just started the first messages of new topics waited ~29 s
// once (the whole 3 s run then measured 4 msgs/s), which is no figure of
// the broker's pace.
func warmRelay(b *testing.B, r relay) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sent := make(chan error, 1)
	r.send(ctx, "warm-up", make([]byte, benchPayload), func(err error) { sent <- err })
	if err := <-sent; err != nil {
		b.Fatalf("warm-up send: %v", err)
	}
	msgs, err := r.take(ctx, 1, time.Millisecond)
	if err != nil {
		b.Fatalf("warm-up receive: %v", err)
	}
	if err := r.forward(ctx, msgs, false); err != nil {
		b.Fatalf("warm-up relay: %v", err)
	}
	if _, err := r.result(ctx); err != nil {
		b.Fatalf("warm-up result: %v", err)
	}
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
	// The topics go when the benchmark ends (after close): a broker keeps
	// every topic it has loaded, and each run left two in public/default.
	b.Cleanup(func() { deleteTopics(b, in, out) })
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
	var sendErr firstErr
	for _, x := range msgs {
		m := x.(pulsar.Message)
		wg.Add(1)
		r.out.SendAsync(ctx, &pulsar.ProducerMessage{Key: m.Key(), Payload: m.Payload(), Transaction: txn},
			func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
				if err != nil {
					sendErr.set(err)
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
	if err := sendErr.get(); err != nil {
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
	var sendErr firstErr
	for _, x := range msgs {
		m := x.(*bus.Message)
		wg.Add(1)
		r.out.SendAsync(ctx, &bus.OutMessage{Key: m.Key, Payload: m.Payload, Tx: tx}, func(_ bus.MessageID, err error) {
			if err != nil {
				sendErr.set(err)
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
	if err := sendErr.get(); err != nil {
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

// BenchmarkConcurrentTx measures what the engine's transactions look like
// when many are open at once: benchConcTx goroutines each run transactions
// that acknowledge benchTxAcks input messages (a Shared subscription on a
// topic of benchTxParts partitions) and send one message to every partition
// of an output topic of benchTxParts partitions, the sends and the
// acknowledgements of one transaction issued from their own goroutines (so
// one transaction registers several partitions and subscriptions at once),
// then flush and commit. txns/s counts committed transactions; latency is a
// transaction's begin to its commit.
func BenchmarkConcurrentTx(b *testing.B) {
	b.Run("Raw", func(b *testing.B) { runConcurrentTxBench(b, openRawTx) })
	b.Run("Bus", func(b *testing.B) { runConcurrentTxBench(b, openBusTx) })
}

const (
	benchConcTx  = 8
	benchTxParts = 4
	benchTxAcks  = 4
)

// txBench is what one implementation (raw client or bus) provides to
// BenchmarkConcurrentTx.
type txBench interface {
	// fill sends n input messages and waits until the broker has them.
	fill(ctx context.Context, n int) error
	// receive receives one input message.
	receive(ctx context.Context) (any, error)
	// txn runs one transaction: acknowledge msgs and send one message with
	// each of keys, concurrently, then flush and commit.
	txn(ctx context.Context, msgs []any, keys []string) error
	close()
}

// partitionKeys returns one key per partition of a topic of n partitions,
// as the client's default router (Java String.hashCode modulo n) spreads them.
func partitionKeys(n int) []string {
	keys := make([]string, n)
	found := 0
	for i := 0; found < n; i++ {
		k := fmt.Sprintf("key-%d", i)
		var h uint32
		for j := 0; j < len(k); j++ {
			h = 31*h + uint32(k[j])
		}
		if p := int(h % uint32(n)); keys[p] == "" {
			keys[p] = k
			found++
		}
	}
	return keys
}

// concurrentTxTopics creates the partitioned input and output topics.
func concurrentTxTopics(b *testing.B) (in, out string) {
	bb := newBus(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in = "persistent://public/pulsarbus-test/" + unique("bench-ctx-in")
	out = "persistent://public/pulsarbus-test/" + unique("bench-ctx-out")
	for _, t := range []string{in, out} {
		if err := bb.EnsureTopic(ctx, bus.TopicSpec{Name: t, Partitions: benchTxParts}); err != nil {
			b.Fatal(err)
		}
	}
	return in, out
}

func runConcurrentTxBench(b *testing.B, open func(b *testing.B) txBench) {
	r := open(b)
	defer r.close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := r.fill(ctx, b.N*benchTxAcks); err != nil {
		b.Fatal(err)
	}
	keys := partitionKeys(benchTxParts)
	in := make(chan any, benchConcTx*benchTxAcks)
	go func() {
		defer close(in)
		for i := 0; i < b.N*benchTxAcks; i++ {
			m, err := r.receive(ctx)
			if err != nil {
				return
			}
			in <- m
		}
	}()
	var next atomic.Int64
	lats := make([][]time.Duration, benchConcTx)
	errs := make(chan error, benchConcTx)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range benchConcTx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				msgs := make([]any, 0, benchTxAcks)
				for range benchTxAcks {
					m, ok := <-in
					if !ok {
						errs <- fmt.Errorf("input closed after %d transactions", next.Load())
						return
					}
					msgs = append(msgs, m)
				}
				t0 := time.Now()
				if err := r.txn(ctx, msgs, keys); err != nil {
					errs <- err
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	var lat []time.Duration
	for _, l := range lats {
		lat = append(lat, l...)
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(float64(b.N)/el.Seconds(), "txns/s")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// --- plain pulsar-client-go ---

type rawTx struct {
	client pulsar.Client
	in     pulsar.Producer
	out    pulsar.Producer
	c      pulsar.Consumer
}

func openRawTx(b *testing.B) txBench {
	in, out := concurrentTxTopics(b)
	svc, _ := pulsartest.URLs(b)
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: svc, EnableTransaction: true, OperationTimeout: 30 * time.Second,
		Logger: plog.DefaultNopLogger()})
	if err != nil {
		b.Fatal(err)
	}
	r := &rawTx{client: client}
	po := func(topic string) pulsar.Producer {
		p, err := client.CreateProducer(pulsar.ProducerOptions{Topic: topic, BatchingMaxPublishDelay: time.Millisecond,
			BatcherBuilderType: pulsar.KeyBasedBatchBuilder})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	if r.c, err = client.Subscribe(pulsar.ConsumerOptions{Topic: in, SubscriptionName: "bench", Type: pulsar.Shared}); err != nil {
		b.Fatal(err)
	}
	r.in, r.out = po(in), po(out)
	return r
}

func (r *rawTx) fill(ctx context.Context, n int) error {
	var wg sync.WaitGroup
	var sendErr firstErr
	for i := range n {
		wg.Add(1)
		r.in.SendAsync(ctx, &pulsar.ProducerMessage{Key: fmt.Sprintf("in-%d", i), Payload: make([]byte, benchPayload)},
			func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
				if err != nil {
					sendErr.set(err)
				}
				wg.Done()
			})
	}
	if err := r.in.FlushWithCtx(ctx); err != nil {
		return err
	}
	wg.Wait()
	return sendErr.get()
}

func (r *rawTx) receive(ctx context.Context) (any, error) { return r.c.Receive(ctx) }

func (r *rawTx) txn(ctx context.Context, msgs []any, keys []string) error {
	txn, err := r.client.NewTransaction(time.Minute)
	if err != nil {
		return err
	}
	var issued, sent sync.WaitGroup
	var opErr firstErr
	for _, k := range keys {
		issued.Add(1)
		sent.Add(1)
		go func() {
			defer issued.Done()
			r.out.SendAsync(ctx, &pulsar.ProducerMessage{Key: k, Payload: make([]byte, benchPayload), Transaction: txn},
				func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
					if err != nil {
						opErr.set(err)
					}
					sent.Done()
				})
		}()
	}
	for _, x := range msgs {
		issued.Add(1)
		go func() {
			defer issued.Done()
			if err := r.c.AckWithTxn(x.(pulsar.Message), txn); err != nil {
				opErr.set(err)
			}
		}()
	}
	issued.Wait()
	if err := r.out.FlushWithCtx(ctx); err != nil {
		return err
	}
	sent.Wait()
	if err := opErr.get(); err != nil {
		return err
	}
	return txn.Commit(ctx)
}

func (r *rawTx) close() {
	r.in.Close()
	r.out.Close()
	r.c.Close()
	r.client.Close()
}

// --- through bus.Bus ---

type busTx struct {
	b       bus.Bus
	in, out bus.Producer
	c       bus.Consumer
}

func openBusTx(b *testing.B) txBench {
	in, out := concurrentTxTopics(b)
	bb := newBus(b)
	ctx := context.Background()
	r := &busTx{b: bb}
	var err error
	if r.c, err = bb.Subscribe(ctx, bus.SubscribeOptions{Topic: in, Subscription: "bench", Type: bus.Shared}); err != nil {
		b.Fatal(err)
	}
	if r.in, err = bb.Producer(ctx, bus.ProducerOptions{Topic: in}); err != nil {
		b.Fatal(err)
	}
	if r.out, err = bb.Producer(ctx, bus.ProducerOptions{Topic: out}); err != nil {
		b.Fatal(err)
	}
	return r
}

func (r *busTx) fill(ctx context.Context, n int) error {
	var wg sync.WaitGroup
	var sendErr firstErr
	for i := range n {
		wg.Add(1)
		r.in.SendAsync(ctx, &bus.OutMessage{Key: fmt.Sprintf("in-%d", i), Payload: make([]byte, benchPayload)},
			func(_ bus.MessageID, err error) {
				if err != nil {
					sendErr.set(err)
				}
				wg.Done()
			})
	}
	if err := r.in.Flush(ctx); err != nil {
		return err
	}
	wg.Wait()
	return sendErr.get()
}

func (r *busTx) receive(ctx context.Context) (any, error) { return r.c.Receive(ctx) }

func (r *busTx) txn(ctx context.Context, msgs []any, keys []string) error {
	tx, err := r.b.BeginTx(ctx, time.Minute)
	if err != nil {
		return err
	}
	var issued, sent sync.WaitGroup
	var opErr firstErr
	for _, k := range keys {
		issued.Add(1)
		sent.Add(1)
		go func() {
			defer issued.Done()
			r.out.SendAsync(ctx, &bus.OutMessage{Key: k, Payload: make([]byte, benchPayload), Tx: tx}, func(_ bus.MessageID, err error) {
				if err != nil {
					opErr.set(err)
				}
				sent.Done()
			})
		}()
	}
	for _, x := range msgs {
		issued.Add(1)
		go func() {
			defer issued.Done()
			if err := r.c.AckTx(ctx, x.(*bus.Message), tx); err != nil {
				opErr.set(err)
			}
		}()
	}
	issued.Wait()
	if err := r.out.Flush(ctx); err != nil {
		return err
	}
	sent.Wait()
	if err := opErr.get(); err != nil {
		_ = tx.Abort(ctx)
		return err
	}
	return tx.Commit(ctx)
}

func (r *busTx) close() { _ = r.b.Close() }

// firstErr keeps the first error stored (atomic.Value panics on errors of
// different types).
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// BenchmarkDeliveryRecords measures what MaxDeliveries costs a consumer: a
// Shared subscription's backlog of b.N messages is received and acknowledged
// by benchConcTx goroutines, without MaxDeliveries (Plain), with it
// (MaxDeliveries: counted by the broker and this process) and with it
// counted durably (Durable, CountDeliveriesDurably: every delivery is
// recorded before Receive returns it, and every acknowledgement writes a
// tombstone; see deliveries.go).
func BenchmarkDeliveryRecords(b *testing.B) {
	for _, m := range []struct {
		name    string
		max     int
		durable bool
	}{{"Plain", 0, false}, {"MaxDeliveries", 5, false}, {"Durable", 5, true}} {
		b.Run(m.name, func(b *testing.B) {
			bb := newBus(b)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			topic := unique("bench-records")
			c, err := bb.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "bench", Type: bus.Shared,
				MaxDeliveries: m.max, CountDeliveriesDurably: m.durable})
			if err != nil {
				b.Fatal(err)
			}
			p, err := bb.Producer(ctx, bus.ProducerOptions{Topic: topic})
			if err != nil {
				b.Fatal(err)
			}
			fill := &busTx{in: p}
			if err := fill.fill(ctx, b.N); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			var errs firstErr
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range benchConcTx {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						msg, err := c.Receive(ctx)
						if err == nil {
							err = c.Ack(ctx, msg)
						}
						if err != nil {
							errs.set(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			if err := errs.get(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
		})
	}
}

// BenchmarkTxAcks measures acknowledging a batch's inputs in one
// transaction, as bus.Batch does: benchAckList inputs from the
// benchTxParts partitions of a topic, acknowledged with AckTx each
// (AckConcurrency calls at once: the path before bus.TxListAcker) or with
// one AckTxList, then committed. ack-ms is the median time from the first
// acknowledgement to the last answer; acks/s counts inputs acknowledged and
// committed. With -count, the modes alternate:
//
//	go test -run '^$' -bench BenchmarkTxAcks -benchtime 10x -count 3 ./bus/pulsarbus/
func BenchmarkTxAcks(b *testing.B) {
	for _, mode := range []string{"Each", "List"} {
		b.Run(mode, func(b *testing.B) { runTxAcksBench(b, mode) })
	}
}

const benchAckList = 128

func runTxAcksBench(b *testing.B, mode string) {
	in, _ := concurrentTxTopics(b)
	bb := newBus(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := bb.Subscribe(ctx, bus.SubscribeOptions{Topic: in, Subscription: "bench", Type: bus.Exclusive, ReceiveQueueSize: 2 * benchAckList})
	if err != nil {
		b.Fatal(err)
	}
	p, err := bb.Producer(ctx, bus.ProducerOptions{Topic: in})
	if err != nil {
		b.Fatal(err)
	}
	fill := &busTx{in: p}
	if err := fill.fill(ctx, b.N*benchAckList); err != nil {
		b.Fatal(err)
	}
	var lats []time.Duration
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		msgs := make([]*bus.Message, 0, benchAckList)
		for range benchAckList {
			m, err := c.Receive(ctx)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, m)
		}
		tx, err := bb.BeginTx(ctx, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if mode == "List" {
			err = c.(bus.TxListAcker).AckTxList(ctx, msgs, tx)
		} else {
			var wg sync.WaitGroup
			var first firstErr
			sem := make(chan struct{}, bus.DefaultAckConcurrency)
			for _, m := range msgs {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					if err := c.AckTx(ctx, m, tx); err != nil {
						first.set(err)
					}
				})
			}
			wg.Wait()
			err = first.get()
		}
		lats = append(lats, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start)
	b.StopTimer()
	slices.Sort(lats)
	b.ReportMetric(float64(lats[len(lats)/2])/float64(time.Millisecond), "ack-ms")
	b.ReportMetric(float64(b.N*benchAckList)/el.Seconds(), "acks/s")
}
