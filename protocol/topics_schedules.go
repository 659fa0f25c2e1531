package protocol

// Topics of schedules and triggers (packages schedule and trigger).
const (
	// SchedulesTopic holds one record per schedule (compacted).
	SchedulesTopic = "schedules"
	// ScheduleEventsTopic carries schedule control requests and fired ticks
	// to the active scheduler.
	ScheduleEventsTopic = "schedule-events"
	// SchedulerSubscription is the schedulers' subscription on
	// ScheduleEventsTopic (Failover: one active scheduler).
	SchedulerSubscription = "scheduler"
	// TriggerSubscriptionPrefix starts the subscription of a trigger on its
	// topic: "pulsaga-trigger-<definition>-<trigger id>" (Shared).
	TriggerSubscriptionPrefix = "pulsaga-trigger-"
)

// Topics of child processes (package child).
const (
	// ChildrenTopic holds one record per child whose outcome a parent
	// waits for (compacted; tombstoned once reported).
	ChildrenTopic = "children"
	// EngineSubscription is the subscription of the engine's own service
	// on jobs.pulsaga.engine (Shared).
	EngineSubscription = "pulsaga-engine"
)
