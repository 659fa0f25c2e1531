package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// DLQSubscription is the admin API's durable subscription on every
// dead-letter topic: its backlog is the dead letters still to be handled.
// Replaying or purging a dead letter acknowledges exactly that message on
// it (bus.Backlogs), so it leaves the topic's backlog for good and the
// broker deletes it with the rest of the topic's acknowledged data (after
// the namespace's retention). Nothing else consumes dead-letter topics.
const DLQSubscription = "pulsaga-admin"

// HandledTopic is the compacted audit log of the dead letters replayed or
// purged (key: DLQ topic + "|" + message id; value: DLQHandled, who did it,
// when and why). A record is written in the same transaction that removes
// the dead letter (and, for a replay, republishes it), so the log and the
// topics never disagree.
const HandledTopic = "dlq-handled"

// PropReplayedFrom marks a replayed message with where it was dead-lettered.
const PropReplayedFrom = "pulsaga-replayed-from"

// DeadLetter is one dead-lettered message.
type DeadLetter struct {
	ID             string            `json:"id"`
	Key            string            `json:"key,omitempty"`
	Reason         string            `json:"reason"`
	OriginTopic    string            `json:"origin_topic"`
	OriginID       string            `json:"origin_id,omitempty"`
	Subscription   string            `json:"subscription,omitempty"`
	Deliveries     int               `json:"deliveries,omitempty"`
	DeadLetteredAt time.Time         `json:"dead_lettered_at,omitzero"`
	PublishedAt    time.Time         `json:"published_at,omitzero"`
	Properties     map[string]string `json:"properties,omitempty"`
	// Payload is the message as JSON when it is JSON, else a string.
	Payload json.RawMessage `json:"payload"`
}

// DLQInfo is one dead-letter topic.
type DLQInfo struct {
	Topic string `json:"topic"`
	// Count is the dead letters not replayed or purged yet.
	Count int `json:"count"`
}

// DLQHandled records a replayed or purged dead letter.
type DLQHandled struct {
	Topic  string    `json:"topic"`
	ID     string    `json:"id"`
	Action string    `json:"action"` // replay or purge
	Actor  string    `json:"actor"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// dlqScan bounds the dead letters one request reads or handles; "all" on a
// larger topic is done in several requests (each answers what it did).
const dlqScan = 10000

// dlqChunk is how many dead letters one transaction handles.
const dlqChunk = 100

type dlqStore struct {
	bus bus.Bus

	mu    sync.Mutex // one action at a time per instance
	audit bus.Producer
}

func newDLQStore(b bus.Bus) *dlqStore { return &dlqStore{bus: b} }

func (d *dlqStore) backlogs() (bus.Backlogs, error) {
	bl, ok := d.bus.(bus.Backlogs)
	if !ok {
		return nil, fmt.Errorf("%w: the bus (%T) cannot list topics or backlogs", ErrUnavailable, d.bus)
	}
	return bl, nil
}

// topics lists the dead-letter topics of the namespace, from the broker.
func (d *dlqStore) topics(ctx context.Context) ([]string, error) {
	bl, err := d.backlogs()
	if err != nil {
		return nil, err
	}
	all, err := bl.Topics(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: list topics: %v", ErrUnavailable, err)
	}
	return slices.DeleteFunc(all, func(t string) bool { return !bus.IsDeadLetterTopic(t) }), nil
}

func (d *dlqStore) auditProducer(ctx context.Context) (bus.Producer, error) {
	if d.audit == nil {
		if err := d.bus.EnsureTopic(ctx, bus.TopicSpec{Name: HandledTopic, Compacted: true, RetentionTime: -1, RetentionSizeMB: -1}); err != nil {
			return nil, err
		}
		p, err := d.bus.Producer(ctx, bus.ProducerOptions{Topic: HandledTopic})
		if err != nil {
			return nil, err
		}
		d.audit = p
	}
	return d.audit, nil
}

func deadLetterOf(m *bus.Message) DeadLetter {
	p := m.Properties
	dl := DeadLetter{
		ID: bus.FormatMessageID(m.ID), Key: m.Key, Reason: p[bus.PropDLQReason], OriginTopic: p[bus.PropDLQOriginTopic],
		OriginID: p[bus.PropDLQOriginID], Subscription: p[bus.PropDLQSubscription], PublishedAt: m.PublishTime, Properties: p,
	}
	dl.Deliveries, _ = strconv.Atoi(p[bus.PropDLQDeliveries])
	dl.DeadLetteredAt, _ = time.Parse(time.RFC3339Nano, p[bus.PropDLQDeadLetteredAt])
	if json.Valid(m.Payload) && len(m.Payload) > 0 {
		dl.Payload = m.Payload
	} else {
		dl.Payload, _ = json.Marshal(string(m.Payload))
	}
	return dl
}

// checkDLQTopic checks that topic names an existing dead-letter topic.
func (s *Server) checkDLQTopic(ctx context.Context, topic string) error {
	if !bus.IsDeadLetterTopic(topic) || strings.ContainsAny(topic, "/:") {
		return fmt.Errorf("%w: %q is not a dead-letter topic (short names ending in %s, see GET /api/v1/dlq)", ErrBadRequest, topic, bus.DeadLetterSuffix)
	}
	names, err := s.dlq.topics(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(names, topic) {
		return fmt.Errorf("%w: no dead-letter topic %s in namespace %s (GET /api/v1/dlq lists them)", ErrNotFound, topic, s.opts.Bus.Namespace())
	}
	return nil
}

// DeadLetterCounts lists every dead-letter topic of the namespace, as the
// broker has them, with the dead letters each still holds. Listing also
// creates the admin subscription on a new dead-letter topic, so its
// messages are kept until they are replayed or purged.
func (s *Server) DeadLetterCounts(ctx context.Context) ([]DLQInfo, error) {
	bl, err := s.dlq.backlogs()
	if err != nil {
		return nil, err
	}
	names, err := s.dlq.topics(ctx)
	if err != nil {
		return nil, err
	}
	out := []DLQInfo{}
	for _, t := range names {
		_, n, err := bl.Backlog(ctx, t, DLQSubscription, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: count the dead letters of %s: %v", ErrUnavailable, t, err)
		}
		out = append(out, DLQInfo{Topic: t, Count: n})
	}
	return out, nil
}

func (s *Server) listDLQ(w http.ResponseWriter, r *http.Request) {
	out, err := s.DeadLetterCounts(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"topics": out})
}

// pending returns up to limit dead letters of topic not handled yet and how
// many there are.
func (s *Server) pending(ctx context.Context, topic string, limit int) ([]*bus.Message, int, error) {
	bl, err := s.dlq.backlogs()
	if err != nil {
		return nil, 0, err
	}
	msgs, n, err := bl.Backlog(ctx, topic, DLQSubscription, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: read %s: %v", ErrUnavailable, topic, err)
	}
	return msgs, n, nil
}

func (s *Server) inspectDLQ(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(w, r, fmt.Errorf("%w: limit %q must be between 1 and 1000", ErrBadRequest, v))
			return
		}
		limit = n
	}
	if err := s.checkDLQTopic(r.Context(), topic); err != nil {
		s.fail(w, r, err)
		return
	}
	msgs, n, err := s.pending(r.Context(), topic, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []DeadLetter{}
	for _, m := range msgs {
		out = append(out, deadLetterOf(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "count": n, "messages": out})
}

// DLQActionBody selects dead letters: the ids given, or every pending one
// when ids is empty (at most 10,000 per request).
type DLQActionBody struct {
	IDs    []string `json:"ids,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// DLQActionResult answers replay and purge.
type DLQActionResult struct {
	Topic  string   `json:"topic"`
	Action string   `json:"action"`
	Done   []string `json:"done"`
	// Skipped are ids that are not in the topic's backlog: replayed or
	// purged already, or unknown.
	Skipped []string `json:"skipped,omitempty"`
	// Remaining counts the dead letters still in the topic afterwards.
	Remaining int `json:"remaining"`
}

// dlqAction replays or purges dead letters. Each chunk of them is handled
// in one transaction: the acknowledgements that remove them from the
// topic's backlog, the audit records and, for a replay, the republished
// messages commit together or not at all. So a retried request (say its
// answer was lost) finds the dead letters it handled gone and skips them:
// nothing is ever replayed twice, whichever instance answers.
func (s *Server) dlqAction(w http.ResponseWriter, r *http.Request, action string, apply func(ctx context.Context, m *bus.Message, tx bus.Tx) error) {
	ctx := r.Context()
	topic := r.PathValue("topic")
	var body DLQActionBody
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &body); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	for _, id := range body.IDs {
		if _, err := bus.ParseMessageID(id); err != nil {
			s.fail(w, r, fmt.Errorf("%w: id %q is not a dead-letter id (see GET /api/v1/dlq/%s)", ErrBadRequest, id, topic))
			return
		}
	}
	if err := s.checkDLQTopic(ctx, topic); err != nil {
		s.fail(w, r, err)
		return
	}
	s.dlq.mu.Lock()
	defer s.dlq.mu.Unlock()
	msgs, _, err := s.pending(ctx, topic, dlqScan)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res := DLQActionResult{Topic: topic, Action: action, Done: []string{}}
	if len(body.IDs) > 0 {
		byID := map[string]*bus.Message{}
		for _, m := range msgs {
			byID[bus.FormatMessageID(m.ID)] = m
		}
		msgs = msgs[:0]
		for _, id := range body.IDs {
			if m, ok := byID[id]; ok {
				msgs = append(msgs, m)
				delete(byID, id)
			} else {
				res.Skipped = append(res.Skipped, id)
			}
		}
	}
	p := PrincipalFrom(ctx)
	for chunk := range slices.Chunk(msgs, dlqChunk) {
		ids, err := s.dlqChunk(ctx, topic, action, chunk, DLQHandled{Topic: topic, Action: action, Actor: p.Name, Reason: body.Reason, At: s.opts.Clock().UTC()}, apply)
		if errors.Is(err, bus.ErrTxFailed) {
			// Another request removed one of them meanwhile (or the
			// transaction failed): nothing of this chunk was applied.
			s.fail(w, r, fmt.Errorf("%w: %s dead letters of %s: nothing of this part was applied, because another request handled some of them meanwhile or the transaction failed; run it again to handle what is left (done before it: %v): %v", ErrConflict, action, topic, res.Done, err))
			return
		}
		if err != nil {
			s.fail(w, r, fmt.Errorf("%w: %s dead letters of %s (done before it: %v): %v", ErrUnavailable, action, topic, res.Done, err))
			return
		}
		res.Done = append(res.Done, ids...)
	}
	sort.Strings(res.Skipped)
	if _, res.Remaining, err = s.pending(ctx, topic, 0); err != nil {
		res.Remaining = -1
	}
	s.log.Info().Str("topic", topic).Str("action", action).Int("messages", len(res.Done)).Str("actor", p.Name).Str("reason", body.Reason).Msg("dead letters handled")
	writeJSON(w, http.StatusOK, res)
}

// dlqChunk handles some dead letters in one transaction.
func (s *Server) dlqChunk(ctx context.Context, topic, action string, msgs []*bus.Message, rec DLQHandled, apply func(context.Context, *bus.Message, bus.Tx) error) ([]string, error) {
	bl, err := s.dlq.backlogs()
	if err != nil {
		return nil, err
	}
	audit, err := s.dlq.auditProducer(ctx)
	if err != nil {
		return nil, fmt.Errorf("open the audit log %s: %w", HandledTopic, err)
	}
	tx, err := s.opts.Bus.BeginTx(ctx, time.Minute)
	if err != nil {
		return nil, err
	}
	ids, done := make([]bus.MessageID, 0, len(msgs)), make([]string, 0, len(msgs))
	err = func() error {
		for _, m := range msgs {
			id := bus.FormatMessageID(m.ID)
			if apply != nil {
				if err := apply(ctx, m, tx); err != nil {
					return fmt.Errorf("%s %s: %w", action, id, err)
				}
			}
			rec.ID = id
			b, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if _, err := audit.Send(ctx, &bus.OutMessage{Key: handledKey(topic, id), Payload: b, Tx: tx}); err != nil {
				return fmt.Errorf("record %s of %s: %w", action, id, err)
			}
			ids, done = append(ids, m.ID), append(done, id)
		}
		if err := bl.Acknowledge(ctx, topic, DLQSubscription, tx, ids...); err != nil {
			return fmt.Errorf("remove from %s: %w", topic, err)
		}
		return tx.Commit(ctx)
	}()
	if err != nil {
		_ = tx.Abort(context.WithoutCancel(ctx))
		return nil, err
	}
	return done, nil
}

func handledKey(topic, id string) string { return topic + "|" + id }

func (s *Server) replayDLQ(w http.ResponseWriter, r *http.Request) {
	producers := map[string]bus.Producer{}
	defer func() {
		for _, p := range producers {
			_ = p.Close()
		}
	}()
	s.dlqAction(w, r, "replay", func(ctx context.Context, m *bus.Message, tx bus.Tx) error {
		origin := m.Properties[bus.PropDLQOriginTopic]
		if origin == "" {
			return fmt.Errorf("%w: message has no %s property", ErrConflict, bus.PropDLQOriginTopic)
		}
		// A partition's name goes back to its topic: the key routes the
		// message to the same partition.
		target := bus.ShortName(bus.BaseTopic(origin))
		p := producers[target]
		if p == nil {
			var err error
			if p, err = s.opts.Bus.Producer(ctx, bus.ProducerOptions{Topic: target}); err != nil {
				return err
			}
			producers[target] = p
		}
		props := map[string]string{}
		for k, v := range m.Properties {
			if !strings.HasPrefix(k, "pulsaga-dlq-") {
				props[k] = v
			}
		}
		props[PropReplayedFrom] = r.PathValue("topic") + "|" + bus.FormatMessageID(m.ID)
		_, err := p.Send(ctx, &bus.OutMessage{Key: m.Key, Payload: m.Payload, Properties: props, Tx: tx})
		return err
	})
}

func (s *Server) purgeDLQ(w http.ResponseWriter, r *http.Request) {
	s.dlqAction(w, r, "purge", nil)
}

// Close releases the audit producer.
func (d *dlqStore) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.audit != nil {
		_ = d.audit.Close()
		d.audit = nil
	}
	return nil
}
