package pulsarbus

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/pulsaga/pulsaga/bus"
)

type reader struct {
	b      *Bus
	topic  string
	r      pulsar.Reader
	closed sync.Once
	// ahead is a message HasNext took from the client (see HasNext); Next
	// returns it first.
	ahead pulsar.Message

	// hasNext is the client's HasNext still running from a call whose
	// context ended first (nil when none): the next call waits for it
	// instead of starting another, because the client's HasNext must not
	// run twice at once (it writes the partition consumer's last message
	// id unguarded: a data race the race detector found).
	mu      sync.Mutex
	hasNext chan bool
}

// hasNextGrace is how long HasNext waits for a message the broker has
// dispatched although its last message id says there is none (see
// HasNext): about a broker round trip, which is what every HasNext at the
// end of a topic costs anyway. A message that reaches the client later is
// taken by the next HasNext.
const hasNextGrace = 10 * time.Millisecond

var _ bus.Reader = (*reader)(nil)

// Reader opens a reader on a topic or on one partition of it.
func (b *Bus) Reader(ctx context.Context, opts bus.ReaderOptions) (bus.Reader, error) {
	if opts.Topic == "" {
		return nil, fmt.Errorf("%w: Reader: %w", bus.ErrBadOptions, errNoTopic)
	}
	if opts.StartLatest && opts.StartID != nil {
		return nil, fmt.Errorf("%w: Reader on %s: StartID and StartLatest are exclusive", bus.ErrBadOptions, opts.Topic)
	}
	if b.isClosed() {
		return nil, fmt.Errorf("pulsarbus: reader on %s: %w", opts.Topic, bus.ErrClosed)
	}
	topic := b.cfg.Namespace.Topic(opts.Topic)
	ro := pulsar.ReaderOptions{
		Topic:                   topic,
		StartMessageID:          pulsar.EarliestMessageID(),
		StartMessageIDInclusive: opts.StartInclusive,
		ReadCompacted:           opts.Compacted,
	}
	switch {
	case opts.StartLatest:
		ro.StartMessageID = pulsar.LatestMessageID()
		ro.StartMessageIDInclusive = false
	case opts.StartID != nil:
		id, err := pulsar.DeserializeMessageID(opts.StartID)
		if err != nil {
			return nil, fmt.Errorf("%w: Reader on %s: StartID is not a Pulsar message id: %v", bus.ErrBadOptions, topic, err)
		}
		ro.StartMessageID = id
	}
	if opts.Compacted && !strings.HasPrefix(topic, "persistent://") {
		return nil, fmt.Errorf("%w: Reader on %s: only persistent topics are compacted", bus.ErrBadOptions, topic)
	}
	type res struct {
		r   pulsar.Reader
		err error
	}
	ch := make(chan res, 1)
	go func() {
		r, err := b.client.CreateReader(ro)
		ch <- res{r, err}
	}()
	var r pulsar.Reader
	select {
	case res := <-ch:
		if res.err != nil {
			return nil, wrap(res.err, "open reader on %s", topic)
		}
		r = res.r
	case <-ctx.Done():
		go func() {
			if res := <-ch; res.r != nil {
				res.r.Close()
			}
		}()
		return nil, fmt.Errorf("pulsarbus: open reader on %s: %w", topic, ctx.Err())
	}
	rd := &reader{b: b, topic: topic, r: r}
	if err := b.register(rd); err != nil {
		r.Close()
		return nil, fmt.Errorf("pulsarbus: reader on %s: %w", topic, err)
	}
	return rd, nil
}

// Next blocks until a message is available or ctx is done.
func (r *reader) Next(ctx context.Context) (*bus.Message, error) {
	r.mu.Lock()
	pm := r.ahead
	r.ahead = nil
	r.mu.Unlock()
	if pm != nil {
		return toMessage(pm, string(pm.ID().Serialize()), 0), nil
	}
	pm, err := r.r.Next(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pulsarbus: read %s: %w", r.topic, ctx.Err())
		}
		return nil, wrap(err, "read %s", r.topic)
	}
	return toMessage(pm, string(pm.ID().Serialize()), 0), nil
}

// HasNext says whether a message is available without blocking for one. It
// asks the broker for the last message id when it has nothing buffered; the
// client does that without a context, so it runs aside and ctx bounds the
// wait.
//
// The broker's last message id can be stale on a topic written in
// transactions: Pulsar 4.0 caches a topic's last dispatchable position, and
// a GetLastMessageId computed while a transaction commits can leave the
// cache before that transaction's messages until the topic is written
// again (seen on the status topic: a committed row that no reader
// reported, for minutes, until the topic was unloaded). The broker
// dispatches by the transaction buffer's position, not by that cache, so
// the message reaches the client anyway: when the broker says there is
// nothing more, HasNext still takes a message the client has or receives
// within hasNextGrace, and Next returns it. (A reader polled again, as the
// status table is, sees every committed message; one read once to its end
// sees those dispatched by then.)
func (r *reader) HasNext(ctx context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ahead != nil {
		return true, nil
	}
	if r.hasNext == nil {
		ch := make(chan bool, 1)
		r.hasNext = ch
		go func() { ch <- r.r.HasNext() }()
	}
	select {
	case ok := <-r.hasNext:
		r.hasNext = nil
		if ok {
			return true, nil
		}
	case <-ctx.Done():
		return false, fmt.Errorf("pulsarbus: has next on %s: %w", r.topic, ctx.Err())
	}
	wctx, cancel := context.WithTimeout(ctx, hasNextGrace)
	pm, err := r.r.Next(wctx)
	cancel()
	switch {
	case err == nil:
		r.ahead = pm
		return true, nil
	case ctx.Err() != nil:
		return false, fmt.Errorf("pulsarbus: has next on %s: %w", r.topic, ctx.Err())
	}
	return false, nil
}

// Close closes the reader.
func (r *reader) Close() error {
	r.b.unregister(r)
	r.closeByBus()
	return nil
}

func (r *reader) closeByBus() { r.closed.Do(r.r.Close) }
