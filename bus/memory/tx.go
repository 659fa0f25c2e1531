package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

type txState int

const (
	txOpen txState = iota
	txCommitted
	txAborted
)

func (s txState) String() string {
	switch s {
	case txOpen:
		return "open"
	case txCommitted:
		return "committed"
	}
	return "aborted"
}

// tx is a transaction of the memory broker. Its sends are in the log but
// hidden (and hold back what follows them in their partition, like Pulsar's
// max read position) until it ends; its acknowledgements take effect on
// commit.
type tx struct {
	b        *Broker
	id       int64
	state    txState
	timedOut bool
	sends    []txSend
	acks     []txAck
	timer    *time.Timer
}

type txSend struct {
	part *partition
	e    *entry
}

type txAck struct {
	s  *subscription
	st *msgState
}

var _ bus.Tx = (*tx)(nil)

// BeginTx implements bus.Bus. The transaction aborts by itself after
// timeout, even if this connection is closed meanwhile.
func (x *Bus) BeginTx(ctx context.Context, timeout time.Duration) (bus.Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := x.checkOpen(); err != nil {
		return nil, err
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("%w: transaction timeout %s must be positive", bus.ErrBadOptions, timeout)
	}
	b := x.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextTx++
	t := &tx{b: b, id: b.nextTx}
	b.open[t] = struct{}{}
	t.timer = time.AfterFunc(timeout, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if t.state == txOpen {
			t.timedOut = true
			t.abortLocked()
		}
	})
	return t, nil
}

func (t *tx) usableLocked() error {
	if t.state == txOpen {
		return nil
	}
	why := ""
	if t.timedOut {
		why = " (timed out)"
	}
	return fmt.Errorf("%w: transaction %d is %s%s", bus.ErrTxFailed, t.id, t.state, why)
}

func (t *tx) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	switch t.state {
	case txCommitted:
		return nil
	case txAborted:
		return t.usableLocked()
	}
	t.state = txCommitted
	t.timer.Stop()
	delete(t.b.open, t)
	for _, s := range t.sends {
		s.e.state = committed
		s.part.settleLocked(s.e.idx)
		s.part.committedLocked(s.e)
	}
	for _, a := range t.acks {
		if a.st.tx == t {
			a.st.tx = nil
			a.s.ackLocked(a.st)
			a.s.signalLocked()
		}
	}
	return nil
}

func (t *tx) Abort(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	switch t.state {
	case txAborted:
		return nil
	case txCommitted:
		return fmt.Errorf("%w: transaction %d is already committed", bus.ErrBadOptions, t.id)
	}
	t.abortLocked()
	return nil
}

// abortLocked drops the sends and makes the acknowledged messages
// deliverable again.
func (t *tx) abortLocked() {
	t.state = txAborted
	t.timer.Stop()
	delete(t.b.open, t)
	now := t.b.now()
	for _, s := range t.sends {
		s.e.state = aborted
		s.part.settleLocked(s.e.idx)
		s.part.changedLocked()
	}
	for _, a := range t.acks {
		if a.st.tx == t {
			a.st.tx = nil
			a.st.readyAt = now
			a.s.signalLocked()
		}
	}
}
