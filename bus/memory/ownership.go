package memory

import (
	"context"
	"fmt"

	"github.com/pulsaga/pulsaga/bus"
)

var (
	_ bus.PartitionOwner    = (*consumer)(nil)
	_ bus.OwnershipNotifier = (*consumer)(nil)
)

// OwnershipChanged implements bus.OwnershipNotifier.
func (c *consumer) OwnershipChanged() <-chan struct{} { return c.owned }

// ownershipChanged signals OwnershipChanged; nil does nothing.
func (c *consumer) ownershipChanged() {
	if c == nil {
		return
	}
	select {
	case c.owned <- struct{}{}:
	default: // one is pending already
	}
}

// OwnedPartitions returns the partitions this consumer is the active
// consumer of (Exclusive and Failover subscriptions).
func (c *consumer) OwnedPartitions(ctx context.Context) (map[int]bool, error) {
	c.s.b.mu.Lock()
	defer c.s.b.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("memory: owned partitions of %s: %w", c.s.topicName, bus.ErrClosed)
	}
	out := map[int]bool{}
	for cur, owner := range c.s.active {
		if owner == c {
			out[cur.p.index] = true
		}
	}
	return out, nil
}
