package schedule

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Operations of a control request.
const (
	OpPut    = "put"
	OpPause  = "pause"
	OpResume = "resume"
	OpDelete = "delete"
)

// Request is a control request for the scheduler.
type Request struct {
	Op   string `json:"op"`
	Name string `json:"name"`
	// Spec is the schedule to create or replace (put).
	Spec  *Spec  `json:"spec,omitempty"`
	Actor string `json:"actor,omitempty"`
}

// Client sends control requests. They are handled asynchronously by the
// active scheduler; read the Table to see their effect.
type Client struct {
	bus   bus.Bus
	clock func() time.Time

	mu sync.Mutex
	p  bus.Producer
}

// NewClient creates a client.
func NewClient(b bus.Bus) *Client { return &Client{bus: b, clock: time.Now} }

// Send sends a request; requestID makes a retried send count once (the
// operations are idempotent anyway: the same put twice changes nothing).
func (c *Client) Send(ctx context.Context, req Request, requestID string) error {
	if req.Op == OpPut {
		if req.Spec == nil {
			return fmt.Errorf("%w: put without a spec", ErrInvalid)
		}
		spec := *req.Spec
		if err := spec.Normalize(); err != nil {
			return err
		}
		req.Spec, req.Name = &spec, spec.Name
	}
	if !namePattern.MatchString(req.Name) {
		return fmt.Errorf("%w: name %q", ErrInvalid, req.Name)
	}
	switch req.Op {
	case OpPut, OpPause, OpResume, OpDelete:
	default:
		return fmt.Errorf("%w: unknown operation %q", ErrInvalid, req.Op)
	}
	c.mu.Lock()
	if c.p == nil {
		if err := EnsureTopics(ctx, c.bus); err != nil {
			c.mu.Unlock()
			return err
		}
		p, err := c.bus.Producer(ctx, bus.ProducerOptions{Topic: EventsTopic})
		if err != nil {
			c.mu.Unlock()
			return fmt.Errorf("schedules: %w", err)
		}
		c.p = p
	}
	p := c.p
	c.mu.Unlock()
	if requestID == "" {
		requestID = fmt.Sprintf("%s-%s-%d", req.Op, req.Name, c.clock().UnixNano())
	}
	env, err := bus.NewEnvelope(TypeRequest, "schedule:"+requestID, req.Name, c.clock(), req)
	if err != nil {
		return err
	}
	b, err := env.Encode()
	if err != nil {
		return err
	}
	_, err = p.Send(ctx, &bus.OutMessage{Key: req.Name, Payload: b})
	return err
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
