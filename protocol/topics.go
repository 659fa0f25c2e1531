package protocol

import (
	"strings"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Topics names pulsaga's topics (short names, resolved in the bus's
// namespace) and says how many partitions the process-keyed ones have.
// Every package that opens one of these topics takes its name from here.
type Topics struct {
	// Events carries everything that can change a process, keyed by
	// process id; orchestrators share it through a Failover subscription.
	Events string
	// History holds each process's event stream (dense sequence numbers),
	// partitioned like Events so partition p of both hold the same processes.
	History string
	// Snapshots holds the latest memory image of each process (compacted).
	Snapshots string
	// Status is the admin table: one summary per process (compacted).
	Status string
	// Definitions holds registered definitions, keyed name@version (compacted).
	Definitions string
	// Decisions carries decision tasks to remote deciders (Shared).
	Decisions string
	// Starts is where other systems publish start requests; the start relay
	// checks them and forwards them to Events.
	Starts string
	// Timers holds pending timers as delayed messages; the timer relay
	// forwards each to its target when it fires.
	Timers string
	// Partitions of Events, History and Snapshots.
	Partitions int
	// HistoryRetention keeps event streams this long after they are written
	// (-1: forever).
	HistoryRetention time.Duration
}

// Default topic names.
const (
	EventsTopic      = "events"
	HistoryTopic     = "history"
	SnapshotsTopic   = "snapshots"
	StatusTopic      = "status"
	DefinitionsTopic = "definitions"
	DecisionsTopic   = "decisions"
	StartsTopic      = "starts"
	TimersTopic      = "timers"
	// JobTopicPrefix starts the name of every job queue: "jobs.<service>".
	JobTopicPrefix = "jobs."
)

// Default partitions and retention of the process-keyed topics.
const (
	DefaultPartitions       = 4
	DefaultHistoryRetention = 7 * 24 * time.Hour
)

// Subscription names of the engine's components. A subscription's
// dead-letter topic is DeadLetterTopic(topic, subscription).
const (
	OrchestratorSubscription = "orchestrator" // Events, Failover
	DeciderSubscription      = "deciders"     // Decisions, Shared
	TimerRelaySubscription   = "timer-relay"  // Timers, Shared
	StartRelaySubscription   = "start-relay"  // Starts, Shared
	WorkerSubscription       = "workers"      // jobs.<service>, Shared (the SDK's default)
)

// DefaultTopics are the names used unless configured otherwise.
func DefaultTopics() Topics {
	return Topics{
		Events: EventsTopic, History: HistoryTopic, Snapshots: SnapshotsTopic, Status: StatusTopic,
		Definitions: DefinitionsTopic, Decisions: DecisionsTopic, Starts: StartsTopic, Timers: TimersTopic,
		Partitions: DefaultPartitions, HistoryRetention: DefaultHistoryRetention,
	}
}

// WithDefaults returns t with every empty name, and a zero partition count
// or retention, taken from DefaultTopics.
func (t Topics) WithDefaults() Topics {
	d := DefaultTopics()
	for _, f := range []struct {
		v   *string
		def string
	}{
		{&t.Events, d.Events}, {&t.History, d.History}, {&t.Snapshots, d.Snapshots}, {&t.Status, d.Status},
		{&t.Definitions, d.Definitions}, {&t.Decisions, d.Decisions}, {&t.Starts, d.Starts}, {&t.Timers, d.Timers},
	} {
		if *f.v == "" {
			*f.v = f.def
		}
	}
	if t.Partitions == 0 {
		t.Partitions = d.Partitions
	}
	if t.HistoryRetention == 0 {
		t.HistoryRetention = d.HistoryRetention
	}
	return t
}

// Specs are the topics to create, with the policies the engine relies on
// (job queues are created on first use, see JobTopicSpec).
func (t Topics) Specs() []bus.TopicSpec {
	forever := time.Duration(-1)
	return []bus.TopicSpec{
		// Inputs are deleted once acknowledged; a day of retention helps
		// operators look at what came in.
		{Name: t.Events, Partitions: t.Partitions, RetentionTime: 24 * time.Hour, RetentionSizeMB: -1},
		{Name: t.History, Partitions: t.Partitions, RetentionTime: t.HistoryRetention, RetentionSizeMB: -1},
		{Name: t.Snapshots, Partitions: t.Partitions, Compacted: true, RetentionTime: forever, RetentionSizeMB: -1},
		{Name: t.Status, Compacted: true, RetentionTime: forever, RetentionSizeMB: -1},
		{Name: t.Definitions, Compacted: true, RetentionTime: forever, RetentionSizeMB: -1},
		{Name: t.Decisions},
		t.StartsSpec(),
		t.TimersSpec(),
	}
}

// StartsSpec is how the starts topic is created: a day of retention helps
// operators look at what came in.
func (t Topics) StartsSpec() bus.TopicSpec {
	return bus.TopicSpec{Name: t.Starts, RetentionTime: 24 * time.Hour, RetentionSizeMB: -1}
}

// TimersSpec is how the timers topic is created: pending timers are
// unacknowledged messages, kept by the subscription whatever the retention.
func (t Topics) TimersSpec() bus.TopicSpec { return bus.TopicSpec{Name: t.Timers} }

// EventsProducer are the options of a producer on an events topic: the
// engine's Events (or a partition of it), and a command's reply_to, which
// names the Events topic of the engine that issued it. Their one reader is
// the orchestrators' Failover subscription, so a batch may carry the
// messages of many processes (bus.ProducerOptions.MixedKeys): the results a
// worker sends together, or the starts a client sends together, share a
// broker entry instead of taking one each. (Measured on the trip saga at
// 1,000 in flight, worker replies alone: broker CPU per saga -31 %,
// sagas/s +28 %; docs/benchmarks.md, session 13.)
func EventsProducer(topic string) bus.ProducerOptions {
	return bus.ProducerOptions{Topic: topic, MixedKeys: true}
}

// JobTopic is the job queue of a service: "jobs.<service>".
func JobTopic(service string) string { return JobTopicPrefix + service }

// JobService is the service of a job queue's name (short or full), and
// whether the name is one.
func JobService(topic string) (string, bool) {
	s, ok := strings.CutPrefix(bus.ShortName(topic), JobTopicPrefix)
	if !ok || s == "" {
		return "", false
	}
	return s, true
}

// JobTopicSpec is how a job queue is created: commands sent before any
// worker subscribed are retained (a week) so that a new subscription, which
// starts at the earliest message, still gets them.
func JobTopicSpec(service string) bus.TopicSpec {
	return bus.TopicSpec{Name: JobTopic(service), RetentionTime: 7 * 24 * time.Hour, RetentionSizeMB: -1}
}

// DeadLetterTopic is the dead-letter topic of a subscription on topic (a
// partition's name counts as its topic's): "<topic>-<subscription>-DLQ",
// short, in the topic's namespace. Both buses dead-letter there unless a
// subscription names another topic; the rule itself lives in bus, which
// cannot import this package.
func DeadLetterTopic(topic, subscription string) string {
	return bus.DeadLetterTopic(topic, subscription)
}
