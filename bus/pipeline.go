package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrAborted: a batch of a Pipeline was aborted because a batch before it
// failed. It also wraps ErrTxFailed (retryable); the cause is wrapped too.
var ErrAborted = errors.New("bus: aborted after an earlier batch of the pipeline failed")

// Pipeline commits batches in the order they were begun with up to Depth
// of them in flight: batch N+1 is built and sent while batch N commits,
// instead of stop-and-wait.
//
//	b, err := p.Begin(ctx)   // waits while Depth batches are in flight
//	b.Send(...); b.Ack(...)  // build it; b.Wait(ctx) if ids are needed
//	p.Commit(ctx, b, func(err error) { ... })  // returns at once
//
// Guarantees:
//   - commits happen in Begin order, and done callbacks are called in that
//     order, one at a time;
//   - a batch hands its messages to the producers only after the batch
//     before it has handed over all of its own, so messages of one key on
//     one producer stay in order across batches;
//   - when a batch fails, every batch begun before its failure was
//     reported is aborted (ErrAborted, wrapping the cause), so nothing that
//     may depend on the failed batch commits; batches begun afterwards run
//     normally (the caller has reloaded what it must by then).
//
// Call Commit (or Abort) on a batch before calling Wait on the next one:
// the next one's sends wait for it.
type Pipeline struct {
	bus   Bus
	opts  PipelineOptions
	slots chan struct{}

	mu        sync.Mutex
	last      *Batch        // the batch begun last
	committed chan struct{} // closed when the last submitted batch is decided
	begun     int64         // batches begun
	abortUpTo int64         // batches with seq <= this abort (a failure before them)
	cause     error
	open      bool // the last begun batch is not submitted yet
	inflight  sync.WaitGroup
}

// PipelineOptions configure a Pipeline.
type PipelineOptions struct {
	// Depth is the most batches in flight (begun, not yet decided;
	// default 2).
	Depth int
	// NoTx makes batches without a transaction (relays that forward each
	// input on its own); the order and bounding still hold.
	NoTx bool
	// TxTimeout is the timeout of each batch's transaction (default 30s).
	TxTimeout time.Duration
	// Batch tunes every batch (its Tx is set by the pipeline).
	Batch BatchOptions
}

// NewPipeline creates a pipeline on b.
func NewPipeline(b Bus, opts PipelineOptions) *Pipeline {
	if opts.Depth <= 0 {
		opts.Depth = 2
	}
	if opts.TxTimeout <= 0 {
		opts.TxTimeout = 30 * time.Second
	}
	done := make(chan struct{})
	close(done)
	return &Pipeline{bus: b, opts: opts, slots: make(chan struct{}, opts.Depth), committed: done}
}

// Begin starts the next batch, with a transaction unless NoTx. It waits
// while Depth batches are in flight. The batch before must have been given
// to Commit or Abort.
func (p *Pipeline) Begin(ctx context.Context) (*Batch, error) {
	p.mu.Lock()
	if p.open {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: Pipeline.Begin before the previous batch was committed or aborted", ErrBadOptions)
	}
	p.mu.Unlock()
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	opts := p.opts.Batch
	opts.Tx = nil
	if !p.opts.NoTx {
		tx, err := p.bus.BeginTx(ctx, p.opts.TxTimeout)
		if err != nil {
			<-p.slots
			return nil, err
		}
		opts.Tx = tx
	}
	b := NewBatch(opts)
	p.mu.Lock()
	p.begun++
	b.seq = p.begun
	b.prev = p.last
	p.last = b
	p.open = true
	p.mu.Unlock()
	return b, nil
}

// Commit hands b over: it is sent (what is still queued), then committed
// once every batch before it is decided, in a goroutine of its own; done,
// when not nil, receives the outcome (nil, the batch's error, or one
// wrapping ErrAborted). Commit returns at once.
func (p *Pipeline) Commit(ctx context.Context, b *Batch, done func(error)) {
	p.mu.Lock()
	prev, mine := p.committed, make(chan struct{})
	p.committed = mine
	if p.last == b {
		p.open = false
	}
	p.mu.Unlock()
	p.inflight.Add(1)
	go func() {
		defer p.inflight.Done()
		err := b.abortCause
		if err == nil {
			err = b.Wait(ctx)
		}
		b.markIssued()
		<-prev // commits in order
		p.mu.Lock()
		aborted, cause := b.seq <= p.abortUpTo, p.cause
		p.mu.Unlock()
		switch {
		case aborted:
			err = fmt.Errorf("%w (%w): %w", ErrAborted, ErrTxFailed, cause)
			_ = b.Abort(ctx, err)
		case err != nil:
			_ = b.Abort(ctx, err)
		default:
			err = b.Commit(ctx)
		}
		if err != nil && !aborted {
			p.mu.Lock()
			p.abortUpTo, p.cause = p.begun, err
			p.mu.Unlock()
		}
		if done != nil {
			done(err)
		}
		close(mine)
		<-p.slots
	}()
}

// Abort ends b without committing (its inputs are nacked with cause) and
// releases its place in the pipeline, after the batches before it. It
// counts as a failure: the batches begun before it was reported abort too.
// done, when not nil, is called as by Commit.
func (p *Pipeline) Abort(ctx context.Context, b *Batch, cause error, done func(error)) {
	if cause == nil {
		cause = errors.New("bus: batch aborted by its caller")
	}
	b.abortCause = cause
	p.Commit(ctx, b, done)
}

// Wait waits until every batch given to Commit is decided, or ctx ends.
func (p *Pipeline) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		p.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
