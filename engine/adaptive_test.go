package engine_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
)

// TestOverloadDegradesInsteadOfLivelocking reproduces the chaos kit's
// finding (A) deterministically: on an overloaded machine a transaction
// that carries more than so many sends and acknowledgements outlives the
// transaction timeout and fails. Here the bus makes every transaction with
// more than maxOps operations fail at commit, as a timed-out one does. The
// backlog of starts the orchestrator finds when it starts needs batches far
// larger than that: an orchestrator that retried batches as big as the one
// that failed would never commit one (the test would time out); with
// adaptive batches it halves until batches fit, and every saga completes.
func TestOverloadDegradesInsteadOfLivelocking(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	broker := memory.NewBroker()
	plain := memory.New(memory.Options{Broker: broker})
	t.Cleanup(func() { _ = plain.Close() })
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	r := newTripRig(ctx, t, plain, topics)
	pids := pidsOf("overload", 120)
	r.start(ctx, t, pids) // all waiting before the orchestrator runs

	const maxOps = 40 // a start costs ~4 operations: ack, history, command, status row
	slow := &opLimitBus{Bus: memory.New(memory.Options{Broker: broker}), maxOps: maxOps}
	t.Cleanup(func() { _ = slow.Close() })
	o := engine.NewOrchestrator(slow, r.reg, engine.OrchestratorOptions{Topics: topics, OwnershipPoll: 20 * time.Millisecond}, r.log)
	runComponent(ctx, t, "orchestrator", o.Run)
	runWorkers(ctx, t, plain, r.log)
	r.waitRows(ctx, t, pids, "completed", completed)

	committed, failed, limit := o.Batches()
	t.Logf("%d batches committed, %d failed, %d transactions refused; batch limit now %d", committed, failed, slow.refused.Load(), limit)
	if slow.refused.Load() == 0 || failed == 0 {
		t.Fatalf("no transaction was refused (%d) or no batch failed (%d): the test did not overload the orchestrator", slow.refused.Load(), failed)
	}
	if limit >= maxOps {
		t.Errorf("batch limit %d after transactions of more than %d operations failed", limit, maxOps)
	}
}

// opLimitBus is a bus whose transactions fail at commit when they carry
// more than maxOps sends and acknowledgements: a deterministic stand-in for
// a machine so slow that a large batch outlives the transaction timeout.
type opLimitBus struct {
	bus.Bus
	maxOps  int
	refused atomic.Int64
	// commitDelay holds every commit this long (a slow broker: batches stay
	// on their way longer).
	commitDelay time.Duration
}

type opLimitTx struct {
	bus.Tx
	b   *opLimitBus
	mu  sync.Mutex
	ops int
}

func (t *opLimitTx) add() {
	t.mu.Lock()
	t.ops++
	t.mu.Unlock()
}

func (t *opLimitTx) Commit(ctx context.Context) error {
	t.mu.Lock()
	ops := t.ops
	t.mu.Unlock()
	time.Sleep(t.b.commitDelay)
	if ops > t.b.maxOps {
		_ = t.Tx.Abort(ctx)
		t.b.refused.Add(1)
		return fmt.Errorf("%w: transaction timed out (%d operations, this machine manages %d in time)", bus.ErrTxFailed, ops, t.b.maxOps)
	}
	return t.Tx.Commit(ctx)
}

// unwrap returns the memory bus's own transaction, counting one operation.
func unwrapTx(tx bus.Tx) bus.Tx {
	if t, ok := tx.(*opLimitTx); ok {
		t.add()
		return t.Tx
	}
	return tx
}

func (b *opLimitBus) BeginTx(ctx context.Context, timeout time.Duration) (bus.Tx, error) {
	tx, err := b.Bus.BeginTx(ctx, timeout)
	if err != nil {
		return nil, err
	}
	return &opLimitTx{Tx: tx, b: b}, nil
}

func (b *opLimitBus) Producer(ctx context.Context, opts bus.ProducerOptions) (bus.Producer, error) {
	p, err := b.Bus.Producer(ctx, opts)
	if err != nil {
		return nil, err
	}
	return opLimitProducer{p}, nil
}

func (b *opLimitBus) Subscribe(ctx context.Context, opts bus.SubscribeOptions) (bus.Consumer, error) {
	c, err := b.Bus.Subscribe(ctx, opts)
	if err != nil {
		return nil, err
	}
	if po, ok := c.(bus.PartitionOwner); ok {
		return opLimitOwningConsumer{opLimitConsumer{c}, po}, nil
	}
	return opLimitConsumer{c}, nil
}

type opLimitProducer struct{ bus.Producer }

func (p opLimitProducer) Send(ctx context.Context, msg *bus.OutMessage) (bus.MessageID, error) {
	m := *msg
	m.Tx = unwrapTx(msg.Tx)
	return p.Producer.Send(ctx, &m)
}

func (p opLimitProducer) SendAsync(ctx context.Context, msg *bus.OutMessage, done func(bus.MessageID, error)) {
	m := *msg
	m.Tx = unwrapTx(msg.Tx)
	p.Producer.SendAsync(ctx, &m, done)
}

type opLimitConsumer struct{ bus.Consumer }

func (c opLimitConsumer) AckTx(ctx context.Context, msg *bus.Message, tx bus.Tx) error {
	return c.Consumer.AckTx(ctx, msg, unwrapTx(tx))
}

type opLimitOwningConsumer struct {
	opLimitConsumer
	bus.PartitionOwner
}

// EndTransactions passes the takeover's transaction ending on to the
// memory bus (an orchestrator needs a bus.TxEnder).
func (b *opLimitBus) EndTransactions(ctx context.Context, scope bus.TxScope) (bus.TxEnded, error) {
	return b.Bus.(bus.TxEnder).EndTransactions(ctx, scope)
}
