package memory

import (
	"context"
	"fmt"

	"github.com/pulsaga/pulsaga/bus"
)

var _ bus.PartitionOwner = (*consumer)(nil)

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
