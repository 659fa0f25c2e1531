package memory

import (
	"context"
	"fmt"

	"github.com/pulsaga/pulsaga/bus"
)

var _ bus.TxEnder = (*Bus)(nil)

// EndTransactions implements bus.TxEnder: it aborts, under the broker's
// lock, every open transaction that sent to a topic of the scope or
// acknowledged on one of its subscriptions. A transaction of the memory
// broker ends at once (commit and abort are atomic), so none is waited for.
func (x *Bus) EndTransactions(ctx context.Context, scope bus.TxScope) (bus.TxEnded, error) {
	var out bus.TxEnded
	if err := ctx.Err(); err != nil {
		return out, err
	}
	if err := x.checkOpen(); err != nil {
		return out, err
	}
	topics := map[string]bool{}
	for _, t := range scope.Topics {
		topics[x.ns.Topic(t)] = true
	}
	acks := map[string]map[string]bool{}
	for _, a := range scope.Acks {
		full := x.ns.Topic(a.Topic)
		if acks[full] == nil {
			acks[full] = map[string]bool{}
		}
		acks[full][a.Subscription] = true
	}
	in := func(names map[string]bool, p *partition) bool {
		return names[p.t.name] || (p.t.partitioned && names[fmt.Sprintf("%s-partition-%d", p.t.name, p.index)])
	}
	b := x.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for t := range b.open {
		match := false
		for _, s := range t.sends {
			match = match || in(topics, s.part)
		}
		for _, a := range t.acks {
			p := a.st.cur.p
			match = match || acks[p.t.name][a.s.name] ||
				(p.t.partitioned && acks[fmt.Sprintf("%s-partition-%d", p.t.name, p.index)][a.s.name])
		}
		if match && t.state == txOpen {
			t.abortLocked()
			out.Aborted++
		}
	}
	return out, nil
}
