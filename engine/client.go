package engine

import (
	"context"
	"encoding/json"
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

func (c *Client) send(ctx context.Context, typ, id, pid string, payload any) error {
	if pid == "" {
		return fmt.Errorf("%w: a process id is required", bus.ErrBadOptions)
	}
	c.mu.Lock()
	if c.p == nil {
		p, err := c.bus.Producer(ctx, bus.ProducerOptions{Topic: c.topics.Events})
		if err != nil {
			c.mu.Unlock()
			return err
		}
		c.p = p
	}
	p := c.p
	c.mu.Unlock()
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
