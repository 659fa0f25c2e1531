// Package bus is the messaging layer of pulsaga. It is the only package that
// knows a broker: the Pulsar implementation lives in bus/pulsarbus and an
// in-process implementation for `pulsaga dev` and fast unit tests lives in
// bus/memory. Both pass the shared conformance suite in bus/bustest.
//
// The model follows Pulsar's, because that is what the engine needs:
//
//   - topics are named under a tenant and namespace (see Namespace) and may be
//     partitioned; a message's Key selects its partition and orders it;
//   - a subscription is Exclusive, Failover (one active consumer per
//     partition, the others hot standbys), Shared (job queues, timers) or
//     KeyShared (shared, but one consumer per key at a time);
//   - a message may be delivered later (DeliverAt), honoured on Shared and
//     KeyShared subscriptions only, as in Pulsar;
//   - sends and acknowledgements can be grouped in a transaction that commits
//     or aborts atomically;
//   - a message that cannot be handled goes to a dead-letter topic with the
//     reason attached (DeadLetter, or automatically after MaxDeliveries).
package bus

import (
	"context"
	"errors"
	"strings"
	"time"
)

// SubscriptionType says how the messages of a subscription are spread over
// its consumers.
type SubscriptionType int

const (
	// Exclusive allows one consumer on the subscription.
	Exclusive SubscriptionType = iota
	// Failover gives each partition exactly one active consumer; the others
	// are standbys that take over when it closes or dies.
	Failover
	// Shared spreads messages over all consumers, round robin.
	Shared
	// KeyShared spreads keys over consumers; one key goes to one consumer at
	// a time, in order.
	KeyShared
)

func (t SubscriptionType) String() string {
	switch t {
	case Exclusive:
		return "exclusive"
	case Failover:
		return "failover"
	case Shared:
		return "shared"
	case KeyShared:
		return "key_shared"
	}
	return "unknown"
}

// InitialPosition is where a new subscription starts.
type InitialPosition int

const (
	// Earliest starts a new subscription at the first retained message.
	Earliest InitialPosition = iota
	// Latest starts a new subscription after the last published message.
	Latest
)

// MessageID identifies a message in a topic. It is opaque outside the bus
// implementation that produced it, but can be stored (as bytes) and given
// back to the same bus to position a Reader.
type MessageID []byte

// OutMessage is a message to send.
type OutMessage struct {
	// Key orders the message (and picks the partition of a partitioned
	// topic). Messages with the same key keep their order.
	Key string
	// Payload is the body, usually an encoded Envelope.
	Payload []byte
	// Properties are string headers carried with the message.
	Properties map[string]string
	// DeliverAt delays delivery until that time. The zero value delivers at
	// once. Delays are honoured on Shared and KeyShared subscriptions only.
	DeliverAt time.Time
	// Tx, when set, makes the send part of that transaction: nobody sees the
	// message until the transaction commits.
	Tx Tx
}

// Message is a received message.
type Message struct {
	// Topic is the topic the message was read from; for a partitioned topic
	// it names the partition ("...-partition-N").
	Topic string
	// Partition is the partition index, 0 for a topic without partitions.
	Partition int
	// ID identifies the message in its topic.
	ID MessageID
	// Key is the ordering key the message was sent with.
	Key string
	// Payload is the body.
	Payload []byte
	// Properties are the string headers the message was sent with.
	Properties map[string]string
	// PublishTime is when the broker accepted the message.
	PublishTime time.Time
	// DeliverAt is the requested delivery time of a delayed message (zero
	// when it was not delayed).
	DeliverAt time.Time
	// RedeliveryCount counts earlier deliveries of this message to the
	// subscription (0 on the first delivery).
	RedeliveryCount int
}

// Producer sends messages to one topic.
type Producer interface {
	// Send sends one message and waits until the broker has it.
	Send(ctx context.Context, msg *OutMessage) (MessageID, error)
	// SendAsync queues one message; done is called once with the outcome.
	// Messages queued on one producer keep their order per key.
	SendAsync(ctx context.Context, msg *OutMessage, done func(MessageID, error))
	// Flush waits until every queued message has been sent or failed.
	Flush(ctx context.Context) error
	// Topic is the full name of the topic.
	Topic() string
	Close() error
}

// Consumer receives messages of one subscription.
type Consumer interface {
	// Receive blocks until a message is available or ctx is done.
	Receive(ctx context.Context) (*Message, error)
	// Ack acknowledges a message so it is not delivered again.
	Ack(ctx context.Context, msg *Message) error
	// AckTx acknowledges a message as part of tx: the acknowledgement takes
	// effect only if tx commits; if tx aborts the message is delivered again.
	AckTx(ctx context.Context, msg *Message, tx Tx) error
	// Nack asks for the message to be delivered again later (after the
	// subscription's NackDelay). cause is kept as the reason should the
	// message reach MaxDeliveries and be dead-lettered.
	Nack(msg *Message, cause error)
	// DeadLetter moves a message to the subscription's dead-letter topic
	// with the reason attached, and acknowledges it.
	DeadLetter(ctx context.Context, msg *Message, reason string) error
	// Close stops receiving. Messages received but not acknowledged are
	// delivered again, to this subscription's other consumers if any.
	Close() error
}

// TxListAcker is a Consumer that acknowledges many messages in one
// transaction at once: the effect of AckTx on each (settled by tx's end:
// gone if it commits, delivered again if it aborts), in one broker request
// per partition instead of one round trip per message. Both buses'
// consumers have it; Batch uses it when the consumer has it. An error (it
// wraps ErrTxFailed, or ErrBadOptions for a foreign tx) means tx cannot
// commit.
type TxListAcker interface {
	AckTxList(ctx context.Context, msgs []*Message, tx Tx) error
}

// AccessMode says whether a producer shares its topic with others or
// needs it to itself. On a partitioned topic it applies to each partition
// (a producer on one partition's name holds only that partition).
// Exclusive access is how an owner fences a deposed one: the broker, not
// timing, refuses the writes of a producer that lost its access.
type AccessMode int

const (
	// AccessShared lets any number of shared producers write (default). It
	// fails with ErrFenced while an exclusive producer holds the topic.
	AccessShared AccessMode = iota
	// AccessExclusive fails with ErrFenced when any other producer is
	// connected.
	AccessExclusive
	// AccessWaitForExclusive waits (until ctx ends) for every other
	// producer to go, then holds the topic exclusively.
	AccessWaitForExclusive
	// AccessExclusiveWithFencing takes the topic at once: every producer
	// connected now is fenced (its sends fail with ErrFenced from then on,
	// including those queued) and cannot get it back by reconnecting.
	// Messages a fenced producer sent before, in a transaction that has
	// not ended, are not taken back by the fencing: they commit or abort
	// with their transaction. Closing such a producer may leave the topic
	// held until the bus closes or another AccessExclusiveWithFencing
	// producer takes it (pulsarbus: Pulsar's broker deadlocks when a
	// producer's close meets the fencing of the next one), so a topic
	// written this way is taken with AccessExclusiveWithFencing only.
	AccessExclusiveWithFencing
)

func (m AccessMode) String() string {
	switch m {
	case AccessShared:
		return "shared"
	case AccessExclusive:
		return "exclusive"
	case AccessWaitForExclusive:
		return "wait_for_exclusive"
	case AccessExclusiveWithFencing:
		return "exclusive_with_fencing"
	}
	return "unknown"
}

// ProducerOptions describe a producer.
type ProducerOptions struct {
	// Topic is the topic name (full, or short and resolved in the bus's
	// namespace). A partitioned topic is written through its keys (see
	// KeyPartition); name one partition (Namespace.Partition) to write to
	// that partition whatever the keys.
	Topic string
	// AccessMode is the producer's access to the topic (default shared).
	AccessMode AccessMode
	// Name, when set, names the producer. With broker deduplication on, a
	// producer that reconnects under the same name and resends a message it
	// sent before (same sequence) is stored once. Only one producer per name
	// can be connected to a topic at a time.
	Name string
	// BatchingMaxDelay is how long messages wait to be sent together
	// (default 1ms); a negative value turns batching off.
	BatchingMaxDelay time.Duration
	// SendTimeout fails a send the broker has not confirmed in that time
	// with ErrUnavailable (default 30s).
	SendTimeout time.Duration
	// MixedKeys lets one batch — one broker entry — carry the messages of
	// different keys. By default a batch holds one key, so a producer that
	// writes many keys at once (the orchestrator's history, snapshots and
	// status streams: one message per process per batch) costs the broker
	// one entry per message, in a transaction one transaction-buffer write
	// each: that bounded the engine to ~250 new processes/s. With MixedKeys
	// the messages sent together to one partition share an entry. Per-key
	// order is the same. Use it only for topics read by readers or by a
	// Failover or Exclusive consumer: a batch is dispatched to one consumer
	// as a whole, so a Shared work queue would lose its spread and a
	// KeyShared subscription its one-consumer-per-key rule — unless
	// BatchingMaxMessages keeps the batches as small as its consumers'
	// receive queues (the engine's job queues). (bus/memory has no
	// batches: it ignores it.)
	MixedKeys bool
	// BatchingMaxMessages bounds the messages of one batch (default: the
	// client's, 1000). With MixedKeys on a Shared work queue it is the most
	// a consumer can be handed at once beyond its receive queue, and the
	// most a crash of that consumer can bring back already done.
	BatchingMaxMessages int
}

// SubscribeOptions describe a subscription and one consumer on it.
type SubscribeOptions struct {
	// Topic is the topic name (full, or short and resolved in the bus's
	// namespace).
	Topic string
	// Subscription is the subscription name shared by its consumers.
	Subscription string
	// Type is the subscription type.
	Type SubscriptionType
	// ConsumerName names this consumer. Failover picks the active consumer
	// of each partition by name, so it should be unique and stable.
	ConsumerName string
	// InitialPosition is where a new subscription starts (default Earliest).
	InitialPosition InitialPosition
	// MaxDeliveries, when above zero, dead-letters a message on its
	// MaxDeliveries-th delivery failing (nacked or not acknowledged): it is
	// published to DeadLetterTopic with the reason and acknowledged. A
	// delivery to a consumer that closes or dies holding the message counts
	// only with CountDeliveriesDurably (always on bus/memory).
	MaxDeliveries int
	// CountDeliveriesDurably makes MaxDeliveries count the deliveries to
	// consumers that close or die holding a message (a command that crashes
	// its worker process), not only nacks and ack timeouts. Use it where a
	// message can kill its consumer: job queues running user code. Without
	// it such a message is redelivered for ever on Pulsar, whose redelivery
	// count does not see a consumer that goes away.
	//
	// The cost on pulsarbus is a write per delivery to a compacted
	// "<topic>-<subscription>-deliveries" topic that Receive waits for (a
	// broker round trip per Receive: about 8 times fewer messages received
	// per second by 8 goroutines, BenchmarkDeliveryRecords), a tombstone per
	// settled message (not waited for), and a reader of that topic per
	// consumer. The bus/memory bus always counts such deliveries and ignores
	// the option. It has no effect without MaxDeliveries.
	CountDeliveriesDurably bool
	// LazyDeliveryRecords, with CountDeliveriesDurably, records only the
	// deliveries that may follow a crash: a message the broker or this
	// consumer already counted a redelivery of, or one with a record (an
	// earlier recorded holder went away), plus every delivery within
	// DeliveryRecordWarmUp of the subscription (a consumer that starts may
	// be replacing one that a message crashed). A message that kills every
	// consumer that takes it is still dead-lettered: the first consumers it
	// kills uncounted come back in their warm-up, where every delivery is
	// recorded. The clean path then costs no record at all.
	LazyDeliveryRecords bool
	// DeliveryRecordWarmUp is how long after subscribing a consumer with
	// LazyDeliveryRecords records every delivery (default 30s; negative:
	// never).
	DeliveryRecordWarmUp time.Duration
	// CrashWindow, with CountDeliveriesDurably, charges a consumer's death
	// only to the deliveries it received less than CrashWindow before: a
	// recorded delivery still held CrashWindow after it was handed out is
	// recorded again as survived, and a later death of its consumer does
	// not count towards MaxDeliveries (a consumer killed for another reason
	// while it runs long work). The survived record also clears the deaths
	// charged before it (a message that kills its consumer does so within
	// the window every time; earlier quick deaths were a neighbour's doing),
	// so only consecutive quick deaths reach MaxDeliveries; nacks after the
	// window are not charged either (the record, not the broker's count
	// that every nack raises, is the charged count). Other deaths
	// still count towards a bound of 10 × MaxDeliveries deliveries, so a
	// message that kills its consumer slowly is dead-lettered too. 0: every
	// death counts (the record costs one more message per delivery held
	// longer than the window).
	CrashWindow time.Duration
	// DeadLetterTopic receives dead-lettered messages. Default:
	// "<topic>-<subscription>-DLQ" in the same namespace.
	DeadLetterTopic string
	// NackDelay is how long a nacked message waits before it is delivered
	// again (default 1s).
	NackDelay time.Duration
	// AckTimeout, when above zero, redelivers a message that was received
	// but not acknowledged for that long.
	AckTimeout time.Duration
	// ReceiveQueueSize bounds messages prefetched by this consumer
	// (default 1000).
	ReceiveQueueSize int
}

// PartitionOwner is implemented by consumers of a Failover subscription
// that can tell which partitions they are the active consumer of now. The
// orchestrator uses it to drop what it holds for partitions it lost and to
// take over partitions only once their previous owner has let go.
type PartitionOwner interface {
	// OwnedPartitions returns the partitions (0 for a topic without
	// partitions) this consumer is the active consumer of.
	OwnedPartitions(ctx context.Context) (map[int]bool, error)
}

// ReaderOptions describe a reader: a cursor over a topic that is not a
// subscription and keeps no state on the broker.
type ReaderOptions struct {
	// Topic is the topic name; a partitioned topic is read one partition at
	// a time, so name the partition (see Namespace.Partition).
	Topic string
	// StartID is the first message to read (or the one before it when
	// StartInclusive is false). Nil means Earliest, unless StartLatest.
	StartID MessageID
	// StartInclusive includes the message at StartID.
	StartInclusive bool
	// StartLatest starts after the last message present now.
	StartLatest bool
	// Compacted reads the compacted view of the topic: for each key only its
	// latest value (a key whose latest value has an empty payload is gone).
	Compacted bool
}

// Reader reads a topic in order from a position.
type Reader interface {
	// Next blocks until a message is available or ctx is done.
	Next(ctx context.Context) (*Message, error)
	// HasNext says whether a message is available now without blocking,
	// i.e. whether the reader has not yet reached the end of the topic.
	HasNext(ctx context.Context) (bool, error)
	Close() error
}

// Tx is a transaction: the sends and acknowledgements made with it become
// visible together on Commit, or not at all on Abort.
type Tx interface {
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}

// TxTarget is a place a transaction is about to write to (Producer, and
// Key: the partition the key routes to) or acknowledge on (Consumer, and
// Input: the partition and subscription it was received on).
type TxTarget struct {
	Producer Producer
	Key      string
	Consumer Consumer
	Input    *Message
}

// TxRegistrar is a Tx that can announce where it will write and
// acknowledge before it does: the Pulsar bus registers those partitions and
// subscriptions with the transaction coordinator in one request each,
// instead of one request per partition made by its first send there (a
// round trip that send waits for). Sends and acknowledgements to targets
// being registered wait for the registration. It is an optimisation only:
// a target not announced, or whose registration failed, is registered by
// its first send or acknowledgement, so an error needs no handling beyond
// logging. It returns once the registration is answered (or ctx ends).
type TxRegistrar interface {
	RegisterAhead(ctx context.Context, targets []TxTarget) error
}

// TopicSpec describes a topic the engine needs; EnsureTopic creates it and
// applies its policies. Nothing the engine must keep relies on broker
// defaults.
type TopicSpec struct {
	// Name is the topic name (full, or short and resolved in the namespace).
	Name string
	// Partitions is the number of partitions; 0 means not partitioned.
	Partitions int
	// Compacted turns compaction on (keeps the latest value per key).
	Compacted bool
	// RetentionTime keeps acknowledged messages this long (-1: forever,
	// 0: the namespace's retention).
	RetentionTime time.Duration
	// RetentionSizeMB keeps acknowledged messages up to this size
	// (-1: unlimited, 0: the namespace's retention).
	RetentionSizeMB int64
}

// Bus is a connection to a broker.
type Bus interface {
	// Namespace resolves short topic names.
	Namespace() Namespace
	// EnsureTopic creates the topic if needed and applies its policies. It
	// is idempotent.
	EnsureTopic(ctx context.Context, spec TopicSpec) error
	// Producer opens a producer on a topic.
	Producer(ctx context.Context, opts ProducerOptions) (Producer, error)
	// Subscribe opens a consumer on a subscription.
	Subscribe(ctx context.Context, opts SubscribeOptions) (Consumer, error)
	// Reader opens a reader on a topic (or one partition of it).
	Reader(ctx context.Context, opts ReaderOptions) (Reader, error)
	// BeginTx starts a transaction that the broker aborts by itself when it
	// is neither committed nor aborted within timeout.
	BeginTx(ctx context.Context, timeout time.Duration) (Tx, error)
	// Close closes every producer, consumer and reader of this bus.
	Close() error
}

// DeadLetterSuffix ends the name of every dead-letter topic: the default
// dead-letter topic of a subscription is "<topic>-<subscription>-DLQ".
const DeadLetterSuffix = "-DLQ"

// DeadLetterTopic is the default dead-letter topic of a subscription on
// topic (a partition's name counts as its topic's): the short name, in the
// same namespace as the topic.
func DeadLetterTopic(topic, subscription string) string {
	return ShortName(BaseTopic(topic)) + "-" + subscription + DeadLetterSuffix
}

// IsDeadLetterTopic says whether a topic's name (full or short) marks it
// as a dead-letter topic.
func IsDeadLetterTopic(topic string) bool {
	return strings.HasSuffix(ShortName(topic), DeadLetterSuffix)
}

// Backlogs is implemented by buses that can do what an operator's tool
// does with a broker: list the topics of the namespace, and show and
// remove the backlog of a durable subscription (the messages it has not
// acknowledged) without consuming it. The admin API keeps the dead letters
// still to be handled as the backlog of its own subscription on each
// dead-letter topic: replaying or purging one removes exactly that message
// from the backlog, whatever its place in it.
//
// Backlogs work on topics without partitions (dead-letter topics are).
type Backlogs interface {
	// Topics lists the topics of the bus's namespace: short names, a
	// partitioned topic once (without a partition suffix), sorted.
	Topics(ctx context.Context) ([]string, error)
	// Backlog returns up to limit messages of the subscription's backlog,
	// oldest first, and how many the backlog holds. The subscription is
	// created at the earliest message when it does not exist yet (so
	// nothing is lost by looking late). limit 0 only counts. The count is
	// exact when it is at most limit; beyond, a broker may also count the
	// traces of transactions written to the topic.
	Backlog(ctx context.Context, topic, subscription string, limit int) ([]*Message, int, error)
	// Acknowledge removes the messages with these ids from the
	// subscription's backlog: individually, so messages before and after
	// them stay. With tx the removal takes effect when tx commits (and not
	// at all if it aborts). Without tx, an id already removed is not an
	// error. With tx it is an error wrapping ErrTxFailed (so is an id that
	// another open transaction removes): someone else handled that message,
	// so the transaction's other effects (say, the message replayed
	// elsewhere) must not commit; abort it.
	Acknowledge(ctx context.Context, topic, subscription string, tx Tx, ids ...MessageID) error
}

// Errors shared by the implementations. They are wrapped with %w; test them
// with errors.Is.
var (
	// ErrClosed: the bus, producer, consumer or reader was closed.
	ErrClosed = errors.New("bus: closed")
	// ErrTooLarge: the payload exceeds what the bus accepts.
	ErrTooLarge = errors.New("bus: message too large")
	// ErrUnavailable: the broker could not be reached or stopped answering.
	// It is retryable.
	ErrUnavailable = errors.New("bus: broker unavailable")
	// ErrTxFailed: a transaction could not commit; its effects are gone and
	// the acknowledged inputs will be delivered again. It is retryable.
	ErrTxFailed = errors.New("bus: transaction failed")
	// ErrBadOptions: options are invalid (missing topic, unknown type, ...).
	ErrBadOptions = errors.New("bus: invalid options")
	// ErrFenced: another producer has exclusive access to the topic (or
	// partition), or took it from this producer (AccessExclusiveWithFencing).
	// A fenced producer stays fenced: close it. It is not retryable.
	ErrFenced = errors.New("bus: fenced: another producer has exclusive access to the topic")
)

// Property names the bus sets on dead-lettered messages.
const (
	PropDLQReason         = "pulsaga-dlq-reason"
	PropDLQOriginTopic    = "pulsaga-dlq-origin-topic"
	PropDLQOriginID       = "pulsaga-dlq-origin-id"
	PropDLQSubscription   = "pulsaga-dlq-subscription"
	PropDLQDeliveries     = "pulsaga-dlq-deliveries"
	PropDLQDeadLetteredAt = "pulsaga-dlq-at"
)

// Retryable reports whether err is worth retrying (the broker was away, a
// transaction lost a race) as opposed to a permanent error.
func Retryable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTxFailed)
}
