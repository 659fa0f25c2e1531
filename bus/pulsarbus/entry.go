package pulsarbus

import (
	"errors"
	"fmt"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/pulsaga/pulsaga/bus"
)

// Batched entries.
//
// A producer batch is one entry on the broker. Without batch-index
// acknowledgements (acknowledgmentAtBatchIndexLevelEnabled, off by default)
// the broker acknowledges and redelivers whole entries, and the client's own
// per-batch tracker mixes every acknowledgement of an entry, plain or in any
// transaction, into one bit set. Left to the client, a message acknowledged
// in a transaction that later aborts could be acknowledged for good by a
// plain acknowledgement of its neighbour, and lost.
//
// So the bus keeps, per batched entry, the state of each of its messages and
// acknowledges the entry on the broker (by its entry-level id, bypassing the
// client's tracker) only when every message is acknowledged: plainly, by a
// committed transaction, or by the transaction that acknowledges the last
// one (then the entry is acknowledged in that transaction, atomically; also
// when that transaction acknowledged the entry's other pending messages
// too, as a batch of inputs acknowledged in one list).
// A message acknowledged in a transaction that aborts becomes pending again
// and the entry is nacked; when it comes back, the messages already
// acknowledged are not delivered again (within this consumer). Nacking one
// message of an entry redelivers the messages of the entry that are still
// held; that is the price of batching, and why consumers must tolerate
// duplicates.

type idxState uint8

const (
	idxPending idxState = iota // delivered or to be delivered
	idxAcked                   // acknowledged plainly or by a committed transaction
	idxInTx                    // acknowledged in an open transaction
	idxFinalTx                 // its transaction acknowledges the whole entry
)

type entryKey struct {
	partition int32
	ledger    int64
	entry     int64
}

// doneEntries remembers the last entries acknowledged as a whole, so that
// messages of a redelivery already under way when the entry was
// acknowledged are recognised as duplicates and dropped.
const doneEntries = 4096

type entry struct {
	key   entryKey
	msgs  []pulsar.Message // the latest delivery of each message
	state []idxState
	txs   []*tx // the transaction of each message in idxInTx
}

func newEntry(k entryKey, size int) *entry {
	return &entry{key: k, msgs: make([]pulsar.Message, size), state: make([]idxState, size), txs: make([]*tx, size)}
}

// id is the entry-level message id: acknowledging it acknowledges the entry.
func (e *entry) id() pulsar.MessageID {
	return pulsar.NewMessageID(e.key.ledger, e.key.entry, -1, e.key.partition)
}

// othersAcked says whether every message of the entry but i is
// acknowledged, or (t not nil) acknowledged in t: then t's acknowledgement
// of i completes the entry, and t acknowledges the whole entry atomically
// (a list of a batch's messages acknowledged in one transaction).
func (e *entry) othersAcked(i int, t *tx) bool {
	for j, s := range e.state {
		if j != i && s != idxAcked && (t == nil || s != idxInTx || e.txs[j] != t) {
			return false
		}
	}
	return true
}

// entryMessage is a received message that answers with its entry's id, so
// that AckWithTxn acknowledges the whole entry.
type entryMessage struct {
	pulsar.Message
	id pulsar.MessageID
}

func (m entryMessage) ID() pulsar.MessageID { return m.id }

// settleEntry records that d's message is acknowledged (st idxAcked) or
// acknowledged in t (st idxInTx), and acknowledges the entry on the broker
// when that completes it. committed says that the transaction that
// acknowledged the message committed (idxInTx becomes idxAcked).
func (c *consumer) settleEntry(d *delivery, st idxState, t *tx, committed bool) error {
	id, err := c.markEntry(d, st, t, committed)
	if err != nil || id == nil {
		return err
	}
	if err := c.c.AckWithTxn(entryMessage{Message: d.pm, id: id}, t.t); err != nil {
		err = wrap(err, "ack entry %s on %s in a transaction", id, c.where())
		if !errors.Is(err, bus.ErrTxFailed) {
			err = fmt.Errorf("%w (the transaction cannot commit): %w", bus.ErrTxFailed, err)
		}
		return err
	}
	return nil
}

// markEntry is settleEntry but for the acknowledgement in t of an entry
// that d's message completes: it returns that entry's id for the caller to
// acknowledge in t (nil when there is none to make).
func (c *consumer) markEntry(d *delivery, st idxState, t *tx, committed bool) (pulsar.MessageID, error) {
	e := d.entry
	c.mu.Lock()
	if c.entries[e.key] != e {
		c.mu.Unlock()
		return nil, nil // already acknowledged as a whole
	}
	switch cur := e.state[d.idx]; {
	case cur == idxFinalTx, cur == idxInTx && !(st == idxAcked && committed):
		c.mu.Unlock()
		return nil, nil // its transaction decides
	}
	var in *tx
	if st == idxInTx {
		in = t
	}
	complete := e.othersAcked(d.idx, in)
	switch {
	case !complete:
		e.state[d.idx] = st
		e.txs[d.idx] = in
		c.mu.Unlock()
		return nil, nil
	case st == idxAcked:
		e.state[d.idx] = idxAcked
		c.entryDone(e.key)
		c.mu.Unlock()
		if err := c.c.AckID(e.id()); err != nil {
			return nil, wrap(err, "ack entry %s on %s", e.id(), c.where())
		}
		return nil, nil
	default:
		e.state[d.idx] = idxFinalTx
		e.txs[d.idx] = t
		c.mu.Unlock()
		return e.id(), nil
	}
}

// settleTxEntry applies the outcome of a transaction that acknowledged d's
// message.
func (c *consumer) settleTxEntry(d *delivery, t *tx, committed bool) {
	e := d.entry
	c.mu.Lock()
	if c.entries[e.key] != e {
		c.mu.Unlock()
		return
	}
	st := e.state[d.idx]
	switch {
	case committed && st == idxFinalTx:
		c.entryDone(e.key)
		c.mu.Unlock()
	case committed && st == idxInTx:
		c.mu.Unlock()
		if err := c.settleEntry(d, idxAcked, nil, true); err != nil {
			c.log.Warn().Err(err).Msg("acknowledging a batched entry after its transaction committed")
		}
	case !committed && (st == idxInTx || st == idxFinalTx):
		e.state[d.idx] = idxPending
		e.txs[d.idx] = nil
		c.mu.Unlock()
		c.clientNack(d)
	default:
		c.mu.Unlock()
	}
}

// entryDone forgets an acknowledged entry and remembers that it is done.
// c.mu is held.
func (c *consumer) entryDone(k entryKey) {
	delete(c.entries, k)
	if len(c.doneRing) < doneEntries {
		c.doneRing = append(c.doneRing, k)
	} else {
		delete(c.done, c.doneRing[c.doneNext])
		c.doneRing[c.doneNext] = k
		c.doneNext = (c.doneNext + 1) % doneEntries
	}
	c.done[k] = struct{}{}
}
