package chaos

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pulsaga/pulsaga/workflow"
)

// Report is what a run found.
type Report struct {
	Config  Config
	Dir     string
	Elapsed time.Duration

	Sagas      int
	Right      int
	Wrong      map[string][]string // saga → problems
	Unfinished map[string]string   // saga → its status
	ByStatus   map[workflow.Status]int

	// At the service: effects and compensations done (each once per key
	// by the ledger), compensations with nothing to undo, the most lines
	// one key has in the ledger, deliveries and those answered from the
	// ledger (duplicates absorbed by idempotency), results by kind.
	Effects, Undos, NoopUndos int
	MaxEffectsPerKey          int
	Deliveries, Replays       int
	CallResults               map[string]int

	// Event streams and status rows read, records that did not decode,
	// and problems with the streams by saga (gaps, forks, status going
	// back).
	Records, StatusRows, Undecodable int
	Streams                          map[string][]string

	DeadLetters []string
	// Timer probe (Config.ReplayTimers, apache/pulsar#20638): timers
	// acknowledged before the broker's kill, acknowledged timers the
	// restarted broker delivered again, timers the kit sent again.
	TimersBefore, TimersAgain, TimersReplayed int
	// AnsweredWhileDown are the attempts the service finished while the
	// broker was away (their answers waited for it).
	AnsweredWhileDown int
	// ExtraAttempts are units that got an attempt beyond their scripts'
	// (a problem when Config.ExactAttempts).
	ExtraAttempts []string

	Components  []ComponentStats
	BrokerKills int
	BrokerDown  []interval
	Freezes     []Freeze

	Takeovers      []Takeover
	TakeoverMisses []string
	// FrozenProgress is, by partition of a frozen owner, how long after the
	// freeze the first commit came while it was still frozen
	// (Config.FreezeTakeover); FrozenProblems says what was missing.
	FrozenProgress map[int]time.Duration
	FrozenProblems []string

	historyTimes map[int][]time.Time
	fenceTimes   map[int][]time.Time
}

// Freeze is an owner frozen with SIGSTOP.
type Freeze struct {
	Name  string
	For   time.Duration
	Owned []int
}

// Takeover is the time from an owner's death (or freeze) to the first
// commit on one of its partitions.
type Takeover struct {
	Event     string // kill or freeze
	Name      string
	Partition int
	At        time.Time
	After     time.Duration
	// NewOwner is the active consumer the broker named next ("" when the
	// kit did not see one before the first commit); Handover is when it
	// was seen (the kit looks every 250ms) and Fenced when the new owner's
	// fence marker was written, both since At (0: not seen).
	NewOwner         string
	Handover, Fenced time.Duration
}

// TakeoverHeader is the header line of WriteTakeovers.
const TakeoverHeader = "event\tinstance\tpartition\tat\tnew_owner\thandover_s\tfenced_s\tfirst_commit_s"

// WriteTakeovers writes every takeover, one per line, tab-separated (the
// columns of TakeoverHeader; "-" for what was not seen).
func (r *Report) WriteTakeovers(w io.Writer) {
	fmt.Fprintln(w, TakeoverHeader)
	for _, t := range r.Takeovers {
		owner := t.NewOwner
		if owner == "" {
			owner = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%.3f\n", t.Event, t.Name, t.Partition, t.At.UTC().Format("15:04:05.000"),
			owner, secs(t.Handover), secs(t.Fenced), t.After.Seconds())
	}
}

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", d.Seconds())
}

func (r *Report) addStream(pid, problem string) {
	if r.Streams == nil {
		r.Streams = map[string][]string{}
	}
	r.Streams[pid] = append(r.Streams[pid], problem)
}

// Problems lists what makes the run fail, most telling first.
func (r *Report) Problems() []string {
	var p []string
	if n := len(r.Wrong); n > 0 {
		p = append(p, fmt.Sprintf("%d sagas wrong", n))
	}
	if n := len(r.Unfinished); n > 0 {
		p = append(p, fmt.Sprintf("%d sagas unfinished", n))
	}
	if n := len(r.Streams); n > 0 {
		p = append(p, fmt.Sprintf("%d event streams broken (gaps, forks or status going back)", n))
	}
	if r.MaxEffectsPerKey > 1 {
		p = append(p, fmt.Sprintf("a key has %d effects in the ledger", r.MaxEffectsPerKey))
	}
	if n := len(r.DeadLetters); n > 0 {
		p = append(p, fmt.Sprintf("%d messages dead-lettered", n))
	}
	if n := len(r.ExtraAttempts); n > 0 && r.Config.ExactAttempts {
		p = append(p, fmt.Sprintf("%d units got an attempt their scripts do not use (lost to the run's faults)", n))
	}
	if r.Config.ReplayTimers && r.BrokerKills > 0 && r.TimersReplayed == 0 {
		p = append(p, "no acknowledged timer was sent again after the broker's restart (the #20638 check did not happen)")
	}
	p = append(p, r.FrozenProblems...)
	if r.Undecodable > 0 {
		p = append(p, fmt.Sprintf("%d history records did not decode", r.Undecodable))
	}
	for _, c := range r.Components {
		if len(c.Panics) > 0 {
			p = append(p, fmt.Sprintf("%s: %s", c.Name, strings.Join(c.Panics, "; ")))
		}
	}
	return p
}

// Failed says whether the run found anything wrong.
func (r *Report) Failed() bool { return len(r.Problems()) > 0 }

// Percentile of durations (p in 0..1), by nearest rank.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// KillTakeovers are the takeovers after kills.
func (r *Report) KillTakeovers() []time.Duration {
	var out []time.Duration
	for _, t := range r.Takeovers {
		if t.Event == "kill" {
			out = append(out, t.After)
		}
	}
	return out
}

// killsByKind counts kills per kind of component.
func (r *Report) killsByKind() map[string]int {
	out := map[string]int{}
	for _, c := range r.Components {
		out[c.Kind] += c.Kills
	}
	return out
}

// Table is the report's summary as a Markdown table (docs/reliability.md).
func (r *Report) Table() string {
	k := r.killsByKind()
	tk := r.KillTakeovers()
	down := time.Duration(0)
	for _, d := range r.BrokerDown {
		down += d.to.Sub(d.from)
	}
	freeze := "none"
	if len(r.Freezes) > 0 {
		f := r.Freezes[0]
		freeze = fmt.Sprintf("%s for %s", f.Name, f.For.Round(time.Second))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| sagas | kills (orchestrator / decider / service) | freeze | broker restarts (down) | right | wrong | unfinished | effects per key | takeover p50 / p99 / max (n) |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d | %d / %d / %d | %s | %d (%s) | %d | %d | %d | %s | %s / %s / %s (%d) |\n",
		r.Sagas, k[KindOrchestrator], k[KindDecider], k[KindService], freeze, r.BrokerKills, down.Round(time.Second),
		r.Right, len(r.Wrong), len(r.Unfinished), r.effectsPerKey(),
		ms(Percentile(tk, 0.5)), ms(Percentile(tk, 0.99)), ms(Percentile(tk, 1)), len(tk))
	return b.String()
}

func (r *Report) effectsPerKey() string {
	if r.MaxEffectsPerKey <= 1 {
		return fmt.Sprintf("1 (%d effects, %d compensations, %d duplicates absorbed)", r.Effects, r.Undos, r.Replays)
	}
	return fmt.Sprintf("up to %d", r.MaxEffectsPerKey)
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// Write prints the whole report: the table, the counts, then every
// problem (up to limit per kind).
func (r *Report) Write(w io.Writer, limit int) {
	fmt.Fprintf(w, "\n%s\n", r.Table())
	fmt.Fprintf(w, "run: %s, %d sagas over %s (drain up to %s), seed %d, %d partitions, decider %s, %d orchestrators, %d deciders, %d service instances; elapsed %s\n",
		r.Dir, r.Sagas, r.Config.Duration, r.Config.Drain, r.Config.Seed, r.Config.Partitions, r.Config.DeciderMode,
		r.Config.Orchestrators, r.Config.Deciders, r.Config.Services, r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "final statuses: %s\n", statusCounts(r.ByStatus))
	fmt.Fprintf(w, "service: %d deliveries (%s); %d effects, %d compensations, %d compensations with nothing to undo; at most %d ledger lines per key\n",
		r.Deliveries, counts(r.CallResults), r.Effects, r.Undos, r.NoopUndos, r.MaxEffectsPerKey)
	fmt.Fprintf(w, "engine: %d history records, %d status rows read\n", r.Records, r.StatusRows)
	switch {
	case r.Config.ReplayTimers && r.BrokerKills > 0:
		fmt.Fprintf(w, "timers (apache/pulsar#20638): %d acknowledged before the broker's kill; the restarted broker delivered %d acknowledged ones again; the kit sent %d again\n",
			r.TimersBefore, r.TimersAgain, r.TimersReplayed)
	case r.Config.ReplayTimers:
		fmt.Fprintf(w, "timers: %d acknowledged by the probe (no broker restart: none sent again)\n", r.TimersBefore)
	}
	fmt.Fprintf(w, "attempts finished by the service while the broker was away: %d; units with an attempt beyond their scripts (lost to a fault of the run): %d\n",
		r.AnsweredWhileDown, len(r.ExtraAttempts))
	for _, c := range r.Components {
		fmt.Fprintf(w, "  %-7s %-12s started %3d, killed %3d, crash faults %3d, exited by itself %d%s\n", c.Name, c.Kind, c.Starts, c.Kills, c.Crashes, len(c.Exits), exitNote(c.Exits))
	}
	for _, d := range r.BrokerDown {
		fmt.Fprintf(w, "broker killed at %s, ready again after %s\n", d.from.Format("15:04:05"), d.to.Sub(d.from).Round(100*time.Millisecond))
	}
	for _, f := range r.Freezes {
		fmt.Fprintf(w, "froze %s for %s (it owned partitions %v)\n", f.Name, f.For.Round(time.Second), f.Owned)
	}
	if r.Config.FreezeAt >= 0 && len(r.Freezes) == 0 {
		fmt.Fprintf(w, "no owner was frozen: no orchestrator owned a partition whenever the kit looked\n")
	}
	if len(r.Takeovers) > 0 {
		fmt.Fprintf(w, "takeovers (%d; seconds after the kill or freeze: the broker's next active consumer, its fence, its first commit):\n", len(r.Takeovers))
		var b strings.Builder
		r.WriteTakeovers(&b)
		for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	for p, d := range r.FrozenProgress {
		fmt.Fprintf(w, "while its owner was frozen, partition %d was taken over: first commit %s after the freeze\n", p, ms(d))
	}
	section(w, "takeovers without a commit", r.TakeoverMisses, limit)
	probs := r.Problems()
	if len(probs) == 0 {
		fmt.Fprintf(w, "OK: every saga right, every effect once per key, streams intact, nothing dead-lettered\n")
		return
	}
	fmt.Fprintf(w, "FAILED: %s\nlogs of every component: %s\n", strings.Join(probs, "; "), r.Dir+"/logs")
	section(w, "wrong sagas", flatten(r.Wrong), limit)
	var unf []string
	for pid, st := range r.Unfinished {
		unf = append(unf, pid+": "+st)
	}
	sort.Strings(unf)
	section(w, "unfinished sagas", unf, limit)
	section(w, "broken event streams", flatten(r.Streams), limit)
	section(w, "dead letters", r.DeadLetters, limit)
	section(w, "attempts beyond the scripts", r.ExtraAttempts, limit)
}

func exitNote(exits []string) string {
	if len(exits) == 0 {
		return ""
	}
	return " (" + strings.Join(uniq(exits), ", ") + ")"
}

func uniq(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

func flatten(m map[string][]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+": "+strings.Join(v, "; "))
	}
	sort.Strings(out)
	return out
}

func section(w io.Writer, title string, lines []string, limit int) {
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "%s (%d):\n", title, len(lines))
	for i, l := range lines {
		if i == limit {
			fmt.Fprintf(w, "  … %d more\n", len(lines)-limit)
			break
		}
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func statusCounts(m map[workflow.Status]int) string {
	c := map[string]int{}
	for k, v := range m {
		name := string(k)
		if name == "" {
			name = "none"
		}
		c[name] = v
	}
	return counts(c)
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
