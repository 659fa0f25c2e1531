package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"sync"
)

// Batch is the one way pulsaga sends a unit of work: messages to any
// number of producers and the acknowledgements of the inputs they answer,
// carried out together, in one transaction when the batch has one.
//
// Add work with Send, Ack and Forward (they only queue: no I/O), then Wait
// (send what is queued and wait for every outcome; it may be called again
// after more sends, as when the ids of a first round of sends go into a
// second) and finally Commit or Abort. A Batch is used by one goroutine.
//
// How it sends. Each producer's messages are handed to it from a few
// goroutines at once (Lanes): in a transaction the first message to each
// topic-partition registers that partition with the transaction
// coordinator, a broker round trip made in the sending goroutine, so lanes
// make the registrations of a topic's partitions overlap. A key always
// goes to the same lane, so the messages of one key (on one producer) leave
// in the order they were added; messages of different keys may interleave,
// which is safe with broker deduplication on (bustest's
// Transactions/InterleavedKeys: the client numbers batches and single
// messages in its event loop, in send order). Every producer used is
// flushed once, after its lanes have handed over their messages, so
// nothing waits for the batching delay. In a transaction the
// acknowledgements run concurrently with the sends: the inputs of a
// consumer that is a TxListAcker (both buses') in one AckTxList call per
// Wait (one broker request per partition), those of other consumers one
// AckTx (one round trip) each, at most AckConcurrency calls at once.
//
// Without a transaction, an input queued with Ack is acknowledged only
// once every send of the batch has succeeded (at Commit), and an input
// queued with Forward only once its own message is sent; an input whose
// send failed is nacked with the cause, so it comes again.
//
// On failure (Commit's error, or Abort) the transaction is aborted and
// every input of the batch not yet acknowledged for good is nacked: nothing
// is lost, the inputs come again.
type Batch struct {
	opts BatchOptions
	tx   Tx

	queued  []queuedSend
	acks    []input // acknowledged with the batch (Ack)
	pending []input // Ack inputs not issued yet (tx mode)
	fwds    []*forward

	mu     sync.Mutex
	err    error
	failed int
	ops    int

	// Ordering with the batch before it in a Pipeline: this batch hands
	// its messages to producers only after prev has handed over all of its
	// own (issued is closed then).
	prev       *Batch
	seq        int64 // place in the pipeline
	issued     chan struct{}
	settled    bool  // Commit or Abort called
	abortCause error // Pipeline.Abort
}

// BatchOptions tune a Batch. The zero value has no transaction.
type BatchOptions struct {
	// Tx, when set, makes every send and acknowledgement part of it;
	// Commit commits it.
	Tx Tx
	// Lanes is how many goroutines hand one producer's messages over at
	// once (default 4). A key always uses the same lane.
	Lanes int
	// AckConcurrency bounds the acknowledgement calls in flight (default
	// 32; a TxListAcker's list is one call).
	AckConcurrency int
}

// Defaults of BatchOptions.
const (
	DefaultLanes          = 4
	DefaultAckConcurrency = 32
)

type queuedSend struct {
	p      Producer
	msg    *OutMessage
	onSent func(MessageID)
	result func(MessageID, error)
	fwd    *forward
}

type input struct {
	c Consumer
	m *Message
}

// forward is an input settled by the outcome of its own send.
type forward struct {
	in  input
	err error
	ok  bool // the send succeeded
}

// NewBatch starts a batch.
func NewBatch(opts BatchOptions) *Batch {
	if opts.Lanes <= 0 {
		opts.Lanes = DefaultLanes
	}
	if opts.AckConcurrency <= 0 {
		opts.AckConcurrency = DefaultAckConcurrency
	}
	return &Batch{opts: opts, tx: opts.Tx, issued: make(chan struct{})}
}

// Tx is the batch's transaction (nil without one).
func (b *Batch) Tx() Tx { return b.tx }

// Send queues msg to p. onSent, when not nil, receives the message's id
// once the broker has it (before Wait returns). msg.Tx is set to the
// batch's transaction.
func (b *Batch) Send(p Producer, msg *OutMessage, onSent func(MessageID)) {
	b.queued = append(b.queued, queuedSend{p: p, msg: msg, onSent: onSent})
}

// SendResult queues msg to p like Send; result receives the send's outcome,
// success or failure (it is not called for a send whose outcome was not
// known when the batch's context ended). Use it where each message stands
// alone, as a client sending many requests that are told apart.
func (b *Batch) SendResult(p Producer, msg *OutMessage, result func(MessageID, error)) {
	b.queued = append(b.queued, queuedSend{p: p, msg: msg, result: result})
}

// Ack queues the acknowledgement of an input: in the batch's transaction,
// or without one once every send of the batch has succeeded.
func (b *Batch) Ack(c Consumer, m *Message) {
	in := input{c, m}
	b.acks = append(b.acks, in)
	if b.tx != nil {
		b.pending = append(b.pending, in)
	}
}

// Forward queues msg to p as the answer to input m of c: in a transaction
// it is Send and Ack; without one, m is acknowledged as soon as msg is sent
// and nacked if that send fails, whatever becomes of the batch's other
// messages (the relays' way: each input stands alone).
//
// onSent, when not nil, receives the message's id once it is sent.
func (b *Batch) Forward(p Producer, msg *OutMessage, c Consumer, m *Message, onSent func(MessageID)) {
	if b.tx != nil {
		b.Send(p, msg, onSent)
		b.Ack(c, m)
		return
	}
	f := &forward{in: input{c, m}}
	b.fwds = append(b.fwds, f)
	b.queued = append(b.queued, queuedSend{p: p, msg: msg, onSent: onSent, fwd: f})
}

// Len is how many messages and acknowledgements the batch holds.
func (b *Batch) Len() int { return len(b.queued) + len(b.acks) + len(b.fwds) }

func (b *Batch) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
	b.failed++
}

// Wait sends every message queued since the last Wait (and, in a
// transaction, issues the queued acknowledgements), flushes the producers
// used, and waits until every outcome is known or ctx ends. It returns the
// first failure (with the count of failures), or ctx's error.
func (b *Batch) Wait(ctx context.Context) error {
	if b.prev != nil {
		select {
		case <-b.prev.issued:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	sends, acks := b.queued, b.pending
	b.queued, b.pending = nil, nil
	b.mu.Lock()
	b.ops += len(sends) + len(acks)
	b.mu.Unlock()
	lists, acks := listAcks(acks)
	var outcomes sync.WaitGroup // one per send (its callback), per ack and per list
	outcomes.Add(len(sends) + len(acks) + len(lists))
	var handed sync.WaitGroup
	// Acknowledgements, bounded: a list per consumer that takes lists (one
	// request per partition), the others one by one.
	if len(acks)+len(lists) > 0 {
		sem := make(chan struct{}, b.opts.AckConcurrency)
		handed.Go(func() {
			for _, l := range lists {
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; outcomes.Done() }()
					if err := l.c.AckTxList(ctx, l.msgs, b.tx); err != nil {
						b.fail(err)
					}
				}()
			}
			for _, in := range acks {
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; outcomes.Done() }()
					if err := in.c.AckTx(ctx, in.m, b.tx); err != nil {
						b.fail(err)
					}
				}()
			}
		})
	}
	// Sends: per producer, lanes by key; one flush per producer.
	for _, g := range b.group(sends) {
		handed.Go(func() {
			var lanes sync.WaitGroup
			for _, lane := range g.lanes {
				if len(lane) == 0 {
					continue
				}
				lanes.Go(func() {
					for _, s := range lane {
						b.issue(ctx, s, &outcomes)
					}
				})
			}
			lanes.Wait()
			if err := g.p.Flush(ctx); err != nil {
				b.fail(fmt.Errorf("flush %s: %w", g.p.Topic(), err))
			}
		})
	}
	handed.Wait()
	done := make(chan struct{})
	go func() {
		outcomes.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return fmt.Errorf("%d of %d sends and acknowledgements failed, the first: %w", b.failed, b.ops, b.err)
	}
	return nil
}

// ackList is the inputs of one TxListAcker consumer, acknowledged at once.
type ackList struct {
	c    TxListAcker
	msgs []*Message
}

// listAcks splits acks into one list per consumer that is a TxListAcker
// (in the order of their first input) and the rest.
func listAcks(acks []input) ([]*ackList, []input) {
	var lists []*ackList
	var byConsumer map[TxListAcker]*ackList
	rest := acks[:0:0]
	for _, in := range acks {
		la, ok := in.c.(TxListAcker)
		if !ok || !reflect.TypeOf(la).Comparable() {
			rest = append(rest, in)
			continue
		}
		if byConsumer == nil {
			byConsumer = map[TxListAcker]*ackList{}
		}
		l := byConsumer[la]
		if l == nil {
			l = &ackList{c: la}
			byConsumer[la] = l
			lists = append(lists, l)
		}
		l.msgs = append(l.msgs, in.m)
	}
	return lists, rest
}

func (b *Batch) issue(ctx context.Context, s queuedSend, outcomes *sync.WaitGroup) {
	s.msg.Tx = b.tx
	s.p.SendAsync(ctx, s.msg, func(id MessageID, err error) {
		defer outcomes.Done()
		if s.fwd != nil {
			// Settled after Wait, outside the client's callback.
			b.mu.Lock()
			s.fwd.ok, s.fwd.err = err == nil, err
			b.mu.Unlock()
		}
		if s.result != nil {
			s.result(id, err)
		}
		if err != nil {
			b.fail(fmt.Errorf("send to %s (key %q): %w", s.p.Topic(), s.msg.Key, err))
			return
		}
		if s.onSent != nil {
			s.onSent(id)
		}
	})
}

type producerGroup struct {
	p     Producer
	lanes [][]queuedSend
}

var laneSeed = maphash.MakeSeed()

// group splits sends by producer (in first-use order) and key lane.
func (b *Batch) group(sends []queuedSend) []*producerGroup {
	var groups []*producerGroup
	index := map[Producer]*producerGroup{}
	for _, s := range sends {
		g := index[s.p]
		if g == nil {
			g = &producerGroup{p: s.p, lanes: make([][]queuedSend, b.opts.Lanes)}
			index[s.p] = g
			groups = append(groups, g)
		}
		l := 0
		if b.opts.Lanes > 1 {
			l = int(maphash.String(laneSeed, s.msg.Key) % uint64(b.opts.Lanes))
		}
		g.lanes[l] = append(g.lanes[l], s)
	}
	return groups
}

// markIssued records that everything of the batch was handed over (or will
// never be), releasing the next batch of a pipeline.
func (b *Batch) markIssued() {
	select {
	case <-b.issued:
	default:
		close(b.issued)
	}
}

// Commit sends what is still queued, waits for every outcome, and commits
// the transaction; without one it acknowledges the inputs. On any failure
// it aborts the transaction, nacks the inputs not acknowledged for good,
// and returns the error (wrapping ErrTxFailed when the transaction could
// not commit). Commit and Abort end the batch.
func (b *Batch) Commit(ctx context.Context) error {
	if b.settled {
		return fmt.Errorf("%w: batch already committed or aborted", ErrBadOptions)
	}
	err := b.Wait(ctx)
	b.settled = true
	b.markIssued()
	if b.tx == nil {
		b.settleForwards(ctx)
		if err != nil {
			b.nack(b.acks, err)
			return err
		}
		return b.ackPlain(ctx, b.acks)
	}
	if err != nil {
		_ = b.tx.Abort(context.WithoutCancel(ctx))
		b.nack(b.acks, err)
		return err
	}
	if err := b.tx.Commit(ctx); err != nil {
		if !errors.Is(err, ErrTxFailed) {
			err = fmt.Errorf("%w: %w", ErrTxFailed, err)
		}
		b.nack(b.acks, err)
		return err
	}
	return nil
}

// Abort ends the batch without committing: the transaction is aborted and
// every input is nacked with cause. (Without a transaction nothing already
// sent can be taken back: a Forward input whose message went out is
// acknowledged.)
func (b *Batch) Abort(ctx context.Context, cause error) error {
	if b.settled {
		return nil
	}
	b.settled = true
	b.markIssued()
	if cause == nil {
		cause = errors.New("bus: batch aborted")
	}
	var err error
	if b.tx != nil {
		err = b.tx.Abort(context.WithoutCancel(ctx))
	}
	b.nack(b.acks, cause)
	// A forwarded message already sent stays sent: its input is
	// acknowledged; the others are nacked.
	b.settleForwards(ctx)
	return err
}

// settleForwards acknowledges each forwarded input whose message was sent
// and nacks the others (no transaction).
func (b *Batch) settleForwards(ctx context.Context) {
	b.mu.Lock()
	fwds := make([]forward, len(b.fwds))
	for i, f := range b.fwds {
		fwds[i] = *f
		f.ok, f.err = false, errSettled
	}
	b.fwds = nil
	b.mu.Unlock()
	for _, f := range fwds {
		switch {
		case f.ok:
			if err := f.in.c.Ack(ctx, f.in.m); err != nil {
				// Sent but not acknowledged: it comes again and is sent
				// again; receivers recognise the duplicate by its id.
				f.in.c.Nack(f.in.m, err)
			}
		case f.err != nil:
			f.in.c.Nack(f.in.m, f.err)
		default:
			f.in.c.Nack(f.in.m, errors.New("bus: batch ended before the send's outcome was known"))
		}
	}
}

// errSettled marks a forward whose input was settled already.
var errSettled = errors.New("bus: settled")

func (b *Batch) ackPlain(ctx context.Context, ins []input) error {
	var first error
	for _, in := range ins {
		if err := in.c.Ack(ctx, in.m); err != nil {
			in.c.Nack(in.m, err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

func (b *Batch) nack(ins []input, cause error) {
	for _, in := range ins {
		in.c.Nack(in.m, cause)
	}
}
