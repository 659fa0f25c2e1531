package admin

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/workflow"
)

// Metrics are pulsaga's Prometheus metrics. It is an engine.Observer (give
// it to the orchestrator) and ObserveTimer is a timer relay's Observe
// hook; processes by status are read from the status table at each scrape.
//
// Two kinds of series, so that several instances can be scraped and summed
// (docs/operations.md):
//
//   - per instance: what this process observed (steps, commands,
//     transitions, latencies, drops, timer lateness, Go runtime and
//     process). Each is observed by exactly one instance (the owner of the
//     process's partition, the relay that fired the timer), so summing over
//     instances counts each once. They carry the label
//     pulsaga_instance=<instance name>, so series of different instances
//     never merge, even behind one scrape target.
//   - global: read from shared state, the same on every instance
//     (pulsaga_processes from the status table, pulsaga_dead_letters from
//     the broker). They carry no instance label of their own; aggregate
//     them with max, never sum.
type Metrics struct {
	reg *prometheus.Registry

	decisionLatency, eventToCommand, timerLateness *prometheus.HistogramVec
	batchPhase                                     *prometheus.HistogramVec
	batchInputs                                    prometheus.Histogram
	stepsStarted, stepsCompleted, stepsFailed      *prometheus.CounterVec
	stepRetries, commands, processes, dropped      *prometheus.CounterVec
}

var (
	_ engine.Observer      = (*Metrics)(nil)
	_ engine.BatchObserver = (*Metrics)(nil)
)

// latencyBuckets span 1 ms to about 16 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

// phaseBuckets span 0.25 ms to about 4 s: a batch's phases are a few ms.
var phaseBuckets = prometheus.ExponentialBuckets(0.00025, 2, 15)

// InstanceLabel names the instance on per-instance series.
const InstanceLabel = "pulsaga_instance"

// NewMetrics registers the metrics of the instance named instance (the
// orchestrator's name; "" leaves the label off). status, when set, gives
// the pulsaga_processes gauge; a Server given these metrics adds the
// pulsaga_dead_letters gauge.
func NewMetrics(status *engine.StatusTable, instance string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	hist := func(name, help string, label string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "pulsaga", Name: name, Help: help, Buckets: latencyBuckets}, []string{label})
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pulsaga", Name: name, Help: help}, labels)
	}
	m.decisionLatency = hist("decision_latency_seconds", "Time from issuing a decision task to applying its result (per instance).", "definition")
	m.eventToCommand = hist("event_to_command_latency_seconds", "Time from the oldest event a decision folded to the decision's commands being sent (per instance).", "definition")
	m.timerLateness = hist("timer_lateness_seconds", "How late timers fired, by kind (per instance: the relay that fired them).", "kind")
	m.stepsStarted = counter("steps_started_total", "Steps that started (per instance).", "definition", "step")
	m.stepsCompleted = counter("steps_completed_total", "Steps that completed (per instance).", "definition", "step")
	m.stepsFailed = counter("steps_failed_total", "Steps that failed for good (per instance).", "definition", "step")
	m.stepRetries = counter("step_retries_total", "Attempts after the first of a step's command: backoff retries and admin retries (per instance).", "definition", "step")
	m.commands = counter("commands_sent_total", "Commands sent to workers, by kind: first, retry, compensation (per instance).", "definition", "kind")
	m.processes = counter("process_transitions_total", "Processes entering a status (per instance).", "definition", "status")
	m.dropped = counter("inputs_dropped_total", "Inputs the orchestrator dropped or dead-lettered, by reason (per instance).", "reason")
	m.batchPhase = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "pulsaga", Name: "batch_phase_seconds",
		Help: "Phases of the orchestrator's committed batches: first_round (history and messages, from the transaction's begin), " +
			"second_round (snapshots and status rows), commit (per instance).", Buckets: phaseBuckets}, []string{"phase"})
	m.batchInputs = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "pulsaga", Name: "batch_inputs",
		Help: "Inputs per committed batch of the orchestrator (per instance).", Buckets: prometheus.ExponentialBuckets(1, 2, 12)})
	var own prometheus.Registerer = m.reg
	if instance != "" {
		own = prometheus.WrapRegistererWith(prometheus.Labels{InstanceLabel: instance}, m.reg)
	}
	own.MustRegister(m.decisionLatency, m.eventToCommand, m.timerLateness, m.stepsStarted, m.stepsCompleted, m.stepsFailed,
		m.stepRetries, m.commands, m.processes, m.dropped, m.batchPhase, m.batchInputs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if status != nil {
		m.reg.MustRegister(&statusCollector{status: status})
	}
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is where the metrics are registered (to add more).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// DecisionApplied implements engine.Observer.
func (m *Metrics) DecisionApplied(def string, d time.Duration) {
	m.decisionLatency.WithLabelValues(def).Observe(d.Seconds())
}

// EventToCommand implements engine.Observer.
func (m *Metrics) EventToCommand(def string, d time.Duration) {
	m.eventToCommand.WithLabelValues(def).Observe(d.Seconds())
}

// StepChanged implements engine.Observer.
func (m *Metrics) StepChanged(def, step string, from, to workflow.StepStatus) {
	switch to {
	case workflow.StepRunning, workflow.StepWaiting:
		if from == workflow.StepPending {
			m.stepsStarted.WithLabelValues(def, step).Inc()
		}
	case workflow.StepCompleted:
		m.stepsCompleted.WithLabelValues(def, step).Inc()
	case workflow.StepFailed:
		m.stepsFailed.WithLabelValues(def, step).Inc()
	}
}

// CommandSent implements engine.Observer.
func (m *Metrics) CommandSent(def, step string, attempt int, compensation bool) {
	switch {
	case compensation:
		m.commands.WithLabelValues(def, "compensation").Inc()
	case attempt > 1:
		m.commands.WithLabelValues(def, "retry").Inc()
		m.stepRetries.WithLabelValues(def, step).Inc()
	default:
		m.commands.WithLabelValues(def, "first").Inc()
	}
}

// ProcessChanged implements engine.Observer.
func (m *Metrics) ProcessChanged(def string, _, to workflow.Status) {
	m.processes.WithLabelValues(def, string(to)).Inc()
}

// Dropped implements engine.Observer.
func (m *Metrics) Dropped(reason string) { m.dropped.WithLabelValues(reason).Inc() }

// BatchCommitted implements engine.BatchObserver.
func (m *Metrics) BatchCommitted(inputs int, first, second, commit time.Duration) {
	m.batchInputs.Observe(float64(inputs))
	m.batchPhase.WithLabelValues("first_round").Observe(first.Seconds())
	m.batchPhase.WithLabelValues("second_round").Observe(second.Seconds())
	m.batchPhase.WithLabelValues("commit").Observe(commit.Seconds())
}

// ObserveTimer is a timer relay's Observe hook.
func (m *Metrics) ObserveTimer(kind string, lateness time.Duration) {
	m.timerLateness.WithLabelValues(kind).Observe(max(lateness, 0).Seconds())
}

// statusCollector counts processes by definition and status from the
// status table at each scrape.
type statusCollector struct{ status *engine.StatusTable }

var processesDesc = prometheus.NewDesc("pulsaga_processes", "Processes in the status table, by definition and status (global: the same on every instance; aggregate with max).", []string{"definition", "status"}, nil)

var statusUpDesc = prometheus.NewDesc("pulsaga_status_table_up", "1 when this scrape read the status table up to date, 0 when it could not (pulsaga_processes then shows the last rows read).", nil, nil)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- processesDesc
	ch <- statusUpDesc
}

// Collect refreshes the status table; when the broker does not answer in
// time the scrape still succeeds, with the rows read before and
// pulsaga_status_table_up 0, rather than failing every other metric with it.
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	up := 1.0
	if err := c.status.Refresh(ctx); err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(statusUpDesc, prometheus.GaugeValue, up)
	type key struct{ def, status string }
	n := map[key]int{}
	for _, r := range c.status.List() {
		n[key{r.Definition, string(r.Status)}]++
	}
	for k, v := range n {
		ch <- prometheus.MustNewConstMetric(processesDesc, prometheus.GaugeValue, float64(v), k.def, k.status)
	}
}

// dlqCollector reports the dead letters not handled yet, per topic; the
// topics are read at most once per every.
type dlqCollector struct {
	list  func(context.Context) ([]DLQInfo, error)
	every time.Duration

	mu   sync.Mutex
	at   time.Time
	last []DLQInfo
	err  error
}

var deadLettersDesc = prometheus.NewDesc("pulsaga_dead_letters", "Dead letters not replayed or purged, by dead-letter topic (global: the same on every instance; aggregate with max).", []string{"topic"}, nil)

func (c *dlqCollector) Describe(ch chan<- *prometheus.Desc) { ch <- deadLettersDesc }

func (c *dlqCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) >= c.every {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c.last, c.err = c.list(ctx)
		cancel()
		c.at = time.Now()
	}
	if c.err != nil {
		ch <- prometheus.NewInvalidMetric(deadLettersDesc, c.err)
		return
	}
	for _, d := range c.last {
		ch <- prometheus.MustNewConstMetric(deadLettersDesc, prometheus.GaugeValue, float64(d.Count), d.Topic)
	}
}
