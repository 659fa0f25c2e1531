package admin

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// grafanaDashboard is the dashboard shipped for the Prometheus metrics.
const grafanaDashboard = "../deploy/grafana/pulsaga.json"

type grafanaPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// metricFamilies are the metrics pulsaga exports, with their label names:
// every series observed once, the status table and dead-letter gauges
// registered by a server.
func metricFamilies(t *testing.T) map[string]*dto.MetricFamily {
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() })
	topics := protocol.DefaultTopics()
	status := engine.NewStatusTable(b, topics.Status)
	t.Cleanup(func() { _ = status.Close() })
	m := NewMetrics(status, "orchestrator-1")
	reg := engine.NewRegistry(b, topics.Definitions, nil)
	t.Cleanup(func() { _ = reg.Close() })
	srv, err := New(Options{Bus: b, Topics: topics, Registry: reg, Metrics: m}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	m.DecisionApplied("trip", time.Millisecond)
	m.EventToCommand("trip", time.Millisecond)
	m.StepChanged("trip", "pay", workflow.StepPending, workflow.StepRunning)
	m.StepChanged("trip", "pay", workflow.StepRunning, workflow.StepCompleted)
	m.StepChanged("trip", "ship", workflow.StepRunning, workflow.StepFailed)
	m.CommandSent("trip", "pay", 1, false)
	m.CommandSent("trip", "pay", 2, false)
	m.CommandSent("trip", "pay", 1, true)
	m.ProcessChanged("trip", workflow.StatusRunning, workflow.StatusCompleted)
	m.Dropped("duplicate")
	m.ObserveTimer("sleep", time.Millisecond)
	m.BatchCommitted(70, 7*time.Millisecond, 2*time.Millisecond, 5*time.Millisecond)
	// A process row and a dead letter, so the global gauges have series.
	ctx := t.Context()
	if err := engine.EnsureTopics(ctx, b, topics); err != nil {
		t.Fatal(err)
	}
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topics.Status})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sendJSON(t, p, "p1", engine.TypeStatus, engine.StatusRecord{ProcessID: "p1", Definition: "trip", Version: 1, Status: workflow.StatusPaused, Seq: 1})
	dlq, err := b.Producer(ctx, bus.ProducerOptions{Topic: "jobs.pay-workers-DLQ"})
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	sendJSON(t, dlq, "p1", "command", map[string]string{})
	if _, err := srv.DeadLetterCounts(ctx); err != nil {
		t.Fatal(err)
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// TestGrafanaDashboard checks deploy/grafana/pulsaga.json: valid JSON in
// the shape Grafana imports, panels that do not overlap, variables that
// exist, and queries that name only metrics and labels pulsaga exports.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(grafanaDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID           string         `json:"uid"`
		Title         string         `json:"title"`
		SchemaVersion int            `json:"schemaVersion"`
		Panels        []grafanaPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name, Type string
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not JSON: %v", grafanaDashboard, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 || len(d.Panels) < 10 {
		t.Fatalf("dashboard header: uid %q title %q schema %d, %d panels", d.UID, d.Title, d.SchemaVersion, len(d.Panels))
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true, "__all": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	for _, want := range []string{"datasource", "definition", "instance"} {
		if !vars[want] {
			t.Errorf("no template variable %q", want)
		}
	}
	fams := metricFamilies(t)
	labels := func(f *dto.MetricFamily) map[string]bool {
		out := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				out[l.GetName()] = true
			}
		}
		if f.GetType() == dto.MetricType_HISTOGRAM {
			out["le"] = true
		}
		return out
	}
	// family resolves a name as a query writes it (a histogram's series
	// end in _bucket, _sum or _count).
	family := func(name string) *dto.MetricFamily {
		if f, ok := fams[name]; ok {
			return f
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := fams[strings.TrimSuffix(name, suf)]; ok && strings.HasSuffix(name, suf) && f.GetType() == dto.MetricType_HISTOGRAM {
				return f
			}
		}
		return nil
	}
	metricRE := regexp.MustCompile(`\b((?:pulsaga|go|process)_[a-z0-9_]+)(\{[^}]*\})?`)
	matcherRE := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"`)
	byRE := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	varRE := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if !slices.Contains([]string{"timeseries", "stat", "bargauge", "table", "gauge"}, p.Type) {
			t.Errorf("panel %q: type %q", p.Title, p.Type)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: no datasource variable or no query", p.Title)
		}
		for _, q := range p.Targets {
			e := q.Expr
			if strings.Count(e, "(") != strings.Count(e, ")") || strings.Count(e, "{") != strings.Count(e, "}") || strings.Count(e, `"`)%2 != 0 {
				t.Errorf("panel %q: unbalanced query %s", p.Title, e)
			}
			for _, v := range varRE.FindAllStringSubmatch(e, -1) {
				if !vars[v[1]] {
					t.Errorf("panel %q: query uses $%s, which is not a variable", p.Title, v[1])
				}
			}
			known := map[string]bool{}
			found := metricRE.FindAllStringSubmatch(byRE.ReplaceAllString(e, ""), -1)
			if len(found) == 0 {
				t.Errorf("panel %q: query names no metric: %s", p.Title, e)
			}
			for _, m := range found {
				f := family(m[1])
				if f == nil {
					t.Errorf("panel %q: metric %s does not exist", p.Title, m[1])
					continue
				}
				ls := labels(f)
				for l := range ls {
					known[l] = true
				}
				for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
					if !ls[mm[1]] {
						t.Errorf("panel %q: %s has no label %q", p.Title, m[1], mm[1])
					}
				}
			}
			for _, by := range byRE.FindAllStringSubmatch(e, -1) {
				for _, l := range strings.Split(by[1], ",") {
					if l = strings.TrimSpace(l); l != "" && !known[l] {
						t.Errorf("panel %q: groups by %q, a label none of its metrics has", p.Title, l)
					}
				}
			}
		}
	}
	// Every pulsaga metric is on the dashboard.
	for name := range fams {
		if strings.HasPrefix(name, "pulsaga_") && !strings.Contains(string(raw), name) {
			t.Errorf("metric %s is not on the dashboard", name)
		}
	}
}

// sendJSON sends one envelope keyed by key.
func sendJSON(t *testing.T, p bus.Producer, key, typ string, payload any) {
	t.Helper()
	env, err := bus.NewEnvelope(typ, typ+":"+key, key, time.Now(), payload)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(t.Context(), &bus.OutMessage{Key: key, Payload: b}); err != nil {
		t.Fatal(err)
	}
}
