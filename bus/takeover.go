package bus

import "context"

// TxEnder is implemented by buses that can end the transactions of other
// connections. A new owner uses it when it takes over what a deposed owner
// wrote: fencing (AccessExclusiveWithFencing) refuses the deposed owner's
// future sends, but messages it already sent in a transaction still open
// are not taken back, and they would appear after the new owner's if that
// transaction committed later (a frozen process that wakes up). Readers
// also stop at the first message of an open transaction (Pulsar's max read
// position), so what the new owner loads would end there. Ending those
// transactions first makes the takeover independent of how long the deposed
// owner is away: nothing of theirs can commit afterwards.
type TxEnder interface {
	// EndTransactions ends every transaction still open, whoever began it,
	// that sent a message to one of scope.Topics or acknowledged a message
	// on one of scope.Acks: it aborts them and waits until each has ended
	// (one already committing is waited for: it commits). When it returns
	// nil, none of them can commit any more: their messages on those topics
	// are either visible (committed before) or gone, and the messages they
	// had acknowledged are delivered again to the subscription's consumers.
	// A transaction that touches nothing in scope is left alone.
	EndTransactions(ctx context.Context, scope TxScope) (TxEnded, error)
}

// TxScope selects transactions by what they touched.
type TxScope struct {
	// Topics are topic names (full, or short and resolved in the bus's
	// namespace); a partitioned topic's name covers all its partitions, a
	// partition's name (Namespace.Partition) only that partition.
	Topics []string
	// Acks are subscriptions: a transaction that acknowledged a message of
	// that topic (or partition) on that subscription is in scope.
	Acks []SubscriptionRef
}

// SubscriptionRef names a subscription on a topic (or one partition).
type SubscriptionRef struct {
	Topic        string
	Subscription string
}

// TxEnded says what EndTransactions found.
type TxEnded struct {
	// Aborted counts the transactions it aborted.
	Aborted int
	// Waited counts those it found ending by themselves (committing,
	// aborting) and waited for.
	Waited int
}

// OwnershipNotifier is implemented by consumers of a Failover subscription
// whose broker tells them when they become, or stop being, the active
// consumer of a partition. It lets an owner take over at once instead of
// at its next look (PartitionOwner stays the one to ask for the view).
type OwnershipNotifier interface {
	// OwnershipChanged receives a value (never blocking the bus: the
	// channel holds one) after the broker reported a change of this
	// consumer's active partitions.
	OwnershipChanged() <-chan struct{}
}
