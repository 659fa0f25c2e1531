package pulsarbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/pulsaga/pulsaga/bus"
)

// tx wraps a client transaction and remembers the messages acknowledged in
// it: when it aborts (or fails to commit) they are nacked so they come back,
// which the Go client does not do by itself; acknowledgements of batched
// messages are settled by their consumer when the outcome is known.
//
// Concurrent use: Producer.Send/SendAsync and Consumer.AckTx with one
// transaction may be called from several goroutines at once, on one or
// several producers and consumers. The first send to each topic-partition
// and the first acknowledgement on each (partition, subscription) of a
// transaction registers it with the transaction coordinator, a broker round
// trip made inside that call (SendAsync included); the patched client (see
// third_party/pulsar-client-go/PULSAGA.md) makes the registrations of
// different partitions overlap and pipelines the coordinator's requests, so
// a caller that sends a transaction's first message to each partition, and
// its acknowledgements, from goroutines of their own pays about one round
// trip instead of one per partition. Messages of one key keep their order
// only when sent from one goroutine. Commit and Abort must not be called
// before every send and acknowledgement of the transaction has returned
// (SendAsync: after Flush or the done callbacks); a send or acknowledgement
// after them fails with bus.ErrTxFailed.
type tx struct {
	b *Bus
	t pulsar.Transaction

	mu   sync.Mutex
	acks []txAck
	done bool
}

// txAck is one acknowledgement made in a transaction.
type txAck struct {
	c *consumer
	d *delivery
}

var _ bus.Tx = (*tx)(nil)

// BeginTx starts a transaction the broker aborts by itself after timeout.
func (b *Bus) BeginTx(ctx context.Context, timeout time.Duration) (bus.Tx, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("%w: BeginTx: timeout must be positive, got %s", bus.ErrBadOptions, timeout)
	}
	if b.isClosed() {
		return nil, fmt.Errorf("pulsarbus: begin transaction: %w", bus.ErrClosed)
	}
	type res struct {
		t   pulsar.Transaction
		err error
	}
	ch := make(chan res, 1)
	go func() {
		t, err := b.client.NewTransaction(timeout)
		ch <- res{t, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			err := wrap(r.err, "begin transaction on %s", b.cfg.ServiceURL)
			if !bus.Retryable(err) && !errors.Is(err, bus.ErrBadOptions) {
				// The coordinator not answering is the broker being away.
				err = fmt.Errorf("%w: %w", bus.ErrUnavailable, err)
			}
			return nil, err
		}
		return &tx{b: b, t: r.t}, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && r.t != nil {
				_ = r.t.Abort(context.Background())
			}
		}()
		return nil, fmt.Errorf("pulsarbus: begin transaction: %w", ctx.Err())
	}
}

func (t *tx) addAck(c *consumer, d *delivery) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return fmt.Errorf("pulsarbus: ack in transaction %v: %w: it already ended", t.t.GetTxnID(), bus.ErrTxFailed)
	}
	t.acks = append(t.acks, txAck{c: c, d: d})
	return nil
}

func (t *tx) finish() []txAck {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	acks := t.acks
	t.acks = nil
	return acks
}

// Commit commits the transaction. A failure wraps bus.ErrTxFailed; the
// transaction is then aborted and its acknowledged messages come back.
func (t *tx) Commit(ctx context.Context) error {
	err := t.t.Commit(ctx)
	if err == nil {
		for _, a := range t.finish() {
			a.c.txSettled(a.d, t, true)
		}
		return nil
	}
	// The client cannot abort a transaction in its error state; the broker
	// then aborts it at its timeout. Either way its effects are gone.
	if aerr := t.t.Abort(context.WithoutCancel(ctx)); aerr != nil {
		t.b.log.Debug().Err(aerr).Msg("abort after a failed commit")
	}
	for _, a := range t.finish() {
		a.c.txSettled(a.d, t, false)
	}
	return fmt.Errorf("pulsarbus: commit transaction %v: %w: %w", t.t.GetTxnID(), bus.ErrTxFailed, err)
}

// Abort aborts the transaction: its sends are dropped and its acknowledged
// messages are delivered again.
func (t *tx) Abort(ctx context.Context) error {
	err := t.t.Abort(ctx)
	for _, a := range t.finish() {
		a.c.txSettled(a.d, t, false)
	}
	if err != nil {
		var pe *pulsar.Error
		if errors.As(err, &pe) && pe.Result() == pulsar.InvalidStatus && t.t.GetState() != pulsar.TxnCommitted {
			// Already aborted, timed out or failed: nothing was committed.
			return nil
		}
		return wrap(err, "abort transaction %v", t.t.GetTxnID())
	}
	return nil
}

var _ bus.TxRegistrar = (*tx)(nil)

// partitionTopicer is the patched client's producer: the partition a key
// routes to.
type partitionTopicer interface {
	PartitionTopic(key string) string
}

// RegisterAhead registers the partitions and subscriptions of targets with
// the transaction coordinator in one request each (bus.TxRegistrar). A
// target of another bus, a producer whose partition cannot be told (an
// empty key) and a message that is no longer held are skipped: their first
// send or acknowledgement registers them.
func (t *tx) RegisterAhead(ctx context.Context, targets []bus.TxTarget) error {
	reg, ok := t.t.(pulsar.TxRegistrar)
	if !ok {
		return nil
	}
	// (Repeated names are registered once: the client skips what it has
	// registered or is registering.)
	var parts []string
	var subs []pulsar.TxSubscription
	for _, tg := range targets {
		if p, ok := tg.Producer.(*producer); ok && p.b == t.b {
			if pt, ok := p.p.(partitionTopicer); ok {
				if name := pt.PartitionTopic(tg.Key); name != "" {
					parts = append(parts, name)
				}
			}
		}
		if c, ok := tg.Consumer.(*consumer); ok && c.b == t.b && tg.Input != nil && tg.Input.Topic != "" {
			subs = append(subs, pulsar.TxSubscription{Topic: tg.Input.Topic, Subscription: c.opts.Subscription})
		}
	}
	if len(parts)+len(subs) == 0 {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- reg.RegisterAhead(parts, subs) }()
	select {
	case err := <-done:
		if err != nil {
			return wrap(err, "register transaction %v ahead", t.t.GetTxnID())
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
