package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// Client sends start requests, signals and admin actions to the events
// topic. Everything it sends is keyed by process id, so it is handled in
// order with the process's other events, one decision at a time.
type Client struct {
	bus    bus.Bus
	topics protocol.Topics
	clock  func() time.Time

	mu sync.Mutex
	p  bus.Producer
}

// NewClient creates a client.
func NewClient(b bus.Bus, topics protocol.Topics) *Client {
	topics = topics.WithDefaults()
	return &Client{bus: b, topics: topics, clock: time.Now}
}

// producer is the events topic's producer, opened on first use.
func (c *Client) producer(ctx context.Context) (bus.Producer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		p, err := c.bus.Producer(ctx, protocol.EventsProducer(c.topics.Events))
		if err != nil {
			return nil, err
		}
		c.p = p
	}
	return c.p, nil
}

func (c *Client) send(ctx context.Context, typ, id, pid string, payload any) error {
	if pid == "" {
		return fmt.Errorf("%w: a process id is required", bus.ErrBadOptions)
	}
	p, err := c.producer(ctx)
	if err != nil {
		return err
	}
	b, err := encode(typ, id, pid, c.clock(), payload)
	if err != nil {
		return err
	}
	_, err = p.Send(ctx, &bus.OutMessage{Key: pid, Payload: b})
	return err
}

// Start starts a process. Starting an id that exists does nothing.
func (c *Client) Start(ctx context.Context, req protocol.StartRequest) error {
	if err := req.Validate(); err != nil {
		return fmt.Errorf("%w: %w", bus.ErrBadOptions, err)
	}
	return c.send(ctx, protocol.TypeStart, protocol.StartEnvelopeID(req.ProcessID), req.ProcessID, req)
}

// StartMany starts many processes at once: the requests are checked, then
// sent together (one flush, no wait per request), and StartMany returns
// once the broker has every one of them or ctx ends. It returns nil when
// all were sent, or a *StartErrors saying which were not and why (the
// others were sent). Like Start, starting an id that exists does nothing,
// so resending the failed requests, or all of them, is safe.
func (c *Client) StartMany(ctx context.Context, reqs []protocol.StartRequest) error {
	errs := make([]error, len(reqs))
	var mu sync.Mutex
	p, perr := c.producer(ctx)
	b := bus.NewBatch(bus.BatchOptions{})
	now := c.clock()
	for i, req := range reqs {
		err := req.Validate()
		if err != nil {
			err = fmt.Errorf("%w: %w", bus.ErrBadOptions, err)
		} else {
			err = perr
		}
		var payload []byte
		if err == nil {
			payload, err = encode(protocol.TypeStart, protocol.StartEnvelopeID(req.ProcessID), req.ProcessID, now, req)
		}
		if err != nil {
			errs[i] = err
			continue
		}
		errs[i] = errNotSent
		b.SendResult(p, &bus.OutMessage{Key: req.ProcessID, Payload: payload}, func(_ bus.MessageID, err error) {
			mu.Lock()
			errs[i] = err
			mu.Unlock()
		})
	}
	cerr := b.Commit(ctx)
	mu.Lock()
	defer mu.Unlock()
	se := &StartErrors{Errs: make([]error, len(reqs))}
	for i, err := range errs {
		if errors.Is(err, errNotSent) && cerr != nil {
			err = fmt.Errorf("%w: %w", errNotSent, cerr)
		}
		if err != nil {
			se.Errs[i] = err
			se.Failed++
		}
	}
	if se.Failed == 0 {
		return nil
	}
	return se
}

// errNotSent marks a request whose send's outcome was never known.
var errNotSent = errors.New("start request not sent")

// StartErrors says which start requests of a StartMany were not sent.
type StartErrors struct {
	// Errs has one entry per request: nil for those sent.
	Errs []error
	// Failed counts the requests not sent.
	Failed int
}

func (e *StartErrors) Error() string {
	for i, err := range e.Errs {
		if err != nil {
			return fmt.Sprintf("%d of %d start requests not sent; the first (#%d): %v", e.Failed, len(e.Errs), i+1, err)
		}
	}
	return "no start request failed"
}

// Unwrap gives errors.Is and errors.As the errors of the failed requests.
func (e *StartErrors) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// Signal delivers a signal; signalID makes a retried send count once.
func (c *Client) Signal(ctx context.Context, pid, name, signalID string, data json.RawMessage) error {
	return c.SignalAs(ctx, pid, name, signalID, data, "", "")
}

// SignalAs delivers a signal recorded with who sent it and why.
func (c *Client) SignalAs(ctx context.Context, pid, name, signalID string, data json.RawMessage, actor, reason string) error {
	if signalID == "" {
		signalID = fmt.Sprintf("%s-%d", name, c.clock().UnixNano())
	}
	return c.send(ctx, protocol.TypeSignal, "signal:"+signalID, pid, protocol.Signal{ProcessID: pid, Name: name, Data: data, SignalID: signalID, Actor: actor, Reason: reason})
}

// Admin sends an operator's action; requestID makes a retried request
// apply once.
func (c *Client) Admin(ctx context.Context, req protocol.AdminRequest, requestID string) error {
	if requestID == "" {
		requestID = fmt.Sprintf("%s-%d", req.Action, c.clock().UnixNano())
	}
	return c.send(ctx, protocol.TypeAdminAction, "admin:"+requestID, req.ProcessID, req)
}

// Close releases the producer.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil {
		err := c.p.Close()
		c.p = nil
		return err
	}
	return nil
}
