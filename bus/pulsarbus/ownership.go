package pulsarbus

import (
	"context"
	"fmt"

	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/utils"

	"github.com/pulsaga/pulsaga/bus"
)

var _ bus.PartitionOwner = (*consumer)(nil)

// OwnedPartitions asks the broker (topic stats of each partition) which
// partitions have this consumer as their subscription's active consumer.
func (c *consumer) OwnedPartitions(ctx context.Context) (map[int]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.b.cfg.OperationTimeout)
	defer cancel()
	tn, err := utils.GetTopicName(c.topic)
	if err != nil {
		return nil, fmt.Errorf("%w: owned partitions: %v", bus.ErrBadOptions, err)
	}
	n, err := c.b.partitions(ctx, tn)
	if err != nil {
		return nil, wrap(err, "owned partitions of %s", c.topic)
	}
	names := []string{c.topic}
	if n > 0 {
		names = names[:0]
		for i := 0; i < n; i++ {
			names = append(names, fmt.Sprintf("%s-partition-%d", c.topic, i))
		}
	}
	out := map[int]bool{}
	for i, name := range names {
		ptn, err := utils.GetTopicName(name)
		if err != nil {
			return nil, fmt.Errorf("%w: owned partitions: %v", bus.ErrBadOptions, err)
		}
		st, err := c.b.admin.Topics().GetStatsWithContext(ctx, *ptn)
		if err != nil {
			return nil, wrap(err, "stats of %s", name)
		}
		if sub, ok := st.Subscriptions[c.opts.Subscription]; ok && sub.ActiveConsumerName == c.opts.ConsumerName {
			out[i] = true
		}
	}
	return out, nil
}
