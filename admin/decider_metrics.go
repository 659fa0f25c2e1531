package admin

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pulsaga/pulsaga/engine"
)

// DeciderMetrics serves a remote decider's counters (engine.DeciderStats,
// read at each scrape) and its Go runtime and process metrics in the
// Prometheus text format, labelled with the instance's name ("" leaves the
// label off).
func DeciderMetrics(stats func() engine.DeciderStats, instance string) http.Handler {
	reg := prometheus.NewRegistry()
	var own prometheus.Registerer = reg
	if instance != "" {
		own = prometheus.WrapRegistererWith(prometheus.Labels{InstanceLabel: instance}, reg)
	}
	own.MustRegister(deciderCollector{stats},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

var (
	deciderTasksDesc = prometheus.NewDesc("pulsaga_decider_tasks_total",
		"Decision tasks answered (answer sent, task acknowledged), by outcome: decided, or error (unknown definition, a decision that failed).", []string{"outcome"}, nil)
	deciderDeadDesc = prometheus.NewDesc("pulsaga_decider_dead_lettered_total",
		"Decision tasks moved to the dead-letter topic (undecodable or invalid).", nil, nil)
	deciderNackedDesc = prometheus.NewDesc("pulsaga_decider_nacked_total",
		"Decision tasks given back to come again (definitions unreadable, an answer that could not be sent).", nil, nil)
	deciderReusedDesc = prometheus.NewDesc("pulsaga_decider_states_reused_total",
		"Decision tasks whose state was taken from the decider's state cache instead of decoded.", nil, nil)
)

// deciderCollector reads the decider's counters at each scrape.
type deciderCollector struct{ stats func() engine.DeciderStats }

func (c deciderCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- deciderTasksDesc
	ch <- deciderDeadDesc
	ch <- deciderNackedDesc
	ch <- deciderReusedDesc
}

func (c deciderCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(deciderTasksDesc, prometheus.CounterValue, float64(s.Decided), "decided")
	ch <- prometheus.MustNewConstMetric(deciderTasksDesc, prometheus.CounterValue, float64(s.Errors), "error")
	ch <- prometheus.MustNewConstMetric(deciderDeadDesc, prometheus.CounterValue, float64(s.DeadLettered))
	ch <- prometheus.MustNewConstMetric(deciderNackedDesc, prometheus.CounterValue, float64(s.Nacked))
	ch <- prometheus.MustNewConstMetric(deciderReusedDesc, prometheus.CounterValue, float64(s.StatesReused))
}
