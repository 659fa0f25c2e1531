package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// Ownership and fencing.
//
// The events topic's Failover subscription gives each partition one active
// consumer: that instance owns the partition's processes. Which instance
// that is decides who should work (liveness); it does not keep two
// instances from writing the same streams at once (safety), because a
// deposed owner learns of its loss late: it may be frozen (a stop-the-world
// pause, SIGSTOP, a swapped-out VM) for any length of time with a batch
// half sent. Safety is the broker's job, through the partition's TERM:
//
//  1. An instance that takes partition p over opens its producers on
//     history partition p and snapshots partition p with
//     bus.AccessExclusiveWithFencing. The broker closes the previous
//     owner's producers there and refuses them for ever after (topic
//     epoch): whatever the deposed owner sends to p's streams from then on
//     fails with bus.ErrFenced. These two producers are the term; the
//     instance writes p's streams only through them.
//  2. It then ends the transactions still open that wrote to p's streams
//     or acknowledged inputs of p (bus.TxEnder): a deposed owner's batch
//     sent before the fencing is aborted and can no longer commit, and
//     readers are no longer held back by it (Pulsar's max read position).
//     Its inputs come back to the new owner.
//  3. Only then it loads p (snapshots + history tail) and serves it.
//
// Every batch that acknowledges inputs of p, or touches a process of p,
// writes to p's term at least once (its history entries, snapshots or
// checkpoint; otherwise a small fence message, see fences), so a
// batch of a deposed owner fails as a whole: not one of its effects — not
// even an acknowledgement of an input it dropped — takes effect. A term
// whose producer is fenced is over: the flight fails, the orchestrator
// starts over, and takes p again only if the broker still says p is its.
//
// The broker's view is read by polling (PartitionOwner, every
// OwnershipPoll) and at once when the consumer is told of a change
// (bus.OwnershipNotifier), so a standby starts taking over as soon as the
// broker hands it the partition.

// ErrPartitionLost: a batch touched a partition this instance no longer
// owns; the batch is aborted and its events go to the new owner.
var ErrPartitionLost = errors.New("partition ownership lost")

// ownership tracks which partitions of the events topic this instance is
// the active Failover consumer of, as the broker says (bus.PartitionOwner).
type ownership struct {
	owner  bus.PartitionOwner // nil: the bus cannot tell; this instance owns what it receives
	notify <-chan struct{}    // nil without a bus.OwnershipNotifier
	poll   time.Duration
	parts  int // partitions of the events topic (0: not partitioned)
	// changed wakes the orchestrator's loop after a refresh.
	changed chan struct{}

	mu    sync.Mutex
	view  map[int]bool
	since map[int]time.Time // when each owned partition was first seen owned
	err   error
}

func newOwnership(c bus.Consumer, poll time.Duration, parts int) *ownership {
	o := &ownership{poll: poll, parts: parts, since: map[int]time.Time{}, changed: make(chan struct{}, 1)}
	if po, ok := c.(bus.PartitionOwner); ok {
		o.owner = po
	}
	if n, ok := c.(bus.OwnershipNotifier); ok {
		o.notify = n.OwnershipChanged()
	}
	return o
}

// refresh asks the broker once.
func (w *ownership) refresh(ctx context.Context) {
	if w.owner == nil {
		return
	}
	view, err := w.owner.OwnedPartitions(ctx)
	w.mu.Lock()
	if err != nil {
		w.err = err // keep the last view; a batch is not committed on an unknown view
	} else {
		now := time.Now()
		for p := range view {
			if _, ok := w.since[p]; !ok {
				w.since[p] = now
			}
		}
		for p := range w.since {
			if !view[p] {
				delete(w.since, p)
			}
		}
		w.view, w.err = view, nil
	}
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// run asks the broker at once, then every poll and whenever the consumer
// is told of a change, until ctx ends.
func (w *ownership) run(ctx context.Context) {
	if w.owner == nil {
		return
	}
	w.refresh(ctx)
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.notify:
		}
		w.refresh(ctx)
	}
}

// owns says whether p is ours, and since when. Without a PartitionOwner
// every partition is ours since forever.
func (w *ownership) owns(p int) (bool, time.Time) {
	if w.owner == nil {
		return true, time.Time{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.view == nil || w.err != nil {
		return false, time.Time{}
	}
	since, ok := w.since[p]
	return ok && w.view[p], since
}

// errOwnershipUnknown: the broker has not said yet which partitions are
// this instance's (no answer yet, or the last question failed).
var errOwnershipUnknown = errors.New("partition ownership not known yet")

// owned returns the partitions this instance owns and since when. Without
// a PartitionOwner every partition of the topic is ours since forever.
func (w *ownership) owned() (map[int]time.Time, error) {
	if w.owner == nil {
		out := map[int]time.Time{}
		for p := range max(w.parts, 1) {
			out[p] = time.Time{}
		}
		return out, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return nil, fmt.Errorf("%w: %w", errOwnershipUnknown, w.err)
	}
	if w.view == nil {
		return nil, errOwnershipUnknown
	}
	out := make(map[int]time.Time, len(w.since))
	for p, t := range w.since {
		if w.view[p] {
			out[p] = t
		}
	}
	return out, nil
}

// term is this instance's right to write partition p's streams: producers
// on history and snapshots partition p that fenced out every earlier
// writer (bus.AccessExclusiveWithFencing). A term ends when this instance
// lets p go, or when another instance takes p (the producers then fail
// with bus.ErrFenced).
type term struct {
	p                  int
	history, snapshots bus.Producer
	// token names the term's load markers (see markTerm): the load reads
	// each stream up to the marker carrying it.
	token string
	// How long each step of beginTerm took (logged when loaded).
	opened, ended, marked time.Duration
}

func (t *term) close() {
	if t == nil {
		return
	}
	for _, p := range []bus.Producer{t.history, t.snapshots} {
		if p != nil {
			_ = p.Close()
		}
	}
}

// streams names partition p's history and snapshots topics (the topics
// themselves when they are not partitioned).
func (o *Orchestrator) streams(p int) (history, snapshots string) {
	t := o.opts.Topics
	if t.Partitions == 0 {
		return t.History, t.Snapshots
	}
	ns := o.bus.Namespace()
	return ns.Partition(t.History, p), ns.Partition(t.Snapshots, p)
}

// beginTerm takes partition p's streams over: it fences out every other
// writer of them, ends the transactions that wrote to them or acknowledged
// inputs of p and have not ended (a deposed owner's batch), and marks the
// end of what they hold (markTerm). After it, what the streams hold up to
// the markers is final until this term ends: loading it is safe.
func (o *Orchestrator) beginTerm(ctx context.Context, p int) (*term, error) {
	history, snapshots := o.streams(p)
	ender, ok := o.bus.(bus.TxEnder)
	if !ok {
		return nil, fmt.Errorf("take partition %d: %w: the bus (%T) cannot end a deposed owner's transactions (bus.TxEnder)", p, bus.ErrBadOptions, o.bus)
	}
	t := &term{p: p}
	t0 := time.Now()
	// The two producers are independent: opened at once (each is a round
	// trip to the broker, longer while it fences the previous owner out).
	// MixedKeys: a batch's entries of a partition share broker entries
	// (read by readers only; see bus.ProducerOptions.MixedKeys).
	var herr, serr error
	var wg sync.WaitGroup
	wg.Go(func() {
		t.history, herr = o.bus.Producer(ctx, bus.ProducerOptions{Topic: history, AccessMode: bus.AccessExclusiveWithFencing, MixedKeys: true})
	})
	wg.Go(func() {
		t.snapshots, serr = o.bus.Producer(ctx, bus.ProducerOptions{Topic: snapshots, AccessMode: bus.AccessExclusiveWithFencing, MixedKeys: true})
	})
	wg.Wait()
	if herr != nil || serr != nil {
		t.close()
		if herr != nil {
			return nil, fmt.Errorf("take partition %d: history: %w", p, herr)
		}
		return nil, fmt.Errorf("take partition %d: snapshots: %w", p, serr)
	}
	t.opened = time.Since(t0)
	events := o.opts.Topics.Events
	if o.opts.Topics.Partitions > 0 {
		events = o.bus.Namespace().Partition(events, p)
	}
	ended, err := ender.EndTransactions(ctx, bus.TxScope{
		Topics: []string{history, snapshots},
		Acks:   []bus.SubscriptionRef{{Topic: events, Subscription: protocol.OrchestratorSubscription}},
	})
	if err != nil {
		t.close()
		return nil, fmt.Errorf("take partition %d: end the transactions of its previous owner: %w", p, err)
	}
	if ended.Aborted > 0 || ended.Waited > 0 {
		o.log.Info().Int("partition", p).Int("aborted", ended.Aborted).Int("waited", ended.Waited).
			Msg("transactions of the partition's previous owner ended")
	}
	t.ended = time.Since(t0) - t.opened
	if err := o.markTerm(ctx, t); err != nil {
		t.close()
		return nil, fmt.Errorf("take partition %d: %w", p, err)
	}
	t.marked = time.Since(t0) - t.opened - t.ended
	return t, nil
}

// Load markers.
//
// The load reads a partition's streams to their end, and "the end" must
// not come from the broker's last message id: Pulsar (4.0.x) can report a
// stale one after a transaction commit, and a reader asking HasNext would
// stop before the last committed batch — an image behind the truth whose
// next record reuses a sequence number already written. Instead, once the
// term has fenced the streams and ended every transaction on them, the new
// owner writes one plain (non-transactional) message on each, through its
// term producer: the marker, keyed FenceKey, carrying the term's token in
// the MarkerProperty property. Nothing else can be written to the streams
// meanwhile (the producers are exclusive and the load comes before the
// term's first batch) and nothing before it is held back (no transaction
// is open), so every committed entry comes before the marker and the
// broker dispatches them all before it: the load reads with Next until it
// has read its own marker, whatever the last message id says.
//
// Every other reader ignores markers at no cost per saga (one message per
// stream per takeover): on snapshots the key FenceKey is skipped (and its
// payload is not a snapshot); on history the payload is a valid history
// entry of the process "~fence" with no records, which no process's
// stream reads (process ids cannot start with '~').

// MarkerProperty is the property of a load marker naming its term.
const MarkerProperty = "pulsaga-term"

// markWait bounds how long a load waits for its marker: a marker that
// does not come means the stream is not what the term believes (it is
// retried as a failed load).
const markWait = time.Minute

// markTerm writes the term's marker on history and snapshots partition p.
func (o *Orchestrator) markTerm(ctx context.Context, t *term) error {
	var tok [12]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return fmt.Errorf("load marker: %w", err)
	}
	t.token = hex.EncodeToString(tok[:])
	entry, err := encodeHistory(&HistoryEntry{ProcessID: FenceKey})
	if err != nil {
		return fmt.Errorf("load marker: %w", err)
	}
	props := map[string]string{MarkerProperty: t.token}
	var herr, serr error
	var wg sync.WaitGroup
	wg.Go(func() {
		_, herr = t.history.Send(ctx, &bus.OutMessage{Key: FenceKey, Payload: entry, Properties: props})
	})
	wg.Go(func() {
		// Not empty: a tombstone could be compacted away before it is read.
		_, serr = t.snapshots.Send(ctx, &bus.OutMessage{Key: FenceKey, Payload: []byte(t.token), Properties: props})
	})
	wg.Wait()
	if herr != nil {
		return fmt.Errorf("load marker on history: %w", herr)
	}
	if serr != nil {
		return fmt.Errorf("load marker on snapshots: %w", serr)
	}
	return nil
}

// isMarker says whether m is the marker of the term named token.
func isMarker(m *bus.Message, token string) bool {
	return m.Key == FenceKey && m.Properties[MarkerProperty] == token
}
