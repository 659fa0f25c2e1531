package pulsarbus

import (
	"context"
	"fmt"
	"sync"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/utils"

	"github.com/pulsaga/pulsaga/bus"
)

var (
	_ bus.PartitionOwner    = (*consumer)(nil)
	_ bus.OwnershipNotifier = (*consumer)(nil)
)

// OwnershipChanged implements bus.OwnershipNotifier: the client's consumer
// event listener (the broker's ACTIVE_CONSUMER_CHANGE command) signals it.
// It never fires on subscriptions other than Failover.
func (c *consumer) OwnershipChanged() <-chan struct{} { return c.owned }

// ownershipEvents is the client's event listener of a Failover consumer.
type ownershipEvents struct{ c *consumer }

func (e ownershipEvents) BecameActive(pulsar.Consumer, string, int32)   { e.c.ownershipChanged() }
func (e ownershipEvents) BecameInactive(pulsar.Consumer, string, int32) { e.c.ownershipChanged() }

func (c *consumer) ownershipChanged() {
	select {
	case c.owned <- struct{}{}:
	default: // one is pending already
	}
}

// OwnedPartitions asks the broker (topic stats of each partition) which
// partitions have this consumer as their subscription's active consumer.
func (c *consumer) OwnedPartitions(ctx context.Context) (map[int]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.b.cfg.OperationTimeout)
	defer cancel()
	tn, err := utils.GetTopicName(c.topic)
	if err != nil {
		return nil, fmt.Errorf("%w: owned partitions: %v", bus.ErrBadOptions, err)
	}
	// The partition count is read once per consumer (one admin request
	// less per poll): a process-keyed topic's count is fixed, its keys
	// being routed by it, and an instance that should see more partitions
	// subscribes again (the orchestrator does on a restart).
	n := int(c.nparts.Load()) - 1
	if n < 0 {
		if n, err = c.b.partitions(ctx, tn); err != nil {
			return nil, wrap(err, "owned partitions of %s", c.topic)
		}
		c.nparts.Store(int64(n) + 1)
	}
	names := []string{c.topic}
	if n > 0 {
		names = names[:0]
		for i := 0; i < n; i++ {
			names = append(names, fmt.Sprintf("%s-partition-%d", c.topic, i))
		}
	}
	// One stats call per partition, all at once: a takeover waits for
	// this answer, and one call at a time costs a round trip per partition.
	active := make([]bool, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		ptn, err := utils.GetTopicName(name)
		if err != nil {
			return nil, fmt.Errorf("%w: owned partitions: %v", bus.ErrBadOptions, err)
		}
		wg.Go(func() {
			st, err := c.b.admin.Topics().GetStatsWithContext(ctx, *ptn)
			if err != nil {
				errs[i] = wrap(err, "stats of %s", name)
				return
			}
			sub, ok := st.Subscriptions[c.opts.Subscription]
			active[i] = ok && sub.ActiveConsumerName == c.opts.ConsumerName
		})
	}
	wg.Wait()
	out := map[int]bool{}
	for i := range names {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if active[i] {
			out[i] = true
		}
	}
	return out, nil
}
