package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

// What a failed crash test prints. CI shows only the first hundred-odd
// lines of a failure, so instead of the tails of the components' logs
// (mostly the client library's connection chatter at shutdown) a failed
// test prints a diagnosis of a few dozen lines: who owned each partition
// when, how often each orchestrator restarted its subscription and why,
// the warnings and errors of every component and of the broker for the
// test's namespace, counted once per kind, and the unfinished processes
// grouped by partition and progress. The whole logs are kept: under
// $PULSAGA_E2E_LOGS when it is set (each test's folder named after it and
// its namespace), else copied out of the test's temporary folder into
// one of os.TempDir() whose path is printed.

// logsEnv names the folder where the components' logs are written and
// kept (passed or failed).
const logsEnv = "PULSAGA_E2E_LOGS"

// components are the log files a cluster may write, in print order.
var components = []string{"orchestrator-a", "orchestrator-b", "decider", "worker"}

// logLine is the part of a component's zerolog JSON line the diagnosis
// reads.
type logLine struct {
	Time      string `json:"time"`
	Level     string `json:"level"`
	Message   string `json:"message"`
	Error     string `json:"error"`
	Lib       string `json:"lib"`
	Topic     string `json:"topic"`
	Partition *int   `json:"partition"`
	Took      any    `json:"took"` // milliseconds
	Processes *int   `json:"processes"`
	Why       string `json:"why"`
}

// clientNoise are the client library's messages that every kill and
// every shutdown produce; they say nothing about a failure.
var clientNoise = []string{
	"Connection was closed", "Failed to close producer", "Failed to close consumer",
	"Consumer not found while active consumer change", "Connection closed", "Reconnecting to broker",
}

// tally counts occurrences of one kind of line.
type tally struct {
	key         string
	n           int
	first, last string
}

type tallies struct {
	byKey map[string]*tally
	order []*tally
}

func (ts *tallies) add(key, at string) {
	if ts.byKey == nil {
		ts.byKey = map[string]*tally{}
	}
	t := ts.byKey[key]
	if t == nil {
		t = &tally{key: key, first: at}
		ts.byKey[key] = t
		ts.order = append(ts.order, t)
	}
	t.n++
	t.last = at
}

// top returns at most n kinds, the most frequent first.
func (ts *tallies) top(n int) []*tally {
	out := slices.Clone(ts.order)
	slices.SortStableFunc(out, func(a, b *tally) int { return b.n - a.n })
	return out[:min(n, len(out))]
}

func (t *tally) String() string {
	span := t.first
	if t.last != t.first {
		span += "–" + t.last
	}
	return fmt.Sprintf("%5d× %s (%s)", t.n, t.key, span)
}

var (
	digits = regexp.MustCompile(`[0-9]+`)
	// javaPackage is the package part of a qualified Java class name.
	javaPackage = regexp.MustCompile(`\b(?:[a-z][a-z0-9_]*\.){2,}`)
)

// kind shortens a message for counting: numbers become #, at most 220
// characters.
func kind(s string) string {
	s = digits.ReplaceAllString(s, "#")
	if len(s) > 220 {
		s = s[:220] + "…"
	}
	return s
}

// clock is the time of day of a zerolog timestamp.
func clock(ts string) string {
	if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
		return t.UTC().Format("15:04:05")
	}
	return ts
}

// diagnose writes the diagnosis of a failed test through logf.
func (c *cluster) diagnose(logf func(format string, args ...any)) {
	var b strings.Builder
	fmt.Fprintf(&b, "---- diagnosis (namespace %s; whole logs: %s)\n", c.ns, c.keepLogs())
	owners := map[int][]string{}
	for _, name := range components {
		f, err := os.Open(filepath.Join(c.dir, name+".log"))
		if err != nil {
			continue
		}
		var problems, restarts tallies
		lines := 0
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
		for sc.Scan() {
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue // a line cut by a kill -9
			}
			lines++
			at := clock(l.Time)
			short := strings.TrimPrefix(name, "orchestrator-")
			if l.Partition != nil {
				switch l.Message {
				case "loading partition":
					owners[*l.Partition] = append(owners[*l.Partition], fmt.Sprintf("%s loading %s", short, at))
				case "partition loaded":
					owners[*l.Partition] = append(owners[*l.Partition], fmt.Sprintf("%s loaded %s (took %v ms)", short, at, l.Took))
				case "partition lost; its images are dropped", "partition lost while it was being loaded":
					owners[*l.Partition] = append(owners[*l.Partition], fmt.Sprintf("%s lost %s", short, at))
				}
			}
			if l.Message == "orchestrator restarting its subscription" {
				restarts.add(kind(l.Error), at)
				continue
			}
			if l.Level != "warn" && l.Level != "error" && l.Level != "fatal" && l.Level != "panic" {
				continue
			}
			if l.Lib != "" && slices.Contains(clientNoise, l.Message) {
				continue
			}
			key := "[" + l.Level + "] " + l.Message
			if l.Lib != "" && l.Topic != "" {
				key += " (" + l.Topic[strings.LastIndex(l.Topic, "/")+1:] + ")"
			}
			if l.Error != "" {
				key += ": " + l.Error
			}
			problems.add(kind(key), at)
		}
		f.Close()
		fmt.Fprintf(&b, "%s: %d log lines, %d subscription restarts\n", name, lines, len(restarts.order))
		for _, t := range restarts.top(3) {
			fmt.Fprintf(&b, "  restart %s\n", t)
		}
		for _, t := range problems.top(6) {
			fmt.Fprintf(&b, "  %s\n", t)
		}
	}
	for _, p := range []int{0, 1} {
		h := owners[p]
		if len(h) > 8 {
			h = append(append(h[:3:3], fmt.Sprintf("… %d more …", len(h)-6)), h[len(h)-3:]...)
		}
		fmt.Fprintf(&b, "partition %d owners: %s\n", p, strings.Join(h, " → "))
	}
	for _, t := range brokerProblems(c.ns).top(6) {
		fmt.Fprintf(&b, "broker %s\n", t)
	}
	logf("%s", b.String())
}

// brokerProblems counts the broker's warnings and errors about the
// namespace ns, when the broker is the repository's script broker (its
// log is at hand); nothing otherwise.
func brokerProblems(ns string) *tallies {
	br, err := pulsartest.Start(context.Background())
	if err != nil || br.Home == "" {
		return &tallies{}
	}
	f, err := os.Open(filepath.Join(br.Home, "logs", "pulsar.log"))
	if err != nil {
		return &tallies{}
	}
	defer f.Close()
	return brokerProblemsIn(f, ns)
}

// brokerProblemsIn counts the warnings and errors about namespace ns in a
// broker's log.
func brokerProblemsIn(r io.Reader, ns string) *tallies {
	ts := &tallies{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, ns) || (!strings.Contains(line, " WARN ") && !strings.Contains(line, " ERROR ")) {
			continue
		}
		// "2026-12-04T01:19:06,683 [thread] WARN  org.apache...Class - message"
		at, rest, _ := strings.Cut(line, " ")
		if i := strings.Index(rest, "] "); i >= 0 {
			rest = rest[i+2:]
		}
		level, rest, _ := strings.Cut(strings.TrimSpace(rest), " ")
		class, msg, _ := strings.Cut(strings.TrimSpace(rest), " - ")
		class = class[strings.LastIndex(class, ".")+1:]
		if before, _, ok := strings.Cut(msg, "\n"); ok {
			msg = before
		}
		msg = strings.ReplaceAll(msg, "persistent://public/"+ns+"/", "")
		msg = javaPackage.ReplaceAllString(msg, "")
		if strings.Contains(msg, "already exists") {
			continue // every component creates the topics it uses
		}
		if len(at) >= 19 {
			at = at[11:19]
		}
		ts.add(kind(level+" "+class+": "+msg), at)
	}
	return ts
}

// keepLogs says where the whole logs stay after the test: the folder
// itself under $PULSAGA_E2E_LOGS, else a copy out of the test's temporary
// folder (removed when the test ends).
func (c *cluster) keepLogs() string {
	if c.kept {
		return c.dir
	}
	dst, err := os.MkdirTemp("", "pulsaga-e2e-"+c.ns+"-")
	if err != nil {
		return "not kept: " + err.Error()
	}
	for _, name := range components {
		src, err := os.Open(filepath.Join(c.dir, name+".log"))
		if err != nil {
			continue
		}
		out, err := os.Create(filepath.Join(dst, name+".log"))
		if err == nil {
			_, _ = io.Copy(out, src)
			out.Close()
		}
		src.Close()
	}
	return dst
}

// unfinished reports the processes that did not reach a terminal status,
// grouped by partition and progress (one line per group, not per
// process).
func unfinished(rows map[string]engine.StatusRecord, pids []string, status *engine.StatusTable) []string {
	type group struct {
		key  string
		pids []string
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, pid := range pids {
		if _, ok := rows[pid]; ok {
			continue
		}
		key := "no status row"
		if r, ok := status.Get(pid); ok {
			steps := make([]string, 0, len(r.Steps))
			for s, st := range r.Steps {
				if st != "pending" {
					steps = append(steps, s+":"+st)
				}
			}
			slices.Sort(steps)
			key = fmt.Sprintf("partition %d, %s at seq %d, steps %v, updated %s", r.Partition, r.Status, r.Seq, steps, r.UpdatedAt.UTC().Format("15:04:05.000"))
			if r.LastError != "" {
				key += ", last error " + r.LastError
			}
		}
		g := byKey[key]
		if g == nil {
			g = &group{key: key}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.pids = append(g.pids, pid)
	}
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		some := g.pids[:min(3, len(g.pids))]
		more := ""
		if len(g.pids) > 3 {
			more = fmt.Sprintf(" and %d more", len(g.pids)-3)
		}
		out = append(out, fmt.Sprintf("%d did not finish (%s): %s%s", len(g.pids), g.key, strings.Join(some, ", "), more))
	}
	return out
}
