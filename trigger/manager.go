package trigger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// Options configure a Manager.
type Options struct {
	// Name identifies the instance (consumer names).
	Name string
	// Topics are the engine's topics: start requests go to Events.
	Topics protocol.Topics
	// Registry holds the definitions whose triggers run.
	Registry *engine.Registry
	// Every is how often the registry is read for new or changed
	// triggers (default 5s).
	Every time.Duration
}

// Subscription is the subscription of a trigger on its topic: shared by
// every orchestrator, kept across versions of the definition.
func Subscription(definition, id string) string {
	return protocol.TriggerSubscriptionPrefix + definition + "-" + id
}

// Info describes a running trigger.
type Info struct {
	Definition   string `json:"definition"`
	Version      int    `json:"version"`
	ID           string `json:"id"`
	Topic        string `json:"topic"`
	Subscription string `json:"subscription"`
	// DeadLetterTopic is where unusable messages go.
	DeadLetterTopic string `json:"dead_letter_topic"`
	// Counts of this instance since it started.
	Started      int64  `json:"started"`
	Ignored      int64  `json:"ignored"`
	DeadLettered int64  `json:"dead_lettered"`
	LastError    string `json:"last_error,omitempty"`
}

// Manager keeps a consumer per trigger of the latest version of each
// registered definition.
type Manager struct {
	bus  bus.Bus
	opts Options
	log  zerolog.Logger

	mu      sync.Mutex
	running map[string]*consumer // by definition/id
}

type consumer struct {
	info   Info
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager creates a trigger manager; Run starts it.
func NewManager(b bus.Bus, opts Options, log zerolog.Logger) *Manager {
	if opts.Name == "" {
		opts.Name = "triggers"
	}
	opts.Topics = opts.Topics.WithDefaults()
	if opts.Every <= 0 {
		opts.Every = 5 * time.Second
	}
	return &Manager{bus: b, opts: opts, log: log.With().Str("component", "triggers").Logger(), running: map[string]*consumer{}}
}

// Triggers lists the running triggers with this instance's counts.
func (m *Manager) Triggers() []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Info, 0, len(m.running))
	for _, c := range m.running {
		out = append(out, c.info)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Definition != out[j].Definition {
			return out[i].Definition < out[j].Definition
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Run keeps the triggers running until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	p, err := m.bus.Producer(ctx, protocol.EventsProducer(m.opts.Topics.Events))
	if err != nil {
		return fmt.Errorf("triggers: %w", err)
	}
	defer p.Close()
	defer m.stopAll()
	t := time.NewTicker(m.opts.Every)
	defer t.Stop()
	for {
		if err := m.reconcile(ctx, p); err != nil && ctx.Err() == nil {
			m.log.Warn().Err(err).Msg("cannot read the definitions; triggers unchanged")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Desired returns the triggers of the latest version of each definition.
func Desired(ctx context.Context, reg *engine.Registry) (map[string]*workflow.Definition, error) {
	recs, err := reg.List(ctx)
	if err != nil {
		return nil, err
	}
	latest := map[string]int{}
	for _, r := range recs {
		latest[r.Name] = max(latest[r.Name], r.Version)
	}
	out := map[string]*workflow.Definition{}
	for name, v := range latest {
		def, err := reg.Get(ctx, name, v)
		if err != nil {
			return nil, err
		}
		if len(def.Triggers) > 0 {
			out[name] = def
		}
	}
	return out, nil
}

func (m *Manager) reconcile(ctx context.Context, p bus.Producer) error {
	defs, err := Desired(ctx, m.opts.Registry)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, def := range defs {
		for _, tr := range def.Triggers {
			key := def.Name + "/" + tr.ID
			want[key] = true
			m.mu.Lock()
			c := m.running[key]
			m.mu.Unlock()
			if c != nil && c.info.Version == def.Version {
				continue
			}
			if c != nil {
				m.stop(key, c) // a new version: same subscription, new expressions
			}
			m.start(ctx, key, def, tr, p)
		}
	}
	m.mu.Lock()
	var gone []string
	for key := range m.running {
		if !want[key] {
			gone = append(gone, key)
		}
	}
	m.mu.Unlock()
	for _, key := range gone {
		m.mu.Lock()
		c := m.running[key]
		m.mu.Unlock()
		m.stop(key, c)
	}
	return nil
}

func (m *Manager) stop(key string, c *consumer) {
	c.cancel()
	<-c.done
	m.mu.Lock()
	if m.running[key] == c {
		delete(m.running, key)
	}
	m.mu.Unlock()
	m.log.Info().Str("trigger", key).Int("version", c.info.Version).Msg("trigger stopped")
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	all := make(map[string]*consumer, len(m.running))
	for k, c := range m.running {
		all[k] = c
	}
	m.mu.Unlock()
	for k, c := range all {
		m.stop(k, c)
	}
}

func (m *Manager) start(ctx context.Context, key string, def *workflow.Definition, tr *workflow.Trigger, p bus.Producer) {
	sub := Subscription(def.Name, tr.ID)
	c := &consumer{done: make(chan struct{}), info: Info{
		Definition: def.Name, Version: def.Version, ID: tr.ID, Topic: tr.Topic, Subscription: sub,
		DeadLetterTopic: bus.DeadLetterTopic(tr.Topic, sub),
	}}
	cctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	m.mu.Lock()
	m.running[key] = c
	m.mu.Unlock()
	log := m.log.With().Str("trigger", key).Int("version", def.Version).Str("topic", tr.Topic).Logger()
	go func() {
		defer close(c.done)
		backoff := time.Second
		for cctx.Err() == nil {
			err := m.consume(cctx, c, def, tr, p, log)
			if cctx.Err() != nil {
				return
			}
			m.setError(c, err)
			log.Warn().Err(err).Dur("retry_in", backoff).Msg("trigger consumer failed")
			select {
			case <-cctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}()
	log.Info().Msg("trigger running")
}

func (m *Manager) setError(c *consumer, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		c.info.LastError = err.Error()
	}
}

func (m *Manager) count(c *consumer, f func(*Info)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&c.info)
}

// consume turns the messages of one trigger into start requests.
func (m *Manager) consume(ctx context.Context, c *consumer, def *workflow.Definition, tr *workflow.Trigger, p bus.Producer, log zerolog.Logger) error {
	if err := m.bus.EnsureTopic(ctx, bus.TopicSpec{Name: tr.Topic}); err != nil {
		log.Debug().Err(err).Msg("cannot ensure the trigger's topic; subscribing anyway")
	}
	cons, err := m.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: tr.Topic, Subscription: c.info.Subscription, Type: bus.Shared, ConsumerName: m.opts.Name + "-" + tr.ID,
		// A new trigger reacts to what is published from now on, not to
		// what the topic already held.
		InitialPosition: bus.Latest, MaxDeliveries: 10, NackDelay: time.Second,
	})
	if err != nil {
		return err
	}
	defer cons.Close()
	defer func() { // the starts in flight settle before the consumer closes
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = p.Flush(fctx)
	}()
	actor := "trigger:" + def.Name + "/" + tr.ID
	for {
		msg, err := cons.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		st, ok, err := Evaluate(def, tr, msg)
		switch {
		case errors.Is(err, ErrUnusable):
			if derr := cons.DeadLetter(ctx, msg, err.Error()); derr != nil {
				cons.Nack(msg, err)
				continue
			}
			m.count(c, func(i *Info) { i.DeadLettered++; i.LastError = err.Error() })
			log.Info().Str("reason", err.Error()).Msg("trigger message dead-lettered")
			continue
		case err != nil:
			cons.Nack(msg, err)
			continue
		case !ok:
			if err := cons.Ack(ctx, msg); err != nil {
				cons.Nack(msg, err)
				continue
			}
			m.count(c, func(i *Info) { i.Ignored++ })
			continue
		}
		env, err := bus.NewEnvelope(protocol.TypeStart, protocol.StartEnvelopeID(st.ProcessID), st.ProcessID, time.Now(),
			protocol.StartRequest{ProcessID: st.ProcessID, Definition: def.Name, Version: def.Version, Input: st.Input, Actor: actor})
		var payload []byte
		if err == nil {
			payload, err = env.Encode()
		}
		if err != nil {
			_ = cons.DeadLetter(ctx, msg, err.Error())
			continue
		}
		p.SendAsync(ctx, &bus.OutMessage{Key: st.ProcessID, Payload: payload}, func(_ bus.MessageID, err error) {
			if err != nil {
				cons.Nack(msg, err)
				return
			}
			if err := cons.Ack(ctx, msg); err != nil {
				cons.Nack(msg, err)
				return
			}
			m.count(c, func(i *Info) { i.Started++ })
		})
	}
}
