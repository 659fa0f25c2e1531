package child

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// producers opens one producer per topic (the replies go to each command's
// reply_to).
type producers struct {
	bus bus.Bus
	mu  sync.Mutex
	m   map[string]bus.Producer
}

func (p *producers) get(ctx context.Context, topic string) (bus.Producer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr, ok := p.m[topic]; ok {
		return pr, nil
	}
	pr, err := p.bus.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		return nil, err
	}
	if p.m == nil {
		p.m = map[string]bus.Producer{}
	}
	p.m[topic] = pr
	return pr, nil
}

func (p *producers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.m {
		_ = pr.Close()
	}
}

// watch reports the outcomes of the children parents wait for.
func (s *Service) watch(ctx context.Context) error {
	rd, err := s.bus.Reader(ctx, bus.ReaderOptions{Topic: protocol.ChildrenTopic, Compacted: true})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("children: %w", err)
	}
	defer rd.Close()
	watches := map[string]Watch{} // by the parent's command id
	t := time.NewTicker(s.opts.Every)
	defer t.Stop()
	for {
		if err := s.readWatches(ctx, rd, watches); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(watches) > 0 {
			if err := s.refresh(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.log.Warn().Err(err).Msg("cannot read the status table")
			} else {
				for id, w := range watches {
					done, err := s.check(ctx, w)
					if err != nil {
						if ctx.Err() != nil {
							return nil
						}
						s.log.Warn().Err(err).Str("child", w.Child).Msg("cannot report a child's outcome yet")
						continue
					}
					if done {
						delete(watches, id)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Service) readWatches(ctx context.Context, rd bus.Reader, watches map[string]Watch) error {
	for {
		more, err := rd.HasNext(ctx)
		if err != nil {
			return fmt.Errorf("children: %w", err)
		}
		if !more {
			return nil
		}
		m, err := rd.Next(ctx)
		if err != nil {
			return fmt.Errorf("children: %w", err)
		}
		if len(m.Payload) == 0 {
			delete(watches, m.Key)
			continue
		}
		env, err := bus.DecodeEnvelope(m.Payload)
		if err != nil || env.Type != TypeWatch {
			continue
		}
		var w Watch
		if env.DecodePayload(&w) == nil {
			watches[m.Key] = w
		}
	}
}

// check reports w's outcome when there is one; done means the record is
// settled (tombstoned).
func (s *Service) check(ctx context.Context, w Watch) (bool, error) {
	s.statusMu.Lock()
	row, ok := s.status.Get(w.Child)
	s.statusMu.Unlock()
	var out []byte
	var e *protocol.Error
	switch w.Kind {
	case KindStart:
		if !ok || !row.Status.Terminal() {
			return false, nil
		}
		view, err := engine.ReadProcess(ctx, s.bus, s.opts.Topics, s.opts.Registry, row)
		if err != nil {
			return false, err
		}
		if view.State == nil {
			return false, nil
		}
		o, we := workflow.ChildOutcome(view.State)
		out = o
		if we != nil {
			e = &protocol.Error{Type: we.Type, Message: we.Message, Retryable: we.IsRetryable()}
		}
	case KindCompensate:
		switch {
		case !ok:
			e = &protocol.Error{Type: "ChildExpired", Message: fmt.Sprintf("child %s is gone (finished longer ago than the retention): its compensation cannot run", w.Child)}
		case row.Seq <= w.AfterSeq:
			return false, nil
		case row.Status == workflow.StatusCompensated:
			out = []byte("null")
		case row.Status == workflow.StatusCompensationFailed:
			e = &protocol.Error{Type: "ChildCompensationFailed", Message: fmt.Sprintf("the compensation of child %s failed: %s", w.Child, row.LastError), Retryable: true}
		case row.Status.Terminal() && row.Status != workflow.StatusCompleted:
			e = &protocol.Error{Type: workflow.ErrTypeChildFailed, Message: fmt.Sprintf("child %s is %s", w.Child, row.Status)}
		default:
			return false, nil
		}
	default:
		return true, nil
	}
	if err := s.reply(ctx, w.Command, out, e); err != nil {
		return false, err
	}
	tomb, err := s.ps.get(ctx, protocol.ChildrenTopic)
	if err != nil {
		return false, err
	}
	if _, err := tomb.Send(ctx, &bus.OutMessage{Key: w.Command.CommandID}); err != nil {
		return false, err
	}
	s.log.Info().Str("child", w.Child).Str("parent", w.Command.ProcessID).Str("kind", w.Kind).Str("status", string(row.Status)).Msg("child outcome reported")
	return true, nil
}
