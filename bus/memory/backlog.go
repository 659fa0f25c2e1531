package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

var _ bus.Backlogs = (*Bus)(nil)

// Topics implements bus.Backlogs: the topics of this connection's
// namespace.
func (x *Bus) Topics(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := x.checkOpen(); err != nil {
		return nil, err
	}
	prefix := x.ns.Topic("")
	x.b.mu.Lock()
	defer x.b.mu.Unlock()
	var out []string
	for name := range x.b.topics {
		if short, ok := strings.CutPrefix(name, prefix); ok && !strings.Contains(short, "/") {
			out = append(out, short)
		}
	}
	slices.Sort(out)
	return out, nil
}

// backlogSubLocked returns the subscription of a backlog call, creating it
// at the earliest message (a Shared subscription without consumers, as
// Pulsar's admin API creates one).
func (x *Bus) backlogSubLocked(topic, name string) (*subscription, error) {
	if topic == "" || name == "" {
		return nil, fmt.Errorf("%w: a backlog needs a topic and a subscription", bus.ErrBadOptions)
	}
	full := x.ns.Topic(topic)
	b := x.b
	t, part, err := b.lookupLocked(full)
	if err != nil {
		return nil, err
	}
	if t.partitioned || part != nil {
		return nil, fmt.Errorf("%w: %s is partitioned; backlogs work on topics without partitions", bus.ErrBadOptions, full)
	}
	key := full + "\x00" + name
	if s := b.subs[key]; s != nil {
		return s, nil
	}
	s := &subscription{
		b: b, name: name, topicName: full, t: t, typ: bus.Shared,
		active: make(map[*cursor]*consumer), holds: make(map[string]*keyHold),
		wake: make(chan struct{}), whole: true,
	}
	s.addCursorLocked(t.parts[0], false)
	t.subs[name] = s
	b.subs[key] = s
	return s, nil
}

// Backlog implements bus.Backlogs.
func (x *Bus) Backlog(ctx context.Context, topic, subscription string, limit int) ([]*bus.Message, int, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if err := x.checkOpen(); err != nil {
		return nil, 0, err
	}
	if limit < 0 {
		return nil, 0, fmt.Errorf("%w: backlog limit %d is negative", bus.ErrBadOptions, limit)
	}
	x.b.mu.Lock()
	defer x.b.mu.Unlock()
	s, err := x.backlogSubLocked(topic, subscription)
	if err != nil {
		return nil, 0, err
	}
	cur := s.cursors[0]
	cur.fillLocked()
	var out []*bus.Message
	n := len(cur.states)
	for _, st := range cur.states {
		if len(out) == limit {
			break
		}
		out = append(out, st.e.message(cur.p, st.deliveries))
	}
	// Past the window: committed entries not read into states yet.
	for i := cur.next; i < cur.p.visibleLimit(); i++ {
		if e := cur.p.log[i]; e.state == committed {
			n++
			if len(out) < limit {
				out = append(out, e.message(cur.p, 0))
			}
		}
	}
	return out, n, nil
}

// Acknowledge implements bus.Backlogs.
func (x *Bus) Acknowledge(ctx context.Context, topic, subscription string, t bus.Tx, ids ...bus.MessageID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := x.checkOpen(); err != nil {
		return err
	}
	var tr *tx
	if t != nil {
		var ok bool
		if tr, ok = t.(*tx); !ok {
			return fmt.Errorf("%w: transaction %T was not made by the memory bus", bus.ErrBadOptions, t)
		}
	}
	x.b.mu.Lock()
	defer x.b.mu.Unlock()
	if tr != nil {
		if err := tr.usableLocked(); err != nil {
			return err
		}
	}
	s, err := x.backlogSubLocked(topic, subscription)
	if err != nil {
		return err
	}
	cur := s.cursors[0]
	var sts []*msgState
	for _, id := range ids {
		part, idx, err := parseID(id)
		if err != nil {
			return err
		}
		if part != cur.p.index {
			return fmt.Errorf("%w: message %s is of partition %d; %s has none", bus.ErrBadOptions, bus.FormatMessageID(id), part, s.topicName)
		}
		cur.fillLocked()
		if idx >= cur.next && idx < int64(len(cur.p.log)) {
			return fmt.Errorf("%w: message %s is beyond the %d oldest of the backlog of %s; acknowledge those first",
				bus.ErrBadOptions, bus.FormatMessageID(id), window, s.name)
		}
		_, st := cur.find(idx)
		if st == nil && tr != nil {
			return fmt.Errorf("%w: message %s is not in the backlog of %s on %s (acknowledged already)", bus.ErrTxFailed, bus.FormatMessageID(id), s.name, s.topicName)
		}
		if st == nil {
			continue // acknowledged already (or never there)
		}
		if st.tx != nil && st.tx != tr {
			return fmt.Errorf("%w: message %s is acknowledged in open transaction %d", bus.ErrTxFailed, bus.FormatMessageID(id), st.tx.id)
		}
		sts = append(sts, st)
	}
	for _, st := range sts {
		switch {
		case tr == nil:
			s.ackLocked(st)
		case st.tx == nil:
			s.releaseLocked(st, time.Time{})
			st.tx = tr
			tr.acks = append(tr.acks, txAck{s: s, st: st})
		}
	}
	s.signalLocked()
	return nil
}
