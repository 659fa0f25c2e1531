package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/timers"
	"github.com/pulsaga/pulsaga/worker"
)

// HandledTopic is the compacted topic where the admin API records which
// dead letters were replayed or purged (key: DLQ topic + "|" + message
// id). Dead-letter topics themselves are never rewritten: they keep every
// message for the namespace's retention, as an audit trail, and the API
// hides the handled ones.
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
	// Handled is the dead letters replayed or purged.
	Handled int `json:"handled"`
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

type dlqStore struct {
	bus    bus.Bus
	reg    *engine.Registry
	topics engine.Topics

	mu      sync.Mutex
	reader  bus.Reader
	handled map[string]DLQHandled
	prod    bus.Producer
}

func newDLQStore(b bus.Bus, reg *engine.Registry, t engine.Topics) *dlqStore {
	return &dlqStore{bus: b, reg: reg, topics: t, handled: map[string]DLQHandled{}}
}

func handledKey(topic, id string) string { return topic + "|" + id }

// DLQTopics are the dead-letter topics of an installation: those of the
// engine's subscriptions and of every service a registered definition uses.
func DLQTopics(t engine.Topics, services []string) []string {
	out := []string{
		t.Events + "-orchestrator-DLQ", engine.StartTopic + "-start-relay-DLQ",
		t.Decisions + "-deciders-DLQ", timers.Topic + "-timer-relay-DLQ",
	}
	for _, s := range services {
		out = append(out, worker.JobTopic(s)+"-workers-DLQ")
	}
	return out
}

func (d *dlqStore) topicsList(ctx context.Context) ([]string, error) {
	recs, err := d.reg.List(ctx)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, rec := range recs {
		def, err := d.reg.Get(ctx, rec.Name, rec.Version)
		if err != nil {
			continue
		}
		for _, st := range def.Steps {
			if st.Service != "" {
				set[st.Service] = true
			}
		}
	}
	return DLQTopics(d.topics, slices.Sorted(maps.Keys(set))), nil
}

func (d *dlqStore) refresh(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reader == nil {
		if err := d.bus.EnsureTopic(ctx, bus.TopicSpec{Name: HandledTopic, Compacted: true, RetentionTime: -1, RetentionSizeMB: -1}); err != nil {
			return err
		}
		rd, err := d.bus.Reader(ctx, bus.ReaderOptions{Topic: HandledTopic, Compacted: true})
		if err != nil {
			return err
		}
		d.reader = rd
	}
	for {
		more, err := d.reader.HasNext(ctx)
		if err != nil || !more {
			return err
		}
		m, err := d.reader.Next(ctx)
		if err != nil {
			return err
		}
		var h DLQHandled
		if json.Unmarshal(m.Payload, &h) == nil && h.Topic != "" {
			d.handled[handledKey(h.Topic, h.ID)] = h
		}
	}
}

func (d *dlqStore) isHandled(topic, id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.handled[handledKey(topic, id)]
	return ok
}

func (d *dlqStore) mark(ctx context.Context, h DLQHandled) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.prod == nil {
		p, err := d.bus.Producer(ctx, bus.ProducerOptions{Topic: HandledTopic})
		if err != nil {
			return err
		}
		d.prod = p
	}
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if _, err := d.prod.Send(ctx, &bus.OutMessage{Key: handledKey(h.Topic, h.ID), Payload: b}); err != nil {
		return err
	}
	d.handled[handledKey(h.Topic, h.ID)] = h
	return nil
}

// read returns every message of a DLQ topic, with the raw messages.
func (d *dlqStore) read(ctx context.Context, topic string) ([]*bus.Message, error) {
	rd, err := d.bus.Reader(ctx, bus.ReaderOptions{Topic: topic})
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var out []*bus.Message
	for {
		more, err := rd.HasNext(ctx)
		if err != nil {
			return nil, err
		}
		if !more {
			return out, nil
		}
		m, err := rd.Next(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
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

func (s *Server) checkDLQTopic(ctx context.Context, topic string) error {
	if !strings.HasSuffix(topic, "-DLQ") || strings.ContainsAny(topic, "/:") {
		return fmt.Errorf("%w: %q is not a dead-letter topic (short names ending in -DLQ, see GET /api/v1/dlq)", ErrBadRequest, topic)
	}
	return nil
}

// DeadLetterCounts reads every dead-letter topic of the installation.
func (s *Server) DeadLetterCounts(ctx context.Context) ([]DLQInfo, error) {
	names, err := s.dlq.topicsList(ctx)
	if err == nil {
		err = s.dlq.refresh(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	out := []DLQInfo{}
	for _, t := range names {
		msgs, err := s.dlq.read(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("%w: read %s: %v", ErrUnavailable, t, err)
		}
		info := DLQInfo{Topic: t}
		for _, m := range msgs {
			if s.dlq.isHandled(t, bus.FormatMessageID(m.ID)) {
				info.Handled++
			} else {
				info.Count++
			}
		}
		out = append(out, info)
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

// pending returns the dead letters of topic not handled yet.
func (s *Server) pending(ctx context.Context, topic string) ([]*bus.Message, error) {
	if err := s.dlq.refresh(ctx); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	msgs, err := s.dlq.read(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrUnavailable, topic, err)
	}
	return slices.DeleteFunc(msgs, func(m *bus.Message) bool { return s.dlq.isHandled(topic, bus.FormatMessageID(m.ID)) }), nil
}

func (s *Server) inspectDLQ(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if err := s.checkDLQTopic(r.Context(), topic); err != nil {
		s.fail(w, r, err)
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(w, r, fmt.Errorf("%w: limit %q must be between 1 and 1000", ErrBadRequest, v))
			return
		}
		limit = n
	}
	msgs, err := s.pending(r.Context(), topic)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []DeadLetter{}
	for _, m := range msgs[:min(limit, len(msgs))] {
		out = append(out, deadLetterOf(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "count": len(msgs), "messages": out})
}

// DLQActionBody selects dead letters: the ids given, or every pending one
// when ids is empty.
type DLQActionBody struct {
	IDs    []string `json:"ids,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// DLQActionResult answers replay and purge.
type DLQActionResult struct {
	Topic  string   `json:"topic"`
	Action string   `json:"action"`
	Done   []string `json:"done"`
	// Skipped are ids that were handled already (or are not in the topic).
	Skipped []string `json:"skipped,omitempty"`
}

func (s *Server) dlqAction(w http.ResponseWriter, r *http.Request, action string, apply func(ctx context.Context, m *bus.Message) error) {
	topic := r.PathValue("topic")
	if err := s.checkDLQTopic(r.Context(), topic); err != nil {
		s.fail(w, r, err)
		return
	}
	var body DLQActionBody
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &body); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	msgs, err := s.pending(r.Context(), topic)
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
	p := PrincipalFrom(r.Context())
	for _, m := range msgs {
		id := bus.FormatMessageID(m.ID)
		if apply != nil {
			if err := apply(r.Context(), m); err != nil {
				s.fail(w, r, fmt.Errorf("%w: %s %s of %s (done before it: %v): %v", ErrUnavailable, action, id, topic, res.Done, err))
				return
			}
		}
		if err := s.dlq.mark(r.Context(), DLQHandled{Topic: topic, ID: id, Action: action, Actor: p.Name, Reason: body.Reason, At: s.opts.Clock().UTC()}); err != nil {
			s.fail(w, r, fmt.Errorf("%w: record %s of %s: %v", ErrUnavailable, action, id, err))
			return
		}
		res.Done = append(res.Done, id)
	}
	sort.Strings(res.Skipped)
	s.log.Info().Str("topic", topic).Str("action", action).Int("messages", len(res.Done)).Str("actor", p.Name).Str("reason", body.Reason).Msg("dead letters handled")
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) replayDLQ(w http.ResponseWriter, r *http.Request) {
	producers := map[string]bus.Producer{}
	defer func() {
		for _, p := range producers {
			_ = p.Close()
		}
	}()
	s.dlqAction(w, r, "replay", func(ctx context.Context, m *bus.Message) error {
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
		_, err := p.Send(ctx, &bus.OutMessage{Key: m.Key, Payload: m.Payload, Properties: props})
		return err
	})
}

func (s *Server) purgeDLQ(w http.ResponseWriter, r *http.Request) {
	s.dlqAction(w, r, "purge", nil)
}

// Close releases the reader and producer.
func (d *dlqStore) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reader != nil {
		_ = d.reader.Close()
		d.reader = nil
	}
	if d.prod != nil {
		_ = d.prod.Close()
		d.prod = nil
	}
	return nil
}
